// Package decode reads link, IP and transport headers of captured packets into
// a reusable struct, without allocating. It is hand-rolled rather than built on
// gopacket's layer types because the analyzer only needs a few header fields at
// a million packets a second.
//
// Every offset is checked against the captured length: a snaplen cut or a
// damaged header gives a Kind describing the layer, never a panic.
package decode

import (
	"encoding/binary"
	"math/bits"
	"strconv"
)

// Link types (LINKTYPE_ values, as stored in pcap and pcapng files).
const (
	LinkNull     = 0
	LinkEthernet = 1
	LinkPPP      = 9
	LinkRawBSD12 = 12 // DLT_RAW on most BSDs
	LinkRawBSD14 = 14 // DLT_RAW on OpenBSD
	LinkPPPHDLC  = 50
	LinkRaw      = 101
	LinkLoop     = 108
	LinkSLL      = 113
	LinkIPv4     = 228
	LinkIPv6     = 229
	LinkNFLOG    = 239
	LinkSLL2     = 276
)

// LinkName returns a name for a link type: "ETHERNET", "LINUX_SLL2", … or "LINKTYPE_<n>".
func LinkName(lt uint32) string {
	switch lt {
	case LinkNull:
		return "NULL"
	case LinkEthernet:
		return "ETHERNET"
	case LinkPPP:
		return "PPP"
	case LinkRawBSD12, LinkRawBSD14, LinkRaw:
		return "RAW"
	case LinkPPPHDLC:
		return "PPP_HDLC"
	case LinkLoop:
		return "LOOP"
	case LinkSLL:
		return "LINUX_SLL"
	case LinkIPv4:
		return "IPV4"
	case LinkIPv6:
		return "IPV6"
	case LinkNFLOG:
		return "NFLOG"
	case LinkSLL2:
		return "LINUX_SLL2"
	}
	return "LINKTYPE_" + strconv.FormatUint(uint64(lt), 10)
}

// Supported reports whether Decode understands the link type.
func Supported(lt uint32) bool {
	switch lt {
	case LinkNull, LinkEthernet, LinkPPP, LinkRawBSD12, LinkRawBSD14, LinkPPPHDLC,
		LinkRaw, LinkLoop, LinkSLL, LinkIPv4, LinkIPv6, LinkNFLOG, LinkSLL2:
		return true
	}
	return false
}

// IP protocol numbers used here.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	URG = 0x20
	ECE = 0x40
	CWR = 0x80
)

// Kind names the layer a packet failed to decode at ("" when it decoded).
type Kind string

// Decode failure kinds, used as counter names in the analysis warnings.
const (
	OK          Kind = ""
	KindLink    Kind = "link"
	KindVLAN    Kind = "vlan"
	KindNonIP   Kind = "non_ip"
	KindIPv4    Kind = "ipv4"
	KindIPv6    Kind = "ipv6"
	KindTCP     Kind = "tcp"
	KindUDP     Kind = "udp"
	KindICMP    Kind = "icmp"
	KindUnknown Kind = "unknown_link_type"
)

// Packet holds the decoded headers of one packet. Slices point into the
// caller's buffer.
type Packet struct {
	SrcMAC, DstMAC [6]byte
	HasMAC         bool
	// EtherType names what a frame Decode found no IP in carries
	// (KindNonIP): 0x0806 for ARP, 0 for an 802.2 LLC frame; L4 then
	// holds that payload. NonIPName turns it into a counter name.
	EtherType uint16
	VLANs     int

	IPVersion uint8
	// Src and Dst hold the addresses; IPv4 uses the first 4 bytes.
	Src, Dst [16]byte
	// IP is the IP packet from its header on, as captured.
	IP []byte
	// IPLen is the IP packet length from the header (IPv4 total length, IPv6 40 + payload length).
	IPLen int
	TTL   uint8
	DF    bool
	// Proto is the transport protocol (after IPv6 extension headers).
	Proto uint8

	// Fragment fields: set when the packet is an IP fragment (not the whole datagram).
	Fragment  bool
	FragID    uint32
	FragOff   int // bytes
	FragMore  bool
	FragData  []byte // the fragment's payload as captured
	FragTotal int    // the fragment's payload length per header

	// L4 is the transport header and payload as captured; L4Len its length per the IP header.
	L4    []byte
	L4Len int

	SrcPort, DstPort uint16
	Flags            uint8
	Seq, Ack         uint32
	Window           uint16
	ICMPType         uint8
	ICMPCode         uint8
	// Payload is the transport payload as captured; PayloadLen its length per the headers.
	Payload    []byte
	PayloadLen int

	// Truncated is set when the capture holds less than the headers declare.
	Truncated bool
	// BadIPChecksum and BadL4Checksum report failed checksum verification.
	BadIPChecksum bool
	BadL4Checksum bool
	// OffloadL4Checksum reports a TCP/UDP checksum left to the sender's NIC
	// (checksum offload): the field holds only the pseudo-header sum, as the
	// sender's stack puts it there for the NIC to finish, because the capture
	// saw the packet before any NIC did (a VM's tap, the sending host itself).
	// It is no damage, but the payload is unverified. BadL4Checksum is then false.
	OffloadL4Checksum bool
}

