package decode

import (
	"encoding/binary"
	"math/rand"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tcp4(t *testing.T, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 61, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{198, 51, 100, 7}, Flags: layers.IPv4DontFragment}
	tc := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 11, Ack: 22, SYN: true, ACK: true, Window: 1000}
	tc.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, tc, gopacket.Payload(payload))
}

// TestChecksum: the checksum of gopacket-serialized packets (an independent
// implementation) verifies for every payload length, and a flipped bit fails.
func TestChecksum(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for n := 0; n < 200; n++ {
		payload := make([]byte, n)
		rng.Read(payload)
		ipb := tcp4(t, payload)
		var p Packet
		if k := DecodeIP(ipb, &p); k != OK {
			t.Fatalf("len %d: %s", n, k)
		}
		if p.BadIPChecksum || p.BadL4Checksum {
			t.Fatalf("len %d: good packet flagged bad (ip %v l4 %v)", n, p.BadIPChecksum, p.BadL4Checksum)
		}
		ipb[len(ipb)-1-n/2] ^= 0x10
		DecodeIP(ipb, &p)
		if !p.BadL4Checksum {
			t.Fatalf("len %d: corrupted packet not flagged", n)
		}
	}
}

// TestChecksumOffload: a TCP or UDP checksum field holding the pseudo-header
// sum (what a stack leaving the checksum to its NIC writes there) is told
// apart from damage, over IPv4 and IPv6; any other wrong value is damage.
func TestChecksumOffload(t *testing.T) {
	v4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, SrcIP: net.IP{10, 77, 1, 103}, DstIP: net.IP{198, 18, 31, 86}}
	v6 := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	payload := gopacket.Payload("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	for _, tc := range []struct {
		name  string
		ip    gopacket.NetworkLayer
		proto layers.IPProtocol
		ckOff int
	}{
		{"tcp4", v4, layers.IPProtocolTCP, 16},
		{"udp4", v4, layers.IPProtocolUDP, 6},
		{"tcp6", v6, layers.IPProtocolTCP, 16},
		{"udp6", v6, layers.IPProtocolUDP, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l4 gopacket.SerializableLayer
			switch tc.proto {
			case layers.IPProtocolTCP:
				tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, ACK: true, PSH: true, Window: 500}
				tcp.SetNetworkLayerForChecksum(tc.ip)
				l4 = tcp
			default:
				udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
				udp.SetNetworkLayerForChecksum(tc.ip)
				l4 = udp
			}
			hdrLen := 20
			var src, dst net.IP
			switch ip := tc.ip.(type) {
			case *layers.IPv4:
				ip.Protocol = tc.proto
				src, dst = ip.SrcIP.To4(), ip.DstIP.To4()
			case *layers.IPv6:
				ip.NextHeader = tc.proto
				hdrLen, src, dst = 40, ip.SrcIP, ip.DstIP
			}
			b := serialize(t, tc.ip.(gopacket.SerializableLayer), l4, payload)
			seg := b[hdrLen:]
			decodeOne := func() Packet {
				var p Packet
				if k := DecodeIP(b, &p); k != OK {
					t.Fatalf("decode: %s", k)
				}
				return p
			}
			if p := decodeOne(); p.BadL4Checksum || p.OffloadL4Checksum {
				t.Fatalf("a correct checksum is flagged: bad %v offload %v", p.BadL4Checksum, p.OffloadL4Checksum)
			}
			// The pseudo-header sum, added up here byte pair by byte pair.
			var sum uint32
			for _, a := range [][]byte{src, dst} {
				for i := 0; i < len(a); i += 2 {
					sum += uint32(a[i])<<8 | uint32(a[i+1])
				}
			}
			sum += uint32(tc.proto) + uint32(len(seg))
			for sum > 0xffff {
				sum = sum&0xffff + sum>>16
			}
			if got := PseudoHeaderSum(src, dst, uint8(tc.proto), len(seg)); got != uint16(sum) {
				t.Errorf("PseudoHeaderSum = %#04x, want %#04x", got, sum)
			}
			binary.BigEndian.PutUint16(seg[tc.ckOff:], uint16(sum))
			if p := decodeOne(); p.BadL4Checksum || !p.OffloadL4Checksum {
				t.Errorf("pseudo-header sum in the field: bad %v offload %v, want offload", p.BadL4Checksum, p.OffloadL4Checksum)
			}
			binary.BigEndian.PutUint16(seg[tc.ckOff:], uint16(sum)+1)
			if p := decodeOne(); !p.BadL4Checksum || p.OffloadL4Checksum {
				t.Errorf("a wrong field: bad %v offload %v, want bad", p.BadL4Checksum, p.OffloadL4Checksum)
			}
		})
	}
}

