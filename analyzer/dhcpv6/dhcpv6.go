// Package dhcpv6 reads DHCPv6 messages (RFC 8415, UDP ports 546 and 547):
// the client's DUID, its FQDN (RFC 4704), vendor and user classes, the
// options it asks for, and the addresses and prefixes the server assigns.
// Relay messages are unwrapped.
//
// It reads untrusted capture bytes: it never panics and never reads past
// what it is given.
package dhcpv6

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrShort means the message ends before a field it announces.
var ErrShort = errors.New("dhcpv6: message truncated")

// Message is a DHCPv6 client or server message.
type Message struct {
	Type uint8
	XID  uint32
	// ClientID and ServerID are the DUIDs of options 1 and 2.
	ClientID, ServerID []byte
	// FQDN is the client FQDN option's name (lower case, no trailing dot).
	FQDN string
	// VendorClass renders option 16 as "enterprise:data" (data joined by
	// ","), UserClass option 15's data joined by ",".
	VendorClass, UserClass string
	// ORO lists the option codes the client asks for, in wire order.
	ORO []uint16
	// Addrs are IA_NA and IA_TA addresses, Prefixes IA_PD prefixes; Valid
	// is the longest valid lifetime among them (seconds).
	Addrs    []netip.Addr
	Prefixes []netip.Prefix
	Valid    uint32
	// DNS lists the recursive name servers (option 23), Domains the domain
	// search list (option 24).
	DNS     []netip.Addr
	Domains []string
	// Relayed is set when the message came wrapped in relay messages.
	Relayed bool
}

// Message types (RFC 8415 section 7.3).
var typeNames = [...]string{1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 4: "CONFIRM", 5: "RENEW", 6: "REBIND",
	7: "REPLY", 8: "RELEASE", 9: "DECLINE", 10: "RECONFIGURE", 11: "INFORMATION-REQUEST", 12: "RELAY-FORW", 13: "RELAY-REPL"}

// TypeName names a message type ("SOLICIT", …) or "TYPE_<n>".
func TypeName(t uint8) string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "TYPE_" + strconv.Itoa(int(t))
}

// FromClient reports whether messages of type t are sent by clients.
func FromClient(t uint8) bool {
	switch t {
	case 1, 3, 4, 5, 6, 8, 9, 11:
		return true
	}
	return false
}

// Parse reads a DHCPv6 message (a UDP payload), unwrapping relay messages.
func Parse(b []byte) (*Message, error) {
	m := &Message{}
	for depth := 0; ; depth++ {
		if len(b) < 1 {
			return nil, fmt.Errorf("message type: %w", ErrShort)
		}
		if b[0] != 12 && b[0] != 13 {
			break
		}
		if depth == 8 || len(b) < 34 {
			return nil, fmt.Errorf("relay message: %w", ErrShort)
		}
		inner, err := relayed(b[34:])
		if err != nil {
			return nil, err
		}
		m.Relayed, b = true, inner
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("message header: %w", ErrShort)
	}
	m.Type, m.XID = b[0], uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])
	return m, m.options(b[4:], 0)
}

// relayed returns the Relay Message option (9) among a relay's options.
func relayed(b []byte) ([]byte, error) {
	for len(b) >= 4 {
		code, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if len(b) < 4+n {
			return nil, fmt.Errorf("relay option %d: %w", code, ErrShort)
		}
		if code == 9 {
			return b[4 : 4+n], nil
		}
		b = b[4+n:]
	}
	return nil, fmt.Errorf("relay message without a relayed message: %w", ErrShort)
}

