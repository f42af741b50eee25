// Package testnet gives tests and the traffic generator isolated network
// namespaces: created with a unique name, loopback up with a real-world MTU,
// optionally joined by veth pairs, and always deleted again. Nothing in a
// namespace made here has a route out of the machine.
//
// The core functions return values with a Close method so that non-test code
// (the trafficgen command) can use them; New and NewVeth are the test helpers that
// register the cleanup with t.Cleanup. Tests that check a parser against real
// traffic also get: Background servers and MustRun clients in a namespace,
// Capture.Complete (a short capture that holds every packet), ReadPcap and
// FrameFields to read it with gopacket and tshark.
package testnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// MTU is what loopback and veth links get, so packet sizes look like Ethernet.
const MTU = 1500

// Namespace is one named network namespace (`ip netns add`).
type Namespace struct {
	Name string
}

// Require fails the test at once when it cannot create namespaces or a needed
// tool is missing, saying what to install.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("testnet: this test needs root (network namespaces, tcpdump); run as root after scripts/provision.sh")
	}
	RequireTools(t, append([]string{"ip"}, tools...)...)
}

// RequireTools is Require without the root check, for tests that only read
// captures with external tools.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("testnet: %s not found in PATH: install it with scripts/provision.sh (%v)", tool, err)
		}
	}
}

// Create makes a namespace named prefix-<random>, with lo up at MTU 1500.
func Create(ctx context.Context, prefix string) (*Namespace, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("testnet: random namespace name: %w", err)
	}
	n := &Namespace{Name: prefix + "-" + hex.EncodeToString(b[:])}
	if err := ipCmd(ctx, "netns", "add", n.Name); err != nil {
		return nil, err
	}
	if err := ipCmd(ctx, "-n", n.Name, "link", "set", "lo", "mtu", strconv.Itoa(MTU), "up"); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	// Loopback offloads would otherwise hand tcpdump 64 KB super-packets.
	if err := ipCmd(ctx, "-n", n.Name, "link", "set", "lo", "gso_max_segs", "1", "gso_max_size", strconv.Itoa(MTU)); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

// New is Create for tests: the namespace is deleted in t.Cleanup.
func New(t testing.TB, prefix string) *Namespace {
	t.Helper()
	n, err := Create(context.Background(), prefix)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("testnet: %v", err)
		}
	})
	return n
}

// Close kills every process still inside the namespace (they were all started
// by us, except this process itself), removes its resolver override and deletes it.
func (n *Namespace) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", n.Name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			// Our own pid can show up: a thread that joined the namespace in Do
			// may be the main thread, which Go parks instead of ending.
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := os.RemoveAll(filepath.Join("/etc/netns", n.Name)); err != nil {
		errs = append(errs, fmt.Errorf("testnet: remove resolver override of %s: %w", n.Name, err))
	}
	if err := ipCmd(ctx, "netns", "del", n.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SetResolver makes programs run with Command use nameserver for DNS: `ip netns
// exec` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf.
func (n *Namespace) SetResolver(nameserver string) error {
	dir := filepath.Join("/etc/netns", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("testnet: resolver override for %s: %w", n.Name, err)
	}
	conf := "nameserver " + nameserver + "\noptions timeout:2 attempts:1\n"
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("testnet: resolver override for %s: %w", n.Name, err)
	}
	// Keep the host's hosts file out: names must go to the namespace's DNS server.
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o644); err != nil {
		return fmt.Errorf("testnet: hosts override for %s: %w", n.Name, err)
	}
	return nil
}

// Command returns a command that runs inside the namespace.
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	// `ip netns exec` execs the program in place, so the signal reaches it directly.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs a command inside the namespace and returns its combined output; the
// error includes the output so a failing client explains itself.
func (n *Namespace) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("testnet: %s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Do runs fn on an OS thread that has joined the namespace. Sockets created by
// fn itself (net.Listen, net.ListenUDP, a Dial to an IP literal) belong to the
// namespace for their whole life; goroutines fn starts do not run inside it, so
// fn must create its sockets synchronously.
func (n *Namespace) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread dies with this goroutine, so no other
		// goroutine ever runs in the wrong namespace.
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/run/netns", n.Name))
		if err != nil {
			errc <- fmt.Errorf("testnet: open namespace %s: %w", n.Name, err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("testnet: enter namespace %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Listen opens a listener inside the namespace.
func (n *Namespace) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) { l, err = net.Listen(network, addr); return err })
	return l, err
}

// ListenPacket opens a packet socket inside the namespace.
func (n *Namespace) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() (err error) { c, err = net.ListenPacket(network, addr); return err })
	return c, err
}

// Dial connects from inside the namespace. addr must hold an IP literal: a
// name would be resolved (and raced over several addresses) on other threads,
// outside the namespace.
func (n *Namespace) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("testnet: dial %s: %w", addr, err)
	}
	if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("testnet: dial %s: need an IP literal, resolve the name first", addr)
	}
	var c net.Conn
	err = n.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Link is one end of a veth pair.
type Link struct {
	NS    *Namespace
	Iface string   // name inside NS, e.g. "eth0"
	Addrs []string // CIDR addresses, e.g. "10.77.0.1/24", "fd77::1/64"
	MAC   string   // link-layer address; "" lets the kernel pick a random one
}

// Veth joins two namespaces with a veth pair. Offloads are capped so every
// captured frame fits the MTU, as on a real wire; IPv6 addresses skip duplicate
// address detection so they work at once. Deleting either namespace deletes
// the pair.
func Veth(ctx context.Context, a, b Link) error {
	end := func(l Link) []string {
		args := []string{"name", l.Iface, "netns", l.NS.Name, "mtu", strconv.Itoa(MTU)}
		if l.MAC != "" {
			args = append(args, "address", l.MAC)
		}
		return args
	}
	args := append(append([]string{"link", "add"}, end(a)...), "type", "veth", "peer")
	if err := ipCmd(ctx, append(args, end(b)...)...); err != nil {
		return err
	}
	for _, l := range []Link{a, b} {
		if err := ipCmd(ctx, "-n", l.NS.Name, "link", "set", l.Iface, "gso_max_segs", "1", "gso_max_size", strconv.Itoa(MTU)); err != nil {
			return err
		}
		for _, addr := range l.Addrs {
			args := []string{"-n", l.NS.Name, "addr", "add", addr, "dev", l.Iface}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			if err := ipCmd(ctx, args...); err != nil {
				return err
			}
		}
		if err := ipCmd(ctx, "-n", l.NS.Name, "link", "set", l.Iface, "up"); err != nil {
			return err
		}
	}
	return nil
}

// NewVeth is Veth for tests; the pair goes away with the namespaces.
func NewVeth(t testing.TB, a, b Link) {
	t.Helper()
	if err := Veth(context.Background(), a, b); err != nil {
		t.Fatalf("testnet: %v", err)
	}
}

func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testnet: ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
