package dataset

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/firstboot/firstboot/analyzer/decode"
)

// Anonymisation replaces the lab's own identifiers, consistently within a run:
//
//   - unicast MAC addresses become 02:00:00:00:00:NN (locally administered),
//     the machine's first (…:01), the others in order of first appearance;
//   - addresses of the lab subnet become addresses of 192.0.2.0/24 (RFC 5737):
//     the gateway .1, the machine .2, other hosts .3, .4, … in order of first
//     appearance, the network and broadcast addresses .0 and .255;
//   - IPv6 addresses whose interface identifier is derived from a mapped MAC
//     (EUI-64, solicited-node multicast) follow the MAC's pseudonym;
//   - the DHCP hostname becomes a pseudonym of the same length ("host0000…"),
//     so DHCP options and DNS labels keep their lengths.
//
// Every rewrite in a packet keeps its length; checksums are updated
// incrementally (RFC 1624), so a checksum that was right stays right and one
// that was wrong stays wrong by the same amount; one left to NIC offload
// (the pseudo-header sum) becomes the new addresses' pseudo-header sum.
type anonymizer struct {
	keepSecrets bool // copy Decryption Secrets Blocks (Options.KeepTLSSecrets)
	subnet      netip.Prefix
	pseudoNet   netip.Prefix
	lab4        map[netip.Addr]bool // lab addresses outside a known subnet
	ip4         map[netip.Addr]netip.Addr
	next4       int
	ip6         map[netip.Addr]netip.Addr
	macs        map[[6]byte][6]byte
	macOrder    [][6]byte
	host        []byte // lower case
	pseudo      []byte
}

var pseudoNet4 = netip.MustParsePrefix("192.0.2.0/24")

// identifiers are what a run's manifest and first analysis say about the lab.
type identifiers struct {
	MachineMAC string
	MachineIP  string
	OtherIPs   []string
	Gateway    string
	Subnet     string
	Hostname   string
}

func newAnonymizer(id identifiers) (*anonymizer, error) {
	an := &anonymizer{
		pseudoNet: pseudoNet4,
		lab4:      map[netip.Addr]bool{},
		ip4:       map[netip.Addr]netip.Addr{},
		ip6:       map[netip.Addr]netip.Addr{},
		macs:      map[[6]byte][6]byte{},
		next4:     3,
	}
	if id.Subnet != "" {
		p, err := netip.ParsePrefix(id.Subnet)
		if err != nil {
			return nil, fmt.Errorf("anonymize: lab subnet %q: %w", id.Subnet, err)
		}
		if p.Addr().Is4() {
			an.subnet = p.Masked()
		}
	}
	if id.MachineMAC != "" {
		hw, err := net.ParseMAC(id.MachineMAC)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("anonymize: machine MAC %q is not an Ethernet address", id.MachineMAC)
		}
		an.mac([6]byte(hw))
	}
	seed := func(s string, host int) {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return
		}
		an.lab4[a] = true
		if _, done := an.ip4[a]; !done && host > 0 {
			an.ip4[a] = an.pseudoHost(host)
		}
	}
	seed(id.Gateway, 1)
	seed(id.MachineIP, 2)
	for _, s := range id.OtherIPs {
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
			an.ip6[a] = an.mapEUI64(a)
		} else {
			seed(s, 0)
		}
	}
	if h := strings.TrimSpace(id.Hostname); h != "" {
		an.host = []byte(asciiLower(h))
		an.pseudo = pseudoHostname(len(h))
	}
	return an, nil
}

// pseudoHostname returns a DNS-label-safe name of length n.
func pseudoHostname(n int) []byte {
	if n <= 4 {
		return []byte("host"[:n])
	}
	return []byte("host" + strings.Repeat("0", n-4))
}

func (an *anonymizer) pseudoHost(n int) netip.Addr {
	if n <= 254 {
		b := an.pseudoNet.Addr().As4()
		b[3] = byte(n)
		return netip.AddrFrom4(b)
	}
	// More lab hosts than a /24 holds: continue in 198.18.0.0/15 (RFC 2544).
	k := n - 254
	return netip.AddrFrom4([4]byte{198, 18 + byte(k>>16&1), byte(k >> 8), byte(k)})
}

