package guest_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/firstboot/firstboot/internal/testenv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/lab/guest"
	"github.com/firstboot/firstboot/lab/simnet"
)

// The VM tests build the real image from Debian packages, boot it under QEMU
// (TCG) with its NIC on a tap in a network namespace the test creates, serve
// DHCP with dnsmasq and everything else with lab/simnet, capture the tap with
// tcpdump and read the capture back with tshark.

const (
	bridgeAddr = "10.78.0.1"
	guestMAC   = "52:54:00:fb:00:01"
)

func requireVMTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root (network namespaces, tap devices)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "dnsmasq", "tcpdump", "tshark", "ip", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not installed (run scripts/provision.sh)", tool)
		}
	}
}

// testImage builds the agent and the image once per test binary. The image
// cache is persistent (FIRSTBOOT_TEST_IMAGE_CACHE, default under the user
// cache directory) so that repeated runs do not download the kernel again.
var (
	imageOnce sync.Once
	imageRes  guest.Image
	imageErr  error
	buildTime time.Duration
)

func testImage(t *testing.T) guest.Image {
	t.Helper()
	imageOnce.Do(func() {
		cache := os.Getenv("FIRSTBOOT_TEST_IMAGE_CACHE")
		if cache == "" {
			d, err := os.UserCacheDir()
			if err != nil {
				imageErr = err
				return
			}
			cache = filepath.Join(d, "firstboot", "test-images")
		}
		agentDir, err := os.MkdirTemp("", "firstboot-guest-agent-")
		if err != nil {
			imageErr = err
			return
		}
		defer os.RemoveAll(agentDir)
		agent := filepath.Join(agentDir, "firstboot-guest")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-s -w", "-o", agent, "github.com/firstboot/firstboot/cmd/firstboot-guest")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("building the agent: %w\n%s", err, out)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		imageRes, imageErr = guest.Build(ctx, guest.BuildConfig{CacheDir: cache, AgentPath: agent,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		buildTime = time.Since(start)
	})
	if imageErr != nil {
		t.Fatalf("building the test guest: %v", imageErr)
	}
	t.Logf("image %s (build/reuse took %s)", imageRes.SHA256[:12], buildTime.Round(time.Millisecond))
	return imageRes
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

// labNet is an isolated namespace with a bridge, a tap for the guest,
// dnsmasq for DHCP and simnet for DNS/NTP/HTTP/HTTPS/QUIC.
type labNet struct {
	ns, tap string
}

func newLabNet(t *testing.T) *labNet {
	t.Helper()
	n := &labNet{ns: fmt.Sprintf("fbguest-%d-%04x", os.Getpid(), rand.IntN(1<<16)), tap: "tap0"}
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

	dir := t.TempDir()
	dnsmasq := exec.Command("ip", "netns", "exec", n.ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--interface=br0", "--bind-interfaces", "--port=0", "--no-ping",
		"--dhcp-range=10.78.0.50,10.78.0.99,1h",
		"--dhcp-option=option:router,"+bridgeAddr, "--dhcp-option=option:dns-server,"+bridgeAddr,
		"--dhcp-option=option:ntp-server,"+bridgeAddr,
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "dnsmasq.pid"))
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
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting tcpdump: %v", err)
	}
	listening := make(chan struct{})
	var tlog bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			tlog.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { close(listening) })
			}
		}
	}()
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("tcpdump did not start listening on %s", n.tap)
	}
	stopped := false
	stopFn := func() string {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		return path
	}
	t.Cleanup(func() { stopFn() })
	return stopFn
}

// vm is a QEMU process with its serial console on stdio.
type vm struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	start   time.Time
	mu      sync.Mutex
	lines   []consoleLine
	changed chan struct{}
	exited  chan struct{}
	monPath string
}

type consoleLine struct {
	at   time.Time
	text string
}

func bootVM(t *testing.T, n *labNet, kernel, initrd, cmdline string, qemuArgs ...string) *vm {
	t.Helper()
	return startVM(t, n, kernel, initrd, cmdline, vmOptions{qemu: qemuArgs})
}