func TestLinkTypes(t *testing.T) {
	ipb := tcp4(t, []byte("hello"))
	mac := []byte{2, 0, 0, 0, 0, 1}
	eth := append(append(append([]byte{}, mac...), mac...), 0x08, 0x00)
	vlan := append(append(append([]byte{}, mac...), mac...), 0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00)
	sll := []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00}
	sll2 := []byte{0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}
	null := binary.LittleEndian.AppendUint32(nil, 2)
	loop := binary.BigEndian.AppendUint32(nil, 2)
	nflog := []byte{2, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0, 0}
	nflog = binary.LittleEndian.AppendUint16(nflog, uint16(4+len(ipb)))
	nflog = binary.LittleEndian.AppendUint16(nflog, 9)
	cases := []struct {
		name   string
		lt     uint32
		prefix []byte
		mac    bool
		vlans  int
	}{
		{"ethernet", LinkEthernet, eth, true, 0},
		{"qinq", LinkEthernet, vlan, true, 2},
		{"sll", LinkSLL, sll, true, 0},
		{"sll2", LinkSLL2, sll2, true, 0},
		{"null", LinkNull, null, false, 0},
		{"loop", LinkLoop, loop, false, 0},
		{"raw", LinkRaw, nil, false, 0},
		{"raw12", LinkRawBSD12, nil, false, 0},
		{"raw14", LinkRawBSD14, nil, false, 0},
		{"ipv4", LinkIPv4, nil, false, 0},
		{"ppp", LinkPPP, []byte{0xff, 0x03, 0x00, 0x21}, false, 0},
		{"nflog", LinkNFLOG, nflog, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			frame := append(append([]byte{}, tc.prefix...), ipb...)
			var p Packet
			if k := Decode(tc.lt, frame, &p); k != OK {
				t.Fatalf("decode: %s", k)
			}
			if p.IPVersion != 4 || p.Proto != ProtoTCP || p.SrcPort != 40000 || p.DstPort != 443 || string(p.Payload) != "hello" ||
				p.Flags != SYN|ACK || p.Seq != 11 || p.TTL != 61 || !p.DF || p.IPLen != len(ipb) {
				t.Errorf("decoded %+v", p)
			}
			if p.HasMAC != tc.mac || p.VLANs != tc.vlans {
				t.Errorf("mac %v vlans %d", p.HasMAC, p.VLANs)
			}
			// Every cut of the frame must decode without panicking.
			for i := 0; i < len(frame); i++ {
				Decode(tc.lt, frame[:i], &p)
			}
		})
	}
	var p Packet
	if k := Decode(147, ipb, &p); k != KindUnknown {
		t.Errorf("unknown link type gave %q", k)
	}
	if k := Decode(LinkEthernet, append(append(append([]byte{}, mac...), mac...), 0x08, 0x06, 0, 1), &p); k != KindNonIP {
		t.Errorf("ARP gave %q", k)
	}
}

