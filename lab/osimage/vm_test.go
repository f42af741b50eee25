package osimage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/lab/osimage"
	"github.com/firstboot/firstboot/lab/simnet"
)

// The boot tests build (or reuse) the real Debian image, boot it under QEMU
// (TCG) with its NIC on a tap in a network namespace the test creates, serve
// DHCP with dnsmasq and DNS/NTP/HTTP/HTTPS with lab/simnet, capture the tap
// with tcpdump, log in on the serial console and run user commands, then read
// the capture back with tshark. They take minutes: run one with
// `go test -run TestDebian12Boot -timeout 40m ./lab/osimage/`. With an empty
// image cache TestDebian12Boot takes about 11 minutes (7 to build, 4 to boot),
// with a cached image about 4.

var ansiRe = regexp.MustCompile("\x1b\\[[0-9;?]*[A-Za-z]")

const (
	bridgeAddr = "10.79.0.1"
	guestMAC   = "52:54:00:fb:0d:01"
)

func TestDebian12Boot(t *testing.T) { bootTest(t, "debian-12") }

// TestDebian13Boot runs only with FIRSTBOOT_TEST_DEBIAN13=1: with an empty
// image cache it adds about ten minutes, and CI's budget keeps one release.
func TestDebian13Boot(t *testing.T) {
	if os.Getenv("FIRSTBOOT_TEST_DEBIAN13") != "1" {
		t.Skip("set FIRSTBOOT_TEST_DEBIAN13=1 to build and boot Debian 13 (about 10 minutes)")
	}
	bootTest(t, "debian-13")
}

func requireVMTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and boots a Debian VM; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root (debootstrap, network namespaces, tap devices)")
	}
	for _, tool := range []string{"debootstrap", "mkfs.ext4", "qemu-img", "qemu-system-x86_64", "dnsmasq", "tcpdump", "tshark", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not installed (run scripts/provision.sh)", tool)
		}
	}
}

// imageCache is shared with `firstboot image build` (same default), so CI and
// developers build each release once.
func imageCache(t *testing.T) string {
	if c := os.Getenv("FIRSTBOOT_TEST_IMAGE_CACHE"); c != "" {
		return c
	}
	d, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(d, "firstboot", "images")
}

func buildImage(t *testing.T, release string) osimage.Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	img, err := osimage.Build(ctx, osimage.BuildConfig{CacheDir: imageCache(t), Release: release,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatalf("building %s: %v", release, err)
	}
	m := img.Manifest
	t.Logf("image %s: kernel %s, %d packages, disk.qcow2 %d MB, rootfs %d MB, built in %.0fs (this call %s)",
		release, m.KernelRelease, len(m.Packages), m.Files[osimage.FileDisk].Size>>20, m.RootfsBytes>>20,
		m.BuildSeconds, time.Since(start).Round(time.Millisecond))
	return img
}