type vmOptions struct {
	// reboot lets a guest reboot restart the machine; by default QEMU exits
	// (-no-reboot).
	reboot bool
	// monitor, when set, is the path of a unix socket serving QEMU's human
	// monitor (see vm.monitor).
	monitor string
	qemu    []string
}

func startVM(t *testing.T, n *labNet, kernel, initrd, cmdline string, o vmOptions) *vm {
	t.Helper()
	mon := "none"
	if o.monitor != "" {
		mon = "unix:" + o.monitor + ",server=on,wait=off"
	}
	args := []string{"netns", "exec", n.ns, "qemu-system-x86_64", "-accel", "tcg", "-m", "256",
		"-display", "none", "-serial", "stdio", "-monitor", mon, "-nodefaults",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline,
		"-netdev", "tap,id=n0,ifname=" + n.tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + guestMAC}
	if !o.reboot {
		args = append(args, "-no-reboot")
	}
	args = append(args, o.qemu...)
	v := &vm{t: t, cmd: exec.Command("ip", args...), changed: make(chan struct{}), exited: make(chan struct{}), monPath: o.monitor}
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
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			v.mu.Lock()
			v.lines = append(v.lines, consoleLine{time.Now(), strings.TrimRight(sc.Text(), "\r")})
			close(v.changed)
			v.changed = make(chan struct{})
			v.mu.Unlock()
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
			t.Logf("console tail:\n%s", v.tail(40))
		}
	})
	return v
}

func (v *vm) tail(n int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	for _, l := range v.lines[max(0, len(v.lines)-n):] {
		fmt.Fprintf(&b, "%7.2fs %s\n", l.at.Sub(v.start).Seconds(), l.text)
	}
	return b.String()
}

// waitFor returns the first console line at index >= from matching re.
func (v *vm) waitFor(re *regexp.Regexp, from int, timeout time.Duration) (int, consoleLine) {
	v.t.Helper()
	deadline := time.After(timeout)
	for {
		v.mu.Lock()
		for i := from; i < len(v.lines); i++ {
			if re.MatchString(v.lines[i].text) {
				l := v.lines[i]
				v.mu.Unlock()
				return i, l
			}
		}
		ch := v.changed
		v.mu.Unlock()
		select {
		case <-ch:
		case <-v.exited:
			v.t.Fatalf("QEMU exited while waiting for %q", re)
		case <-deadline:
			v.t.Fatalf("no console line matching %q within %s", re, timeout)
		}
	}
}

func (v *vm) send(line string) {
	v.t.Helper()
	if _, err := io.WriteString(v.stdin, line+"\r"); err != nil {
		v.t.Fatalf("writing to the console: %v", err)
	}
}