// options reads an option list; depth bounds the nesting of IA options.
func (m *Message) options(b []byte, depth int) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("option header: %w", ErrShort)
		}
		code, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if len(b) < 4+n {
			return fmt.Errorf("option %d of %d bytes: %w", code, n, ErrShort)
		}
		d := b[4 : 4+n]
		b = b[4+n:]
		switch code {
		case 1:
			m.ClientID = d
		case 2:
			m.ServerID = d
		case 3, 25: // IA_NA, IA_PD: IAID, T1, T2, options
			if len(d) >= 12 && depth < 2 {
				if err := m.options(d[12:], depth+1); err != nil {
					return err
				}
			}
		case 4: // IA_TA: IAID, options
			if len(d) >= 4 && depth < 2 {
				if err := m.options(d[4:], depth+1); err != nil {
					return err
				}
			}
		case 5: // IA address: address, preferred and valid lifetimes
			if len(d) >= 24 {
				m.Addrs = append(m.Addrs, netip.AddrFrom16([16]byte(d[:16])))
				m.Valid = max(m.Valid, binary.BigEndian.Uint32(d[20:]))
			}
		case 26: // IA prefix: lifetimes, length, prefix
			if len(d) >= 25 {
				m.Valid = max(m.Valid, binary.BigEndian.Uint32(d[4:]))
				if p, err := netip.AddrFrom16([16]byte(d[9:25])).Prefix(int(d[8])); err == nil {
					m.Prefixes = append(m.Prefixes, p)
				}
			}
		case 6:
			for i := 0; i+1 < len(d); i += 2 {
				m.ORO = append(m.ORO, binary.BigEndian.Uint16(d[i:]))
			}
		case 15:
			m.UserClass = strings.Join(strings16(d), ",")
		case 16:
			if len(d) >= 4 {
				m.VendorClass = strconv.FormatUint(uint64(binary.BigEndian.Uint32(d)), 10) + ":" + strings.Join(strings16(d[4:]), ",")
			}
		case 23:
			for i := 0; i+16 <= len(d); i += 16 {
				m.DNS = append(m.DNS, netip.AddrFrom16([16]byte(d[i:i+16])))
			}
		case 24:
			m.Domains = names(d)
		case 39:
			if len(d) >= 1 {
				if ns := names(d[1:]); len(ns) > 0 {
					m.FQDN = ns[0]
				} else {
					m.FQDN = partialName(d[1:])
				}
			}
		}
	}
	return nil
}

// strings16 reads a list of strings each prefixed with a 2-byte length,
// made printable.
func strings16(d []byte) []string {
	var out []string
	for len(d) >= 2 && len(out) < 16 {
		n := int(binary.BigEndian.Uint16(d))
		if len(d) < 2+n {
			break
		}
		out = append(out, printable(d[2:2+n]))
		d = d[2+n:]
	}
	return out
}

// names reads a list of uncompressed DNS names (RFC 8415 section 10).
func names(d []byte) []string {
	var out []string
	var cur []string
	for len(d) > 0 && len(out) < 16 {
		l := int(d[0])
		if l == 0 {
			out = append(out, strings.ToLower(strings.Join(cur, ".")))
			cur = cur[:0]
			d = d[1:]
			continue
		}
		if l > 63 || len(d) < 1+l {
			break
		}
		cur = append(cur, printable(d[1:1+l]))
		d = d[1+l:]
	}
	return out
}

// partialName reads a name without its terminating root label (RFC 4704
// allows a partial name: the client's host name alone).
func partialName(d []byte) string {
	var labels []string
	for len(d) > 0 {
		l := int(d[0])
		if l == 0 || l > 63 || len(d) < 1+l {
			break
		}
		labels = append(labels, printable(d[1:1+l]))
		d = d[1+l:]
	}
	return strings.ToLower(strings.Join(labels, "."))
}

func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}

// DUIDString renders a DUID as dnsmasq and dhclient log it: hex bytes
// joined by ':' (tshark's dhcpv6.duid.bytes is the same hex without them).
func DUIDString(d []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 3*len(d))
	for i, c := range d {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&0xf])
	}
	return string(out)
}

// DUIDMAC returns the link-layer address of a DUID-LLT or DUID-LL with an
// Ethernet hardware type, or nil.
func DUIDMAC(d []byte) net.HardwareAddr {
	switch {
	case len(d) == 14 && d[0] == 0 && d[1] == 1 && d[2] == 0 && d[3] == 1:
		return net.HardwareAddr(d[8:14])
	case len(d) == 10 && d[0] == 0 && d[1] == 3 && d[2] == 0 && d[3] == 1:
		return net.HardwareAddr(d[4:10])
	}
	return nil
}
