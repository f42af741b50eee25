package simnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/internal/owner"
)

// The catch-all UDP listener is fed by TPROXY, which marks the packet and
// needs a policy route that delivers marked packets locally. The mark bit and
// table are private to the lab namespace; these values avoid the ones
// commonly used by other tools (1, 100).
const (
	TProxyMark  = "0x4000000/0x4000000"
	TProxyTable = "4242"
)

// ruleComment tags every rule, so they are easy to recognise in iptables-save.
// Installed rules carry their owner after it ("firstboot-simnet:pid=…"), so
// the rules of a firstboot that was killed can be found and removed.
const ruleComment = "firstboot-simnet"

// RedirectRules returns the iptables argument lists (without the iptables
// binary, with -A) that divert what a guest behind bridge sends to any
// address onto the responders at addr:
//
//   - nat PREROUTING: UDP/TCP 53 → DNS, UDP 123 → NTP, TCP 80 → HTTP,
//     TCP 443 → HTTPS, UDP 443 → QUIC, every other TCP → CatchAllTCP
//     (REDIRECT: conntrack rewrites replies back to the original address, and
//     SO_ORIGINAL_DST gives TCP listeners the original destination);
//   - mangle PREROUTING: every other UDP except DHCP (67/68) →
//     CatchAllUDP by TPROXY, which keeps the original destination in the
//     packet so IP_ORIGDSTADDR reports it (REDIRECT would rewrite it).
//
// Broadcast and multicast destinations are not diverted (DHCP,
// mDNS, SSDP) stay as they are in the capture. Disabled ports get no rule.
func RedirectRules(bridge string, addr netip.Addr, ports Ports) [][]string {
	return redirectRules(bridge, addr, ports, ruleComment)
}

// ownedComment tags the rules this process installs with itself as owner.
func ownedComment() string { return ruleComment + ":" + owner.Self().String() }

// redirectRules is RedirectRules with every rule tagged by comment.
func redirectRules(bridge string, addr netip.Addr, ports Ports, comment string) [][]string {
	var rules [][]string
	nat := func(proto string, dport int, to int) {
		if to == Disabled {
			return
		}
		r := []string{"-t", "nat", "-A", "PREROUTING", "-i", bridge, "-p", proto}
		if dport != 0 {
			r = append(r, "--dport", strconv.Itoa(dport))
		}
		r = append(r, "-m", "addrtype", "!", "--dst-type", "BROADCAST,MULTICAST",
			"-m", "comment", "--comment", comment,
			"-j", "REDIRECT", "--to-ports", strconv.Itoa(to))
		rules = append(rules, r)
	}
	nat("udp", 53, ports.DNS)
	nat("tcp", 53, ports.DNS)
	nat("udp", 123, ports.NTP)
	nat("tcp", 80, ports.HTTP)
	nat("tcp", 443, ports.HTTPS)
	nat("udp", 443, ports.QUIC)
	nat("tcp", 0, ports.CatchAllTCP)

	if ports.CatchAllUDP != Disabled {
		// UDP the nat rules handle, and DHCP, is left alone; a disabled
		// service's port falls through to the catch-all.
		skip := []string{"67", "68"}
		for _, s := range []struct{ dport, to int }{{53, ports.DNS}, {123, ports.NTP}, {443, ports.QUIC}} {
			if s.to != Disabled {
				skip = append(skip, strconv.Itoa(s.dport))
			}
		}
		rules = append(rules,
			[]string{"-t", "mangle", "-A", "PREROUTING", "-i", bridge, "-p", "udp",
				"-m", "multiport", "--dports", strings.Join(skip, ","),
				"-m", "comment", "--comment", comment, "-j", "RETURN"},
			[]string{"-t", "mangle", "-A", "PREROUTING", "-i", bridge, "-p", "udp",
				"-m", "addrtype", "!", "--dst-type", "BROADCAST,MULTICAST",
				"-m", "comment", "--comment", comment,
				"-j", "TPROXY", "--on-ip", addr.String(), "--on-port", strconv.Itoa(ports.CatchAllUDP),
				"--tproxy-mark", TProxyMark})
	}
	return rules
}

// tproxyRoutes are the ip(8) commands that deliver TPROXY-marked packets
// locally: a policy rule and the local route it looks up.
func tproxyRoutes() [][]string {
	return [][]string{
		{"rule", "add", "fwmark", TProxyMark, "lookup", TProxyTable},
		{"route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", TProxyTable},
	}
}

// tproxyRemoval undoes tproxyRoutes.
func tproxyRemoval() [][]string {
	return [][]string{
		{"route", "del", "local", "0.0.0.0/0", "dev", "lo", "table", TProxyTable},
		{"rule", "del", "fwmark", TProxyMark, "lookup", TProxyTable},
	}
}

