package libvirt

import (
	"context"
	"github.com/firstboot/firstboot/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/netns"
)

// requireLab skips unless the test can run libvirtd and QEMU (root, tools
// installed: scripts/provision.sh).
func requireLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "lab tests need root")
	}
	for _, p := range []string{"/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/bin/qemu-system-x86_64"} {
		if _, err := os.Stat(p); err != nil {
			testenv.Missing(t, "lab tests need %s (scripts/provision.sh)", p)
		}
	}
}

func TestUpDown(t *testing.T) {
	requireLab(t)
	stopSharedLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stateDir := t.TempDir()
	start := time.Now()
	l, err := Up(ctx, lab.Config{StateDir: stateDir, Netns: "fbtest-updown", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Down(context.Background()) })
	if !l.StartedDaemons() {
		testenv.Missing(t, "a firstboot libvirtd that is not the tests' own is running; the lifecycle test needs a host without one")
	}
	t.Logf("Up took %s (first libvirt call %s)", time.Since(start).Round(time.Millisecond), l.FirstCall.Round(time.Millisecond))
	st := l.State()
	if !processAlive(st.LibvirtdPID, "libvirtd") || !processAlive(st.VirtlogdPID, "virtlogd") {
		t.Fatalf("daemons not running after Up: %+v", st)
	}
	if !netns.Exists("fbtest-updown") {
		t.Fatal("namespace fbtest-updown missing after Up")
	}
	// The daemons run inside the namespace, not the host's.
	if got, want := nsOf(t, st.LibvirtdPID), nsPathID(t, netns.Path("fbtest-updown")); got != want {
		t.Errorf("libvirtd runs in netns %s, want the lab's %s", got, want)
	}
	v, err := l.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Libvirt == "" || v.QEMU == "" || v.QEMU == "0.0.0" {
		t.Errorf("versions: %+v", v)
	}
	t.Logf("libvirt %s, QEMU %s", v.Libvirt, v.QEMU)

	// A second Up reuses the running daemons and does not own them.
	l2, err := Up(ctx, lab.Config{StateDir: stateDir, Netns: "fbtest-updown"})
	if err != nil {
		t.Fatal(err)
	}
	if l2.StartedDaemons() {
		t.Error("second Up claims to have started the daemons")
	}
	if err := l2.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if !processAlive(st.LibvirtdPID, "libvirtd") {
		t.Fatal("Down of a reusing lab stopped libvirtd")
	}
	// A lab with another state dir (a test, another user) shares the
	// daemons without owning them.
	other, err := Up(ctx, lab.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if other.StartedDaemons() || other.Netns() != "fbtest-updown" {
		t.Errorf("other lab: started %v netns %q; want shared fbtest-updown", other.StartedDaemons(), other.Netns())
	}
	if err := other.Down(ctx); err != nil {
		t.Fatal(err)
	}

	// A crashed libvirtd leaves a network (and its dnsmasq) behind; the next
	// Up starts fresh daemons and removes it once its owner has ended (a
	// live owner's is left to that owner; see TestReap).
	defineOwnedNetwork(t, l, "t-stale", deadOwner())
	if len(dnsmasqFor(t, "firstboot-t-stale")) == 0 {
		t.Fatal("no dnsmasq found for the network: the leftover check below would prove nothing")
	}
	if err := syscall.Kill(st.LibvirtdPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for processAlive(st.LibvirtdPID, "libvirtd") {
		time.Sleep(50 * time.Millisecond)
	}
	l.Close()
	l3, err := Up(ctx, lab.Config{StateDir: stateDir, Netns: "fbtest-updown"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l3.Down(context.Background()) })
	if !l3.StartedDaemons() {
		t.Fatal("Up after a libvirtd crash did not start fresh daemons")
	}
	if _, err := l3.Conn().NetworkLookupByName("firstboot-t-stale"); err == nil {
		t.Error("stale network survived the restart")
	}
	if pids := dnsmasqFor(t, "firstboot-t-stale"); len(pids) > 0 {
		t.Errorf("stale dnsmasq still running: %v", pids)
	}
	st = l3.State()
	if err := l3.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if processAlive(st.LibvirtdPID, "libvirtd") || processAlive(st.VirtlogdPID, "virtlogd") {
		t.Error("daemons still running after Down")
	}
	if netns.Exists("fbtest-updown") {
		t.Error("namespace still exists after Down")
	}
	if _, err := os.Stat(statePath(stateDir)); !os.IsNotExist(err) {
		t.Errorf("state file still there after Down: %v", err)
	}
}

// TestUpConcurrent: several Ups at once on a host without daemons (parallel
// `firstboot run`s) start one set of daemons, which the others reuse; none
// fails starting daemons of its own.
func TestUpConcurrent(t *testing.T) {
	requireLab(t)
	stopSharedLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := lab.Config{StateDir: t.TempDir(), Netns: "fbtest-concurrent", Logger: testLogger(t)}
	t.Cleanup(func() { _ = Stop(context.Background(), cfg) })
	labs := make([]*Lab, 3)
	errs := make([]error, len(labs))
	var wg sync.WaitGroup
	for i := range labs {
		wg.Go(func() { labs[i], errs[i] = Up(ctx, cfg) })
	}
	wg.Wait()
	var owner *Lab
	pids := map[int]bool{}
	for i, l := range labs {
		if errs[i] != nil {
			t.Errorf("Up %d: %v", i, errs[i])
			continue
		}
		if l.StartedDaemons() {
			if owner != nil {
				t.Errorf("Up %d started daemons too", i)
			}
			owner = l
		}
		pid, err := peerPID(l.socket)
		if err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
	}
	if t.Failed() {
		return
	}
	if owner == nil {
		testenv.Missing(t, "a firstboot libvirtd that is not the tests' own is running; this test needs a host without one")
	}
	if len(pids) != 1 {
		t.Errorf("the Ups reached %d libvirtds (%v), want one", len(pids), pids)
	}
	st := owner.State()
	for _, l := range labs {
		if l != owner {
			if err := l.Down(ctx); err != nil {
				t.Error(err)
			}
		}
	}
	if !processAlive(st.LibvirtdPID, "libvirtd") {
		t.Fatal("Down of a reusing lab stopped the daemons")
	}
	if err := owner.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if processAlive(st.LibvirtdPID, "libvirtd") || processAlive(st.VirtlogdPID, "virtlogd") {
		t.Error("daemons still running after the owner's Down")
	}
}

func nsOf(t *testing.T, pid int) string {
	t.Helper()
	s, err := os.Readlink("/proc/" + itoa(pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func nsPathID(t *testing.T, path string) string {
	t.Helper()
	var st syscallStat
	if err := statIno(path, &st); err != nil {
		t.Fatal(err)
	}
	return "net:[" + itoa(int(st.Ino)) + "]"
}

// dnsmasqFor lists dnsmasq processes serving the named libvirt network.
func dnsmasqFor(t *testing.T, network string) []int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "dnsmasq") || !strings.Contains(string(b), network+".conf") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		pids = append(pids, pid)
	}
	return pids
}

func TestDownLeavesSharedDaemons(t *testing.T) {
	requireLab(t)
	stopSharedLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := lab.Config{StateDir: t.TempDir(), Netns: "fbtest-share"}
	owner, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Stop(context.Background(), cfg) })
	if !owner.StartedDaemons() {
		owner.Close()
		testenv.Missing(t, "a firstboot libvirtd that is not the tests' own is running; this test needs a host without one")
	}
	st := owner.State()
	// Another run on the host: the same state directory.
	guest, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	m, err := guest.DefineMachine(ctx, lab.MachineSpec{Name: "t-shared", Disk: disk, RunDir: dir, Accel: "tcg"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The owner goes down while the other run's machine runs: the daemons
	// stay, released to that run.
	if err := owner.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if !processAlive(st.LibvirtdPID, "libvirtd") {
		t.Fatal("owner's Down killed daemons another lab still uses")
	}
	if got, err := LoadState(cfg.StateDir); err != nil || !got.Released {
		t.Fatalf("state after the owner's Down: %+v, %v; want released", got, err)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	// The last run using them stops them, though their owner (this
	// process) is still alive: it may be analysing for minutes.
	if err := guest.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if processAlive(st.LibvirtdPID, "libvirtd") || processAlive(st.VirtlogdPID, "virtlogd") || netns.Exists("fbtest-share") {
		t.Error("the last run's Down left the daemons or the namespace")
	}
	if _, err := os.Stat(statePath(cfg.StateDir)); !os.IsNotExist(err) {
		t.Errorf("state file still there: %v", err)
	}
}
