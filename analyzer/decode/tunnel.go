package decode

import "encoding/binary"

// Inner says what a tunnel header carries.
type Inner uint8

// What tunnels carry.
const (
	InnerNone     Inner = iota // nothing decodable (a control message, an unknown payload)
	InnerEthernet              // an Ethernet frame
	InnerIP                    // an IPv4 or IPv6 packet
	InnerPPP                   // a PPP frame
	InnerMPLS                  // an MPLS label stack
)

// IP protocol numbers of tunnels.
const (
	ProtoIPIP = 4  // IPv4 inside IPv4 or IPv6
	ProtoIPv6 = 41 // IPv6 inside IPv4 (6in4) or IPv6
	ProtoGRE  = 47
)

// UDP ports of tunnels (IANA).
const (
	PortVXLAN  = 4789
	PortGeneve = 6081
	PortGTPU   = 2152
)

// GRE reads a GRE header (RFC 2784, RFC 2890 keys and sequence numbers,
// PPTP's enhanced GRE of RFC 2637) and the ERSPAN header of a mirrored
// frame (types I, II and III), and returns the frame it carries.
func GRE(b []byte) (inner []byte, kind Inner) {
	if len(b) < 4 {
		return nil, InnerNone
	}
	flags := binary.BigEndian.Uint16(b)
	proto := binary.BigEndian.Uint16(b[2:])
	if flags&0x4000 != 0 { // RFC 1701 source routing: obsolete, not followed
		return nil, InnerNone
	}
	off := 4
	if flags&0x8000 != 0 { // checksum and reserved
		off += 4
	}
	if flags&0x2000 != 0 { // key
		off += 4
	}
	seq := flags&0x1000 != 0
	if seq {
		off += 4
	}
	if flags&0x0007 == 1 && flags&0x0080 != 0 { // enhanced GRE's acknowledgment number
		off += 4
	}
	if len(b) < off {
		return nil, InnerNone
	}
	b = b[off:]
	switch proto {
	case 0x0800, 0x86dd:
		return b, InnerIP
	case 0x6558: // transparent Ethernet bridging
		return b, InnerEthernet
	case 0x880b:
		return b, InnerPPP
	case 0x8847, 0x8848:
		return b, InnerMPLS
	case 0x88be: // ERSPAN type II (8-byte header) or, without a sequence number, type I (none)
		if !seq {
			return b, InnerEthernet
		}
		if len(b) < 8 || b[0]>>4 != 1 {
			return nil, InnerNone
		}
		return b[8:], InnerEthernet
	case 0x22eb: // ERSPAN type III: 12 bytes, 8 more with the platform sub-header (O bit)
		if len(b) < 12 || b[0]>>4 != 2 {
			return nil, InnerNone
		}
		n := 12
		if b[11]&1 != 0 {
			n += 8
		}
		if len(b) < n {
			return nil, InnerNone
		}
		return b[n:], InnerEthernet
	}
	return nil, InnerNone
}

// VXLAN reads a VXLAN header (RFC 7348) and returns the Ethernet frame it carries.
func VXLAN(b []byte) (inner []byte, kind Inner) {
	if len(b) < 8 || b[0]&0x08 == 0 { // the I flag: a valid VNI
		return nil, InnerNone
	}
	return b[8:], InnerEthernet
}

// Geneve reads a Geneve header and its options (RFC 8926) and returns the frame it carries.
func Geneve(b []byte) (inner []byte, kind Inner) {
	if len(b) < 8 || b[0]>>6 != 0 {
		return nil, InnerNone
	}
	n := 8 + int(b[0]&0x3f)*4
	if len(b) < n {
		return nil, InnerNone
	}
	switch binary.BigEndian.Uint16(b[2:]) {
	case 0x6558:
		return b[n:], InnerEthernet
	case 0x0800, 0x86dd:
		return b[n:], InnerIP
	}
	return nil, InnerNone
}

// GTPU reads a GTPv1-U header (3GPP TS 29.281) with its optional fields and
// extension headers and returns the user's IP packet of a G-PDU; other
// messages (echo, end marker, error indication) carry none.
func GTPU(b []byte) (inner []byte, kind Inner) {
	if len(b) < 8 || b[0]>>5 != 1 || b[0]&0x10 == 0 || b[1] != 0xff {
		return nil, InnerNone
	}
	end := 8 + int(binary.BigEndian.Uint16(b[2:]))
	off := 8
	if b[0]&0x07 != 0 { // sequence number, N-PDU number, next extension header type
		off = 12
		if len(b) < off {
			return nil, InnerNone
		}
		next := b[11]
		for i := 0; next != 0; i++ {
			if i == maxShims || len(b) < off+1 {
				return nil, InnerNone
			}
			l := int(b[off]) * 4
			if l == 0 || len(b) < off+l {
				return nil, InnerNone
			}
			next = b[off+l-1]
			off += l
		}
	}
	if end < len(b) && end >= off {
		b = b[:end]
	}
	return b[off:], InnerIP
}

// DecodeInner decodes the frame a tunnel carries into p (which it resets),
// as Decode does for a captured frame.
func DecodeInner(kind Inner, b []byte, p *Packet) Kind {
	*p = Packet{}
	switch kind {
	case InnerEthernet:
		if len(b) < 14 {
			return KindLink
		}
		copy(p.DstMAC[:], b[0:6])
		copy(p.SrcMAC[:], b[6:12])
		p.HasMAC = true
		return decodeEther(binary.BigEndian.Uint16(b[12:]), b[14:], p)
	case InnerIP:
		return decodeIPAny(b, p)
	case InnerPPP:
		return decodePPP(b, p)
	case InnerMPLS:
		return decodeMPLS(b, p)
	}
	return KindLink
}
