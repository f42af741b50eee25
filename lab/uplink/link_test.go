package uplink

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/testnet"
)

// The link tests build, from namespaces of their own, a lab (bridges standing
// in for libvirt's, "guests" joined to them by veths standing in for taps), a
// host where firstboot would run, and an ISP with a web server. Routed and
// Bridged change the namespace of the process that calls them, so they run in
// a helper process (this test binary) started inside the host namespace.

// helperConfig tells the helper process what to do.
type helperConfig struct {
	Op                  string // routed, bridged, leftovers
	ID                  string
	LabNetns, LabBridge string
	Subnet              string
	Router              string
	HostBridge          string
}

// helperOut is one line the helper prints.
type helperOut struct {
	Link      *Link
	Err       string
	State     *State
	Closed    bool
	Leftovers *Leftovers
}

// TestLinkHelper is the helper process; it does nothing in a normal test run.
func TestLinkHelper(t *testing.T) {
	spec := os.Getenv("FIRSTBOOT_UPLINK_HELPER")
	if spec == "" {
		t.Skip("the link tests' helper process")
	}
	var c helperConfig
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	enc := json.NewEncoder(os.Stdout)
	var l *Link
	var err error
	switch c.Op {
	case "leftovers":
		lo, err := FindLeftovers(ctx)
		enc.Encode(helperOut{Leftovers: &lo, Err: errString(err)})
		return
	case "routed":
		l, err = Routed(ctx, RoutedConfig{ID: c.ID, LabNetns: c.LabNetns, LabBridge: c.LabBridge,
			Subnet: netip.MustParsePrefix(c.Subnet), Router: netip.MustParseAddr(c.Router)})
	case "bridged":
		l, err = Bridged(ctx, BridgedConfig{ID: c.ID, LabNetns: c.LabNetns, LabBridge: c.LabBridge, HostBridge: c.HostBridge})
	}
	enc.Encode(helperOut{Link: l, Err: errString(err)})
	if err != nil {
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	go l.Watch(wctx, 100*time.Millisecond, func(st State) { enc.Encode(helperOut{State: &st}) })
	io.Copy(io.Discard, os.Stdin) // until the test closes it
	cancel()
	err = l.Close(ctx)
	enc.Encode(helperOut{Closed: true, Err: errString(err)})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   chan helperOut
}

func startHelper(t *testing.T, ns *testnet.Namespace, c helperConfig) *helper {
	t.Helper()
	spec, _ := json.Marshal(c)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, self, "-test.run=^TestLinkHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FIRSTBOOT_UPLINK_HELPER="+string(spec))
	cmd.Stderr = os.Stderr
	h := &helper{cmd: cmd, out: make(chan helperOut, 16)}
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	go func() {
		defer close(h.out)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var o helperOut
			if strings.HasPrefix(sc.Text(), "{") && json.Unmarshal(sc.Bytes(), &o) == nil {
				h.out <- o
			}
		}
	}()
	return h
}

// next waits for the helper's next line.
func (h *helper) next(t *testing.T) helperOut {
	t.Helper()
	select {
	case o, ok := <-h.out:
		if !ok {
			t.Fatal("the helper process ended early")
		}
		return o
	case <-time.After(30 * time.Second):
		t.Fatal("the helper process said nothing for 30 s")
	}
	return helperOut{}
}

// link waits for the helper's link, failing the test on an error.
func (h *helper) link(t *testing.T) *Link {
	t.Helper()
	o := h.next(t)
	if o.Err != "" || o.Link == nil {
		t.Fatalf("helper: %s", o.Err)
	}
	return o.Link
}

// close ends the link and waits for the helper to say it is gone.
func (h *helper) close(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	for {
		if o := h.next(t); o.Closed {
			if o.Err != "" {
				t.Errorf("Close: %s", o.Err)
			}
			h.cmd.Wait()
			return
		}
	}
}

// topology is the namespaces of a link test.
type topology struct {
	lab, host, isp *testnet.Namespace
	guests         []*testnet.Namespace // guest i on lab bridge "brlab<i>", 10.99.<i>.100
}

const ispWeb = "203.0.113.10:80"