func bootTest(t *testing.T, release string) {
	requireVMTools(t)
	img := buildImage(t, release)
	for _, want := range []string{"systemd", "systemd-timesyncd", "linux-image-amd64", "ifupdown", "apt", "curl"} {
		if !hasPackage(img.Manifest.Packages, want) {
			t.Errorf("manifest: package %s is not installed", want)
		}
	}

	n := newLabNet(t)
	stopCapture := n.capture(t)
	overlay := filepath.Join(t.TempDir(), "overlay.qcow2")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", img.Disk, overlay)
	v := bootVM(t, n, img, overlay)

	loginRe := regexp.MustCompile(`(?m)^` + osimage.Hostname + ` login: `)
	at := v.waitFor(loginRe, 15*time.Minute)
	t.Logf("%s: login prompt %.1fs after QEMU started (TCG)", release, v.since(at))

	// Log in as root and run user actions; each command ends with a marker
	// whose echoed form (FB-DONE-$?) cannot match the pattern.
	v.send("root")
	v.waitFor(regexp.MustCompile(`Password: `), time.Minute)
	v.send(osimage.RootPassword)
	v.waitFor(regexp.MustCompile(`root@`+osimage.Hostname+`:~# `), 2*time.Minute)
	run := func(cmd string, timeout time.Duration) string {
		from := v.offset()
		v.send(cmd + "; echo FB-DONE-$?")
		v.waitFor(regexp.MustCompile(`FB-DONE-[0-9]+`), timeout)
		// systemd 257 and iproute2 colour their output even on a serial line.
		return ansiRe.ReplaceAllString(v.textFrom(from), "")
	}
	out := run("timedatectl", time.Minute)
	if !strings.Contains(out, "NTP service: active") {
		t.Errorf("timedatectl: systemd-timesyncd is not active:\n%s", out)
	}
	// Leave the machine alone until systemd-timesyncd has synchronised with
	// the simulated NTP server (or 4 minutes): its first query is part of
	// the first-boot traffic, and a researcher's idle period would see it.
	out = run("for i in $(seq 240); do timedatectl show -p NTPSynchronized --value | grep -qx yes && break; sleep 1; done; "+
		"timedatectl show -p NTPSynchronized --value; cat /proc/uptime", 5*time.Minute)
	if m := regexp.MustCompile(`\b(yes|no)\r*\n\r*([0-9.]+) [0-9.]+\r*\n`).FindStringSubmatch(out); m == nil || m[1] != "yes" {
		t.Errorf("systemd-timesyncd did not synchronise with the lab's NTP server within 4 minutes:\n%s", out)
	} else {
		t.Logf("%s: NTP synchronised by guest uptime %ss", release, m[2])
	}
	// dhcpcd (Debian 13) may still be negotiating when the prompt appears
	// under TCG; a user would wait too.
	out = run("for i in $(seq 90); do ip -4 -o addr show dev eth0 | grep -q inet && break; sleep 1; done; ip -4 -o addr show dev eth0", 3*time.Minute)
	if !regexp.MustCompile(`inet 10\.79\.0\.\d+/24`).MatchString(out) {
		t.Errorf("eth0 has no DHCP address from the lab:\n%s", out)
	}
	out = run("curl -sS -o /dev/null -w 'HTTP-%{http_code}\\n' http://deb.debian.org/debian/", 2*time.Minute)
	if !regexp.MustCompile(`HTTP-[1-5][0-9][0-9]`).MatchString(out) {
		t.Errorf("curl got no HTTP answer from the simulated deb.debian.org:\n%s", out)
	}
	// The lease is checked while the guest holds it: at power-off dhclient
	// releases it and dnsmasq forgets it.
	if leases, err := os.ReadFile(n.leases); err != nil || !strings.Contains(string(leases), guestMAC) {
		t.Errorf("dnsmasq has no lease for %s (leases: %q, %v)", guestMAC, leases, err)
	}
	run("apt-get update", 5*time.Minute)
	run("systemctl --no-pager --failed", time.Minute)
	v.send("poweroff")
	select {
	case <-v.exited:
	case <-time.After(3 * time.Minute):
		t.Errorf("the guest did not power off within 3 minutes")
	}
	pcap := stopCapture()

	if rows := tshark(t, pcap, "dhcp.option.dhcp == 3", "eth.src"); len(rows) == 0 {
		t.Errorf("no DHCPREQUEST in the capture")
	}
	names := uniq(column(tshark(t, pcap, "dns.flags.response == 0", "dns.qry.name"), 0))
	t.Logf("DNS names queried: %s", strings.Join(names, " "))
	if !anyMatch(names, `^[0-3]\.debian\.pool\.ntp\.org$`) {
		t.Errorf("no DNS query for a *.debian.pool.ntp.org server (systemd-timesyncd's default)")
	}
	if !anyMatch(names, `^deb\.debian\.org$`) {
		t.Errorf("no DNS query for deb.debian.org")
	}
	if rows := tshark(t, pcap, "ntp.flags.mode == 3", "ip.dst"); len(rows) == 0 {
		t.Errorf("no NTP client request in the capture")
	} else {
		t.Logf("NTP client requests: %d", len(rows))
	}
	hosts := uniq(column(tshark(t, pcap, "http.request", "http.host", "http.request.uri", "http.user_agent"), 0))
	t.Logf("HTTP hosts: %s", strings.Join(hosts, " "))
	for _, r := range tshark(t, pcap, "http.request", "http.host", "http.request.uri", "http.user_agent") {
		t.Logf("  HTTP %s", strings.Join(r, " "))
	}
	if !contains(hosts, "deb.debian.org") {
		t.Errorf("no HTTP request to deb.debian.org")
	}
	for _, r := range tshark(t, pcap, "eth.src == "+guestMAC+" && (dns.flags.response == 0 || ntp || dhcp || http.request || tls.handshake.type == 1 || icmpv6)",
		"frame.time_epoch", "_ws.col.Protocol", "_ws.col.Info") {
		// Seconds after QEMU started, comparable with the login prompt time.
		var epoch float64
		if _, err := fmt.Sscan(r[0], &epoch); err == nil {
			r[0] = fmt.Sprintf("%7.2fs", epoch-float64(v.start.UnixNano())/1e9)
		}
		t.Logf("  guest %s", strings.Join(r, " "))
	}
	protos := tshark(t, pcap, "eth.src == "+guestMAC, "frame.protocols")
	t.Logf("protocol stacks the guest sent: %s", strings.Join(uniq(column(protos, 0)), " "))
}