// TestIPv6ExtensionHeaders: hop-by-hop and destination options are skipped;
// a fragment header marks a fragment.
func TestIPv6ExtensionHeaders(t *testing.T) {
	src, dst := net.ParseIP("2001:db8::1"), net.ParseIP("2001:db8::2")
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6HopByHop, SrcIP: src, DstIP: dst}
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolIPv6Destination
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	dstOpt := &layers.IPv6Destination{}
	dstOpt.NextHeader = layers.IPProtocolUDP
	dstOpt.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	u := &layers.UDP{SrcPort: 5353, DstPort: 5353}
	u.SetNetworkLayerForChecksum(ip)
	b := serialize(t, ip, hbh, dstOpt, u, gopacket.Payload([]byte("mdns")))
	var p Packet
	if k := DecodeIP(b, &p); k != OK {
		t.Fatalf("decode: %s", k)
	}
	if p.Proto != ProtoUDP || p.SrcPort != 5353 || string(p.Payload) != "mdns" || p.IPLen != len(b) || p.BadL4Checksum {
		t.Errorf("decoded %+v", p)
	}
}

// TestDefrag: IPv4 fragments in any order become one datagram; overlaps and
// duplicates do not break it; bounds drop old datagrams.
func TestDefrag(t *testing.T) {
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i)
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}, Id: 99}
	u := &layers.UDP{SrcPort: 53, DstPort: 4000}
	u.SetNetworkLayerForChecksum(ip)
	whole := serialize(t, ip, u, gopacket.Payload(payload))
	frag := func(off, end int, more bool) []byte {
		f := append([]byte{}, whole[:20]...)
		f = append(f, whole[20+off:20+end]...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		fl := uint16(off / 8)
		if more {
			fl |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], fl)
		return f
	}
	n := len(whole) - 20
	frags := [][]byte{frag(2400, n, false), frag(0, 1200, true), frag(800, 2400, true), frag(0, 1200, true)}
	d := NewDefragmenter()
	var p Packet
	for i, f := range frags {
		if k := DecodeIP(f, &p); k != OK || !p.Fragment {
			t.Fatalf("fragment %d: %s %v", i, k, p.Fragment)
		}
		done, dropped := d.Add(&p, int64(i))
		if dropped != 0 {
			t.Fatalf("dropped %d", dropped)
		}
		if done != (i == 2) {
			t.Fatalf("fragment %d: complete=%v", i, done)
		}
		if done {
			if p.Proto != ProtoUDP || p.SrcPort != 53 || p.PayloadLen != len(payload) || string(p.Payload) != string(payload) || p.BadL4Checksum || p.IPLen != len(whole) {
				t.Fatalf("reassembled %d bytes, ports %d/%d, bad sum %v", p.PayloadLen, p.SrcPort, p.DstPort, p.BadL4Checksum)
			}
		}
	}
	// Bounds: a small defragmenter drops the oldest and times out.
	d = &Defragmenter{MaxDatagrams: 2, Timeout: 10, m: map[fragKey]*fragBuf{}}
	for id := 0; id < 3; id++ {
		f := frag(0, 1200, true)
		binary.BigEndian.PutUint16(f[4:], uint16(id))
		DecodeIP(f, &p)
		_, dropped := d.Add(&p, 0)
		if want := map[bool]int{true: 1, false: 0}[id == 2]; dropped != want {
			t.Errorf("datagram %d: dropped %d, want %d", id, dropped, want)
		}
	}
	f := frag(0, 1200, true)
	binary.BigEndian.PutUint16(f[4:], 50)
	DecodeIP(f, &p)
	if _, dropped := d.Add(&p, 100); dropped != 2 {
		t.Errorf("timeout dropped %d, want 2", dropped)
	}
	if d.Pending() != 1 {
		t.Errorf("pending after flush")
	}
}

