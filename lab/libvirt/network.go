package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/internal/fsutil"
	"github.com/firstboot/firstboot/internal/owner"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/netns"
)

// Network is a started libvirt network; it implements lab.Network.
type Network struct {
	lab    *Lab
	net    golibvirt.Network
	name   string
	bridge string
	addr   netip.Addr
	router netip.Addr
	subnet netip.Prefix
	mode   lab.NetworkMode
	// hostBridge is the host bridge a bridged network's taps join directly
	// (libvirtd runs where that bridge is); empty for a lab-side bridge.
	hostBridge string

	closeOnce sync.Once
	closeErr  error
}

var _ lab.Network = (*Network)(nil)

func (n *Network) Name() string          { return n.name }
func (n *Network) Bridge() string        { return n.bridge }
func (n *Network) Addr() netip.Addr      { return n.addr }
func (n *Network) Subnet() netip.Prefix  { return n.subnet }
func (n *Network) Mode() lab.NetworkMode { return n.mode }

// Router is the guests' default gateway: the bridge address in simulated
// mode, the subnet's second address (lab/uplink's end of the veth) in routed
// mode; invalid in bridged mode (the upstream DHCP names it).
func (n *Network) Router() netip.Addr { return n.router }

// HostBridge is the host bridge the machines' taps are ports of, when
// libvirtd runs in the namespace that bridge is in. Empty for a bridged
// network whose Bridge is a lab-side bridge that lab/uplink links to the
// host bridge, and for the other modes.
func (n *Network) HostBridge() string { return n.hostBridge }

// Close destroys and undefines the network (idempotent).
func (n *Network) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		ctx, cancel := teardownContext(ctx)
		defer cancel()
		n.closeErr = n.lab.removeNetwork(ctx, n.net)
		n.lab.mu.Lock()
		delete(n.lab.networks, n.name)
		n.lab.mu.Unlock()
	})
	return n.closeErr
}

func withPrefix(name string) string {
	if strings.HasPrefix(name, Prefix) {
		return name
	}
	return Prefix + name
}

// NetworkXML builds the libvirt network definition for spec (with a set
// subnet for simulated and routed modes).
//
// Simulated: no <forward> (isolated), libvirt's DNS off, DHCP handing out the
// bridge address as router and DNS server, each port isolated so machines do
// not see each other's broadcasts. Routed: the same, but the router handed out
// is the subnet's second address, which lab/uplink puts on the far end of a
// veth joined to the bridge; the lab namespace itself forwards nothing.
// Bridged: the machines' taps join the existing host bridge spec.Bridge, as
// isolated ports (they reach the uplink, not each other).
func NetworkXML(spec lab.NetworkSpec) (string, error) {
	n, err := networkDef(spec)
	if err != nil {
		return "", err
	}
	return n.Marshal()
}

// networkDef is NetworkXML before marshalling, for callers that add to it.
func networkDef(spec lab.NetworkSpec) (*libvirtxml.Network, error) {
	if spec.Name == "" {
		return nil, errors.New("network: name is required")
	}
	name := withPrefix(spec.Name)
	switch spec.Mode {
	case lab.Bridged:
		if spec.Bridge == "" {
			return nil, fmt.Errorf("network %s: bridged mode needs a host bridge", name)
		}
		return &libvirtxml.Network{
			Name:        name,
			Forward:     &libvirtxml.NetworkForward{Mode: "bridge"},
			Bridge:      &libvirtxml.NetworkBridge{Name: spec.Bridge},
			PortOptions: &libvirtxml.NetworkPortOptions{Isolated: "yes"},
		}, nil
	case lab.Simulated, lab.Routed, "":
	default:
		return nil, fmt.Errorf("network %s: mode %q: want simulated, routed or bridged", name, spec.Mode)
	}
	gw, lo, hi, err := addressPlan(spec.Subnet)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	router := gw
	if spec.Mode == lab.Routed {
		router = routerAddr(spec.Subnet)
	}
	n := libvirtxml.Network{
		Name:        name,
		Bridge:      &libvirtxml.NetworkBridge{STP: "off", Delay: "0"},
		DNS:         &libvirtxml.NetworkDNS{Enable: "no"},
		PortOptions: &libvirtxml.NetworkPortOptions{Isolated: "yes"},
		IPs: []libvirtxml.NetworkIP{{
			Address: gw.String(),
			Prefix:  uint(spec.Subnet.Bits()),
			DHCP:    &libvirtxml.NetworkDHCP{Ranges: []libvirtxml.NetworkDHCPRange{{Start: lo.String(), End: hi.String()}}},
		}},
		DnsmasqOptions: &libvirtxml.NetworkDnsmasqOptions{Option: []libvirtxml.NetworkDnsmasqOption{
			{Value: "dhcp-option=option:router," + router.String()},
			{Value: "dhcp-option=option:dns-server," + gw.String()},
			// Without it dnsmasq pings each address before offering it (3 s).
			{Value: "no-ping"},
		}},
	}
	return &n, nil
}