// tproxyRulePresent reports whether the namespace has the policy rule.
func tproxyRulePresent(ctx context.Context, netns string) bool {
	out, err := output(ctx, netns, []string{"ip", "rule", "show"})
	return err == nil && strings.Contains(out, "lookup "+TProxyTable)
}

// tproxyInUse reports whether any TPROXY rule remains in the namespace.
func tproxyInUse(ctx context.Context, netns string) bool {
	out, err := output(ctx, netns, []string{"iptables", "-w", "-t", "mangle", "-S", "PREROUTING"})
	return err != nil || strings.Contains(out, "TPROXY")
}

// lockNamespace serialises changes to a namespace's shared policy routing
// across processes (two runs starting or ending together).
func lockNamespace(netns string) (func(), error) {
	name := strings.NewReplacer("/", "_").Replace(netns)
	if name == "" {
		name = "host"
	}
	f, err := os.OpenFile("/run/lock/firstboot-tproxy-"+name+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("simnet: lock for %s: %w", netns, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("simnet: lock for %s: %w", netns, err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// InstallRedirect applies RedirectRules (and the policy route TPROXY needs)
// inside network namespace netns (`ip netns exec`; "" means the current
// namespace). On error it removes what it added. Undo with RemoveRedirect
// with the same arguments.
func InstallRedirect(ctx context.Context, netns, bridge string, addr netip.Addr, ports Ports) error {
	if !addr.Is4() {
		return fmt.Errorf("simnet: redirect to %s: only IPv4 is supported (the lab disables IPv6)", addr)
	}
	rules := redirectRules(bridge, addr, ports, ownedComment())
	var undo [][]string // commands, already prefixed with the binary
	fail := func(err error) error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := run(ctx, netns, undo[i]); uerr != nil {
				errs = append(errs, uerr)
			}
		}
		return errors.Join(append([]error{fmt.Errorf("simnet: install redirect: %w", err)}, errs...)...)
	}
	for _, r := range rules {
		if err := run(ctx, netns, append([]string{"iptables", "-w"}, r...)); err != nil {
			return fail(err)
		}
		undo = append(undo, append([]string{"iptables", "-w"}, deleteRule(r)...))
	}
	if ports.CatchAllUDP != Disabled {
		// The policy route is shared by every lab network in the namespace
		// (parallel runs): add it once, under a lock.
		unlock, err := lockNamespace(netns)
		if err != nil {
			return fail(err)
		}
		defer unlock()
		if !tproxyRulePresent(ctx, netns) {
			if err := run(ctx, netns, append([]string{"ip"}, tproxyRoutes()[0]...)); err != nil {
				return fail(err)
			}
		}
		if err := run(ctx, netns, append([]string{"ip"}, tproxyRoutes()[1]...)); err != nil {
			return fail(err)
		}
	}
	return nil
}

// RemoveRedirect deletes what InstallRedirect added. Every deletion is tried;
// failures are joined.
func RemoveRedirect(ctx context.Context, netns, bridge string, addr netip.Addr, ports Ports) error {
	var errs []error
	rules := redirectRules(bridge, addr, ports, ownedComment())
	for i := len(rules) - 1; i >= 0; i-- {
		if err := run(ctx, netns, append([]string{"iptables", "-w"}, deleteRule(rules[i])...)); err != nil {
			errs = append(errs, err)
		}
	}
	if ports.CatchAllUDP != Disabled {
		errs = append(errs, removeUnusedTProxyRoute(ctx, netns))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("simnet: remove redirect: %w", err)
	}
	return nil
}

// removeUnusedTProxyRoute removes the shared policy route when no TPROXY
// rule (of any lab network) still needs it.
func removeUnusedTProxyRoute(ctx context.Context, netns string) error {
	unlock, err := lockNamespace(netns)
	if err != nil {
		return err
	}
	defer unlock()
	// Another network's removal may have taken it already (the route and
	// rule come and go together, under this lock).
	if tproxyInUse(ctx, netns) || !tproxyRulePresent(ctx, netns) {
		return nil
	}
	var errs []error
	for _, d := range tproxyRemoval() {
		if err := run(ctx, netns, append([]string{"ip"}, d...)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteRule turns an -A rule into the matching -D rule.
func deleteRule(r []string) []string {
	d := append([]string(nil), r...)
	for i, a := range d {
		if a == "-A" {
			d[i] = "-D"
			break
		}
	}
	return d
}

func output(ctx context.Context, netns string, args []string) (string, error) {
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
	return string(out), err
}

func run(ctx context.Context, netns string, args []string) error {
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// OriginalDst returns where a TCP connection redirected to a local
// listener (iptables REDIRECT) was going, as host:port; the listener's own
// address when it was not redirected.
func OriginalDst(c net.Conn) string { return originalDst(c) }