// FuzzDecode decodes arbitrary frames of every link type, and reads them
// as the payload of each tunnel too.
func FuzzDecode(f *testing.F) {
	f.Add(uint32(LinkEthernet), []byte{})
	f.Add(uint32(LinkRaw), []byte{0x45, 0, 0, 20})
	f.Add(uint32(LinkRaw), []byte{0x60, 0, 0, 0, 0, 8, 44, 64})
	ip := []byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0x12, 0xb5, 0, 8, 0, 0}
	eth := append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00}, ip...)
	f.Add(uint32(LinkEthernet), append([]byte{0, 0, 0x65, 0x58}, eth...))                                        // GRE
	f.Add(uint32(LinkEthernet), append([]byte{8, 0, 0, 0, 0, 0, 1, 0}, eth...))                                  // VXLAN
	f.Add(uint32(LinkEthernet), append([]byte{0x34, 0xff, 0, 36, 0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0, 0, 0}, ip...)) // GTP-U
	f.Add(uint32(LinkEthernet), append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0x64, 0x11, 0, 0, 1, 0, 30, 0, 0x21}, ip...))
	f.Add(uint32(LinkEthernet), append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0x47, 0, 0, 1, 0x40}, ip...))
	f.Fuzz(func(t *testing.T, lt uint32, b []byte) {
		var p Packet
		k := Decode(lt%300, b, &p)
		if k == OK && p.Fragment {
			NewDefragmenter().Add(&p, 0)
		}
		if k == KindNonIP {
			_ = NonIPName(&p)
		}
		for _, tunnel := range []func([]byte) ([]byte, Inner){GRE, VXLAN, Geneve, GTPU} {
			if in, kind := tunnel(b); kind != InnerNone {
				if len(in) > len(b) {
					t.Fatal("inner frame longer than its tunnel packet")
				}
				DecodeInner(kind, in, &p)
			}
		}
		DecodeInner(InnerMPLS, b, &p)
		DecodeInner(InnerPPP, b, &p)
	})
}

// TestChecksumWords: Checksum (64-bit words with carry) equals the textbook
// 16-bit ones' complement sum (RFC 1071) for every length and odd offsets.
func TestChecksumWords(t *testing.T) {
	rfc1071 := func(b []byte, initial uint64) uint16 {
		sum := initial
		for len(b) >= 2 {
			sum += uint64(b[0])<<8 | uint64(b[1])
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint64(b[0]) << 8
		}
		for sum>>16 != 0 {
			sum = sum>>16 + sum&0xffff
		}
		return ^uint16(sum)
	}
	rng := rand.New(rand.NewSource(1))
	buf := make([]byte, 300)
	for n := 0; n <= len(buf); n++ {
		for _, fill := range []byte{0, 0xff, 1} {
			for i := range buf {
				buf[i] = fill
				if fill == 1 {
					buf[i] = byte(rng.Uint32())
				}
			}
			for _, initial := range []uint64{0, 0xffff, 1 << 33, rng.Uint64() >> 20} {
				if got, want := Checksum(buf[:n], initial), rfc1071(buf[:n], initial); got != want {
					t.Fatalf("len %d fill %#x initial %#x: Checksum %#04x, RFC 1071 sum %#04x", n, fill, initial, got, want)
				}
			}
		}
	}
}

// TestHeaderSumOK: the 20-byte fast path agrees with Checksum, on right
// checksums (set the usual way) and wrong ones.
func TestHeaderSumOK(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for i := range 100000 {
		h := make([]byte, 20)
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		switch i % 4 {
		case 0, 1: // a right checksum
			h[10], h[11] = 0, 0
			binary.BigEndian.PutUint16(h[10:], Checksum(h, 0))
		case 2: // all ones and all zeros words, the ones' complement edge cases
			for j := range h {
				h[j] = byte(0xff * (r.Uint32() & 1))
			}
		}
		if got, want := headerSumOK(h), Checksum(h, 0) == 0; got != want {
			t.Fatalf("header % x: headerSumOK %v, Checksum says %v", h, got, want)
		}
	}
	if headerSumOK(make([]byte, 20)) {
		t.Error("an all-zero header passes")
	}
}