// Decode decodes a frame of the given link type into p (which it resets).
func Decode(lt uint32, b []byte, p *Packet) Kind {
	*p = Packet{}
	var etype uint16
	switch lt {
	case LinkEthernet:
		if len(b) < 14 {
			return KindLink
		}
		copy(p.DstMAC[:], b[0:6])
		copy(p.SrcMAC[:], b[6:12])
		p.HasMAC = true
		etype = binary.BigEndian.Uint16(b[12:])
		b = b[14:]
	case LinkSLL:
		if len(b) < 16 {
			return KindLink
		}
		if binary.BigEndian.Uint16(b[2:]) == 1 && binary.BigEndian.Uint16(b[4:]) == 6 {
			copy(p.SrcMAC[:], b[6:12])
			p.HasMAC = true
		}
		etype = binary.BigEndian.Uint16(b[14:])
		b = b[16:]
	case LinkSLL2:
		if len(b) < 20 {
			return KindLink
		}
		if binary.BigEndian.Uint16(b[8:]) == 1 && b[11] == 6 {
			copy(p.SrcMAC[:], b[12:18])
			p.HasMAC = true
		}
		etype = binary.BigEndian.Uint16(b)
		b = b[20:]
	case LinkNull, LinkLoop:
		// The family is in host or network byte order depending on the capturing
		// machine; the IP version nibble is a sturdier guide.
		if len(b) < 4 {
			return KindLink
		}
		return decodeIPAny(b[4:], p)
	case LinkRaw, LinkRawBSD12, LinkRawBSD14, LinkIPv4, LinkIPv6:
		return decodeIPAny(b, p)
	case LinkPPP, LinkPPPHDLC:
		if len(b) >= 2 && b[0] == 0xff && b[1] == 0x03 {
			b = b[2:]
		}
		if len(b) < 2 {
			return KindLink
		}
		return decodePPP(b, p)
	case LinkNFLOG:
		return decodeNFLOG(b, p)
	default:
		return KindUnknown
	}
	if etype == 0x0800 || etype == 0x86dd {
		return DecodeIP(b, p) // the usual frame, without decodeEther's loop
	}
	return decodeEther(etype, b, p)
}

func decodeIPAny(b []byte, p *Packet) Kind {
	if len(b) < 1 {
		return KindIPv4
	}
	switch b[0] >> 4 {
	case 4, 6:
		return DecodeIP(b, p)
	}
	return KindNonIP
}

func decodeNFLOG(b []byte, p *Packet) Kind {
	if len(b) < 4 {
		return KindLink
	}
	b = b[4:]
	for len(b) >= 4 {
		// TLV lengths and types are in host byte order; captures are nearly always little-endian.
		l := int(binary.LittleEndian.Uint16(b))
		t := binary.LittleEndian.Uint16(b[2:])
		if l < 4 || l > len(b) {
			return KindLink
		}
		if t == 9 { // NFULA_PAYLOAD
			return decodeIPAny(b[4:l], p)
		}
		adv := (l + 3) &^ 3
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
	}
	return KindNonIP
}

// DecodeIP decodes an IPv4 or IPv6 packet and its transport header.
func DecodeIP(b []byte, p *Packet) Kind {
	if len(b) < 1 {
		return KindIPv4
	}
	switch b[0] >> 4 {
	case 4:
		return decodeIPv4(b, p)
	case 6:
		return decodeIPv6(b, p)
	}
	return KindNonIP
}

