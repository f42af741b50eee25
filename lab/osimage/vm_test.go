package osimage_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testvm"
	"github.com/firstboot/firstboot/lab/osimage"
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
	testvm.Require(t, "builds and boots a Debian VM", "debootstrap", "mkfs.ext4", "qemu-img", "qemu-system-x86_64", "dnsmasq", "tcpdump", "tshark", "ip")
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
	for _, want := range []string{"systemd", "systemd-timesyncd", "linux-image-amd64", "ifupdown", "apt", "curl", "qemu-guest-agent"} {
		if !hasPackage(img.Manifest.Packages, want) {
			t.Errorf("manifest: package %s is not installed", want)
		}
	}

	n := newLabNet(t)
	stopCapture := n.Capture(t)
	overlay := filepath.Join(t.TempDir(), "overlay.qcow2")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", img.Disk, overlay)
	qgaSock := filepath.Join(t.TempDir(), "qga.sock")
	v := bootVM(t, n, img, overlay, qgaSock)

	loginRe := regexp.MustCompile(`(?m)^` + osimage.Hostname + ` login: `)
	at := v.WaitOutput(loginRe, 15*time.Minute)
	t.Logf("%s: login prompt %.1fs after QEMU started (TCG)", release, v.Since(at))

	// Log in as root and run user actions; each command ends with a marker
	// whose echoed form (FB-DONE-$?) cannot match the pattern.
	v.Send("root")
	v.WaitOutput(regexp.MustCompile(`Password: `), time.Minute)
	v.Send(osimage.RootPassword)
	v.WaitOutput(regexp.MustCompile(`root@`+osimage.Hostname+`:~# `), 2*time.Minute)
	run := func(cmd string, timeout time.Duration) string {
		from := v.Offset()
		v.Send(cmd + "; echo FB-DONE-$?")
		v.WaitOutput(regexp.MustCompile(`FB-DONE-[0-9]+`), timeout)
		// systemd 257 and iproute2 colour their output even on a serial line.
		return ansiRe.ReplaceAllString(v.TextFrom(from), "")
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
	if leases, err := os.ReadFile(n.Leases); err != nil || !strings.Contains(string(leases), guestMAC) {
		t.Errorf("dnsmasq has no lease for %s (leases: %q, %v)", guestMAC, leases, err)
	}
	// qemu-guest-agent was started for the org.qemu.guest_agent.0 port
	// (the unit has no [Install]: udev's rule makes the port's device unit
	// want it) and runs commands for the host.
	out = run("systemctl is-active qemu-guest-agent; systemctl show -p WantedBy --value qemu-guest-agent", time.Minute)
	// WantedBy names the sysfs device unit of the port (…-virtio\x2dports-vport1p1.device).
	if !regexp.MustCompile(`(?m)^\r*active\r*$`).MatchString(out) || !regexp.MustCompile(`virtio\\+x2dports-vport\d+p\d+\.device`).MatchString(out) {
		t.Errorf("qemu-guest-agent is not active, or not wanted by the port's device unit:\n%s", out)
	}
	if code, got, err := qgaExec(t, qgaSock, "cat /etc/hostname; id -u", time.Minute); err != nil || code != 0 || got != osimage.Hostname+"\n0\n" {
		t.Errorf("guest-exec through qemu-guest-agent: exit %d output %q err %v", code, got, err)
	} else {
		t.Logf("%s: guest-exec through qemu-guest-agent works", release)
	}
	run("apt-get update", 5*time.Minute)
	run("systemctl --no-pager --failed", time.Minute)
	v.Send("poweroff")
	select {
	case <-v.Exited():
	case <-time.After(3 * time.Minute):
		t.Errorf("the guest did not power off within 3 minutes")
	}
	pcap := stopCapture()

	if rows := testvm.Tshark(t, pcap, "dhcp.option.dhcp == 3", "eth.src"); len(rows) == 0 {
		t.Errorf("no DHCPREQUEST in the capture")
	}
	names := uniq(testvm.Column(testvm.Tshark(t, pcap, "dns.flags.response == 0", "dns.qry.name"), 0))
	t.Logf("DNS names queried: %s", strings.Join(names, " "))
	if !anyMatch(names, `^[0-3]\.debian\.pool\.ntp\.org$`) {
		t.Errorf("no DNS query for a *.debian.pool.ntp.org server (systemd-timesyncd's default)")
	}
	if !anyMatch(names, `^deb\.debian\.org$`) {
		t.Errorf("no DNS query for deb.debian.org")
	}
	if rows := testvm.Tshark(t, pcap, "ntp.flags.mode == 3", "ip.dst"); len(rows) == 0 {
		t.Errorf("no NTP client request in the capture")
	} else {
		t.Logf("NTP client requests: %d", len(rows))
	}
	hosts := uniq(testvm.Column(testvm.Tshark(t, pcap, "http.request", "http.host", "http.request.uri", "http.user_agent"), 0))
	t.Logf("HTTP hosts: %s", strings.Join(hosts, " "))
	for _, r := range testvm.Tshark(t, pcap, "http.request", "http.host", "http.request.uri", "http.user_agent") {
		t.Logf("  HTTP %s", strings.Join(r, " "))
	}
	if !slices.Contains(hosts, "deb.debian.org") {
		t.Errorf("no HTTP request to deb.debian.org")
	}
	for _, r := range testvm.Tshark(t, pcap, "eth.src == "+guestMAC+" && (dns.flags.response == 0 || ntp || dhcp || http.request || tls.handshake.type == 1 || icmpv6)",
		"frame.time_epoch", "_ws.col.Protocol", "_ws.col.Info") {
		// Seconds after QEMU started, comparable with the login prompt time.
		var epoch float64
		if _, err := fmt.Sscan(r[0], &epoch); err == nil {
			r[0] = fmt.Sprintf("%7.2fs", epoch-float64(v.Start.UnixNano())/1e9)
		}
		t.Logf("  guest %s", strings.Join(r, " "))
	}
	protos := testvm.Tshark(t, pcap, "eth.src == "+guestMAC, "frame.protocols")
	t.Logf("protocol stacks the guest sent: %s", strings.Join(uniq(testvm.Column(protos, 0)), " "))
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

// newLabNet is the Debian guest's lab network. No NTP server option: the
// guest then uses its stock NTP pool names, which is the first-boot traffic
// under study.
func newLabNet(t *testing.T) *testvm.Net {
	return testvm.NewNet(t, testvm.NetConfig{Prefix: "fbdeb", Bridge: netip.MustParseAddr(bridgeAddr)})
}

// bootVM boots the image with a copy-on-write overlay as its disk and the
// guest-agent port on the unix socket qgaSock, as libvirt attaches it.
func bootVM(t *testing.T, n *testvm.Net, img osimage.Image, overlay, qgaSock string) *testvm.VM {
	t.Helper()
	// A newline, as the scenario runner's console_send writes: agetty and
	// login accept it as the end of the line, like a serial terminal's CR.
	return testvm.Boot(t, n, testvm.VMConfig{Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: img.Cmdline,
		MemoryMB: 1024, MAC: guestMAC, Disk: overlay, Newline: "\n",
		QEMU: []string{"-device", "virtio-serial", "-chardev", "socket,path=" + qgaSock + ",server=on,wait=off,id=qga",
			"-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0"}})
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

func anyMatch(list []string, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, s := range list {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}
