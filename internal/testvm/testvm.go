// Package testvm is the harness of the tests that boot a real guest under
// QEMU: an isolated network namespace (no route out) with a bridge and a tap
// for the guest's NIC, dnsmasq as its DHCP server, lab/simnet answering DNS,
// NTP, HTTP, HTTPS and QUIC on the bridge address, a tcpdump capture of the
// tap read back with tshark, and the QEMU process with its serial console.
package testvm

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/lab/simnet"
)

// Require skips the test in -short mode, and skips it (fails it in CI) when
// it does not run as root or a tool is missing. what says what the test
// does and why it needs root, for the messages.
func Require(t testing.TB, what string, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s; skipped in -short mode", what)
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "%s: needs root (network namespaces, tap devices)", what)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not installed (run scripts/provision.sh)", tool)
		}
	}
}

// NetConfig describes the lab network of one test.
type NetConfig struct {
	// Prefix names the namespace (prefix-<random>).
	Prefix string
	// Bridge is the bridge's address in a /24; dnsmasq leases .50 to .99 of
	// it and names it as router and DNS server, and simnet listens on it.
	Bridge netip.Addr
	// NTPOption also names the bridge as NTP server in the DHCP answers.
	// Without it a guest uses its stock NTP server names.
	NTPOption bool
}

// Net is a running lab network; everything in it goes away in t.Cleanup.
type Net struct {
	NS     *testnet.Namespace
	Tap    string // the guest NIC's tap, a port of the bridge
	Bridge netip.Addr
	Leases string // dnsmasq's lease file
}

// NewNet builds the namespace, the bridge and the tap, and starts dnsmasq and
// the simnet responders.
func NewNet(t testing.TB, cfg NetConfig) *Net {
	t.Helper()
	if !cfg.Bridge.Is4() {
		t.Fatalf("testvm: bridge address %v, want IPv4", cfg.Bridge)
	}
	dir := t.TempDir()
	n := &Net{NS: testnet.New(t, cfg.Prefix), Tap: "tap0", Bridge: cfg.Bridge, Leases: filepath.Join(dir, "leases")}
	br := cfg.Bridge.String()
	// IPv6 off on the host side keeps its router/MLD chatter out of the capture.
	n.NS.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	n.NS.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	n.NS.MustRun(t, "ip", "addr", "add", br+"/24", "dev", "br0")
	n.NS.MustRun(t, "ip", "link", "set", "br0", "up")
	n.NS.MustRun(t, "ip", "tuntap", "add", "dev", n.Tap, "mode", "tap")
	n.NS.MustRun(t, "ip", "link", "set", n.Tap, "master", "br0", "up")

	b := cfg.Bridge.As4()
	host := func(last byte) string { return netip.AddrFrom4([4]byte{b[0], b[1], b[2], last}).String() }
	args := []string{"--no-daemon", "--conf-file=/dev/null",
		"--interface=br0", "--bind-interfaces", "--port=0", "--no-ping",
		"--dhcp-range=" + host(50) + "," + host(99) + ",1h",
		"--dhcp-option=option:router," + br, "--dhcp-option=option:dns-server," + br}
	if cfg.NTPOption {
		args = append(args, "--dhcp-option=option:ntp-server,"+br)
	}
	args = append(args, "--dhcp-leasefile="+n.Leases, "--pid-file="+filepath.Join(dir, "dnsmasq.pid"))
	n.NS.Background(t, "dnsmasq", args...)

	ca, err := simnet.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	var r *simnet.Responders
	err = n.NS.Do(func() error {
		var err error
		r, err = simnet.Start(context.Background(), simnet.Config{
			Addr: cfg.Bridge, Ports: simnet.Ports{DNS: 53, NTP: 123, HTTP: 80, HTTPS: 443, QUIC: 443,
				CatchAllTCP: simnet.Disabled, CatchAllUDP: simnet.Disabled}, CA: ca})
		return err
	})
	if err != nil {
		t.Fatalf("starting simnet in %s: %v", n.NS.Name, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return n
}

// Capture runs tcpdump on the tap until stop (or the test's end); stop
// returns the capture's path.
func (n *Net) Capture(t testing.TB) (stop func() string) {
	t.Helper()
	c := testnet.NewCapture(t, n.NS, n.Tap, filepath.Join(t.TempDir(), "guest.pcap"))
	return func() string {
		if _, err := c.Stop(); err != nil {
			t.Logf("stopping the capture: %v", err)
		}
		return c.Path
	}
}

// Tshark returns the selected fields ('|'-separated by tshark) of the packets
// in pcap matching filter, a row per packet.
func Tshark(t testing.TB, pcap, filter string, fields ...string) [][]string {
	t.Helper()
	args := []string{"-r", pcap, "-n", "-Y", filter, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(testnet.Tshark(t, args...)), "\n") {
		if l != "" {
			rows = append(rows, strings.Split(l, "|"))
		}
	}
	return rows
}

// Column returns field i of every row, with multi-valued fields split on
// tshark's comma and empty values left out.
func Column(rows [][]string, i int) []string {
	var out []string
	for _, r := range rows {
		if i < len(r) && r[i] != "" {
			out = append(out, strings.Split(r[i], ",")...)
		}
	}
	return out
}