func decodeIPv4(b []byte, p *Packet) Kind {
	if len(b) < 20 {
		return KindIPv4
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl || len(b) < ihl {
		return KindIPv4
	}
	p.IPVersion = 4
	p.IP = b
	p.IPLen = total
	if len(b) < total {
		p.Truncated = true
	} else {
		b = b[:total] // drop Ethernet padding
		p.IP = b
	}
	copy(p.Src[:4], b[12:16])
	copy(p.Dst[:4], b[16:20])
	p.TTL = b[8]
	p.Proto = b[9]
	flags := binary.BigEndian.Uint16(b[6:])
	p.DF = flags&0x4000 != 0
	if !headerSumOK(b[:ihl]) {
		p.BadIPChecksum = true
	}
	off := int(flags&0x1fff) * 8
	more := flags&0x2000 != 0
	data := b[ihl:]
	if off != 0 || more {
		p.Fragment = true
		p.FragID = uint32(binary.BigEndian.Uint16(b[4:]))
		p.FragOff = off
		p.FragMore = more
		p.FragData = data
		p.FragTotal = total - ihl
		return OK
	}
	return decodeL4(data, total-ihl, p)
}

func decodeIPv6(b []byte, p *Packet) Kind {
	if len(b) < 40 {
		return KindIPv6
	}
	plen := int(binary.BigEndian.Uint16(b[4:]))
	p.IPVersion = 6
	p.IP = b
	p.IPLen = 40 + plen
	if len(b) < 40+plen {
		p.Truncated = true
	} else {
		b = b[:40+plen]
		p.IP = b
	}
	copy(p.Src[:], b[8:24])
	copy(p.Dst[:], b[24:40])
	p.TTL = b[7]
	next := b[6]
	rest := b[40:]
	left := plen
	// Extension headers; bounded so a crafted chain cannot loop long.
	for i := 0; i < 16; i++ {
		switch next {
		case 0, 43, 60, 135, 139, 140: // hop-by-hop, routing, destination, mobility, HIP, shim6
			if len(rest) < 8 {
				return KindIPv6
			}
			l := (int(rest[1]) + 1) * 8
			if l > len(rest) {
				return KindIPv6
			}
			next = rest[0]
			rest, left = rest[l:], left-l
		case 51: // AH: length in 4-byte units, minus 2
			if len(rest) < 8 {
				return KindIPv6
			}
			l := (int(rest[1]) + 2) * 4
			if l > len(rest) {
				return KindIPv6
			}
			next = rest[0]
			rest, left = rest[l:], left-l
		case 44: // fragment
			if len(rest) < 8 {
				return KindIPv6
			}
			fo := binary.BigEndian.Uint16(rest[2:])
			off := int(fo>>3) * 8
			more := fo&1 != 0
			p.Proto = rest[0]
			if off != 0 || more {
				p.Fragment = true
				p.FragID = binary.BigEndian.Uint32(rest[4:])
				p.FragOff = off
				p.FragMore = more
				p.FragData = rest[8:]
				p.FragTotal = left - 8
				return OK
			}
			// An atomic fragment: the whole datagram.
			next = rest[0]
			rest, left = rest[8:], left-8
		default:
			p.Proto = next
			if left < 0 {
				return KindIPv6
			}
			return decodeL4(rest, left, p)
		}
	}
	return KindIPv6
}

// decodeL4 decodes the transport header in b (captured), whose length per the IP header is n.
func decodeL4(b []byte, n int, p *Packet) Kind {
	if len(b) > n {
		b = b[:n]
	}
	p.L4 = b
	p.L4Len = n
	full := len(b) == n
	switch p.Proto {
	case ProtoTCP:
		if len(b) < 20 {
			if !full {
				p.Truncated = true
			}
			return KindTCP
		}
		doff := int(b[12]>>4) * 4
		if doff < 20 || doff > n {
			return KindTCP
		}
		p.SrcPort = binary.BigEndian.Uint16(b)
		p.DstPort = binary.BigEndian.Uint16(b[2:])
		p.Seq = binary.BigEndian.Uint32(b[4:])
		p.Ack = binary.BigEndian.Uint32(b[8:])
		p.Flags = b[13]
		p.Window = binary.BigEndian.Uint16(b[14:])
		p.PayloadLen = n - doff
		if doff <= len(b) {
			p.Payload = b[doff:]
		}
		if full && p.IPVersion != 0 && l4Checksum(p, b) != 0 {
			p.checksumFailed(b, 16)
		}
	case ProtoUDP:
		if len(b) < 8 {
			if !full {
				p.Truncated = true
			}
			return KindUDP
		}
		p.SrcPort = binary.BigEndian.Uint16(b)
		p.DstPort = binary.BigEndian.Uint16(b[2:])
		ul := int(binary.BigEndian.Uint16(b[4:]))
		if ul < 8 || ul > n {
			ul = n // tolerate a wrong length field, use the IP one
		}
		p.PayloadLen = ul - 8
		p.Payload = b[8:]
		if len(p.Payload) > p.PayloadLen {
			p.Payload = p.Payload[:p.PayloadLen]
		}
		ck := binary.BigEndian.Uint16(b[6:])
		if full && !(ck == 0 && p.IPVersion == 4) && l4Checksum(p, b) != 0 {
			p.checksumFailed(b, 6)
		}
	case ProtoICMP, ProtoICMPv6:
		if len(b) < 4 {
			if !full {
				p.Truncated = true
			}
			return KindICMP
		}
		p.ICMPType, p.ICMPCode = b[0], b[1]
		p.PayloadLen = n - 4
		p.Payload = b[4:]
	}
	if !full {
		p.Truncated = true
	}
	return OK
}

func l4Checksum(p *Packet, seg []byte) uint16 {
	return Checksum(seg, p.pseudoHeader(len(seg)))
}

// pseudoHeader returns the unfolded sum of the TCP/UDP pseudo-header for a
// segment of n bytes.
func (p *Packet) pseudoHeader(n int) uint64 {
	var sum uint64
	if p.IPVersion == 4 {
		sum = uint64(binary.BigEndian.Uint32(p.Src[:4])) + uint64(binary.BigEndian.Uint32(p.Dst[:4]))
	} else {
		for i := 0; i < 16; i += 4 {
			sum += uint64(binary.BigEndian.Uint32(p.Src[i:])) + uint64(binary.BigEndian.Uint32(p.Dst[i:]))
		}
	}
	return sum + uint64(p.Proto) + uint64(n)
}

// checksumFailed classifies a TCP/UDP checksum that did not verify (the
// field at ckOff in seg): left to offload when the field holds exactly the
// folded pseudo-header sum, which is what Linux (CHECKSUM_PARTIAL), Windows
// and macOS stacks put there for the NIC; damaged otherwise. Only failed
// checksums come here, so a correct capture pays nothing for it.
func (p *Packet) checksumFailed(seg []byte, ckOff int) {
	if sameSum(binary.BigEndian.Uint16(seg[ckOff:]), fold(p.pseudoHeader(len(seg)))) {
		p.OffloadL4Checksum = true
		return
	}
	p.BadL4Checksum = true
}

// PseudoHeaderSum returns the folded (uncomplemented) sum of a TCP/UDP
// pseudo-header: src and dst addresses (4 or 16 bytes each), protocol and
// segment length. A sender leaving the checksum to its NIC puts this in the
// checksum field.
func PseudoHeaderSum(src, dst []byte, proto uint8, length int) uint16 {
	sum := uint64(proto) + uint64(length)
	for _, a := range [][]byte{src, dst} {
		for i := 0; i+1 < len(a); i += 2 {
			sum += uint64(binary.BigEndian.Uint16(a[i:]))
		}
	}
	return fold(sum)
}

// fold folds a ones' complement sum to 16 bits with end-around carries.
func fold(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// sameSum reports whether two 16-bit ones' complement values are equal:
// 0x0000 and 0xffff are both zero.
func sameSum(a, b uint16) bool {
	return a == b || a == 0 && b == 0xffff || a == 0xffff && b == 0
}

// ICMPError reports whether an ICMP (proto ProtoICMP) or ICMPv6 message of
// type typ is an error message, which quotes the packet it answers:
// destination unreachable, source quench, redirect, time exceeded,
// parameter problem; for ICMPv6 (RFC 4443) types 0–127, packet too big
// among them.
func ICMPError(proto, typ uint8) bool {
	switch proto {
	case ProtoICMP:
		switch typ {
		case 3, 4, 5, 11, 12:
			return true
		}
	case ProtoICMPv6:
		return typ < 128
	}
	return false
}

// headerSumOK reports whether an IPv4 header's checksum is right: inline
// for the usual 20 bytes, where Checksum's loop was a call per packet.
func headerSumOK(h []byte) bool {
	if len(h) != 20 {
		return Checksum(h, 0) == 0
	}
	be := binary.BigEndian
	sum := uint64(be.Uint32(h)) + uint64(be.Uint32(h[4:])) + uint64(be.Uint32(h[8:])) +
		uint64(be.Uint32(h[12:])) + uint64(be.Uint32(h[16:]))
	sum = sum>>32 + sum&0xffffffff
	sum = sum>>16 + sum&0xffff
	sum = sum>>16 + sum&0xffff
	sum = sum>>16 + sum&0xffff
	return sum == 0xffff
}

// Checksum returns the Internet checksum of b with an initial partial sum; a
// correct packet (checksum field included) gives 0.
//
// It adds 64-bit big-endian words with carry: ones' complement sums fold to
// the same 16 bits from any word size, as 2^16 ≡ 1 modulo 2^16-1.
func Checksum(b []byte, initial uint64) uint16 {
	sum, c := initial, uint64(0)
	for len(b) >= 32 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[8:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[16:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	// The last bytes sit where a full big-endian word would put them.
	var tail uint64
	for i, x := range b {
		tail |= uint64(x) << (56 - 8*i)
	}
	sum, c = bits.Add64(sum, tail, c)
	sum, c = bits.Add64(sum, c, 0)
	sum += c // end-around carry; cannot carry again
	sum = sum>>32 + sum&0xffffffff
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
