// Package dhcp parses DHCPv4 (BOOTP) messages.
package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Errors returned by Parse.
var (
	// ErrShort means the payload is shorter than the fixed BOOTP header.
	ErrShort = errors.New("dhcp: message shorter than the BOOTP header")
	// ErrNotBOOTP means the op or hardware fields are not BOOTP's.
	ErrNotBOOTP = errors.New("dhcp: not a BOOTP message")
	// ErrOptions means an option runs past the end of the message; the
	// options before it are kept.
	ErrOptions = errors.New("dhcp: truncated option")
)

// Message is a decoded DHCP message.
type Message struct {
	Op          uint8 // 1 request, 2 reply
	XID         uint32
	ClientMAC   net.HardwareAddr
	ClientIP    netip.Addr // ciaddr
	YourIP      netip.Addr // yiaddr
	MessageType uint8      // option 53; 0 when absent (plain BOOTP)
	Hostname    string     // option 12
	VendorClass string     // option 60
	ClientID    []byte     // option 61
	ParamList   []uint8    // option 55, wire order: the client's fingerprint
	RequestedIP netip.Addr // option 50
	ServerID    netip.Addr // option 54
	LeaseTime   uint32     // option 51, seconds
	Router      netip.Addr // option 3, first
	DNSServers  []netip.Addr
	Domain      string // option 15
}

const (
	bootpLen     = 236 // fixed header, up to and including file[128]
	cookieOffset = bootpLen
	optionsStart = bootpLen + 4
)

var magicCookie = [4]byte{99, 130, 83, 99}

// Option codes read by Parse.
const (
	OptPad         = 0
	OptRouter      = 3
	OptDNS         = 6
	OptHostname    = 12
	OptDomain      = 15
	OptRequestedIP = 50
	OptLeaseTime   = 51
	OptOverload    = 52
	OptMessageType = 53
	OptServerID    = 54
	OptParamList   = 55
	OptVendorClass = 60
	OptClientID    = 61
	OptEnd         = 255
)

// Parse decodes a DHCP message from a UDP payload.
//
// Options are read from the options field only: option overload (52), which
// moves more options into the sname/file fields, is not followed. A message
// without the magic cookie is returned as plain BOOTP (MessageType 0). If an
// option runs past the end, the message is returned with the options before it
// and an error wrapping ErrOptions. When an option repeats, the first one
// wins (RFC 3396 concatenation of long options is not done).
func Parse(b []byte) (*Message, error) {
	if len(b) < bootpLen {
		return nil, fmt.Errorf("%d bytes, need %d: %w", len(b), bootpLen, ErrShort)
	}
	if b[0] != 1 && b[0] != 2 {
		return nil, fmt.Errorf("op %d: %w", b[0], ErrNotBOOTP)
	}
	hlen := int(b[2])
	if hlen > 16 {
		return nil, fmt.Errorf("hardware address length %d: %w", hlen, ErrNotBOOTP)
	}
	m := &Message{
		Op:       b[0],
		XID:      binary.BigEndian.Uint32(b[4:]),
		ClientIP: netip.AddrFrom4([4]byte(b[12:16])),
		YourIP:   netip.AddrFrom4([4]byte(b[16:20])),
	}
	if hlen > 0 {
		m.ClientMAC = net.HardwareAddr(append([]byte(nil), b[28:28+hlen]...))
	}
	if len(b) < optionsStart || [4]byte(b[cookieOffset:optionsStart]) != magicCookie {
		return m, nil
	}
	seen := [256]bool{}
	opts := b[optionsStart:]
	for i := 0; i < len(opts); {
		code := opts[i]
		if code == OptPad {
			i++
			continue
		}
		if code == OptEnd {
			break
		}
		if i+1 >= len(opts) || i+2+int(opts[i+1]) > len(opts) {
			return m, fmt.Errorf("option %d at offset %d: %w", code, optionsStart+i, ErrOptions)
		}
		v := opts[i+2 : i+2+int(opts[i+1])]
		i += 2 + len(v)
		if seen[code] {
			continue
		}
		seen[code] = true
		m.option(code, v)
	}
	return m, nil
}

// option stores one option value; values of the wrong size are ignored.
func (m *Message) option(code uint8, v []byte) {
	switch code {
	case OptMessageType:
		if len(v) == 1 {
			m.MessageType = v[0]
		}
	case OptHostname:
		m.Hostname = string(trimNUL(v))
	case OptVendorClass:
		m.VendorClass = string(trimNUL(v))
	case OptDomain:
		m.Domain = string(trimNUL(v))
	case OptClientID:
		m.ClientID = append([]byte(nil), v...)
	case OptParamList:
		m.ParamList = append([]uint8(nil), v...)
	case OptRequestedIP:
		m.RequestedIP = addr4(v)
	case OptServerID:
		m.ServerID = addr4(v)
	case OptLeaseTime:
		if len(v) == 4 {
			m.LeaseTime = binary.BigEndian.Uint32(v)
		}
	case OptRouter:
		if len(v) >= 4 {
			m.Router = netip.AddrFrom4([4]byte(v[:4]))
		}
	case OptDNS:
		if len(v) >= 4 {
			m.DNSServers = make([]netip.Addr, 0, len(v)/4)
			for j := 0; j+4 <= len(v); j += 4 {
				m.DNSServers = append(m.DNSServers, netip.AddrFrom4([4]byte(v[j:j+4])))
			}
		}
	}
}

func addr4(v []byte) netip.Addr {
	if len(v) != 4 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(v))
}

// trimNUL drops trailing NULs some clients include in string options.
func trimNUL(v []byte) []byte {
	for len(v) > 0 && v[len(v)-1] == 0 {
		v = v[:len(v)-1]
	}
	return v
}

var typeNames = [...]string{
	1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
	7: "RELEASE", 8: "INFORM", 9: "FORCERENEW", 10: "LEASEQUERY",
	11: "LEASEUNASSIGNED", 12: "LEASEUNKNOWN", 13: "LEASEACTIVE",
	14: "BULKLEASEQUERY", 15: "LEASEQUERYDONE", 16: "ACTIVELEASEQUERY",
	17: "LEASEQUERYSTATUS", 18: "TLS",
}

// MessageTypeName returns "DISCOVER", "OFFER", "REQUEST", "ACK", … (RFC 2132
// and later IANA names); 0 (no option 53) is "BOOTP", unknown values "TYPE<n>".
func MessageTypeName(t uint8) string {
	if t == 0 {
		return "BOOTP"
	}
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "TYPE" + strconv.Itoa(int(t))
}