func hasPackage(pkgs []osimage.Package, name string) bool {
	for _, p := range pkgs {
		if p.Name == name {
			return true
		}
	}
	return false
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs fn on an OS thread switched into the namespace, so sockets fn
// opens live there.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		ferr := fn()
		// A thread that cannot switch back stays locked and dies with the goroutine.
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// labNet is an isolated namespace (no route out) with a bridge, a tap for
// the guest, dnsmasq for DHCP and simnet answering everything else.
type labNet struct {
	ns, tap, leases string
}

func newLabNet(t *testing.T) *labNet {
	t.Helper()
	dir := t.TempDir()
	n := &labNet{ns: fmt.Sprintf("fbdeb-%d-%04x", os.Getpid(), rand.IntN(1<<16)), tap: "tap0",
		leases: filepath.Join(dir, "leases")}
	mustRun(t, "ip", "netns", "add", n.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.ns).Run() })
	// IPv6 off on the host side keeps its router/MLD chatter out of the capture.
	mustRun(t, "ip", "netns", "exec", n.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	mustRun(t, "ip", "-n", n.ns, "link", "set", "lo", "up")
	mustRun(t, "ip", "-n", n.ns, "link", "add", "br0", "type", "bridge")
	mustRun(t, "ip", "-n", n.ns, "addr", "add", bridgeAddr+"/24", "dev", "br0")
	mustRun(t, "ip", "-n", n.ns, "link", "set", "br0", "up")
	mustRun(t, "ip", "-n", n.ns, "tuntap", "add", "dev", n.tap, "mode", "tap")
	mustRun(t, "ip", "-n", n.ns, "link", "set", n.tap, "master", "br0", "up")

	// No NTP server option: the guest then uses its stock NTP pool names,
	// which is the first-boot traffic under study.
	dnsmasq := exec.Command("ip", "netns", "exec", n.ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--interface=br0", "--bind-interfaces", "--port=0", "--no-ping",
		"--dhcp-range=10.79.0.50,10.79.0.99,1h",
		"--dhcp-option=option:router,"+bridgeAddr, "--dhcp-option=option:dns-server,"+bridgeAddr,
		"--dhcp-leasefile="+n.leases, "--pid-file="+filepath.Join(dir, "dnsmasq.pid"))
	var dlog bytes.Buffer
	dnsmasq.Stdout, dnsmasq.Stderr = &dlog, &dlog
	if err := dnsmasq.Start(); err != nil {
		t.Fatalf("starting dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		_ = dnsmasq.Process.Kill()
		_ = dnsmasq.Wait()
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", dlog.String())
		}
	})

	ca, err := simnet.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	var r *simnet.Responders
	err = inNetns(n.ns, func() error {
		var err error
		r, err = simnet.Start(context.Background(), simnet.Config{
			Addr: netip.MustParseAddr(bridgeAddr), Ports: simnet.Ports{DNS: 53, NTP: 123, HTTP: 80, HTTPS: 443, QUIC: 443,
				CatchAllTCP: simnet.Disabled, CatchAllUDP: simnet.Disabled}, CA: ca})
		return err
	})
	if err != nil {
		t.Fatalf("starting simnet in %s: %v", n.ns, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return n
}

// capture runs tcpdump on the tap; stop returns the pcap path.
func (n *labNet) capture(t *testing.T) (stop func() string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "guest.pcap")
	cmd := exec.Command("ip", "netns", "exec", n.ns, "tcpdump", "-i", n.tap, "-U", "--immediate-mode", "-n", "-w", path)
	var tlog syncBuffer
	cmd.Stderr = &tlog
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting tcpdump: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(tlog.String(), "listening on") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("tcpdump did not start listening on %s: %s", n.tap, tlog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var once sync.Once
	stop = func() string {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
		return path
	}
	t.Cleanup(func() { stop() })
	return stop
}

// vm is a QEMU process with its serial console on stdio, read as raw bytes
// because prompts ("login: ") do not end with a newline.
type vm struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	start   time.Time
	mu      sync.Mutex
	buf     []byte
	stamps  []stamp // when the buffer reached each length, for timings
	pos     int     // where the next waitFor starts
	changed chan struct{}
	exited  chan struct{}
}

