package decode

import (
	"encoding/binary"
	"strconv"
)

// maxShims bounds the tags and shim headers (VLAN tags, VN-tags, MPLS
// labels, LLC/SNAP, PPPoE) read in front of a frame's payload, so a crafted
// frame cannot loop long.
const maxShims = 16

// decodeEther decodes what follows an EtherType: IP, through any stack of
// 802.1Q/802.1ad/QinQ tags, Cisco VN-tags, 802.2 LLC/SNAP headers, a PPPoE
// session header or MPLS labels. A frame that carries something else is
// KindNonIP, with p.EtherType and p.L4 saying what and where.
func decodeEther(etype uint16, b []byte, p *Packet) Kind {
	for range maxShims {
		switch etype {
		case 0x0800, 0x86dd:
			return DecodeIP(b, p)
		case 0x8100, 0x88a8, 0x9100: // 802.1Q, 802.1ad, old QinQ
			if len(b) < 4 {
				return KindVLAN
			}
			p.VLANs++
			etype, b = binary.BigEndian.Uint16(b[2:]), b[4:]
		case 0x8926: // Cisco VN-tag: 4 bytes of tag, then the EtherType
			if len(b) < 6 {
				return KindVLAN
			}
			etype, b = binary.BigEndian.Uint16(b[4:]), b[6:]
		case 0x8864: // PPPoE session (RFC 2516): 6 bytes, then PPP
			if len(b) < 8 {
				return KindLink
			}
			if n := int(binary.BigEndian.Uint16(b[4:])); n < len(b)-6 {
				b = b[:6+n] // Ethernet padding after the session's payload
			}
			return decodePPP(b[6:], p)
		case 0x8847, 0x8848: // MPLS unicast and multicast
			return decodeMPLS(b, p)
		default:
			if etype >= 0x0600 {
				p.EtherType, p.L4 = etype, b
				return KindNonIP
			}
			// An IEEE 802.3 length: an 802.2 LLC header follows. SNAP
			// with a zero OUI carries an EtherType (RFC 1042).
			if int(etype) < len(b) {
				b = b[:etype]
			}
			if len(b) >= 8 && b[0] == 0xaa && b[1] == 0xaa && b[2] == 0x03 && b[3]|b[4]|b[5] == 0 {
				etype, b = binary.BigEndian.Uint16(b[6:]), b[8:]
				if etype < 0x0600 {
					p.L4 = b
					return KindNonIP
				}
				continue
			}
			p.L4 = b
			return KindNonIP
		}
	}
	return KindLink
}

// decodePPP decodes a PPP frame (RFC 1661), with or without the HDLC
// address and control bytes and protocol field compression.
func decodePPP(b []byte, p *Packet) Kind {
	if len(b) >= 2 && b[0] == 0xff && b[1] == 0x03 {
		b = b[2:]
	}
	if len(b) < 1 {
		return KindLink
	}
	proto, n := uint16(b[0]), 1
	if b[0]&1 == 0 { // a two-byte protocol field (the first byte of which is even)
		if len(b) < 2 {
			return KindLink
		}
		proto, n = binary.BigEndian.Uint16(b), 2
	}
	switch proto {
	case 0x0021, 0x0057:
		return DecodeIP(b[n:], p)
	}
	p.EtherType, p.L4 = 0x880b, b // PPP control (LCP, IPCP, …) or another protocol
	return KindNonIP
}

// decodeMPLS skips an MPLS label stack (RFC 3032) and decodes the IP packet
// under it, or the Ethernet frame of a pseudowire (RFC 4448: a control
// word whose first nibble is 0, then the frame).
func decodeMPLS(b []byte, p *Packet) Kind {
	for i := 0; ; i++ {
		if len(b) < 4 || i == maxShims {
			return KindLink
		}
		bottom := b[2]&1 != 0
		b = b[4:]
		if bottom {
			break
		}
	}
	if len(b) < 1 {
		return KindLink
	}
	switch b[0] >> 4 {
	case 4, 6:
		return DecodeIP(b, p)
	case 0:
		if len(b) < 4+14 {
			return KindLink
		}
		b = b[4:]
		return decodeEther(binary.BigEndian.Uint16(b[12:]), b[14:], p)
	}
	p.L4 = b
	return KindNonIP
}

// NonIPName names what a frame that Decode found no IP in (KindNonIP)
// carries: "arp", "lldp", "stp", … or "ethertype_0x88b5", "llc_0x42" for
// one without a name here.
func NonIPName(p *Packet) string {
	switch p.EtherType {
	case 0:
		if len(p.L4) < 1 {
			return "unknown"
		}
		switch p.L4[0] { // the LLC DSAP
		case 0x42:
			return "stp"
		case 0xaa:
			return "snap"
		case 0xe0:
			return "ipx"
		case 0xf0:
			return "netbios"
		case 0xfe:
			return "osi"
		}
		return "llc_0x" + strconv.FormatUint(uint64(p.L4[0]), 16)
	case 0x0806:
		return "arp"
	case 0x8035:
		return "rarp"
	case 0x88cc:
		return "lldp"
	case 0x888e:
		return "eapol"
	case 0x8863:
		return "pppoe_discovery"
	case 0x880b:
		return "ppp"
	case 0x8809:
		return "slow_protocols" // LACP, OAM
	case 0x8808:
		return "flow_control"
	case 0x88f7:
		return "ptp"
	case 0x88e5:
		return "macsec"
	case 0x0842:
		return "wake_on_lan"
	case 0x9000:
		return "loopback"
	case 0x8137, 0x8138:
		return "ipx"
	case 0x809b, 0x80f3:
		return "appletalk"
	case 0x893a:
		return "ieee1905"
	case 0x88e1:
		return "homeplug"
	}
	const digits = "0123456789abcdef"
	v := p.EtherType
	return string([]byte{'e', 't', 'h', 'e', 'r', 't', 'y', 'p', 'e', '_', '0', 'x',
		digits[v>>12], digits[v>>8&0xf], digits[v>>4&0xf], digits[v&0xf]})
}
