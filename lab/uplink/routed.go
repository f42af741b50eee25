package uplink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/netns"
)

// RoutedConfig says what a routed link joins.
type RoutedConfig struct {
	// ID names the link (the lab network's name): the veth and chain names
	// derive from it.
	ID string
	// LabNetns and LabBridge are the lab namespace and the run's bridge in it.
	LabNetns, LabBridge string
	// Subnet is the lab network's; Router is the address firstboot's end of
	// the veth takes, the router the lab network's DHCP hands out.
	Subnet netip.Prefix
	Router netip.Addr
	// Egress names the interface to NAT out of; empty means the default
	// route's.
	Egress string
	Logger *slog.Logger
}

// Routed links the lab bridge to the namespace firstboot runs in and NATs the
// guests' subnet out of the egress interface. It fails with ErrDown before
// changing anything when there is no usable uplink.
//
// In firstboot's namespace it adds: the veth's end (the router address, no
// IPv6, no multicast, so nothing of the host's chatter reaches the guests'
// captures), IPv4 forwarding on that end and on the egress interface (not the
// global switch), a filter chain that lets the guests out of the egress
// interface and answers back in and drops everything else they send (other
// interfaces, the host itself), and a nat chain that masquerades them.
func Routed(ctx context.Context, cfg RoutedConfig) (_ *Link, err error) {
	if cfg.ID == "" || cfg.LabBridge == "" || !cfg.Subnet.IsValid() || !cfg.Subnet.Contains(cfg.Router) {
		return nil, fmt.Errorf("uplink: routed link needs an id, a lab bridge, a subnet and a router in it (got %+v)", cfg)
	}
	if same, err := netns.Same(cfg.LabNetns, ""); err != nil {
		return nil, err
	} else if same {
		// The lab bridge would then carry the subnet beside the veth, in one
		// namespace whose libvirt rules reject forwarding through it.
		return nil, errors.New("routed mode joins the lab namespace to the one firstboot runs in, and here they are one (the host's libvirtd?): use firstboot's own libvirtd (no --libvirt-uri), or bridged mode")
	}
	egress, err := FindEgress(cfg.Egress)
	if err != nil {
		return nil, fmt.Errorf("routed mode: %w", err)
	}
	l, release, err := openLink(ctx, lab.Routed, cfg.ID, cfg.LabNetns, cfg.LabBridge, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer release()
	defer func() {
		if err != nil {
			err = errors.Join(err, l.undoAll(context.WithoutCancel(ctx)))
		}
	}()
	l.Subnet, l.Router, l.Egress, l.egressName = cfg.Subnet.Masked(), cfg.Router, egress, cfg.Egress
	host, _, tag := vethNames(cfg.ID)
	for _, argv := range [][]string{
		{"ip", "link", "set", host, "multicast", "off"},
		{"ip", "addr", "add", netip.PrefixFrom(cfg.Router, cfg.Subnet.Bits()).String(), "dev", host},
		{"ip", "link", "set", host, "up"},
	} {
		if err := run(ctx, argv...); err != nil {
			return nil, err
		}
	}
	if err := writeConf("ipv4", host, "forwarding", "1"); err != nil {
		return nil, err
	}
	chain := chainName(tag)
	l.onClose(func(ctx context.Context) error {
		return errors.Join(removeChain(ctx, "filter", chain), removeChain(ctx, "nat", chain))
	})
	for _, args := range [][]string{
		{"-N", chain},
		{"-A", chain, "-i", host, "-o", egress.Interface, "-j", "ACCEPT"},
		{"-A", chain, "-i", egress.Interface, "-o", host, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"-A", chain, "-j", "DROP"},
		{"-I", "FORWARD", "-i", host, "-j", chain},
		{"-I", "FORWARD", "-o", host, "-j", chain},
		{"-I", "INPUT", "-i", host, "-j", chain},
		{"-t", "nat", "-N", chain},
		{"-t", "nat", "-A", chain, "-o", egress.Interface, "-j", "MASQUERADE"},
		{"-t", "nat", "-I", "POSTROUTING", "-s", l.Subnet.String(), "-j", chain},
	} {
		if _, err := iptables(ctx, args...); err != nil {
			return nil, fmt.Errorf("routed mode: %w (is iptables with the nat table available? see firstboot doctor)", err)
		}
	}
	l.onClose(func(context.Context) error { return releaseForwarding(egress.Interface, host) })
	if err := acquireForwarding(egress.Interface, host); err != nil {
		return nil, err
	}
	l.log.Info("uplink: routed", "veth", host, "router", cfg.Router, "subnet", l.Subnet,
		"egress", egress.Interface, "gateway", egress.Gateway, "egress_addr", egress.Addr)
	return l, nil
}

// openLink starts a link: it takes the lock (release gives it back), removes
// what dead runs left, and creates the veth into the lab namespace, with no
// IPv6 on firstboot's end. The caller finishes the link holding the lock and
// calls undoAll when that fails.
func openLink(ctx context.Context, mode lab.NetworkMode, id, labNetns, labBridge string, log *slog.Logger) (_ *Link, release func(), err error) {
	self, err := netns.ID("")
	if err != nil {
		return nil, nil, err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return nil, nil, err
	}
	log = logger(log)
	if err := removeStale(ctx); err != nil {
		log.Warn("uplink: removing what earlier runs left", "err", err)
	}
	host, labSide, _ := vethNames(id)
	l := &Link{Mode: mode, LabNetns: labNetns, LabBridge: labBridge, HostNetns: self, LabVeth: labSide, HostVeth: host, log: log}
	if err = l.addVeth(ctx, id); err == nil {
		err = noIPv6(host)
	}
	if err != nil {
		err = errors.Join(err, l.undoAll(context.WithoutCancel(ctx)))
		unlock()
		return nil, nil, err
	}
	return l, unlock, nil
}

// addVeth creates the veth pair, firstboot's end here (its ifalias naming
// this process), the other end in the lab namespace as an up port of the lab
// bridge, with no IPv6 of its own.
func (l *Link) addVeth(ctx context.Context, id string) error {
	if err := run(ctx, "ip", "link", "add", l.HostVeth, "type", "veth", "peer", "name", l.LabVeth, "netns", netns.Path(l.LabNetns)); err != nil {
		return fmt.Errorf("uplink: creating the veth into the lab namespace: %w", err)
	}
	// Deleting one end deletes the pair, wherever the other end is.
	l.onClose(func(ctx context.Context) error { return deleteLink(ctx, l.HostVeth) })
	alias := fmt.Sprintf("%s%d run %s", aliasPrefix, os.Getpid(), id)
	if len(alias) > 128 {
		alias = alias[:128]
	}
	if err := run(ctx, "ip", "link", "set", l.HostVeth, "alias", alias); err != nil {
		return err
	}
	for _, argv := range [][]string{
		{"sysctl", "-q", "-w", "net.ipv6.conf." + l.LabVeth + ".disable_ipv6=1"},
		{"ip", "link", "set", l.LabVeth, "master", l.LabBridge},
		{"ip", "link", "set", l.LabVeth, "up"},
	} {
		if err := runIn(ctx, l.LabNetns, argv...); err != nil {
			// A kernel without IPv6 has no such sysctl: nothing to switch off.
			if argv[0] == "sysctl" && strings.Contains(err.Error(), "No such file") {
				continue
			}
			return fmt.Errorf("uplink: lab end of the veth: %w", err)
		}
	}
	return nil
}

// noIPv6 keeps an interface of firstboot's namespace from speaking IPv6 (no
// link-local address, router solicitation or MLD report into the guests'
// bridge).
func noIPv6(iface string) error {
	err := writeConf("ipv6", iface, "disable_ipv6", "1")
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no IPv6 in this kernel
	}
	return err
}