// labBridgeDef defines a plain bridge in the lab namespace: no address, no
// DHCP, no DNS, ports isolated from each other. Bridged mode with the lab's
// own libvirtd uses it: lab/uplink joins it to the host bridge with a veth,
// so the machines' packets reach the real network at layer 2 and nothing of
// the lab's own speaks on it.
func labBridgeDef(name string) *libvirtxml.Network {
	return &libvirtxml.Network{
		Name:        name,
		Bridge:      &libvirtxml.NetworkBridge{STP: "off", Delay: "0"},
		DNS:         &libvirtxml.NetworkDNS{Enable: "no"},
		PortOptions: &libvirtxml.NetworkPortOptions{Isolated: "yes"},
	}
}

// routerAddr is a routed network's gateway: the subnet's second address.
func routerAddr(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next().Next() }

// addressPlan gives the gateway (first host) and the DHCP range (.100–.199
// of the first /24) of an IPv4 subnet between /16 and /24.
func addressPlan(p netip.Prefix) (gw, lo, hi netip.Addr, err error) {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() < 16 || p.Bits() > 24 {
		return gw, lo, hi, fmt.Errorf("subnet %v: want an IPv4 prefix between /16 and /24", p)
	}
	p = p.Masked()
	b := p.Addr().As4()
	gw = netip.AddrFrom4([4]byte{b[0], b[1], b[2], 1})
	lo = netip.AddrFrom4([4]byte{b[0], b[1], b[2], 100})
	hi = netip.AddrFrom4([4]byte{b[0], b[1], b[2], 199})
	return gw, lo, hi, nil
}

// usedSubnets lists the IPv4 subnets of every network libvirtd knows.
func (l *Lab) usedSubnets(ctx context.Context) ([]netip.Prefix, error) {
	nets, _, err := call2(ctx, "list networks", func() ([]golibvirt.Network, uint32, error) {
		return l.conn.ConnectListAllNetworks(1, 0)
	})
	if err != nil {
		return nil, err
	}
	var used []netip.Prefix
	for _, n := range nets {
		x, err := call(ctx, "network XML", func() (string, error) { return l.conn.NetworkGetXMLDesc(n, 0) })
		if err != nil {
			continue // removed meanwhile
		}
		var def libvirtxml.Network
		if err := def.Unmarshal(x); err != nil {
			continue
		}
		for _, ip := range def.IPs {
			a, err := netip.ParseAddr(ip.Address)
			if err != nil {
				continue
			}
			bits := int(ip.Prefix)
			if ip.Netmask != "" {
				if m, err := netip.ParseAddr(ip.Netmask); err == nil {
					bits = maskBits(m)
				}
			}
			if p, err := a.Prefix(bits); err == nil {
				used = append(used, p)
			}
		}
	}
	return used, nil
}

func maskBits(m netip.Addr) int {
	n := 0
	for _, b := range m.AsSlice() {
		for ; b&0x80 != 0; b <<= 1 {
			n++
		}
	}
	return n
}

// CreateNetwork defines and starts a network. A zero Subnet picks a free
// 10.77.N.0/24 (clear of spec.Avoid); when another process takes the same one
// at the same moment, starting fails and the next free one is tried.
//
// A bridged network's taps join spec.Bridge directly when that bridge is in
// libvirtd's namespace (the host's libvirtd); when it is in the namespace
// firstboot runs in instead (the lab's own libvirtd), the network is a plain
// lab-side bridge and HostBridge is empty: lab/uplink links the two.
func (l *Lab) CreateNetwork(ctx context.Context, spec lab.NetworkSpec) (*Network, error) {
	if spec.Mode == "" {
		spec.Mode = lab.Simulated
	}
	if spec.Mode == lab.Bridged {
		direct, err := l.bridgePlacement(ctx, spec)
		if err != nil {
			return nil, err
		}
		if direct {
			def, err := networkDef(spec)
			if err != nil {
				return nil, err
			}
			return l.startNetwork(ctx, spec, def)
		}
		// libvirt names the bridge (virbrN) as it starts the network, and
		// two starting at once can pick the same name: one at a time.
		unlock, err := lockFile(ctx, subnetLock)
		if err != nil {
			return nil, err
		}
		defer unlock()
		return l.startNetwork(ctx, spec, labBridgeDef(withPrefix(spec.Name)))
	}
	if spec.Subnet.IsValid() {
		return l.startAddressed(ctx, spec)
	}
	// Picking a subnet and starting the network is one step for every
	// firstboot process on the host: libvirt does not reliably refuse a
	// second bridge with the same subnet when two start at once.
	unlock, err := lockFile(ctx, subnetLock)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var lastErr error
	for attempt := 0; attempt < 8; attempt++ {
		used, err := l.usedSubnets(ctx)
		if err != nil {
			return nil, err
		}
		free, ok := pickSubnet(append(used, spec.Avoid...), attempt)
		if !ok {
			return nil, errors.New("network: no free 10.77.N.0/24 left; close old networks (firstboot lab down)")
		}
		spec.Subnet = free
		n, err := l.startAddressed(ctx, spec)
		if err == nil {
			return n, nil
		}
		if !strings.Contains(err.Error(), "in use") {
			return nil, err
		}
		lastErr = err
	}
	return nil, lastErr
}

