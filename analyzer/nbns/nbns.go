// Package nbns reads NetBIOS name service messages (RFC 1002, UDP port
// 137): the name registrations, refreshes and releases by which a machine
// claims its NetBIOS names, and the queries by which it looks names up;
// and the browser host announcements of the NetBIOS datagram service
// (UDP port 138), which carry a machine's name, OS version and comment.
//
// It reads untrusted capture bytes: it never panics and never reads past
// what it is given.
package nbns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrShort means the message ends before a field it announces.
var ErrShort = errors.New("nbns: message truncated")

// ErrBadName means a name is not a valid first-level encoded NetBIOS name.
var ErrBadName = errors.New("nbns: malformed name")

// Name is a NetBIOS name: up to 15 characters and a suffix byte saying
// what the name is for (0x00 workstation, 0x20 file server, 0x1d master
// browser, 0x1e browser election, …).
type Name struct {
	Name   string
	Suffix byte
	// Group is set when a resource record marks the name a group name
	// (a workgroup or domain), not a unique one.
	Group bool
}

// String renders the name as tshark and nmblookup do: "NAME<20>".
func (n Name) String() string {
	const digits = "0123456789abcdef"
	return n.Name + "<" + string([]byte{digits[n.Suffix>>4], digits[n.Suffix&0xf]}) + ">"
}

// Message is a name service message.
type Message struct {
	ID       uint16
	Response bool
	// Opcode is 0 query, 5 registration, 6 release, 7 WACK, 8 and 9 refresh.
	Opcode uint8
	Rcode  uint8
	// Names are the question names, then the names of the answer and
	// additional records, without repeats.
	Names []Name
	// Addrs are the addresses of NB records (the registered or answered
	// addresses).
	Addrs []netip.Addr
}

// OpName names the operation: "query", "registration", "release", "wack",
// "refresh" ("response" is told by Response).
func (m *Message) OpName() string {
	switch m.Opcode {
	case 0:
		return "query"
	case 5:
		return "registration"
	case 6:
		return "release"
	case 7:
		return "wack"
	case 8, 9:
		return "refresh"
	}
	return fmt.Sprintf("opcode_%d", m.Opcode)
}

// Parse reads a name service message (a UDP payload).
func Parse(b []byte) (*Message, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("nbns header: %w", ErrShort)
	}
	flags := binary.BigEndian.Uint16(b[2:])
	m := &Message{ID: binary.BigEndian.Uint16(b), Response: flags&0x8000 != 0,
		Opcode: uint8(flags>>11) & 0xf, Rcode: uint8(flags & 0xf)}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	rrs := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	off := 12
	for i := 0; i < qd; i++ {
		n, end, err := name(b, off)
		if err != nil {
			return m, fmt.Errorf("question %d: %w", i, err)
		}
		if end+4 > len(b) {
			return m, fmt.Errorf("question %d type: %w", i, ErrShort)
		}
		m.add(n)
		off = end + 4
	}
	for i := 0; i < rrs; i++ {
		n, end, err := name(b, off)
		if err != nil {
			return m, fmt.Errorf("record %d: %w", i, err)
		}
		if end+10 > len(b) {
			return m, fmt.Errorf("record %d fields: %w", i, ErrShort)
		}
		typ := binary.BigEndian.Uint16(b[end:])
		rdlen := int(binary.BigEndian.Uint16(b[end+8:]))
		off = end + 10
		if off+rdlen > len(b) {
			return m, fmt.Errorf("record %d data: %w", i, ErrShort)
		}
		if typ == 0x20 { // NB: (flags, IPv4 address) entries
			for d := b[off : off+rdlen]; len(d) >= 6; d = d[6:] {
				n.Group = d[0]&0x80 != 0
				m.Addrs = append(m.Addrs, netip.AddrFrom4([4]byte(d[2:6])))
			}
		}
		m.add(n)
		off += rdlen
	}
	return m, nil
}

// maxNames bounds the names kept of one message (real ones have a few).
const maxNames = 64

func (m *Message) add(n Name) {
	if len(m.Names) >= maxNames {
		return
	}
	for i, o := range m.Names {
		if o.Name == n.Name && o.Suffix == n.Suffix {
			m.Names[i].Group = o.Group || n.Group
			return
		}
	}
	m.Names = append(m.Names, n)
}

