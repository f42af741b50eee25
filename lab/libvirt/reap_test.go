package libvirt

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/internal/owner"
	"github.com/firstboot/firstboot/lab"
)

func TestMetadataOwner(t *testing.T) {
	o := owner.Owner{PID: 4242, Start: 77, Boot: "b-1", Host: `lab "one"`}
	files := []string{"/runs/r1/firstboot-r1.qcow2", "/tmp/firstboot-kvmprobe-1 & 2"}
	// Another application's metadata next to ours is left alone.
	inner := `<other:app xmlns:other="urn:other"><owner pid="1"/></other:app>` + metadataXML(o, files)
	got, gotFiles, ok := parseMetadata(inner)
	if !ok || !got.Is(o) || !slices.Equal(gotFiles, files) {
		t.Errorf("parseMetadata = %+v %q %v; want %+v %q", got, gotFiles, ok, o, files)
	}
	if _, _, ok := parseMetadata(`<other:app xmlns:other="urn:other"><owner pid="1"/></other:app>`); ok {
		t.Error("another application's metadata was read as firstboot's")
	}

	for _, c := range []struct {
		name string
		d    libvirtxml.Domain
		want owner.Owner
		ok   bool
	}{
		{"metadata", libvirtxml.Domain{Name: "firstboot-x", Description: ownerTag + "1", Metadata: &libvirtxml.DomainMetadata{XML: metadataXML(o, nil)}}, o, true},
		{"older version: description", libvirtxml.Domain{Name: "firstboot-x", Description: ownerTag + "4321"}, owner.Owner{PID: 4321}, true},
		{"older version: probe name", libvirtxml.Domain{Name: "firstboot-kvmprobe-555"}, owner.Owner{PID: 555}, true},
		{"nothing recorded", libvirtxml.Domain{Name: "firstboot-y", Description: "made by hand"}, owner.Owner{}, false},
	} {
		got, _, ok := domainOwner(&c.d)
		if ok != c.ok || !got.Is(c.want) {
			t.Errorf("%s: domainOwner = %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	for _, p := range []struct {
		path string
		ok   bool
	}{
		{"/runs/r/firstboot-r.qcow2", true},
		{"/tmp/firstboot-kvmprobe-123", true},
		{"/", false},
		{"/home/user/disk.qcow2", false},
		{"relative/firstboot-x.qcow2", false},
	} {
		if removableFile(p.path) != p.ok {
			t.Errorf("removableFile(%q) = %v", p.path, !p.ok)
		}
	}
}

// deadOwner is an owner that has certainly ended: this process's pid in
// another life (a recycled pid).
func deadOwner() owner.Owner {
	o := owner.Self()
	o.Start++
	return o
}

// liveOwner is a live process other than the test: a child that runs until
// the test ends.
func liveOwner(t *testing.T) owner.Owner {
	t.Helper()
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	o, err := owner.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// blankDisk makes an empty 16 MiB disk in a fresh directory.
func blankDisk(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", path, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	return dir, path
}

// defineOwned defines and starts a machine on a blank disk (SeaBIOS finds
// nothing to boot and waits: QEMU runs) on the network, recording o as its
// owner the way DefineMachine does; description overrides the metadata.
func defineOwned(t *testing.T, l *Lab, name string, o owner.Owner, description string, network string) (golibvirt.Domain, string) {
	t.Helper()
	ctx := context.Background()
	dir, base := blankDisk(t)
	spec, err := normalize(lab.MachineSpec{Name: name, Disk: base, RunDir: dir, MemoryMiB: 64, Video: "none"})
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, spec.Name+".qcow2")
	if err := createOverlay(ctx, base, overlay); err != nil {
		t.Fatal(err)
	}
	def, err := domainDef(spec, network, "tcg", overlay)
	if err != nil {
		t.Fatal(err)
	}
	if description != "" {
		def.Description = description
	} else {
		def.Metadata = &libvirtxml.DomainMetadata{XML: metadataXML(o, []string{overlay})}
	}
	x, err := def.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.conn.DomainDefineXML(x)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.removeDomain(context.Background(), d, nil) })
	if _, err := l.conn.DomainCreateWithFlags(d, 0); err != nil {
		t.Fatal(err)
	}
	return d, overlay
}

