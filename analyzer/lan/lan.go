// Package lan reads the link-local messages by which a machine joins a
// network and claims its addresses: ARP (probes, announcements, gratuitous
// ARP; RFC 826, RFC 5227), ICMPv6 router and neighbour discovery (RFC 4861,
// duplicate address detection of RFC 4862) and multicast group membership
// reports (IGMPv1–3, RFC 3376; MLDv1–2, RFC 3810).
//
// It reads untrusted capture bytes: it never panics and never reads past
// what it is given.
package lan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// ErrShort means the message ends before a field it announces.
var ErrShort = errors.New("lan: message truncated")

// ErrUnsupported means the message is of a kind this package does not read
// (ARP for another hardware or protocol type, say).
var ErrUnsupported = errors.New("lan: unsupported message")

// ARP is an ARP message for IPv4 over Ethernet.
type ARP struct {
	Op                   uint16 // 1 request, 2 reply
	SenderMAC, TargetMAC net.HardwareAddr
	SenderIP, TargetIP   netip.Addr
}

// ParseARP reads an ARP message (the payload of an EtherType 0x0806 frame).
func ParseARP(b []byte) (*ARP, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("arp header: %w", ErrShort)
	}
	htype, ptype := binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
	hlen, plen := b[4], b[5]
	if htype != 1 || ptype != 0x0800 || hlen != 6 || plen != 4 {
		return nil, fmt.Errorf("%w: arp hardware %d/%d, protocol %#04x/%d", ErrUnsupported, htype, hlen, ptype, plen)
	}
	if len(b) < 28 {
		return nil, fmt.Errorf("arp addresses: %w", ErrShort)
	}
	return &ARP{Op: binary.BigEndian.Uint16(b[6:]),
		SenderMAC: net.HardwareAddr(b[8:14:14]), SenderIP: netip.AddrFrom4([4]byte(b[14:18])),
		TargetMAC: net.HardwareAddr(b[18:24:24]), TargetIP: netip.AddrFrom4([4]byte(b[24:28]))}, nil
}

// Kind names an ARP message after RFC 5227: "probe" (a request from
// 0.0.0.0 asking whether an address is taken), "announcement" (a request
// for the sender's own address), "gratuitous" (a reply about the sender's
// own address), or "request", "reply".
func (a *ARP) Kind() string {
	switch {
	case a.Op == 1 && a.SenderIP.IsUnspecified():
		return "probe"
	case a.Op == 1 && a.SenderIP == a.TargetIP:
		return "announcement"
	case a.Op == 2 && a.SenderIP == a.TargetIP:
		return "gratuitous"
	case a.Op == 1:
		return "request"
	case a.Op == 2:
		return "reply"
	}
	return fmt.Sprintf("op_%d", a.Op)
}

// Claimed returns the address the message claims or probes for, and
// whether there is one (probes, announcements and gratuitous ARP).
func (a *ARP) Claimed() (netip.Addr, bool) {
	switch a.Kind() {
	case "probe":
		return a.TargetIP, true
	case "announcement", "gratuitous":
		return a.SenderIP, true
	}
	return netip.Addr{}, false
}

// ICMPv6 message types read here.
const (
	TypeMLDQuery    = 130
	TypeMLDReport   = 131
	TypeMLDDone     = 132
	TypeRS          = 133
	TypeRA          = 134
	TypeNS          = 135
	TypeNA          = 136
	TypeMLDv2Report = 143
)

// Discovery reports whether an ICMPv6 type is one ParseICMPv6 reads.
func Discovery(typ uint8) bool {
	return typ >= TypeMLDReport && typ <= TypeNA || typ == TypeMLDv2Report
}

// ND is a neighbour discovery or multicast listener message.
type ND struct {
	Type uint8
	// Target is a neighbour solicitation's or advertisement's target address.
	Target netip.Addr
	// LinkAddr is the source (solicitations, RAs) or target (advertisements)
	// link-layer address option.
	LinkAddr net.HardwareAddr
	// Joined and Left are the groups an MLD report joins or leaves.
	Joined, Left []netip.Addr
}