// name reads the encoded name at off (a label of 32 letters 'A'–'P', two
// per byte of the name, then the scope's labels; or a pointer to such a
// name) and returns it with the offset after it.
func name(b []byte, off int) (Name, int, error) {
	if off >= len(b) {
		return Name{}, 0, ErrShort
	}
	at, end := off, -1
	if b[off]&0xc0 == 0xc0 {
		if off+2 > len(b) {
			return Name{}, 0, ErrShort
		}
		at, end = int(binary.BigEndian.Uint16(b[off:])&0x3fff), off+2
		if at >= off || at >= len(b) || b[at]&0xc0 != 0 {
			return Name{}, 0, fmt.Errorf("pointer at %d: %w", off, ErrBadName)
		}
	}
	if b[at] != 32 || at+33 > len(b) {
		return Name{}, 0, fmt.Errorf("name at %d: %w", at, ErrBadName)
	}
	var raw [16]byte
	for i := range raw {
		hi, lo := b[at+1+2*i]-'A', b[at+2+2*i]-'A'
		if hi > 15 || lo > 15 {
			return Name{}, 0, fmt.Errorf("name at %d: %w", at, ErrBadName)
		}
		raw[i] = hi<<4 | lo
	}
	// The scope: labels up to the root, or a pointer.
	p := at + 33
	for i := 0; ; i++ {
		if p >= len(b) || i > 64 {
			return Name{}, 0, ErrShort
		}
		if b[p] == 0 {
			p++
			break
		}
		if b[p]&0xc0 == 0xc0 {
			p += 2
			break
		}
		p += 1 + int(b[p])
	}
	if end < 0 {
		end = p
	}
	if end > len(b) {
		return Name{}, 0, ErrShort
	}
	return Name{Name: printable(strings.TrimRight(string(raw[:15]), " ")), Suffix: raw[15]}, end, nil
}

// printable keeps a name readable in logs: bytes outside printable ASCII
// become "<xx>", as tshark and nmblookup write them
// ("<01><02>__MSBROWSE__<02>").
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			const digits = "0123456789abcdef"
			b := make([]byte, 0, len(s)+8)
			for j := 0; j < len(s); j++ {
				if c := s[j]; c < 0x20 || c >= 0x7f {
					b = append(b, '<', digits[c>>4], digits[c&0xf], '>')
				} else {
					b = append(b, c)
				}
			}
			return string(b)
		}
	}
	return s
}

// HostAnnouncement is a browser announcement (MS-BRWS) a machine
// broadcasts over the datagram service: its name and OS version.
type HostAnnouncement struct {
	// Source is the datagram's source NetBIOS name.
	Source Name
	// Server is the announced server name, Comment its description.
	Server, Comment string
	// OSMajor and OSMinor are the announced OS version (Windows' major
	// and minor version; Samba announces its own).
	OSMajor, OSMinor uint8
	// ServerType holds the announced SV_TYPE_* bits.
	ServerType uint32
}

// ParseDatagram reads a NetBIOS datagram service message (UDP port 138)
// and the browser announcement inside it: a HostAnnouncement, a
// LocalMasterAnnouncement or a DomainAnnouncement (MS-BRWS 2.2). It returns
// a nil announcement and no error for other datagrams.
func ParseDatagram(b []byte) (*HostAnnouncement, error) {
	if len(b) < 14 {
		return nil, fmt.Errorf("datagram header: %w", ErrShort)
	}
	if b[0] < 0x10 || b[0] > 0x12 { // direct unique, direct group, broadcast
		return nil, nil
	}
	src, off, err := name(b, 14)
	if err != nil {
		return nil, fmt.Errorf("datagram source name: %w", err)
	}
	if _, off, err = name(b, off); err != nil {
		return nil, fmt.Errorf("datagram destination name: %w", err)
	}
	// An SMB_COM_TRANSACTION to \MAILSLOT\BROWSE: the browser frame is
	// the transaction's data, at the offset its parameters give.
	smb := b[off:]
	if len(smb) < 32+1 || string(smb[:4]) != "\xffSMB" || smb[4] != 0x25 {
		return nil, nil
	}
	words := int(smb[32])
	if words < 14 || len(smb) < 33+2*words {
		return nil, nil
	}
	params := smb[33 : 33+2*words]
	dataCount, dataOff := int(binary.LittleEndian.Uint16(params[22:])), int(binary.LittleEndian.Uint16(params[24:]))
	if dataOff+dataCount > len(smb) || dataCount < 32 {
		return nil, nil
	}
	d := smb[dataOff : dataOff+dataCount]
	switch d[0] {
	case 1, 0x0c, 0x0f: // HostAnnouncement, DomainAnnouncement, LocalMasterAnnouncement
	default:
		return nil, nil
	}
	a := &HostAnnouncement{Source: src,
		Server:  cString(d[6:22]),
		OSMajor: d[22], OSMinor: d[23], ServerType: binary.LittleEndian.Uint32(d[24:])}
	if len(d) > 32 {
		a.Comment = cString(d[32:])
	}
	return a, nil
}

// cString returns the bytes before the first NUL, made printable.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			b = b[:i]
			break
		}
	}
	return printable(string(b))
}