type stamp struct {
	n  int
	at time.Time
}

func bootVM(t *testing.T, n *labNet, img osimage.Image, overlay string) *vm {
	t.Helper()
	args := []string{"netns", "exec", n.ns, "qemu-system-x86_64", "-accel", "tcg", "-m", "1024",
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-nodefaults",
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", img.Cmdline,
		"-drive", "file=" + overlay + ",if=virtio,format=qcow2",
		"-netdev", "tap,id=n0,ifname=" + n.tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + guestMAC}
	v := &vm{t: t, cmd: exec.Command("ip", args...), changed: make(chan struct{}), exited: make(chan struct{})}
	var err error
	if v.stdin, err = v.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = v.cmd.Stdout
	v.start = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("starting QEMU: %v", err)
	}
	go func() {
		b := make([]byte, 4096)
		for {
			k, err := out.Read(b)
			if k > 0 {
				v.mu.Lock()
				v.buf = append(v.buf, b[:k]...)
				v.stamps = append(v.stamps, stamp{len(v.buf), time.Now()})
				close(v.changed)
				v.changed = make(chan struct{})
				v.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		_ = v.cmd.Wait()
		close(v.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-v.exited:
		default:
			_ = v.cmd.Process.Kill()
			<-v.exited
		}
		if t.Failed() {
			t.Logf("console tail:\n%s", v.tail(4000))
		}
	})
	return v
}

func (v *vm) tail(n int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return string(v.buf[max(0, len(v.buf)-n):])
}

func (v *vm) offset() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.buf)
}

func (v *vm) textFrom(from int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return string(v.buf[from:])
}

// since returns when the console first held byte offset n, in seconds after start.
func (v *vm) since(n int) float64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := sort.Search(len(v.stamps), func(i int) bool { return v.stamps[i].n >= n })
	if i == len(v.stamps) {
		return time.Since(v.start).Seconds()
	}
	return v.stamps[i].at.Sub(v.start).Seconds()
}

// waitFor waits for re in the console output after the previous match and
// returns the offset just past the match.
func (v *vm) waitFor(re *regexp.Regexp, timeout time.Duration) int {
	v.t.Helper()
	deadline := time.After(timeout)
	for {
		v.mu.Lock()
		if loc := re.FindIndex(v.buf[v.pos:]); loc != nil {
			v.pos += loc[1]
			end := v.pos
			v.mu.Unlock()
			return end
		}
		ch := v.changed
		v.mu.Unlock()
		select {
		case <-ch:
		case <-v.exited:
			v.t.Fatalf("QEMU exited while waiting for %q", re)
		case <-deadline:
			v.t.Fatalf("no console output matching %q within %s", re, timeout)
		}
	}
}

func (v *vm) send(line string) {
	v.t.Helper()
	// A newline, as the scenario runner's console_send writes: agetty and
	// login accept it as the end of the line, like a serial terminal's CR.
	if _, err := io.WriteString(v.stdin, line+"\n"); err != nil {
		v.t.Fatalf("writing to the console: %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tshark returns the selected fields of the packets matching filter.
func tshark(t *testing.T, pcap, filter string, fields ...string) [][]string {
	t.Helper()
	args := []string{"-r", pcap, "-n", "-Y", filter, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("tshark %s: %v\n%s", filter, err, ee.Stderr)
		}
		t.Fatalf("tshark %s: %v", filter, err)
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			rows = append(rows, strings.Split(l, "|"))
		}
	}
	return rows
}

func column(rows [][]string, i int) []string {
	var out []string
	for _, r := range rows {
		if i < len(r) && r[i] != "" {
			out = append(out, strings.Split(r[i], ",")...)
		}
	}
	return out
}

func uniq(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func anyMatch(list []string, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, s := range list {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}