func (an *anonymizer) isLab4(a netip.Addr) bool {
	return an.lab4[a] || (an.subnet.IsValid() && an.subnet.Contains(a))
}

// map4 returns the pseudonym of a lab address, the address itself otherwise.
func (an *anonymizer) map4(a netip.Addr) netip.Addr {
	if p, ok := an.ip4[a]; ok {
		return p
	}
	if !an.isLab4(a) {
		return a
	}
	var p netip.Addr
	switch {
	case an.subnet.IsValid() && a == an.subnet.Addr() && an.subnet.Bits() < 31:
		p = an.pseudoNet.Addr()
	case an.subnet.IsValid() && a == broadcast(an.subnet) && an.subnet.Bits() < 31:
		b := an.pseudoNet.Addr().As4()
		b[3] = 255
		p = netip.AddrFrom4(b)
	default:
		p = an.pseudoHost(an.next4)
		an.next4++
	}
	an.ip4[a] = p
	return p
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// mac returns the pseudonym of a unicast MAC (assigning one on first sight);
// group (multicast, broadcast) addresses are kept.
func (an *anonymizer) mac(m [6]byte) [6]byte {
	if m[0]&1 != 0 {
		return m
	}
	if p, ok := an.macs[m]; ok {
		return p
	}
	n := len(an.macOrder) + 1
	p := [6]byte{0x02, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}
	an.macs[m] = p
	an.macOrder = append(an.macOrder, m)
	return p
}

// mapEUI64 maps an IPv6 address whose interface identifier embeds a mapped
// MAC, and solicited-node multicast addresses of such addresses.
func (an *anonymizer) mapEUI64(a netip.Addr) netip.Addr {
	b := a.As16()
	if b[11] == 0xff && b[12] == 0xfe {
		m := [6]byte{b[8] ^ 0x02, b[9], b[10], b[13], b[14], b[15]}
		if p, ok := an.macs[m]; ok {
			b[8], b[9], b[10], b[13], b[14], b[15] = p[0]^0x02, p[1], p[2], p[3], p[4], p[5]
			return netip.AddrFrom16(b)
		}
	}
	if b[0] == 0xff && b[1] == 0x02 && b[11] == 0x01 && b[12] == 0xff {
		for _, m := range an.macOrder {
			if m[3] == b[13] && m[4] == b[14] && m[5] == b[15] {
				p := an.macs[m]
				b[13], b[14], b[15] = p[3], p[4], p[5]
				return netip.AddrFrom16(b)
			}
		}
	}
	return a
}

func (an *anonymizer) map6(a netip.Addr) netip.Addr {
	if p, ok := an.ip6[a]; ok {
		return p
	}
	p := an.mapEUI64(a)
	if p != a {
		an.ip6[a] = p
	}
	return p
}

// --- packets ---

// Link types the anonymiser understands.
const (
	linkNull     = 0
	linkEthernet = 1
	linkRaw      = 101
	linkSLL      = 113
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276
)

// frame rewrites one captured frame in place.
func (an *anonymizer) frame(linkType uint32, d []byte) error {
	switch linkType {
	case linkEthernet:
		if len(d) < 14 {
			return nil
		}
		an.macAt(d[0:6])
		an.macAt(d[6:12])
		off := 12
		for off+2 <= len(d) {
			et := binary.BigEndian.Uint16(d[off:])
			if et == 0x8100 || et == 0x88a8 || et == 0x9100 {
				off += 4
				continue
			}
			an.l3(et, d[off+2:])
			return nil
		}
	case linkSLL:
		if len(d) < 16 {
			return nil
		}
		if binary.BigEndian.Uint16(d[4:6]) == 6 {
			an.macAt(d[6:12])
		}
		an.l3(binary.BigEndian.Uint16(d[14:16]), d[16:])
	case linkSLL2:
		if len(d) < 20 {
			return nil
		}
		if d[11] == 6 {
			an.macAt(d[12:18])
		}
		an.l3(binary.BigEndian.Uint16(d[0:2]), d[20:])
	case linkRaw, linkIPv4, linkIPv6, 12, 14:
		if len(d) > 0 {
			switch d[0] >> 4 {
			case 4:
				an.ipv4(d)
			case 6:
				an.ipv6(d)
			}
		}
	default:
		return fmt.Errorf("anonymize: link type %d is not supported (Ethernet, Linux SLL/SLL2 and raw IP are); leave out --anonymize for this capture", linkType)
	}
	return nil
}

func (an *anonymizer) macAt(b []byte) {
	if len(b) < 6 {
		return
	}
	m := [6]byte(b[:6])
	if m[0] == 0x33 && m[1] == 0x33 && m[2] == 0xff {
		for _, o := range an.macOrder {
			if o[3] == m[3] && o[4] == m[4] && o[5] == m[5] {
				p := an.macs[o]
				copy(b[3:6], p[3:6])
				return
			}
		}
		return
	}
	p := an.mac(m)
	copy(b, p[:])
}

func (an *anonymizer) l3(ethertype uint16, d []byte) {
	switch ethertype {
	case 0x0800:
		an.ipv4(d)
	case 0x86dd:
		an.ipv6(d)
	case 0x0806:
		an.arp(d)
	}
}

func (an *anonymizer) arp(d []byte) {
	if len(d) < 8 {
		return
	}
	hl, pl := int(d[4]), int(d[5])
	if hl != 6 || pl != 4 || len(d) < 28 {
		return
	}
	an.macAt(d[8:14])
	an.ip4At(d[14:18])
	an.macAt(d[18:24])
	an.ip4At(d[24:28])
}

func (an *anonymizer) ip4At(b []byte) {
	if len(b) < 4 {
		return
	}
	p := an.map4(netip.AddrFrom4([4]byte(b[:4]))).As4()
	copy(b, p[:])
}

func (an *anonymizer) ip6At(b []byte) {
	if len(b) < 16 {
		return
	}
	p := an.map6(netip.AddrFrom16([16]byte(b[:16]))).As16()
	copy(b, p[:])
}

func (an *anonymizer) ipv4(d []byte) {
	if len(d) < 20 {
		return
	}
	ihl := int(d[0]&0x0f) * 4
	if ihl < 20 || len(d) < ihl {
		return
	}
	var oldAddrs [8]byte
	copy(oldAddrs[:], d[12:20])
	an.ip4At(d[12:16])
	an.ip4At(d[16:20])
	if !bytes.Equal(oldAddrs[:], d[12:20]) {
		putCsum(d[10:12], adjustCsum(binary.BigEndian.Uint16(d[10:12]), sum16(oldAddrs[:]), sum16(d[12:20])))
	}
	if binary.BigEndian.Uint16(d[6:8])&0x1fff != 0 {
		return // a later fragment: no transport header here
	}
	an.transport(d[9], oldAddrs[:], d[12:20], d[ihl:])
}

func (an *anonymizer) ipv6(d []byte) {
	if len(d) < 40 {
		return
	}
	var oldAddrs [32]byte
	copy(oldAddrs[:], d[8:40])
	an.ip6At(d[8:24])
	an.ip6At(d[24:40])
	next, off := d[6], 40
	for {
		switch next {
		case 0, 43, 60:
			if off+8 > len(d) {
				return
			}
			next, off = d[off], off+(int(d[off+1])+1)*8
			continue
		case 44:
			if off+8 > len(d) || binary.BigEndian.Uint16(d[off+2:])&0xfff8 != 0 {
				return
			}
			next, off = d[off], off+8
			continue
		}
		break
	}
	if off > len(d) {
		return
	}
	an.transport(next, oldAddrs[:], d[8:40], d[off:])
}

// transport rewrites the payloads that carry lab identifiers and updates the
// transport checksum for the new addresses (pseudo-header) and payload.
func (an *anonymizer) transport(proto byte, oldAddrs, newAddrs, seg []byte) {
	ckOff := -1
	switch proto {
	case 6:
		ckOff = 16
	case 17:
		ckOff = 6
	case 1, 58:
		ckOff = 2
	default:
		return
	}
	if len(seg) < ckOff+2 {
		return
	}
	var old []byte
	if proto != 6 { // TCP payloads are not rewritten: only the pseudo-header changes
		old = append([]byte(nil), seg...)
	}
	switch proto {
	case 17:
		if len(seg) >= 8 {
			sp, dp := binary.BigEndian.Uint16(seg[0:2]), binary.BigEndian.Uint16(seg[2:4])
			pl := seg[8:]
			switch {
			case sp == 67 || sp == 68 || dp == 67 || dp == 68:
				an.dhcp(pl)
			case sp == 546 || sp == 547 || dp == 546 || dp == 547:
				an.macBytes(pl)
				an.hostBytes(pl)
			case isDNSPort(sp) || isDNSPort(dp):
				an.dns(pl)
			}
		}
	case 1:
		an.icmp4(seg)
	case 58:
		if len(seg) >= 24 && (seg[0] == 135 || seg[0] == 136) {
			an.ip6At(seg[8:24])
		}
		if len(seg) > 8 {
			an.macBytes(seg[8:])
		}
	}
	ck := binary.BigEndian.Uint16(seg[ckOff:])
	if proto == 17 && ck == 0 && len(oldAddrs) == 8 {
		return // IPv4 UDP without a checksum
	}
	if proto == 6 || proto == 17 {
		// A checksum left to the sender's NIC holds the pseudo-header sum
		// only: it stays that, for the new addresses, so the analysis of the
		// bundle tells it from damage as it did for the run.
		orig := old
		if orig == nil {
			orig = seg
		}
		n := len(oldAddrs) / 2
		if pseudo := decode.PseudoHeaderSum(oldAddrs[:n], oldAddrs[n:], proto, len(seg)); ck == pseudo && decode.Checksum(orig, uint64(pseudo)) != 0 {
			putCsum(seg[ckOff:], decode.PseudoHeaderSum(newAddrs[:n], newAddrs[n:], proto, len(seg)))
			return
		}
	}
	var oldSum, newSum uint32
	if old != nil {
		oldSum, newSum = sum16(old), sum16(seg)
	}
	if proto != 1 { // ICMPv4 has no pseudo-header
		oldSum += sum16(oldAddrs)
		newSum += sum16(newAddrs)
	}
	nck := adjustCsum(ck, oldSum, newSum)
	if proto == 17 && nck == 0 {
		nck = 0xffff
	}
	putCsum(seg[ckOff:], nck)
}

func isDNSPort(p uint16) bool { return p == 53 || p == 5353 || p == 5355 }

// icmp4 rewrites the IP header an ICMP error quotes.
func (an *anonymizer) icmp4(seg []byte) {
	if len(seg) < 8+20 {
		return
	}
	if !decode.ICMPError(decode.ProtoICMP, seg[0]) {
		return
	}
	in := seg[8:]
	if in[0]>>4 != 4 {
		return
	}
	var old [8]byte
	copy(old[:], in[12:20])
	an.ip4At(in[12:16])
	an.ip4At(in[16:20])
	putCsum(in[10:12], adjustCsum(binary.BigEndian.Uint16(in[10:12]), sum16(old[:]), sum16(in[12:20])))
}

// DHCP option codes whose values are lists of IPv4 addresses.
var dhcpAddrOptions = map[byte]bool{
	3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true, 10: true, 11: true,
	16: true, 28: true, 32: true, 41: true, 42: true, 44: true, 45: true, 48: true,
	49: true, 50: true, 54: true, 65: true, 68: true, 69: true, 70: true, 71: true,
	72: true, 73: true, 74: true, 75: true, 76: true, 118: true,
}

func (an *anonymizer) dhcp(p []byte) {
	if len(p) < 240 || !bytes.Equal(p[236:240], []byte{99, 130, 83, 99}) {
		an.macBytes(p)
		an.hostBytes(p)
		return
	}
	for off := 12; off < 28; off += 4 { // ciaddr, yiaddr, siaddr, giaddr
		an.ip4At(p[off : off+4])
	}
	for o := 240; o < len(p); {
		code := p[o]
		if code == 255 {
			break
		}
		if code == 0 {
			o++
			continue
		}
		if o+2 > len(p) {
			break
		}
		n := int(p[o+1])
		if o+2+n > len(p) {
			break
		}
		if dhcpAddrOptions[code] {
			for i := o + 2; i+4 <= o+2+n; i += 4 {
				an.ip4At(p[i : i+4])
			}
		}
		o += 2 + n
	}
	// chaddr, client identifier (61), DHCP FQDN (81), hostname (12), sname.
	an.macBytes(p[28:])
	an.hostBytes(p[28:])
}

// macBytes replaces every mapped MAC's bytes in p.
func (an *anonymizer) macBytes(p []byte) {
	for _, m := range an.macOrder {
		ps := an.macs[m]
		for i := 0; ; {
			j := bytes.Index(p[i:], m[:])
			if j < 0 {
				break
			}
			copy(p[i+j:], ps[:])
			i += j + 6
		}
	}
}

// hostBytes replaces the hostname, in any case, by its pseudonym (same length).
func (an *anonymizer) hostBytes(p []byte) {
	n := len(an.host)
	if n == 0 {
		return
	}
	for i := 0; i+n <= len(p); i++ {
		if asciiEqualFold(p[i:i+n], an.host) {
			copy(p[i:], an.pseudo)
			i += n - 1
		}
	}
}

// dns rewrites lab addresses in A/AAAA records and labels equal to the hostname.
func (an *anonymizer) dns(p []byte) {
	if len(p) < 12 {
		return
	}
	counts := [4]int{}
	for i := range counts {
		counts[i] = int(binary.BigEndian.Uint16(p[4+2*i:]))
	}
	off := 12
	var ok bool
	for i := 0; i < counts[0]; i++ {
		if off, ok = an.dnsName(p, off); !ok || off+4 > len(p) {
			return
		}
		off += 4
	}
	rrs := counts[1] + counts[2] + counts[3]
	for i := 0; i < rrs; i++ {
		if off, ok = an.dnsName(p, off); !ok || off+10 > len(p) {
			return
		}
		typ := binary.BigEndian.Uint16(p[off:])
		rdlen := int(binary.BigEndian.Uint16(p[off+8:]))
		rd := off + 10
		if rd+rdlen > len(p) {
			return
		}
		switch {
		case typ == 1 && rdlen == 4:
			an.ip4At(p[rd : rd+4])
		case typ == 28 && rdlen == 16:
			an.ip6At(p[rd : rd+16])
		case typ == 2 || typ == 5 || typ == 12:
			an.dnsName(p[:rd+rdlen], rd)
		case typ == 33 && rdlen > 6:
			an.dnsName(p[:rd+rdlen], rd+6)
		}
		off = rd + rdlen
	}
}

// dnsName walks a (possibly compressed) name at off, rewriting labels equal to
// the hostname, and returns the offset after it.
func (an *anonymizer) dnsName(p []byte, off int) (int, bool) {
	for hops := 0; hops < 128; hops++ {
		if off >= len(p) {
			return 0, false
		}
		l := int(p[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xc0 == 0xc0:
			return off + 2, off+2 <= len(p)
		case l&0xc0 != 0:
			return 0, false
		}
		if off+1+l > len(p) {
			return 0, false
		}
		if len(an.host) == l && asciiEqualFold(p[off+1:off+1+l], an.host) {
			copy(p[off+1:], an.pseudo)
		}
		off += 1 + l
	}
	return 0, false
}

// --- checksums (RFC 1071 sums, RFC 1624 incremental update) ---

func sum16(b []byte) uint32 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// adjustCsum returns HC' = ~(~HC + ~m + m') for old sum m and new sum m'.
func adjustCsum(ck uint16, oldSum, newSum uint32) uint16 {
	if fold(oldSum) == fold(newSum) {
		return ck
	}
	s := uint32(^ck) + uint32(^fold(oldSum)) + uint32(fold(newSum))
	return ^fold(s)
}

func putCsum(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func asciiEqualFold(a, lower []byte) bool {
	if len(a) != len(lower) {
		return false
	}
	for i, c := range a {
		if c >= 'A' && c <= 'Z' {
			c += 32
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