// pickSubnet returns the skip-th free 10.77.N.0/24 (N from 1).
func pickSubnet(used []netip.Prefix, skip int) (netip.Prefix, bool) {
	for n := 1; n < 255; n++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(n), 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			if skip == 0 {
				return p, true
			}
			skip--
		}
	}
	return netip.Prefix{}, false
}

// ValidateBridged checks a bridged spec without starting anything: the host
// bridge must exist, as a bridge, in libvirtd's namespace or in the namespace
// firstboot runs in.
func (l *Lab) ValidateBridged(ctx context.Context, spec lab.NetworkSpec) error {
	_, err := l.bridgePlacement(ctx, spec)
	return err
}

// bridgePlacement finds spec.Bridge: direct is true when it is in libvirtd's
// namespace (taps join it), false when only the namespace firstboot runs in
// has it (a lab-side bridge and a veth reach it).
func (l *Lab) bridgePlacement(ctx context.Context, spec lab.NetworkSpec) (direct bool, err error) {
	if _, err := NetworkXML(spec); err != nil {
		return false, err
	}
	if isBridge(ctx, l.netns, spec.Bridge) {
		return true, nil
	}
	if same, err := netns.Same(l.netns, ""); err == nil && !same && isBridge(ctx, "", spec.Bridge) {
		return false, nil
	}
	return false, fmt.Errorf("network %s: host bridge %q not found (or not a bridge) in the namespace firstboot runs in: create it on the wired uplink first (README, \"Bridged mode\"), or name another with --bridge", withPrefix(spec.Name), spec.Bridge)
}

// isBridge reports whether the namespace ns ("" for this process's) has a
// bridge called name.
func isBridge(ctx context.Context, ns, name string) bool {
	links, err := netns.Links(ctx, ns)
	if err != nil {
		return false
	}
	for _, lk := range links {
		if lk.Name == name {
			return lk.Kind == "bridge"
		}
	}
	return false
}

// startAddressed starts a simulated or routed network on spec.Subnet.
func (l *Lab) startAddressed(ctx context.Context, spec lab.NetworkSpec) (*Network, error) {
	def, err := networkDef(spec)
	if err != nil {
		return nil, err
	}
	return l.startNetwork(ctx, spec, def)
}

func (l *Lab) startNetwork(ctx context.Context, spec lab.NetworkSpec, def *libvirtxml.Network) (_ *Network, err error) {
	// The owner, so the next firstboot removes the network if this process
	// is killed before it does.
	def.Metadata = &libvirtxml.NetworkMetadata{XML: metadataXML(owner.Self(), nil)}
	x, err := def.Marshal()
	if err != nil {
		return nil, err
	}
	name := withPrefix(spec.Name)
	ln, err := call(ctx, "define network "+name, func() (golibvirt.Network, error) { return l.conn.NetworkDefineXML(x) })
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	l.own(name)
	n := &Network{lab: l, net: ln, name: name, mode: spec.Mode}
	l.mu.Lock()
	if l.networks == nil {
		l.networks = map[string]*Network{}
	}
	l.networks[name] = n
	l.mu.Unlock()
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close(ctx))
		}
	}()
	if err := call0(ctx, "start network "+name, func() error { return l.conn.NetworkCreate(ln) }); err != nil {
		return nil, fmt.Errorf("network %s (%v): %w", name, spec.Subnet, err)
	}
	live, err := call(ctx, "network XML", func() (string, error) { return l.conn.NetworkGetXMLDesc(ln, 0) })
	if err != nil {
		return nil, err
	}
	var liveDef libvirtxml.Network
	if err := liveDef.Unmarshal(live); err != nil {
		return nil, fmt.Errorf("network %s: live XML: %w", name, err)
	}
	if liveDef.Bridge != nil {
		n.bridge = liveDef.Bridge.Name
	}
	switch {
	case spec.Mode == lab.Bridged && liveDef.Forward != nil:
		n.hostBridge = spec.Bridge
	case spec.Mode != lab.Bridged:
		n.subnet = spec.Subnet.Masked()
		n.addr, _, _, _ = addressPlan(spec.Subnet)
		n.router = n.addr
		if spec.Mode == lab.Routed {
			n.router = routerAddr(spec.Subnet)
		}
	}
	l.log.Info("lab: network up", "name", name, "mode", spec.Mode, "bridge", n.bridge, "subnet", n.subnet)
	return n, nil
}

// subnetLock serialises subnet (and bridge name) choice across firstboot
// processes.
const subnetLock = "/run/lock/firstboot-subnet.lock"

// lockFile takes an exclusive flock on path, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) { return fsutil.LockFile(ctx, path) }