func newTopology(t *testing.T, guests int) *topology {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root (network namespaces, iptables)")
	}
	testnet.Require(t, "iptables", "bridge")
	tp := &topology{lab: testnet.New(t, "fbul"), host: testnet.New(t, "fbuh"), isp: testnet.New(t, "fbui")}
	for _, ns := range []*testnet.Namespace{tp.lab, tp.host, tp.isp} {
		ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.ip_forward=0")
	}
	for i := 1; i <= guests; i++ {
		br, sub := "brlab"+itoa(i), "10.99."+itoa(i)
		tp.lab.MustRun(t, "ip", "link", "add", br, "type", "bridge")
		tp.lab.MustRun(t, "ip", "addr", "add", sub+".1/24", "dev", br)
		tp.lab.MustRun(t, "ip", "link", "set", br, "up")
		g := testnet.New(t, "fbug")
		testnet.NewVeth(t, testnet.Link{NS: g, Iface: "eth0", Addrs: []string{sub + ".100/24"}}, testnet.Link{NS: tp.lab, Iface: "tap" + itoa(i)})
		tp.lab.MustRun(t, "ip", "link", "set", "tap"+itoa(i), "master", br)
		g.MustRun(t, "ip", "route", "add", "default", "via", sub+".2")
		tp.guests = append(tp.guests, g)
	}
	testnet.NewVeth(t, testnet.Link{NS: tp.host, Iface: "up0", Addrs: []string{"198.51.100.2/24"}}, testnet.Link{NS: tp.isp, Iface: "isp0", Addrs: []string{"198.51.100.1/24"}})
	tp.host.MustRun(t, "ip", "route", "add", "default", "via", "198.51.100.1")
	tp.host.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	testnet.NewVeth(t, testnet.Link{NS: tp.host, Iface: "up1"}, testnet.Link{NS: tp.isp, Iface: "isp1", Addrs: []string{"192.168.77.1/24"}})
	tp.host.MustRun(t, "ip", "link", "set", "up1", "master", "br0")
	tp.host.MustRun(t, "ip", "link", "set", "br0", "up")
	tp.isp.MustRun(t, "ip", "addr", "add", "203.0.113.10/32", "dev", "lo")
	// The ISP's web server answers with the address a connection came from.
	for _, at := range []string{ispWeb, "192.168.77.1:80"} {
		ln, err := tp.isp.Listen("tcp", at)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go serveRemote(ln)
	}
	return tp
}

func serveRemote(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, c.RemoteAddr().String())
		c.Close()
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// fetch connects from ns to addr and returns what the server said ("" when
// no connection was made within a second: what must be blocked).
func fetch(ns *testnet.Namespace, addr string) string { return fetchWithin(ns, addr, time.Second) }

// reach is fetch for what must get through: a loaded machine gets ten
// seconds.
func reach(ns *testnet.Namespace, addr string) string { return fetchWithin(ns, addr, 10*time.Second) }

func fetchWithin(ns *testnet.Namespace, addr string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp", addr)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, _ := io.ReadAll(c)
	return string(b)
}

func (tp *topology) routed(i int) helperConfig {
	sub := "10.99." + itoa(i)
	return helperConfig{Op: "routed", ID: "run-" + itoa(i), LabNetns: tp.lab.Name, LabBridge: "brlab" + itoa(i), Subnet: sub + ".0/24", Router: sub + ".2"}
}

func sysctl(t *testing.T, ns *testnet.Namespace, key string) string {
	t.Helper()
	return strings.TrimSpace(string(ns.MustRun(t, "sysctl", "-n", key)))
}

// checkNothingLeft: no firstboot veth in the host or the lab, no chain, and
// forwarding as the host had it.
func (tp *topology) checkNothingLeft(t *testing.T) {
	t.Helper()
	for _, ns := range []*testnet.Namespace{tp.host, tp.lab} {
		if out := string(ns.MustRun(t, "ip", "-br", "link")); strings.Contains(out, vethPrefix) {
			t.Errorf("veths left in %s:\n%s", ns.Name, out)
		}
	}
	for _, table := range []string{"filter", "nat"} {
		if out := string(tp.host.MustRun(t, "iptables", "-w", "-t", table, "-S")); strings.Contains(out, chainPrefix) {
			t.Errorf("%s rules left:\n%s", table, out)
		}
	}
	if v := sysctl(t, tp.host, "net.ipv4.conf.up0.forwarding"); v != "0" {
		t.Errorf("up0 forwarding %s after the last link closed, want 0 again", v)
	}
}

