package uplink

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/firstboot/firstboot/lab/netns"
)

// The kernel's view of links, routes and addresses, read with rtnetlink dumps
// (no `ip` process per look: the watch asks every second). Each dump opens its
// own socket, inside the namespace asked for.

// link is one interface as RTM_GETLINK reports it.
type link struct {
	Index  int
	Name   string
	Flags  uint32 // IFF_*
	Master int    // ifindex of the bridge it is a port of; 0 when none
	Kind   string // "bridge", "veth", "tun", … ("" for plain devices)
	Alias  string // ifalias: firstboot writes its owner there
}

func (l link) up() bool      { return l.Flags&syscall.IFF_UP != 0 }
func (l link) carrier() bool { return l.Flags&iffLowerUp != 0 }

// iffLowerUp is IFF_LOWER_UP (the driver signals carrier), not in package syscall.
const iffLowerUp = 0x10000

// route is one IPv4 route of the main table.
type route struct {
	Dst      netip.Prefix
	Gateway  netip.Addr
	PrefSrc  netip.Addr
	OIF      int
	Priority uint32
	Multi    bool // a multipath route (RTA_MULTIPATH)
}

// addr is one IPv4 interface address.
type addr struct {
	Index  int
	Prefix netip.Prefix
	Scope  uint8
}

// netlink attribute types (linux/if_link.h, rtnetlink.h, if_addr.h).
const (
	iflaIfname   = 3
	iflaMaster   = 10
	iflaLinkinfo = 18
	iflaIfalias  = 20
	iflaInfoKind = 1

	rtaDst       = 1
	rtaOIF       = 4
	rtaGateway   = 5
	rtaPriority  = 6
	rtaPrefsrc   = 7
	rtaMultipath = 9
	rtaTable     = 15

	ifaAddress = 1
	ifaLocal   = 2

	rtTableMain = 254
	rtnUnicast  = 1
)

// dump runs one rtnetlink dump in ns ("" for this process's namespace).
func dump(ns string, typ, family int) ([]syscall.NetlinkMessage, error) {
	var raw []byte
	get := func() error {
		var err error
		raw, err = syscall.NetlinkRIB(typ, family)
		return err
	}
	var err error
	if ns == "" {
		err = get()
	} else {
		err = netns.Do(ns, get)
	}
	if err != nil {
		return nil, fmt.Errorf("rtnetlink dump in netns %q: %w", ns, err)
	}
	return syscall.ParseNetlinkMessage(raw)
}

// links lists the interfaces of ns.
func links(ns string) ([]link, error) {
	msgs, err := dump(ns, syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	var out []link
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		l := link{
			Index: int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))),
			Flags: binary.NativeEndian.Uint32(m.Data[8:12]),
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			continue
		}
		for _, a := range attrs {
			switch a.Attr.Type {
			case iflaIfname:
				l.Name = cString(a.Value)
			case iflaIfalias:
				l.Alias = cString(a.Value)
			case iflaMaster:
				if len(a.Value) >= 4 {
					l.Master = int(binary.NativeEndian.Uint32(a.Value))
				}
			case iflaLinkinfo:
				l.Kind = linkKind(a.Value)
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// linkKind reads IFLA_INFO_KIND from a nested IFLA_LINKINFO.
func linkKind(b []byte) string {
	for len(b) >= 4 {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) &^ syscall.NLA_F_NESTED
		if n < 4 || n > len(b) {
			return ""
		}
		if typ == iflaInfoKind {
			return cString(b[4:n])
		}
		step := (n + 3) &^ 3 // attributes are 4-byte aligned
		if step > len(b) {
			return ""
		}
		b = b[step:]
	}
	return ""
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// routes lists the IPv4 unicast routes of ns's main table.
func routes(ns string) ([]route, error) {
	msgs, err := dump(ns, syscall.RTM_GETROUTE, syscall.AF_INET)
	if err != nil {
		return nil, err
	}
	var out []route
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWROUTE || len(m.Data) < syscall.SizeofRtMsg {
			continue
		}
		dstLen, table, typ := int(m.Data[1]), uint32(m.Data[4]), m.Data[7]
		if typ != rtnUnicast {
			continue
		}
		r := route{}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			continue
		}
		dst := netip.IPv4Unspecified()
		for _, a := range attrs {
			switch a.Attr.Type {
			case rtaTable:
				if len(a.Value) >= 4 {
					table = binary.NativeEndian.Uint32(a.Value)
				}
			case rtaDst:
				dst, _ = netip.AddrFromSlice(a.Value)
			case rtaGateway:
				r.Gateway, _ = netip.AddrFromSlice(a.Value)
			case rtaPrefsrc:
				r.PrefSrc, _ = netip.AddrFromSlice(a.Value)
			case rtaOIF:
				if len(a.Value) >= 4 {
					r.OIF = int(binary.NativeEndian.Uint32(a.Value))
				}
			case rtaPriority:
				if len(a.Value) >= 4 {
					r.Priority = binary.NativeEndian.Uint32(a.Value)
				}
			case rtaMultipath:
				r.Multi = true
			}
		}
		if table != rtTableMain {
			continue
		}
		r.Dst = netip.PrefixFrom(dst.Unmap(), dstLen)
		out = append(out, r)
	}
	return out, nil
}

// addrs lists the IPv4 addresses of ns.
func addrs(ns string) ([]addr, error) {
	msgs, err := dump(ns, syscall.RTM_GETADDR, syscall.AF_INET)
	if err != nil {
		return nil, err
	}
	var out []addr
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWADDR || len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		bits, scope := int(m.Data[1]), m.Data[3]
		index := int(binary.NativeEndian.Uint32(m.Data[4:8]))
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			continue
		}
		var local, address netip.Addr
		for _, a := range attrs {
			switch a.Attr.Type {
			case ifaLocal:
				local, _ = netip.AddrFromSlice(a.Value)
			case ifaAddress:
				address, _ = netip.AddrFromSlice(a.Value)
			}
		}
		if local.IsValid() {
			address = local
		}
		if address.IsValid() {
			out = append(out, addr{Index: index, Prefix: netip.PrefixFrom(address.Unmap(), bits), Scope: scope})
		}
	}
	return out, nil
}

// byName finds a link by name.
func byName(ls []link, name string) (link, bool) {
	for _, l := range ls {
		if l.Name == name {
			return l, true
		}
	}
	return link{}, false
}

// byIndex finds a link by index.
func byIndex(ls []link, index int) (link, bool) {
	for _, l := range ls {
		if l.Index == index {
			return l, true
		}
	}
	return link{}, false
}
