package guest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testvm"
	"github.com/firstboot/firstboot/lab/guest"
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
	testvm.Require(t, "boots a VM", "qemu-system-x86_64", "dnsmasq", "tcpdump", "tshark", "ip", "apt-get", "dpkg-deb")
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		// BuildAgent ends this test on failure; later ones see this error.
		imageErr = errors.New("building the agent failed (see the first test that built the image)")
		imageRes, imageErr = guest.Build(ctx, guest.BuildConfig{CacheDir: cache, AgentPath: testvm.BuildAgent(t),
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		buildTime = time.Since(start)
	})
	if imageErr != nil {
		t.Fatalf("building the test guest: %v", imageErr)
	}
	t.Logf("image %s (build/reuse took %s)", imageRes.SHA256[:12], buildTime.Round(time.Millisecond))
	return imageRes
}

// newLabNet is the guest's lab network: DHCP names the bridge as router,
// DNS and NTP server.
func newLabNet(t *testing.T) *testvm.Net {
	return testvm.NewNet(t, testvm.NetConfig{Prefix: "fbguest", Bridge: netip.MustParseAddr(bridgeAddr), NTPOption: true})
}

type vmOptions struct {
	reboot  bool     // a guest reboot restarts the machine instead of ending QEMU
	monitor string   // path of a unix socket for QEMU's human monitor
	qemu    []string // extra QEMU arguments
}

func bootVM(t *testing.T, n *testvm.Net, kernel, initrd, cmdline string, qemuArgs ...string) *testvm.VM {
	t.Helper()
	return startVM(t, n, kernel, initrd, cmdline, vmOptions{qemu: qemuArgs})
}

// startVM boots the test guest; the agent reads console commands ended by CR.
func startVM(t *testing.T, n *testvm.Net, kernel, initrd, cmdline string, o vmOptions) *testvm.VM {
	t.Helper()
	return testvm.Boot(t, n, testvm.VMConfig{Kernel: kernel, Initrd: initrd, Cmdline: cmdline, MemoryMB: 256,
		MAC: guestMAC, Reboot: o.reboot, Monitor: o.monitor, Newline: "\r", QEMU: o.qemu})
}