// TestRoutedLinks: two routed links side by side each NAT their guest out of
// the host's default route; neither guest reaches the host itself or the
// other; the global forwarding switch is never touched; both links watch the
// uplink go and come back; the last one closed leaves nothing.
func TestRoutedLinks(t *testing.T) {
	tp := newTopology(t, 2)
	hosts := []*helper{startHelper(t, tp.host, tp.routed(1)), startHelper(t, tp.host, tp.routed(2))}
	var links []*Link
	for _, h := range hosts {
		links = append(links, h.link(t))
	}
	if l := links[0]; l.Mode != "routed" || l.Egress.Interface != "up0" || l.Egress.Gateway.String() != "198.51.100.1" ||
		l.Egress.Addr.String() != "198.51.100.2" || l.Router.String() != "10.99.1.2" || l.LabBridge != "brlab1" {
		t.Errorf("link %+v", l)
	}
	for i, g := range tp.guests {
		if got := reach(g, ispWeb); !strings.HasPrefix(got, "198.51.100.2:") {
			t.Errorf("guest %d: the ISP saw %q, want the host's egress address (NAT)", i+1, got)
		}
	}
	ln, err := tp.host.Listen("tcp", "0.0.0.0:7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveRemote(ln)
	if got := fetch(tp.guests[0], "10.99.1.2:7"); got != "" {
		t.Errorf("a guest reached the host itself: %q", got)
	}
	if got := fetch(tp.guests[0], "198.51.100.2:7"); got != "" {
		t.Errorf("a guest reached the host's egress address: %q", got)
	}
	gl, err := tp.guests[1].Listen("tcp", "10.99.2.100:8")
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	go serveRemote(gl)
	if got := fetch(tp.guests[0], "10.99.2.100:8"); got != "" {
		t.Errorf("one run's guest reached the other's: %q", got)
	}
	if v := sysctl(t, tp.host, "net.ipv4.ip_forward"); v != "0" {
		t.Errorf("net.ipv4.ip_forward = %s, want the global switch left off", v)
	}
	if v := sysctl(t, tp.lab, "net.ipv4.ip_forward"); v != "0" {
		t.Errorf("the lab namespace forwards (ip_forward %s)", v)
	}

	tp.isp.MustRun(t, "ip", "link", "set", "isp0", "down")
	for _, h := range hosts {
		if o := h.next(t); o.State == nil || o.State.Up || !strings.Contains(o.State.Detail, "no carrier") {
			t.Errorf("after the cable was pulled: %+v", o)
		}
	}
	tp.isp.MustRun(t, "ip", "link", "set", "isp0", "up")
	for _, h := range hosts {
		if o := h.next(t); o.State == nil || !o.State.Up {
			t.Errorf("after the cable was put back: %+v", o)
		}
	}

	hosts[0].close(t)
	if v := sysctl(t, tp.host, "net.ipv4.conf.up0.forwarding"); v != "1" {
		t.Errorf("up0 forwarding %s while the second link still runs, want 1", v)
	}
	if got := reach(tp.guests[1], ispWeb); got == "" {
		t.Error("closing one link cut the other")
	}
	hosts[1].close(t)
	tp.checkNothingLeft(t)
}

// TestBridgedLink: the guest is on the host bridge's network at layer 2 as an
// isolated port; a host bridge without carrier is refused before anything
// changes; closing leaves nothing.
func TestBridgedLink(t *testing.T) {
	tp := newTopology(t, 1)
	g := tp.guests[0]
	g.MustRun(t, "ip", "addr", "flush", "dev", "eth0")
	g.MustRun(t, "ip", "addr", "add", "192.168.77.50/24", "dev", "eth0")
	cfg := helperConfig{Op: "bridged", ID: "run-b", LabNetns: tp.lab.Name, LabBridge: "brlab1", HostBridge: "br0"}

	tp.isp.MustRun(t, "ip", "link", "set", "isp1", "down")
	o := startHelper(t, tp.host, cfg).next(t)
	if !strings.Contains(o.Err, "uplink down") || !strings.Contains(o.Err, "no carrier on its uplink ports (up1)") {
		t.Errorf("bridged with the uplink down: %+v", o)
	}
	tp.checkNothingLeft(t)
	tp.isp.MustRun(t, "ip", "link", "set", "isp1", "up")

	h := startHelper(t, tp.host, cfg)
	l := h.link(t)
	if got := reach(g, "192.168.77.1:80"); !strings.HasPrefix(got, "192.168.77.50:") {
		t.Errorf("the ISP saw %q, want the guest's own address", got)
	}
	if out := string(tp.host.MustRun(t, "bridge", "-d", "link", "show", "dev", l.HostVeth)); !strings.Contains(out, "isolated on") {
		t.Errorf("the host bridge port is not isolated:\n%s", out)
	}
	if out := string(tp.host.MustRun(t, "ip", "-br", "addr", "show", "dev", l.HostVeth)); strings.Contains(out, ".") {
		t.Errorf("the host's end of the veth has an address: %s", out)
	}
	h.close(t)
	tp.checkNothingLeft(t)
}

// TestLeftoversRemoved: what a firstboot killed outright leaves (its veth,
// chains, forwarding) is found, and the next link removes it.
func TestLeftoversRemoved(t *testing.T) {
	tp := newTopology(t, 2)
	h := startHelper(t, tp.host, tp.routed(1))
	dead := h.link(t)
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.cmd.Wait()
	lo := startHelper(t, tp.host, helperConfig{Op: "leftovers"}).next(t).Leftovers
	_, _, tag := vethNames("run-1")
	want := Leftovers{Veths: []string{dead.HostVeth}, Chains: []string{"filter/" + chainName(tag), "nat/" + chainName(tag)}, Forwarding: []string{"up0"}}
	if lo == nil || !reflect.DeepEqual(*lo, want) {
		t.Fatalf("leftovers %+v, want %+v", lo, want)
	}
	next := startHelper(t, tp.host, tp.routed(2))
	next.link(t)
	lo = startHelper(t, tp.host, helperConfig{Op: "leftovers"}).next(t).Leftovers
	if lo == nil || !lo.Empty() {
		t.Errorf("leftovers after the next link started: %+v", lo)
	}
	if out := string(tp.host.MustRun(t, "iptables", "-w", "-S")); strings.Contains(out, chainName(tag)) {
		t.Errorf("the dead run's chain is left:\n%s", out)
	}
	next.close(t)
	tp.checkNothingLeft(t)
}