// ParseICMPv6 reads an ICMPv6 message of type typ whose bytes after the
// type, code and checksum are b.
func ParseICMPv6(typ uint8, b []byte) (*ND, error) {
	m := &ND{Type: typ}
	switch typ {
	case TypeRS:
		return m, m.options(b, 4, 1)
	case TypeRA:
		return m, m.options(b, 12, 1)
	case TypeNS, TypeNA:
		if len(b) < 20 {
			return nil, fmt.Errorf("neighbour discovery target: %w", ErrShort)
		}
		m.Target = netip.AddrFrom16([16]byte(b[4:20]))
		opt := uint8(1)
		if typ == TypeNA {
			opt = 2
		}
		return m, m.options(b, 20, opt)
	case TypeMLDReport, TypeMLDDone:
		if len(b) < 20 {
			return nil, fmt.Errorf("mld group: %w", ErrShort)
		}
		g := netip.AddrFrom16([16]byte(b[4:20]))
		if typ == TypeMLDReport {
			m.Joined = []netip.Addr{g}
		} else {
			m.Left = []netip.Addr{g}
		}
		return m, nil
	case TypeMLDv2Report:
		if len(b) < 4 {
			return nil, fmt.Errorf("mldv2 report: %w", ErrShort)
		}
		return m, m.records(b[4:], int(binary.BigEndian.Uint16(b[2:])), 16)
	}
	return nil, fmt.Errorf("%w: icmpv6 type %d", ErrUnsupported, typ)
}

// options reads the link-layer address option of type opt among the
// options at b[off:].
func (m *ND) options(b []byte, off int, opt uint8) error {
	if len(b) < off {
		return fmt.Errorf("neighbour discovery: %w", ErrShort)
	}
	b = b[off:]
	for len(b) >= 2 {
		n := int(b[1]) * 8
		if n == 0 || n > len(b) {
			return fmt.Errorf("neighbour discovery option: %w", ErrShort)
		}
		if b[0] == opt && n >= 8 {
			m.LinkAddr = net.HardwareAddr(b[2:8:8])
		}
		b = b[n:]
	}
	return nil
}

// records reads the group records of an IGMPv3 or MLDv2 report (the same
// layout with addresses of alen bytes): a change to exclude mode (with no
// sources: all of them) or new allowed sources joins a group, a change to
// include mode with no sources leaves it.
func (m *ND) records(b []byte, n, alen int) error {
	for i := 0; i < n; i++ {
		if len(b) < 4+alen {
			return fmt.Errorf("group record %d: %w", i, ErrShort)
		}
		typ, aux, srcs := b[0], int(b[1])*4, int(binary.BigEndian.Uint16(b[2:]))
		var g netip.Addr
		if alen == 4 {
			g = netip.AddrFrom4([4]byte(b[4:8]))
		} else {
			g = netip.AddrFrom16([16]byte(b[4:20]))
		}
		size := 4 + alen + srcs*alen + aux
		if len(b) < size {
			return fmt.Errorf("group record %d sources: %w", i, ErrShort)
		}
		switch {
		case typ == 2 || typ == 4 || typ == 5 && srcs > 0: // MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE, ALLOW_NEW_SOURCES
			m.Joined = append(m.Joined, g)
		case typ == 1 && srcs > 0:
			m.Joined = append(m.Joined, g)
		case typ == 3 && srcs == 0: // CHANGE_TO_INCLUDE_MODE with no sources
			m.Left = append(m.Left, g)
		}
		b = b[size:]
	}
	return nil
}

// ParseIGMP reads an IGMP message: the groups a membership report (v1, v2
// or v3) joins and a v2 leave or v3 report leaves. Queries join nothing.
func ParseIGMP(b []byte) (*ND, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("igmp: %w", ErrShort)
	}
	m := &ND{Type: b[0]}
	g := netip.AddrFrom4([4]byte(b[4:8]))
	switch b[0] {
	case 0x12, 0x16: // v1, v2 membership report
		m.Joined = []netip.Addr{g}
	case 0x17: // v2 leave group
		m.Left = []netip.Addr{g}
	case 0x22: // v3 membership report
		return m, m.records(b[8:], int(binary.BigEndian.Uint16(b[6:])), 4)
	case 0x11: // query
	default:
		return nil, fmt.Errorf("%w: igmp type %#x", ErrUnsupported, b[0])
	}
	return m, nil
}