func TestGuestBootsAndTalks(t *testing.T) {
	requireVMTools(t)
	img := testImage(t)
	n := newLabNet(t)
	stopCapture := n.Capture(t)
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
		i, l := v.WaitLine(regexp.MustCompile(p), from, 90*time.Second)
		from, at = i+1, l.At
		if strings.Contains(p, "ready") {
			t.Logf("ready marker %.2fs after QEMU start", at.Sub(v.Start).Seconds())
		}
	}

	// A console command causes exactly the traffic it names.
	cmdSent := time.Now()
	v.Send("fbguest run c1 dns cmd-dns.firstboot.test http http://cmd-http.firstboot.test/probe https cmd-tls.firstboot.test quic cmd-quic.firstboot.test ntp 10.78.0.1 tcp 10.78.0.1:443")
	_, done := v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST done c1 `), from, 60*time.Second)
	if !strings.HasPrefix(done.Text, "FIRSTBOOT-GUEST done c1 ok failed=0") {
		t.Errorf("command c1: %q", done.Text)
	}
	v.Send("fbguest run c2 frobnicate x")
	v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST error c2 unknown action "frobnicate"`), from, 30*time.Second)
	v.Send("fbguest ping p1")
	v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST pong p1$`), from, 30*time.Second)
	v.Send("fbguest run off poweroff")
	v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST poweroff off$`), from, 30*time.Second)
	select {
	case <-v.Exited():
	case <-time.After(60 * time.Second):
		t.Fatal("QEMU did not exit after poweroff")
	}
	pcap := stopCapture()

	// DHCP carries the configured hostname and vendor class.
	dhcp := testvm.Tshark(t, pcap, "dhcp.option.dhcp == 1 || dhcp.option.dhcp == 3", "frame.time_epoch", "dhcp.option.hostname", "dhcp.option.vendor_class_id")
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
	t.Logf("first DHCP packet %.2fs after QEMU start", first-float64(v.Start.UnixNano())/1e9)

	queries := testvm.Column(testvm.Tshark(t, pcap, "dns.flags.response == 0", "dns.qry.name"), 0)
	for _, name := range []string{"connectivity.firstboot.test", "time.firstboot.test", "updates.firstboot.test",
		"telemetry.example.com", "quic.firstboot.test", "cmd-dns.firstboot.test", "cmd-http.firstboot.test"} {
		if !slices.Contains(queries, name) {
			t.Errorf("no DNS query for %s (queries: %v)", name, queries)
		}
	}
	hosts := testvm.Tshark(t, pcap, "http.request", "http.host", "http.request.uri", "http.user_agent")
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
	snis := testvm.Column(testvm.Tshark(t, pcap, "tls.handshake.type == 1 && tcp", "tls.handshake.extensions_server_name"), 0)
	for _, s := range []string{"updates.firstboot.test", "cmd-tls.firstboot.test"} {
		if !slices.Contains(snis, s) {
			t.Errorf("no TLS ClientHello with SNI %s (SNIs: %v)", s, snis)
		}
	}
	quicSNI := testvm.Column(testvm.Tshark(t, pcap, "quic.long.packet_type == 0 && tls.handshake.type == 1", "tls.handshake.extensions_server_name"), 0)
	for _, s := range []string{"quic.firstboot.test", "cmd-quic.firstboot.test"} {
		if !slices.Contains(quicSNI, s) {
			t.Errorf("no QUIC Initial with SNI %s (SNIs: %v)", s, quicSNI)
		}
	}
	after := fmt.Sprintf("frame.time_epoch >= %d.%09d", cmdSent.Unix(), cmdSent.Nanosecond())
	if rows := testvm.Tshark(t, pcap, "ntp.flags.mode == 3 && "+after, "ip.dst"); len(rows) != 1 {
		t.Errorf("want 1 NTP client request after the command, got %d", len(rows))
	}
	if rows := testvm.Tshark(t, pcap, "ntp.flags.mode == 3", "ip.dst"); len(rows) < 3 {
		t.Errorf("want >= 3 NTP client requests (DHCP server, time.firstboot.test, command), got %d", len(rows))
	}
	if rows := testvm.Tshark(t, pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 443 && "+after, "tcp.stream"); len(rows) < 2 {
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
	from, _ := v.WaitLine(ready, 0, 120*time.Second)

	v.Send("fbguest run r1 reboot")
	from, _ = v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST reboot r1$`), from+1, 30*time.Second)
	from, _ = v.WaitLine(boot, from+1, 120*time.Second)
	from, _ = v.WaitLine(ready, from+1, 120*time.Second)

	// The command loop is busy with this sleep when the button is pressed.
	v.Send("fbguest run s1 sleep 600")
	from, _ = v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST start s1$`), from+1, 30*time.Second)
	pressed := time.Now()
	v.Monitor("system_powerdown")
	_, l := v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST poweroff acpi$`), from+1, 15*time.Second)
	select {
	case <-v.Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("QEMU did not exit within 15s of the power button press")
	}
	t.Logf("power button: marker %.2fs, QEMU exit %.2fs after the press",
		l.At.Sub(pressed).Seconds(), time.Since(pressed).Seconds())
	if v.Cmd.ProcessState == nil || !v.Cmd.ProcessState.Success() {
		t.Errorf("QEMU exit: %v, want a clean exit after the guest's ACPI power-off", v.Cmd.ProcessState)
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
	from, _ := v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST ready `), 0, 120*time.Second)
	v.Monitor("system_powerdown")
	from, _ = v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST poweroff acpi$`), from+1, 15*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := v.Monitor("info status")
		if strings.Contains(st, "VM status: paused (shutdown)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest not powered off 15s after the press: %q", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	v.Monitor("system_reset")
	v.Monitor("cont")
	from, _ = v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST boot kernel=6\.1\.0-`), from+1, 120*time.Second)
	v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST ready `), from+1, 120*time.Second)
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
			stop := n.Capture(t)
			v := bootVM(t, n, k.path, img.Initrd, img.Cmdline+" fbguest.checkin=0", k.qemu...)
			_, bootLine := v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST boot `), 0, 180*time.Second)
			_, mods := v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST modules `), 0, 180*time.Second)
			_, ready := v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST ready `), 0, 180*time.Second)
			t.Logf("%s: boot marker %.2fs, modules marker %.2fs (%s)", k.name, bootLine.At.Sub(v.Start).Seconds(),
				mods.At.Sub(v.Start).Seconds(), mods.Text)
			_ = v.Cmd.Process.Kill()
			<-v.Exited()
			dhcp := testvm.Tshark(t, stop(), "dhcp", "frame.time_epoch")
			if len(dhcp) == 0 {
				t.Fatal("no DHCP packet captured")
			}
			var first float64
			fmt.Sscanf(dhcp[0][0], "%f", &first)
			t.Logf("%s: first DHCP packet %.2fs, ready marker %.2fs after QEMU start", k.name,
				first-float64(v.Start.UnixNano())/1e9, ready.At.Sub(v.Start).Seconds())
		})
	}
}