// deleteLink deletes an interface of firstboot's namespace; a missing one is
// not an error.
func deleteLink(ctx context.Context, name string) error {
	ls, err := links("")
	if err != nil {
		return err
	}
	if _, ok := byName(ls, name); !ok {
		return nil
	}
	return run(ctx, "ip", "link", "del", name)
}

// undoAll runs the undo steps when set-up fails (the lock is held).
func (l *Link) undoAll(ctx context.Context) error {
	var errs []error
	for i := len(l.undo) - 1; i >= 0; i-- {
		errs = append(errs, l.undo[i](ctx))
	}
	l.undo = nil
	return errors.Join(errs...)
}

// chainPrefix names firstboot's iptables chains: "FBU-" and the veth's tag.
const chainPrefix = "FBU-"

func chainName(tag string) string { return chainPrefix + tag }

// hostVethOfChain is the host veth a chain belongs to.
func hostVethOfChain(chain string) string {
	return vethPrefix + strings.TrimPrefix(chain, chainPrefix) + "h"
}

// ourChains lists firstboot's chains in an iptables table.
func ourChains(ctx context.Context, table string) ([]string, error) {
	out, err := iptables(ctx, "-t", table, "-S")
	if err != nil {
		return nil, err
	}
	var chains []string
	for _, line := range strings.Split(string(out), "\n") {
		if c, ok := strings.CutPrefix(line, "-N "+chainPrefix); ok {
			chains = append(chains, chainPrefix+strings.TrimSpace(c))
		}
	}
	return chains, nil
}

// removeChain deletes every rule that jumps to chain, then the chain. A
// missing chain is not an error.
func removeChain(ctx context.Context, table, chain string) error {
	out, err := iptables(ctx, "-t", table, "-S")
	if err != nil {
		return err
	}
	var errs []error
	exists := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "-N" && f[1] == chain {
			exists = true
		}
		// Our rules carry no quoted arguments, so fields split them exactly.
		if len(f) > 2 && f[0] == "-A" && f[1] != chain && f[len(f)-2] == "-j" && f[len(f)-1] == chain {
			f[0] = "-D"
			if _, err := iptables(ctx, append([]string{"-t", table}, f...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if exists {
		for _, op := range []string{"-F", "-X"} {
			if _, err := iptables(ctx, "-t", table, op, chain); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
