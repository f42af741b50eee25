package libvirt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/firstboot/firstboot/internal/testnet"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/capture"
	"github.com/firstboot/firstboot/lab/netns"
)

// sharedLab is one lab for the VM tests (starting libvirtd costs ~10 s);
// TestMain brings it down.
type sharedLabT struct {
	mu  sync.Mutex
	l   *Lab
	err error
}

var shared sharedLabT

const testStateDir = "/tmp/firstboot-labtest"

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.l != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if err := shared.l.Down(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "lab down:", err)
			code = 1
		}
		cancel()
	}
	os.Exit(code)
}

// getLab returns the lab the tests share, bringing it up on first use (and
// again after stopSharedLab).
func getLab(t *testing.T) *Lab {
	t.Helper()
	requireLab(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.l == nil && shared.err == nil {
		shared.l, shared.err = upSharedLab()
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.l
}

func upSharedLab() (*Lab, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A fixed state dir, so a test run that died is cleaned up by the next.
	cfg := lab.Config{StateDir: testStateDir, Netns: "fbtest", Accel: "tcg", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if err := Stop(ctx, cfg); err != nil {
		return nil, fmt.Errorf("cleaning up an earlier test lab: %w", err)
	}
	start := time.Now()
	l, err := Up(ctx, cfg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "lab up: %s (first libvirt call %s, started daemons: %v)\n",
		time.Since(start).Round(time.Millisecond), l.FirstCall.Round(time.Millisecond), l.StartedDaemons())
	return l, nil
}

// stopSharedLab takes the shared lab down, for the lifecycle tests, which
// need a host where no firstboot libvirtd runs (they would otherwise only
// share it and skip). The next getLab brings it up again.
func stopSharedLab(t *testing.T) {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := shared.l.Down(ctx)
	shared.l = nil
	if err != nil {
		t.Fatalf("taking the shared test lab down: %v", err)
	}
}

// bootResult is what one boot-and-capture run produced.
type bootResult struct {
	mac             string
	pcap            string
	stats           capture.Stats
	defineToFirst   time.Duration
	resumeToFirst   time.Duration
	console         string
	consoleReadText string
}

// bootAndCapture boots the test guest on a fresh network, captures its tap
// from before the CPUs start until it powers off, and returns the results.
func bootAndCapture(t *testing.T, l *Lab, g testGuest, name, dir string) bootResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n, err := l.CreateNetwork(ctx, lab.NetworkSpec{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(context.Background()); err != nil {
			t.Errorf("close network: %v", err)
		}
	})
	defineStart := time.Now()
	m, err := l.DefineMachine(ctx, lab.MachineSpec{
		Name: name, Kernel: g.Kernel, Initrd: g.Initrd, Cmdline: g.Cmdline,
		RunDir: dir, MemoryMiB: 256, Accel: "tcg",
	}, n)
	if err != nil {
		t.Fatal(err)
	}
	destroyOnCleanup(t, m)
	tap, err := m.TapName(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pcap := filepath.Join(dir, "capture.pcapng")
	c, err := capture.Start(ctx, capture.Config{Netns: l.Netns(), Iface: tap, Path: pcap, SectionComment: "firstboot test", InterfaceName: m.Name()})
	if err != nil {
		t.Fatal(err)
	}
	c.Mark("step boot start")
	con, err := m.Console(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	conText := make(chan string, 1)
	go func() {
		var seen bytes.Buffer
		r := bufio.NewReader(con)
		for {
			line, err := r.ReadString('\n')
			seen.WriteString(line)
			if strings.Contains(line, "FIRSTBOOT-LEASE") || err != nil {
				conText <- seen.String()
				return
			}
		}
	}()
	resumed := time.Now()
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	ip, err := m.IP(ctx)
	if err != nil {
		t.Errorf("IP: %v", err)
	} else if !n.Subnet().Contains(ip) {
		t.Errorf("lease %v outside %v", ip, n.Subnet())
	}
	shot := filepath.Join(dir, "screen.png")
	if err := m.Screenshot(ctx, shot); err != nil {
		t.Errorf("screenshot: %v", err)
	} else if b, _ := os.ReadFile(shot); !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot is not a PNG")
	}
	if err := m.SendKeys(ctx, []uint{28}, 50); err != nil { // KEY_ENTER
		t.Errorf("send keys: %v", err)
	}
	select {
	case <-m.Stopped():
	case <-ctx.Done():
		t.Fatal("guest did not power off")
	}
	c.Mark("step boot end")
	st, err := c.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := bootResult{mac: m.MAC().String(), pcap: pcap, stats: st}
	if !st.First.IsZero() {
		r.defineToFirst = st.First.Sub(defineStart)
		r.resumeToFirst = st.First.Sub(resumed)
	}
	select {
	case r.consoleReadText = <-conText:
	case <-time.After(5 * time.Second):
	}
	b, _ := os.ReadFile(m.ConsoleLog())
	r.console = string(b)
	return r
}

// tsharkFields reads the capture with tshark, one row per packet.
func tsharkFields(t *testing.T, pcap string, fields ...string) [][]string {
	t.Helper()
	args := []string{"-r", pcap, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out := testnet.Tshark(t, args...)
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		row := strings.Split(line, "|")
		if len(row) != len(fields) {
			t.Fatalf("tshark row %q: want %d fields", line, len(fields))
		}
		rows = append(rows, row)
	}
	return rows
}

// checkBootCapture asserts: packet 1 is the guest's DHCP DISCOVER carrying
// the start mark, the lab side sends only DHCP and ARP (no IPv6 or other
// host chatter), no drops.
func checkBootCapture(t *testing.T, r bootResult) {
	t.Helper()
	if r.stats.Drops != 0 {
		t.Errorf("kernel dropped %d packets", r.stats.Drops)
	}
	if r.stats.Packets == 0 {
		t.Fatalf("no packets captured; console:\n%s", r.console)
	}
	rows := tsharkFields(t, r.pcap, "frame.number", "eth.src", "dhcp.option.dhcp", "frame.protocols", "frame.comment")
	if uint64(len(rows)) != r.stats.Packets {
		t.Errorf("tshark reads %d packets, capture wrote %d: %q", len(rows), r.stats.Packets, rows)
	}
	first := rows[0]
	if t.Failed() || first[1] != r.mac || first[2] != "1" {
		out, _ := exec.Command("tshark", "-r", r.pcap, "-V", "-c", "3").Output()
		t.Logf("first packets:\n%s", out)
	}
	if first[1] != r.mac || first[2] != "1" {
		t.Errorf("packet 1 = src %s, DHCP type %q; want the guest's (%s) DISCOVER (1)", first[1], first[2], r.mac)
	}
	if !strings.Contains(first[4], "step boot start") {
		t.Errorf("packet 1 comment = %q, want the start mark", first[4])
	}
	sawOffer := false
	for _, row := range rows {
		// The guest may say anything (its kernel sends IPv6 MLD and router
		// solicitations); the lab side must only answer DHCP and ARP.
		if protos := row[3]; row[1] != r.mac && (strings.Contains(protos, "ipv6") || !(strings.Contains(protos, "dhcp") || strings.Contains(protos, "arp"))) {
			out, _ := exec.Command("tshark", "-r", r.pcap, "-V", "-Y", "frame.number == "+row[0]).Output()
			t.Errorf("packet %s from the lab side (src %s) is neither DHCP nor ARP: %s\n%s", row[0], row[1], protos, out)
		}
		if row[2] == "2" {
			sawOffer = true
		}
	}
	if !sawOffer {
		t.Errorf("no DHCP OFFER from the lab network in the capture")
	}
	if !strings.Contains(r.console, "FIRSTBOOT-LEASE") {
		t.Errorf("console log lacks the lease line")
	}
	if !strings.Contains(r.consoleReadText, "FIRSTBOOT-LEASE") {
		t.Errorf("console stream did not deliver the lease line (got %d bytes)", len(r.consoleReadText))
	}
	// The end mark had no packet after it: it must be in the final ISB.
	if !bytes.Contains(mustRead(t, r.pcap), []byte("step boot end")) {
		t.Errorf("end mark lost")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBootCapture(t *testing.T) {
	l := getLab(t)
	g := needGuest(t, t.TempDir())
	start := time.Now()
	r := bootAndCapture(t, l, g, fmt.Sprintf("t-boot-%d", os.Getpid()), t.TempDir())
	checkBootCapture(t, r)
	t.Logf("define→first packet %s, resume→first packet %s, packets %d, drops %d, whole boot %s",
		r.defineToFirst.Round(time.Millisecond), r.resumeToFirst.Round(time.Millisecond), r.stats.Packets, r.stats.Drops, time.Since(start).Round(time.Millisecond))
}

func TestParallelMachines(t *testing.T) {
	l := getLab(t)
	g := needGuest(t, t.TempDir())
	results := make([]bootResult, 2)
	dirs := []string{t.TempDir(), t.TempDir()} // outlive the subtests
	t.Run("group", func(t *testing.T) {
		for i := range results {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				results[i] = bootAndCapture(t, l, g, fmt.Sprintf("t-par%d-%d", i, os.Getpid()), dirs[i])
				checkBootCapture(t, results[i])
			})
		}
	})
	if t.Failed() {
		return
	}
	// Neither capture holds the other guest's frames.
	for i, r := range results {
		other := results[1-i].mac
		for _, row := range tsharkFields(t, r.pcap, "eth.src", "eth.dst") {
			if row[0] == other || row[1] == other {
				t.Errorf("capture %d has a frame of the other guest: %v", i, row)
			}
		}
		t.Logf("machine %d: define→first packet %s, packets %d", i, r.defineToFirst.Round(time.Millisecond), r.stats.Packets)
	}
}

func TestIsolation(t *testing.T) {
	l := getLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := l.CreateNetwork(ctx, lab.NetworkSpec{Name: fmt.Sprintf("t-iso-%d", os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	// A machine so a tap exists; it stays paused.
	dir := t.TempDir()
	disk := filepath.Join(dir, "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	baseBefore := mustRead(t, disk)
	m, err := l.DefineMachine(ctx, lab.MachineSpec{Name: fmt.Sprintf("t-iso-%d", os.Getpid()), Disk: disk, RunDir: dir, Accel: "tcg"}, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Destroy(context.Background()) })
	tap, err := m.TapName(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.CheckIsolation(ctx, l.Netns()); err != nil {
		t.Error(err)
	}
	links, err := netns.Links(ctx, l.Netns())
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, k := range links {
		found[k.Name] = k.Kind + "/" + k.Master
	}
	if found[n.Bridge()] != "bridge/" {
		t.Errorf("bridge %s: %q", n.Bridge(), found[n.Bridge()])
	}
	if found[tap] != "tun/"+n.Bridge() {
		t.Errorf("tap %s: %q, want a tun port of %s", tap, found[tap], n.Bridge())
	}
	// The host namespace does not see the lab's bridge.
	if _, err := os.Stat("/sys/class/net/" + n.Bridge()); err == nil {
		if out, _ := exec.Command("ip", "-j", "link", "show", n.Bridge()).CombinedOutput(); !bytes.Contains(out, []byte("does not exist")) {
			t.Errorf("bridge %s visible in the host namespace", n.Bridge())
		}
	}
	x, err := l.Conn().NetworkGetXMLDesc(n.net, 0)
	if err != nil {
		t.Fatal(err)
	}
	var def libvirtxml.Network
	if err := def.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if def.Forward != nil {
		t.Errorf("network has a <forward> (%+v): packets could leave the lab", def.Forward)
	}
	if def.DNS == nil || def.DNS.Enable != "no" {
		t.Errorf("libvirt's DNS is not disabled: %+v", def.DNS)
	}
	if def.PortOptions == nil || def.PortOptions.Isolated != "yes" {
		t.Errorf("ports are not isolated: %+v", def.PortOptions)
	}
	var opts []string
	if def.DnsmasqOptions != nil {
		for _, o := range def.DnsmasqOptions.Option {
			opts = append(opts, o.Value)
		}
	}
	for _, want := range []string{"no-ping", "dhcp-option=option:router," + n.Addr().String(), "dhcp-option=option:dns-server," + n.Addr().String()} {
		if !slices.Contains(opts, want) {
			t.Errorf("dnsmasq options %q lack %q", opts, want)
		}
	}
	// Power handling: the disk is blank, so the guest sits in the BIOS and
	// ignores ACPI; Shutdown must fall back to pulling the plug.
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Reset(ctx); err != nil {
		t.Errorf("reset: %v", err)
	}
	start := time.Now()
	if err := m.Shutdown(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Stopped():
	case <-time.After(10 * time.Second):
		t.Fatal("Stopped not closed after Shutdown")
	}
	if s, err := m.state(ctx); err != nil || s != golibvirt.DomainShutoff {
		t.Errorf("state after Shutdown: %v %v", s, err)
	}
	t.Logf("shutdown with fallback took %s", time.Since(start).Round(time.Millisecond))
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if !bytes.Equal(baseBefore, mustRead(t, disk)) {
		t.Error("base image changed")
	}
	if _, err := os.Stat(filepath.Join(dir, m.Name()+".qcow2")); !os.IsNotExist(err) {
		t.Errorf("overlay left after Destroy: %v", err)
	}
}

func TestAccelProbe(t *testing.T) {
	l := getLab(t)
	g := needGuest(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Positive control: the detector sees a banner when the guest does run.
	printed, err := l.bootsBanner(ctx, g.Kernel, "tcg", 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !printed {
		t.Fatal("the kernel printed no banner under TCG: the KVM probe could never succeed")
	}
	// Negative control: something that is not a kernel never passes.
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, bytes.Repeat([]byte{0x90}, 4096), 0o644)
	if printed, err := l.bootsBanner(ctx, junk, "tcg", 5*time.Second); err == nil && printed {
		t.Fatal("a non-kernel printed a banner")
	}
	os.Remove(l.probeCachePath())
	l.mu.Lock()
	l.kvm = nil
	l.mu.Unlock()
	r, err := l.ProbeKVM(ctx, g.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	// A second lab on the same host reuses the result instead of booting
	// again, also for another image's kernel: the answer is the host's.
	l.mu.Lock()
	l.kvm = nil
	l.mu.Unlock()
	start := time.Now()
	again, err := l.ProbeKVM(ctx, junk)
	if err != nil || again.Accel != r.Accel || !strings.Contains(again.Reason, "cached") || time.Since(start) > time.Second {
		t.Errorf("second probe: %+v %v after %s, want the cached %s", again, err, time.Since(start), r.Accel)
	}
	if r.Accel != "kvm" && r.Accel != "tcg" || r.Reason == "" {
		t.Fatalf("probe result %+v", r)
	}
	t.Logf("KVM probe: %s (%s) in %s", r.Accel, r.Reason, r.Took.Round(time.Millisecond))
	if _, err := os.Stat("/dev/kvm"); err != nil && r.Accel == "kvm" {
		t.Error("probe chose kvm without /dev/kvm")
	}
}

func TestExternalURI(t *testing.T) {
	own := getLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := Up(ctx, lab.Config{LibvirtURI: "qemu:///system", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if l.StartedDaemons() {
		t.Error("connecting to an existing libvirtd claims to have started daemons")
	}
	// The namespace is found from the daemon behind the socket.
	if got, want := nsPathID(t, l.Netns()), nsPathID(t, netns.Path(own.Netns())); got != want {
		t.Errorf("external lab netns %s (%s), want the daemon's %s", l.Netns(), got, want)
	}
	n, err := l.CreateNetwork(ctx, lab.NetworkSpec{Name: fmt.Sprintf("t-ext-%d", os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	// Capture works through the /proc/PID/ns/net path.
	c, err := capture.Start(ctx, capture.Config{Netns: l.Netns(), Iface: n.Bridge(), Path: filepath.Join(t.TempDir(), "c.pcapng")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := netns.CheckIsolation(ctx, l.Netns()); err != nil {
		t.Error(err)
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := own.Versions(ctx); err != nil {
		t.Fatalf("Down of an external lab broke the daemon: %v", err)
	}
	if _, err := Up(ctx, lab.Config{LibvirtURI: "qemu+tcp://example/system"}); err == nil {
		t.Error("remote URI accepted")
	}
}