// monitor runs one command on QEMU's human monitor and returns its output.
func (v *vm) monitor(command string) string {
	v.t.Helper()
	if v.monPath == "" {
		v.t.Fatal("the VM was started without a monitor")
	}
	c, err := net.DialTimeout("unix", v.monPath, 5*time.Second)
	if err != nil {
		v.t.Fatalf("connecting to the QEMU monitor: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var out bytes.Buffer
	// The monitor greets with a banner and a "(qemu)" prompt; after the
	// command it prints the command's output and the prompt again.
	readPrompt := func() error {
		buf := make([]byte, 4096)
		for !bytes.HasSuffix(bytes.TrimRight(out.Bytes(), " "), []byte("(qemu)")) {
			n, err := c.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := readPrompt(); err != nil {
		v.t.Fatalf("reading the QEMU monitor banner: %v (got %q)", err, out.String())
	}
	out.Reset()
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		v.t.Fatalf("writing to the QEMU monitor: %v", err)
	}
	if err := readPrompt(); err != nil {
		v.t.Fatalf("QEMU monitor %q: %v (got %q)", command, err, out.String())
	}
	return out.String()
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
		if i < len(r) {
			out = append(out, strings.Split(r[i], ",")...)
		}
	}
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

func TestGuestBootsAndTalks(t *testing.T) {
	requireVMTools(t)
	img := testImage(t)
	n := newLabNet(t)
	stopCapture := n.capture(t)
	v := bootVM(t, n, img.Kernel, img.Initrd, img.Cmdline+" fbguest.checkin=2s fbguest.checkins=1")

	// Every phase, in the documented order, and each one succeeding against
	// simnet (which answers every protocol).
	phases := []string{
		`^FIRSTBOOT-GUEST boot kernel=6\.1\.0-`,
		`^FIRSTBOOT-GUEST modules ok loaded=button,evdev,.*virtio_pci.*virtio_net$`,
		`^FIRSTBOOT-GUEST link ok if=eth0 mac=` + guestMAC,
		`^FIRSTBOOT-GUEST dhcp ok ip=10\.78\.0\.\d+ .*router=10\.78\.0\.1 dns=10\.78\.0\.1 ntp=10\.78\.0\.1 `,
		`^FIRSTBOOT-GUEST dns ok name=connectivity\.firstboot\.test addrs=10\.78\.0\.1`,
		`^FIRSTBOOT-GUEST dns ok name=time\.firstboot\.test `,
		`^FIRSTBOOT-GUEST dns ok name=updates\.firstboot\.test `,
		`^FIRSTBOOT-GUEST dns ok name=telemetry\.example\.com `,
		`^FIRSTBOOT-GUEST ntp ok server=10\.78\.0\.1 `,
		`^FIRSTBOOT-GUEST ntp ok server=time\.firstboot\.test `,
		`^FIRSTBOOT-GUEST http ok url=http://connectivity\.firstboot\.test/generate_204 status=204`,
		`^FIRSTBOOT-GUEST https ok host=updates\.firstboot\.test `,
		`^FIRSTBOOT-GUEST quic ok host=quic\.firstboot\.test handshake=ok`,
		`^FIRSTBOOT-GUEST ready `,
		`^FIRSTBOOT-GUEST checkin ok seq=1 url=http://updates\.firstboot\.test/checkin\?seq=1 status=200`,
	}
	at, from := time.Time{}, 0
	for _, p := range phases {
		i, l := v.waitFor(regexp.MustCompile(p), from, 90*time.Second)
		from, at = i+1, l.at
		if strings.Contains(p, "ready") {
			t.Logf("ready marker %.2fs after QEMU start", at.Sub(v.start).Seconds())
		}
	}

	// A console command causes exactly the traffic it names.
	cmdSent := time.Now()
	v.send("fbguest run c1 dns cmd-dns.firstboot.test http http://cmd-http.firstboot.test/probe https cmd-tls.firstboot.test quic cmd-quic.firstboot.test ntp 10.78.0.1 tcp 10.78.0.1:443")
	_, done := v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST done c1 `), from, 60*time.Second)
	if !strings.HasPrefix(done.text, "FIRSTBOOT-GUEST done c1 ok failed=0") {
		t.Errorf("command c1: %q", done.text)
	}
	v.send("fbguest run c2 frobnicate x")
	v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST error c2 unknown action "frobnicate"`), from, 30*time.Second)
	v.send("fbguest ping p1")
	v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST pong p1$`), from, 30*time.Second)
	v.send("fbguest run off poweroff")
	v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST poweroff off$`), from, 30*time.Second)
	select {
	case <-v.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("QEMU did not exit after poweroff")
	}
	pcap := stopCapture()

	// DHCP carries the configured hostname and vendor class.
	dhcp := tshark(t, pcap, "dhcp.option.dhcp == 1 || dhcp.option.dhcp == 3", "frame.time_epoch", "dhcp.option.hostname", "dhcp.option.vendor_class_id")
	if len(dhcp) == 0 {
		t.Fatal("no DHCP DISCOVER/REQUEST in the capture")
	}
	for _, r := range dhcp {
		if r[1] != "firstboot-testguest" || r[2] != "firstboot-testguest/1" {
			t.Errorf("DHCP packet hostname=%q vendor=%q", r[1], r[2])
		}
	}
	var first float64
	fmt.Sscanf(dhcp[0][0], "%f", &first)
	t.Logf("first DHCP packet %.2fs after QEMU start", first-float64(v.start.UnixNano())/1e9)

	queries := column(tshark(t, pcap, "dns.flags.response == 0", "dns.qry.name"), 0)
	for _, name := range []string{"connectivity.firstboot.test", "time.firstboot.test", "updates.firstboot.test",
		"telemetry.example.com", "quic.firstboot.test", "cmd-dns.firstboot.test", "cmd-http.firstboot.test"} {
		if !contains(queries, name) {
			t.Errorf("no DNS query for %s (queries: %v)", name, queries)
		}
	}
	hosts := tshark(t, pcap, "http.request", "http.host", "http.request.uri", "http.user_agent")
	want := map[string]bool{"connectivity.firstboot.test /generate_204": false, "updates.firstboot.test /checkin?seq=1": false, "cmd-http.firstboot.test /probe": false}
	for _, h := range hosts {
		if _, ok := want[h[0]+" "+h[1]]; ok {
			want[h[0]+" "+h[1]] = true
			if h[2] != "firstboot-testguest/1" {
				t.Errorf("HTTP request %s%s User-Agent %q", h[0], h[1], h[2])
			}
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no HTTP request %s (requests: %v)", k, hosts)
		}
	}
	snis := column(tshark(t, pcap, "tls.handshake.type == 1 && tcp", "tls.handshake.extensions_server_name"), 0)
	for _, s := range []string{"updates.firstboot.test", "cmd-tls.firstboot.test"} {
		if !contains(snis, s) {
			t.Errorf("no TLS ClientHello with SNI %s (SNIs: %v)", s, snis)
		}
	}
	quicSNI := column(tshark(t, pcap, "quic.long.packet_type == 0 && tls.handshake.type == 1", "tls.handshake.extensions_server_name"), 0)
	for _, s := range []string{"quic.firstboot.test", "cmd-quic.firstboot.test"} {
		if !contains(quicSNI, s) {
			t.Errorf("no QUIC Initial with SNI %s (SNIs: %v)", s, quicSNI)
		}
	}
	after := fmt.Sprintf("frame.time_epoch >= %d.%09d", cmdSent.Unix(), cmdSent.Nanosecond())
	if rows := tshark(t, pcap, "ntp.flags.mode == 3 && "+after, "ip.dst"); len(rows) != 1 {
		t.Errorf("want 1 NTP client request after the command, got %d", len(rows))
	}
	if rows := tshark(t, pcap, "ntp.flags.mode == 3", "ip.dst"); len(rows) < 3 {
		t.Errorf("want >= 3 NTP client requests (DHCP server, time.firstboot.test, command), got %d", len(rows))
	}
	if rows := tshark(t, pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 443 && "+after, "tcp.stream"); len(rows) < 2 {
		t.Errorf("want >= 2 TCP SYNs to port 443 after the command (https and tcp actions), got %d", len(rows))
	}
}