// defineOwnedNetwork starts an isolated network recording o as its owner.
func defineOwnedNetwork(t *testing.T, l *Lab, name string, o owner.Owner) golibvirt.Network {
	t.Helper()
	ctx := context.Background()
	unlock, err := lockFile(ctx, subnetLock)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	used, err := l.usedSubnets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subnet, _ := pickSubnet(used, 0)
	def, err := networkDef(lab.NetworkSpec{Name: name, Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	def.Metadata = &libvirtxml.NetworkMetadata{XML: metadataXML(o, nil)}
	x, _ := def.Marshal()
	n, err := l.conn.NetworkDefineXML(x)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.removeNetwork(context.Background(), n) })
	if err := l.conn.NetworkCreate(n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReap: what a firstboot that has ended left (a running machine with its
// overlay, a network; also a machine of an older version, which recorded
// only its pid) is found and removed; a live process's machine and network
// are not touched, though they sit in the same lab.
func TestReap(t *testing.T) {
	l := getLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tag := fmt.Sprintf("t-reap-%d-", os.Getpid())
	dead, live := deadOwner(), liveOwner(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}

	liveNet := defineOwnedNetwork(t, l, Prefix+tag+"live", live)
	deadNet := defineOwnedNetwork(t, l, Prefix+tag+"dead", dead)
	liveDom, liveOverlay := defineOwned(t, l, tag+"live", live, "", liveNet.Name)
	deadDom, deadOverlay := defineOwned(t, l, tag+"dead", dead, "", deadNet.Name)
	oldDom, _ := defineOwned(t, l, tag+"old", owner.Owner{}, fmt.Sprintf("%s%d", ownerTag, gone.Process.Pid), "")

	want := []string{
		"machine " + deadDom.Name + " of " + dead.String() + " with " + deadOverlay,
		"machine " + oldDom.Name + " of " + owner.Owner{PID: gone.Process.Pid}.String(),
		"network " + deadNet.Name + " of " + dead.String(),
	}
	mine := func(os []Orphan) []string {
		var out []string
		for _, o := range os {
			if strings.Contains(o.Name, tag) {
				out = append(out, o.String())
			}
		}
		slices.Sort(out)
		return out
	}
	found, err := l.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := mine(found); !slices.Equal(got, want) {
		t.Fatalf("Orphans:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s, _, err := l.conn.DomainGetState(deadDom, 0); err != nil || golibvirt.DomainState(s) != golibvirt.DomainRunning {
		t.Fatalf("Orphans changed the dead owner's machine: state %d, %v", s, err)
	}

	reaped, err := l.Reap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := mine(reaped); !slices.Equal(got, want) {
		t.Errorf("Reap:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, d := range []golibvirt.Domain{deadDom, oldDom} {
		if _, err := l.conn.DomainLookupByName(d.Name); err == nil {
			t.Errorf("machine %s is still defined after the reap", d.Name)
		}
		if qemuRunning(d.Name) {
			t.Errorf("the QEMU of %s still runs after the reap", d.Name)
		}
	}
	if _, err := l.conn.NetworkLookupByName(deadNet.Name); err == nil {
		t.Errorf("network %s is still defined after the reap", deadNet.Name)
	}
	if _, err := os.Stat(deadOverlay); !os.IsNotExist(err) {
		t.Errorf("the dead owner's overlay is still there: %v", err)
	}
	// The live owner's machine and network are exactly as they were.
	if s, _, err := l.conn.DomainGetState(liveDom, 0); err != nil || golibvirt.DomainState(s) != golibvirt.DomainRunning {
		t.Errorf("the live owner's machine: state %d, %v; want running", s, err)
	}
	if a, err := l.conn.NetworkIsActive(liveNet); err != nil || a != 1 {
		t.Errorf("the live owner's network: active %d, %v", a, err)
	}
	if _, err := os.Stat(liveOverlay); err != nil {
		t.Errorf("the live owner's overlay: %v", err)
	}
}

// qemuRunning reports whether a QEMU process runs the named domain.
func qemuRunning(name string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "guest="+name+",") {
			return true
		}
	}
	return false
}

// TestMachineDiesWithConnection: a machine lives only as long as the
// connection that started it (autodestroy): a Lab closed without destroying
// its machine (a process killed) leaves no QEMU running, and the machine,
// started paused, still resumes and stops as before.
func TestMachineDiesWithConnection(t *testing.T) {
	l := getLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l2, err := Up(ctx, l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir, base := blankDisk(t)
	m, err := l2.DefineMachine(ctx, lab.MachineSpec{Name: fmt.Sprintf("t-autodestroy-%d", os.Getpid()), Disk: base, RunDir: dir, MemoryMiB: 64, Accel: "tcg", Video: "none"}, nil)
	if err != nil {
		l2.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { l.removeDomain(context.Background(), m.dom, nil) })
	if err := m.Resume(ctx); err != nil {
		t.Fatalf("resume after a paused autodestroy start: %v", err)
	}
	if s, _, err := l.conn.DomainGetState(m.dom, 0); err != nil || golibvirt.DomainState(s) != golibvirt.DomainRunning {
		t.Fatalf("state after resume %d, %v; want running", s, err)
	}
	if !qemuRunning(m.Name()) {
		t.Fatal("no QEMU process for the running machine")
	}
	// The owner's connection goes away without a word about the machine.
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	shutoff := func() bool {
		s, _, err := l.conn.DomainGetState(m.dom, 0)
		return err == nil && golibvirt.DomainState(s) == golibvirt.DomainShutoff
	}
	deadline := time.Now().Add(30 * time.Second)
	for (qemuRunning(m.Name()) || !shutoff()) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if qemuRunning(m.Name()) || !shutoff() {
		t.Errorf("30 s after its connection closed the machine's QEMU runs: %v; it is shut off: %v", qemuRunning(m.Name()), shutoff())
	}
	// The definition names its overlay, for whoever reaps it.
	x, err := l.conn.DomainGetXMLDesc(m.dom, 0)
	if err != nil {
		t.Fatal(err)
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	o, files, ok := domainOwner(&def)
	if !ok || !o.Is(owner.Self()) || !slices.Equal(files, m.overlays()) || len(files) != 1 {
		t.Errorf("recorded owner %+v files %q (%v); want this process and %q", o, files, ok, m.overlays())
	}
}
