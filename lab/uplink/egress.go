package uplink

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/firstboot/firstboot/lab/netns"
)

// ErrDown marks a missing or broken uplink (no default route, interface or
// bridge down, no carrier): nothing of the run starts on it.
var ErrDown = errors.New("uplink down")

// FindEgress says where routed traffic leaves the namespace firstboot runs in:
// the interface named, or the default route's. It fails with ErrDown, saying
// what to fix, when that uplink is not usable now.
func FindEgress(iface string) (Egress, error) {
	ls, err := links("")
	if err != nil {
		return Egress{}, err
	}
	rs, err := routes("")
	if err != nil {
		return Egress{}, err
	}
	as, err := addrs("")
	if err != nil {
		return Egress{}, err
	}
	return findEgress(iface, ls, rs, as)
}

func findEgress(iface string, ls []link, rs []route, as []addr) (Egress, error) {
	var e Egress
	var def []route
	for _, r := range rs {
		if r.Dst.Bits() == 0 {
			def = append(def, r)
		}
	}
	slices.SortStableFunc(def, func(a, b route) int { return int(a.Priority) - int(b.Priority) })
	var l link
	if iface == "" {
		if len(def) == 0 {
			return e, fmt.Errorf("%w: the namespace firstboot runs in (netns %s) has no IPv4 default route: connect this host to a network, or name the interface to leave by with --egress", ErrDown, selfID())
		}
		r := def[0]
		if r.Multi {
			return e, fmt.Errorf("the default route is a multipath route: name the interface to leave by with --egress")
		}
		var ok bool
		if l, ok = byIndex(ls, r.OIF); !ok {
			return e, fmt.Errorf("%w: the default route's interface (index %d) is gone", ErrDown, r.OIF)
		}
		e.Gateway, e.Addr = r.Gateway, r.PrefSrc
	} else {
		var ok bool
		if l, ok = byName(ls, iface); !ok {
			return e, fmt.Errorf("%w: egress interface %q not found in the namespace firstboot runs in (netns %s): see `ip link`", ErrDown, iface, selfID())
		}
		for _, r := range def {
			if r.OIF == l.Index {
				e.Gateway, e.Addr = r.Gateway, r.PrefSrc
				break
			}
		}
	}
	e.Interface = l.Name
	if !l.up() {
		return e, fmt.Errorf("%w: egress interface %s is down: bring it up (ip link set %s up)", ErrDown, l.Name, l.Name)
	}
	if !l.carrier() {
		return e, fmt.Errorf("%w: egress interface %s has no carrier (cable unplugged, Wi-Fi not associated, or its peer is down)", ErrDown, l.Name)
	}
	if l.Kind == "veth" && strings.HasPrefix(l.Name, vethPrefix) {
		return e, fmt.Errorf("egress interface %s is one of firstboot's own uplink veths: name the real uplink with --egress", l.Name)
	}
	if !e.Addr.IsValid() {
		for _, a := range as {
			if a.Index == l.Index && a.Scope == 0 {
				e.Addr = a.Prefix.Addr()
				break
			}
		}
	}
	if !e.Addr.IsValid() {
		return e, fmt.Errorf("%w: egress interface %s has no IPv4 address to NAT to: wait for its DHCP, or name another with --egress", ErrDown, l.Name)
	}
	return e, nil
}

// UsedPrefixes lists the IPv4 prefixes the namespace firstboot runs in
// already reaches (routes other than the default, and its own addresses): a
// routed lab subnet must overlap none (lab.NetworkSpec.Avoid).
func UsedPrefixes() ([]netip.Prefix, error) {
	rs, err := routes("")
	if err != nil {
		return nil, err
	}
	as, err := addrs("")
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst.Bits() > 0 {
			out = append(out, r.Dst.Masked())
		}
	}
	for _, a := range as {
		if !a.Prefix.Addr().IsLoopback() {
			out = append(out, a.Prefix.Masked())
		}
	}
	return out, nil
}

// selfID names firstboot's namespace in messages (its nsfs inode).
func selfID() string {
	id, err := netns.ID("")
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("net:[%d]", id)
}