// TestGuestRebootAndPowerButton: the console "reboot" action restarts the
// machine (the guest boots again), and the ACPI power button (QEMU's
// system_powerdown, which is what libvirt's ACPI shutdown and reboot press)
// powers the guest off cleanly within seconds, even while a console command
// is still running.
func TestGuestRebootAndPowerButton(t *testing.T) {
	requireVMTools(t)
	img := testImage(t)
	n := newLabNet(t)
	v := startVM(t, n, img.Kernel, img.Initrd, img.Cmdline+" fbguest.checkin=0 fbguest.firstrun=0",
		vmOptions{reboot: true, monitor: filepath.Join(t.TempDir(), "monitor.sock")})
	boot := regexp.MustCompile(`^FIRSTBOOT-GUEST boot kernel=6\.1\.0-`)
	ready := regexp.MustCompile(`^FIRSTBOOT-GUEST ready `)
	from, _ := v.waitFor(ready, 0, 120*time.Second)

	v.send("fbguest run r1 reboot")
	from, _ = v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST reboot r1$`), from+1, 30*time.Second)
	from, _ = v.waitFor(boot, from+1, 120*time.Second)
	from, _ = v.waitFor(ready, from+1, 120*time.Second)

	// The command loop is busy with this sleep when the button is pressed.
	v.send("fbguest run s1 sleep 600")
	from, _ = v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST start s1$`), from+1, 30*time.Second)
	pressed := time.Now()
	v.monitor("system_powerdown")
	_, l := v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST poweroff acpi$`), from+1, 15*time.Second)
	select {
	case <-v.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("QEMU did not exit within 15s of the power button press")
	}
	t.Logf("power button: marker %.2fs, QEMU exit %.2fs after the press",
		l.at.Sub(pressed).Seconds(), time.Since(pressed).Seconds())
	if v.cmd.ProcessState == nil || !v.cmd.ProcessState.Success() {
		t.Errorf("QEMU exit: %v, want a clean exit after the guest's ACPI power-off", v.cmd.ProcessState)
	}
}

// TestGuestACPIReboot does what libvirt's reboot with the ACPI power-button
// method does: press the button with QEMU told not to exit at power-off
// (-no-shutdown), wait for the guest to power off, then reset and continue.
// The guest must power off on the press and boot again after the reset.
func TestGuestACPIReboot(t *testing.T) {
	requireVMTools(t)
	img := testImage(t)
	n := newLabNet(t)
	v := startVM(t, n, img.Kernel, img.Initrd, img.Cmdline+" fbguest.checkin=0 fbguest.firstrun=0",
		vmOptions{reboot: true, monitor: filepath.Join(t.TempDir(), "monitor.sock"), qemu: []string{"-no-shutdown"}})
	from, _ := v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST ready `), 0, 120*time.Second)
	v.monitor("system_powerdown")
	from, _ = v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST poweroff acpi$`), from+1, 15*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := v.monitor("info status")
		if strings.Contains(st, "VM status: paused (shutdown)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest not powered off 15s after the press: %q", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	v.monitor("system_reset")
	v.monitor("cont")
	from, _ = v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST boot kernel=6\.1\.0-`), from+1, 120*time.Second)
	v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST ready `), from+1, 120*time.Second)
}

// TestBootTimes compares the two kernels of the image under TCG: time from
// QEMU start to the first DHCP packet on the tap and to the "ready" marker.
// It is a measurement, so it runs only with FIRSTBOOT_GUEST_BOOTTIMES=1.
func TestBootTimes(t *testing.T) {
	if os.Getenv("FIRSTBOOT_GUEST_BOOTTIMES") != "1" {
		t.Skip("set FIRSTBOOT_GUEST_BOOTTIMES=1 to measure boot times")
	}
	requireVMTools(t)
	img := testImage(t)
	for _, k := range []struct {
		name, path string
		qemu       []string
	}{
		{"vmlinux-pvh", img.Kernel, nil},
		{"bzImage", img.BzImage, nil},
		// -cpu max emulates RDRAND, so the guest's crng is ready at once.
		{"vmlinux-pvh-cpu-max", img.Kernel, []string{"-cpu", "max"}},
	} {
		t.Run(k.name, func(t *testing.T) {
			n := newLabNet(t)
			stop := n.capture(t)
			v := bootVM(t, n, k.path, img.Initrd, img.Cmdline+" fbguest.checkin=0", k.qemu...)
			_, bootLine := v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST boot `), 0, 180*time.Second)
			_, mods := v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST modules `), 0, 180*time.Second)
			_, ready := v.waitFor(regexp.MustCompile(`^FIRSTBOOT-GUEST ready `), 0, 180*time.Second)
			t.Logf("%s: boot marker %.2fs, modules marker %.2fs (%s)", k.name, bootLine.at.Sub(v.start).Seconds(),
				mods.at.Sub(v.start).Seconds(), mods.text)
			_ = v.cmd.Process.Kill()
			<-v.exited
			dhcp := tshark(t, stop(), "dhcp", "frame.time_epoch")
			if len(dhcp) == 0 {
				t.Fatal("no DHCP packet captured")
			}
			var first float64
			fmt.Sscanf(dhcp[0][0], "%f", &first)
			t.Logf("%s: first DHCP packet %.2fs, ready marker %.2fs after QEMU start", k.name,
				first-float64(v.start.UnixNano())/1e9, ready.at.Sub(v.start).Seconds())
		})
	}
}
