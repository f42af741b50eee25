// Package netns manages the named network namespace the lab lives in.
//
// A name is either a namespace created with `ip netns add` (a file under
// /run/netns) or an absolute path to a namespace file such as
// /proc/PID/ns/net, so callers can also enter the namespace of a libvirtd they
// did not start. Exec, Links and Same also take "": the namespace this
// process runs in (whatever it is: never assumed to be PID 1's).
package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// RunDir is where `ip netns add` keeps its namespace files.
const RunDir = "/run/netns"

// Path returns the namespace file for name (a name or an absolute path).
func Path(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(RunDir, name)
}

// Exists reports whether the namespace file exists.
func Exists(name string) bool {
	_, err := os.Stat(Path(name))
	return err == nil
}

// Create adds the named namespace and prepares it for the lab: loopback up,
// IPv6 off (no router solicitations or MLD from the host side of each tap in
// the capture), IPv4 forwarding off (nothing routed anywhere), IGMP reports
// sent without delay (none trails into a capture).
func Create(ctx context.Context, name string) error {
	if filepath.IsAbs(name) || name == "" || strings.ContainsAny(name, "/ ") {
		return fmt.Errorf("netns: create %q: want a plain name", name)
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("netns: ip netns add %s: %w: %s (is iproute2 installed and are you root?)", name, err, bytes.TrimSpace(out))
	}
	if err := Prepare(ctx, name); err != nil {
		return errors.Join(err, Delete(context.WithoutCancel(ctx), name))
	}
	return nil
}

// Prepare applies the lab settings to an existing namespace (idempotent).
func Prepare(ctx context.Context, name string) error {
	for _, argv := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"},
		{"sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"},
		{"sysctl", "-q", "-w", "net.ipv4.ip_forward=0"},
		// A lab bridge joins the multicast snoopers group (224.0.0.106) and
		// reports it a few times over the next second or two, which lands in
		// a capture that starts meanwhile. Send those reports at once.
		{"sysctl", "-q", "-w", "net.ipv4.conf.all.igmpv3_unsolicited_report_interval=1"},
		{"sysctl", "-q", "-w", "net.ipv4.conf.default.igmpv3_unsolicited_report_interval=1"},
		{"sysctl", "-q", "-w", "net.ipv4.conf.all.igmpv2_unsolicited_report_interval=1"},
		{"sysctl", "-q", "-w", "net.ipv4.conf.default.igmpv2_unsolicited_report_interval=1"},
	} {
		if _, err := Exec(ctx, name, argv...); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the named namespace. A missing namespace is not an error.
func Delete(ctx context.Context, name string) error {
	if !Exists(name) {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("netns: ip netns del %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Exec runs argv inside the namespace with `ip netns exec` (which also mounts
// a /sys that shows the namespace's interfaces) and returns its stdout.
func Exec(ctx context.Context, name string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("netns: exec: empty command")
	}
	var cmd *exec.Cmd
	switch {
	case name == "":
		// Children start in the namespace of the thread that forks them,
		// which outside Do is this process's own.
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	case filepath.IsAbs(name):
		// ip netns exec only takes names; nsenter takes a namespace file.
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + name, "--"}, argv...)...)
	default:
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", name}, argv...)...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("netns %s: %s: %w: %s", name, strings.Join(argv, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// Same reports whether two names (see the package comment; "" is this
// process's namespace) refer to one namespace.
func Same(a, b string) (bool, error) {
	ia, err := ID(a)
	if err != nil {
		return false, err
	}
	ib, err := ID(b)
	if err != nil {
		return false, err
	}
	return ia == ib, nil
}

// ID identifies a namespace ("" is this process's) as its nsfs inode, the
// number `ip netns identify` and /proc/PID/ns/net links show.
func ID(name string) (uint64, error) {
	path := Path(name)
	if name == "" {
		// The calling thread's, which outside Do is the process's: the main
		// thread may be inside Do at this moment, so not /proc/self.
		path = "/proc/thread-self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("netns: %s: %w", path, err)
	}
	return st.Ino, nil
}

// Do runs fn on a locked OS thread switched into the namespace. Sockets and
// listeners fn creates stay in the namespace after Do returns; goroutines fn
// starts do not run in it. The thread's own namespace is restored afterwards;
// if that fails the thread is left locked so the runtime discards it.
func Do(name string, fn func() error) error {
	target, err := unix.Open(Path(name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w (does the namespace exist?)", Path(name), err)
	}
	defer unix.Close(target)

	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: open own namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: enter %s: %w", name, err)
	}
	fnErr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with this goroutine instead of
		// running other goroutines in the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("netns: restore namespace after %s: %w", name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Link is one interface as `ip -d -j link` reports it.
type Link struct {
	Name string `json:"ifname"`
	Kind string // "bridge", "tun", "veth", … ("" for lo and plain devices)
	// Master is the bridge a port belongs to.
	Master string `json:"master"`
}

// Links lists the namespace's interfaces.
func Links(ctx context.Context, name string) ([]Link, error) {
	out, err := Exec(ctx, name, "ip", "-d", "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var raw []struct {
		Name     string `json:"ifname"`
		Master   string `json:"master"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("netns %s: parse ip link output: %w", name, err)
	}
	links := make([]Link, len(raw))
	for i, r := range raw {
		links[i] = Link{Name: r.Name, Kind: r.LinkInfo.Kind, Master: r.Master}
	}
	return links, nil
}

// UplinkVethPrefix starts the names of the veths lab/uplink adds to the lab
// namespace for routed and bridged runs.
const UplinkVethPrefix = "fbu"

// CheckIsolation verifies the namespace's structure: only loopback, bridges
// and taps (tun devices); no default route and no IPv6 route at all; IPv4
// forwarding off; IPv6 disabled. It returns every violation found.
//
// A real-internet run's veth (UplinkVethPrefix, a port of that run's own
// bridge) is allowed: it reaches out only at layer 2 from its own bridge, and
// with forwarding off no other bridge can reach it.
func CheckIsolation(ctx context.Context, name string) error {
	var errs []error
	links, err := Links(ctx, name)
	if err != nil {
		return err
	}
	for _, l := range links {
		switch {
		case l.Name == "lo", l.Kind == "bridge", l.Kind == "tun":
		case l.Kind == "veth" && strings.HasPrefix(l.Name, UplinkVethPrefix) && l.Master != "":
		default:
			errs = append(errs, fmt.Errorf("interface %s (kind %q) is neither lo, a bridge nor a tap", l.Name, l.Kind))
		}
	}
	if out, err := Exec(ctx, name, "ip", "-4", "route", "show", "default"); err != nil {
		errs = append(errs, err)
	} else if len(bytes.TrimSpace(out)) > 0 {
		errs = append(errs, fmt.Errorf("default route present: %s", bytes.TrimSpace(out)))
	}
	if out, err := Exec(ctx, name, "ip", "-6", "route", "show"); err == nil && len(bytes.TrimSpace(out)) > 0 {
		errs = append(errs, fmt.Errorf("IPv6 routes present: %s", bytes.TrimSpace(out)))
	}
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":                "0",
		"net.ipv6.conf.all.disable_ipv6":     "1",
		"net.ipv6.conf.default.disable_ipv6": "1",
	} {
		out, err := Exec(ctx, name, "sysctl", "-n", key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if got := string(bytes.TrimSpace(out)); got != want {
			errs = append(errs, fmt.Errorf("%s = %s, want %s", key, got, want))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("netns %s is not isolated: %w", name, errors.Join(errs...))
	}
	return nil
}
