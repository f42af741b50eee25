package analyzer

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Test captures are built here with gopacket serialization. Addresses of the
// scenario: the studied machine, its router/DNS server, a web server.
var (
	macGuest  = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	macRouter = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}
	ipGuest   = net.IP{10, 0, 0, 2}
	ipRouter  = net.IP{10, 0, 0, 1}
	ipWeb     = net.IP{93, 184, 216, 34}
	ipWeb6    = net.ParseIP("2606:2800:220:1::1")
	ipGuest6  = net.ParseIP("fd00::2")
)

// capPkt is a packet to write: a full link-layer frame.
type capPkt struct {
	ts      time.Time
	data    []byte
	origLen int // 0: len(data)
	iface   int
}

// ipPkt describes one IP packet to build.
type ipPkt struct {
	src, dst   net.IP
	proto      string // "tcp", "udp", "icmp"
	sport      uint16
	dport      uint16
	flags      string // TCP flags: S, A, F, R, P
	seq, ack   uint32
	payload    []byte
	ttl        uint8
	badSum     bool
	window     uint16
	synOptions bool
	ipID       uint16
	icmp       layers.ICMPv4TypeCode // for proto "icmp"; zero: echo request
}

func mustSerialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// buildIP returns the IP packet bytes.
func buildIP(t testing.TB, p ipPkt) []byte {
	t.Helper()
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	var netl gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	v6 := p.src.To4() == nil
	proto := layers.IPProtocolTCP
	switch p.proto {
	case "udp":
		proto = layers.IPProtocolUDP
	case "icmp":
		proto = layers.IPProtocolICMPv4
	}
	if v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: proto, SrcIP: p.src, DstIP: p.dst}
		netl, ipl = ip, ip
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Protocol: proto, SrcIP: p.src, DstIP: p.dst, Flags: layers.IPv4DontFragment, Id: p.ipID}
		netl, ipl = ip, ip
	}
	var b []byte
	switch p.proto {
	case "udp":
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		u.SetNetworkLayerForChecksum(netl)
		b = mustSerialize(t, ipl, u, gopacket.Payload(p.payload))
	case "icmp":
		tc := p.icmp
		if tc == 0 {
			tc = layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)
		}
		ic := &layers.ICMPv4{TypeCode: tc, Id: 1, Seq: 1}
		b = mustSerialize(t, ipl, ic, gopacket.Payload(p.payload))
	default:
		win := p.window
		if win == 0 {
			win = 64240
		}
		tc := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), Seq: p.seq, Ack: p.ack, Window: win}
		for _, f := range p.flags {
			switch f {
			case 'S':
				tc.SYN = true
			case 'A':
				tc.ACK = true
			case 'F':
				tc.FIN = true
			case 'R':
				tc.RST = true
			case 'P':
				tc.PSH = true
			}
		}
		if tc.SYN {
			tc.Options = []layers.TCPOption{
				{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
				{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
				{OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
			}
		}
		tc.SetNetworkLayerForChecksum(netl)
		b = mustSerialize(t, ipl, tc, gopacket.Payload(p.payload))
	}
	if p.badSum {
		// Break the transport checksum (NIC offload style), keep everything else.
		off := 20
		if v6 {
			off = 40
		}
		switch p.proto {
		case "udp":
			b[off+6] ^= 0x5a
		case "tcp", "":
			b[off+16] ^= 0x5a
		}
	}
	return b
}

// Link-layer wrappers.
func ether(src, dst net.HardwareAddr, ip []byte, vlans ...uint16) []byte {
	var b []byte
	b = append(b, dst...)
	b = append(b, src...)
	for _, v := range vlans {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	et := uint16(0x0800)
	if ip[0]>>4 == 6 {
		et = 0x86dd
	}
	b = binary.BigEndian.AppendUint16(b, et)
	return append(b, ip...)
}

func sll(src net.HardwareAddr, ip []byte) []byte {
	b := []byte{0, 0, 0, 1, 0, 6}
	b = append(b, src...)
	b = append(b, 0, 0)
	et := uint16(0x0800)
	if ip[0]>>4 == 6 {
		et = 0x86dd
	}
	b = binary.BigEndian.AppendUint16(b, et)
	return append(b, ip...)
}

func sll2(src net.HardwareAddr, ip []byte) []byte {
	et := uint16(0x0800)
	if ip[0]>>4 == 6 {
		et = 0x86dd
	}
	b := binary.BigEndian.AppendUint16(nil, et)
	b = append(b, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6)
	b = append(b, src...)
	b = append(b, 0, 0)
	return append(b, ip...)
}

func null(ip []byte) []byte {
	fam := uint32(2)
	if ip[0]>>4 == 6 {
		fam = 30
	}
	return append(binary.LittleEndian.AppendUint32(nil, fam), ip...)
}

func loop(ip []byte) []byte {
	fam := uint32(2)
	if ip[0]>>4 == 6 {
		fam = 30
	}
	return append(binary.BigEndian.AppendUint32(nil, fam), ip...)
}

// writePcap writes a classic pcap file with one link type.
func writePcap(t testing.TB, path string, lt layers.LinkType, pkts []capPkt) {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(262144, lt); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		ol := p.origLen
		if ol == 0 {
			ol = len(p.data)
		}
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: ol}, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writePcapng writes a pcapng file with one interface per link type given.
func writePcapng(t testing.TB, path string, lts []layers.LinkType, pkts []capPkt) {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: "if0", LinkType: lts[0], SnapLength: 262144, TimestampResolution: 9}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, lt := range lts[1:] {
		id, err := w.AddInterface(pcapgo.NgInterface{Name: "if" + string(rune('1'+i)), LinkType: lt, SnapLength: 262144, TimestampResolution: 9})
		if err != nil || id != i+1 {
			t.Fatalf("add interface: %v", err)
		}
	}
	for _, p := range pkts {
		ol := p.origLen
		if ol == 0 {
			ol = len(p.data)
		}
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: ol, InterfaceIndex: p.iface}, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func gzipFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tlsHellos returns a real ClientHello record written by crypto/tls with the
// given SNI and ALPN, and the server's first record (its ServerHello), with
// randomness from a fixed stream so the bytes are the same on every run.
func tlsHellos(t testing.TB, sni string) (clientHello, serverHello []byte) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{sni},
		NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1900000000, 0)}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	cConn, sConn := net.Pipe()
	cRec, sRec := &recorder{Conn: cConn}, &recorder{Conn: sConn}
	deadline := time.Now().Add(10 * time.Second)
	cConn.SetDeadline(deadline)
	sConn.SetDeadline(deadline)
	client := tls.Client(cRec, &tls.Config{ServerName: sni, NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true,
		Rand: zeroReader{}, CurvePreferences: []tls.CurveID{tls.X25519}, Time: func() time.Time { return time.Unix(1800000000, 0) }})
	server := tls.Server(sRec, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"},
		Rand: zeroReader{}, CurvePreferences: []tls.CurveID{tls.X25519}, Time: func() time.Time { return time.Unix(1800000000, 0) }})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); client.Handshake() }()
	go func() { defer wg.Done(); server.Handshake() }()
	wg.Wait()
	cConn.Close()
	sConn.Close()
	return firstRecord(t, cRec.written()), firstRecord(t, sRec.written())
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = 0x42
	}
	return len(b), nil
}

type recorder struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func (r *recorder) written() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.out.Bytes()...)
}

func firstRecord(t testing.TB, b []byte) []byte {
	t.Helper()
	if len(b) < 5 {
		t.Fatalf("no TLS record written (%d bytes)", len(b))
	}
	n := 5 + int(binary.BigEndian.Uint16(b[3:]))
	if len(b) < n {
		t.Fatalf("short TLS record")
	}
	return b[:n]
}

// dnsMsg builds a DNS query or response with gopacket.
func dnsMsg(t testing.TB, id uint16, q string, resp bool, answers ...layers.DNSResourceRecord) []byte {
	t.Helper()
	d := &layers.DNS{ID: id, QR: resp, RD: true, RA: resp, OpCode: layers.DNSOpCodeQuery,
		Questions: []layers.DNSQuestion{{Name: []byte(q), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}, Answers: answers}
	return mustSerialize(t, d)
}

func aRecord(name string, ip net.IP, ttl uint32) layers.DNSResourceRecord {
	return layers.DNSResourceRecord{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: ttl, IP: ip}
}

func cnameRecord(name, target string, ttl uint32) layers.DNSResourceRecord {
	return layers.DNSResourceRecord{Name: []byte(name), Type: layers.DNSTypeCNAME, Class: layers.DNSClassIN, TTL: ttl, CNAME: []byte(target)}
}

// dhcpMsg builds a DHCP message with gopacket.
func dhcpMsg(t testing.TB, op layers.DHCPOp, mt layers.DHCPMsgType, xid uint32, yiaddr net.IP, opts ...layers.DHCPOption) []byte {
	t.Helper()
	d := &layers.DHCPv4{Operation: op, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6, Xid: xid,
		ClientHWAddr: macGuest, YourClientIP: yiaddr, ClientIP: net.IPv4zero, NextServerIP: net.IPv4zero, RelayAgentIP: net.IPv4zero}
	if yiaddr == nil {
		d.YourClientIP = net.IPv4zero
	}
	d.Options = append([]layers.DHCPOption{layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(mt)})}, opts...)
	return mustSerialize(t, d)
}

// ntpMsg builds a 48-byte NTP packet.
func ntpMsg(mode, stratum uint8, xmt time.Time) []byte {
	b := make([]byte, 48)
	b[0] = 4<<3 | mode
	b[1] = stratum
	b[2] = 6
	b[3] = 0xe9
	if !xmt.IsZero() {
		sec := uint32(xmt.Unix() + 2208988800)
		binary.BigEndian.PutUint32(b[40:], sec)
	}
	return b
}

// conversation builds the scenario used by the golden and most behaviour
// tests: DHCP, DNS with a CNAME chain, a TLS connection whose ClientHello is
// split over two segments delivered out of order with a retransmission, an
// HTTP connection with two requests, NTP, a rejected connection, ICMP, IPv6.
func conversation(t testing.TB) []capPkt {
	t.Helper()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var out []capPkt
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	g2r := func(ms int, p ipPkt) {
		out = append(out, capPkt{ts: at(ms), data: ether(macGuest, macRouter, buildIP(t, p))})
	}
	r2g := func(ms int, p ipPkt) {
		out = append(out, capPkt{ts: at(ms), data: ether(macRouter, macGuest, buildIP(t, p))})
	}
	bcast := net.IPv4bcast
	// DHCP.
	params := layers.NewDHCPOption(layers.DHCPOptParamsRequest, []byte{1, 3, 6, 15, 119, 252})
	host := layers.NewDHCPOption(layers.DHCPOptHostname, []byte("debian"))
	vendor := layers.NewDHCPOption(layers.DHCPOptClassID, []byte("firstboot-test"))
	g2r(0, ipPkt{src: net.IPv4zero, dst: bcast, proto: "udp", sport: 68, dport: 67, payload: dhcpMsg(t, layers.DHCPOpRequest, layers.DHCPMsgTypeDiscover, 0x1234, nil, params, host, vendor)})
	r2g(5, ipPkt{src: ipRouter, dst: bcast, proto: "udp", sport: 67, dport: 68, payload: dhcpMsg(t, layers.DHCPOpReply, layers.DHCPMsgTypeOffer, 0x1234, ipGuest,
		layers.NewDHCPOption(layers.DHCPOptServerID, ipRouter.To4()), layers.NewDHCPOption(layers.DHCPOptLeaseTime, []byte{0, 0, 0x0e, 0x10}))})
	g2r(10, ipPkt{src: net.IPv4zero, dst: bcast, proto: "udp", sport: 68, dport: 67, payload: dhcpMsg(t, layers.DHCPOpRequest, layers.DHCPMsgTypeRequest, 0x1234, nil,
		layers.NewDHCPOption(layers.DHCPOptRequestIP, ipGuest.To4()), params, host, vendor)})
	r2g(15, ipPkt{src: ipRouter, dst: bcast, proto: "udp", sport: 67, dport: 68, payload: dhcpMsg(t, layers.DHCPOpReply, layers.DHCPMsgTypeAck, 0x1234, ipGuest,
		layers.NewDHCPOption(layers.DHCPOptServerID, ipRouter.To4()), layers.NewDHCPOption(layers.DHCPOptLeaseTime, []byte{0, 0, 0x0e, 0x10}))})
	// DNS: www.example.com → CNAME edge.example.net → A ipWeb.
	g2r(100, ipPkt{src: ipGuest, dst: ipRouter, proto: "udp", sport: 40000, dport: 53, payload: dnsMsg(t, 0xbeef, "www.example.com", false)})
	r2g(120, ipPkt{src: ipRouter, dst: ipGuest, proto: "udp", sport: 53, dport: 40000, payload: dnsMsg(t, 0xbeef, "www.example.com", true,
		cnameRecord("www.example.com", "edge.example.net", 300), aRecord("edge.example.net", ipWeb, 60))})
	// TLS to ipWeb:443, ClientHello split in two, second half first, first half retransmitted.
	ch, sh := tlsHellos(t, "www.example.com")
	half := len(ch) / 2
	cs, ss := uint32(1000), uint32(5000)
	g2r(200, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 443, flags: "S", seq: cs})
	r2g(230, ipPkt{src: ipWeb, dst: ipGuest, sport: 443, dport: 50000, flags: "SA", seq: ss, ack: cs + 1})
	g2r(231, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 443, flags: "A", seq: cs + 1, ack: ss + 1})
	g2r(232, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 443, flags: "PA", seq: cs + 1 + uint32(half), ack: ss + 1, payload: ch[half:]})
	g2r(233, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 443, flags: "A", seq: cs + 1, ack: ss + 1, payload: ch[:half]})
	g2r(240, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 443, flags: "A", seq: cs + 1, ack: ss + 1, payload: ch[:half]}) // retransmission
	r2g(260, ipPkt{src: ipWeb, dst: ipGuest, sport: 443, dport: 50000, flags: "PA", seq: ss + 1, ack: cs + 1 + uint32(len(ch)), payload: sh})
	g2r(270, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 443, flags: "FA", seq: cs + 1 + uint32(len(ch)), ack: ss + 1 + uint32(len(sh))})
	r2g(280, ipPkt{src: ipWeb, dst: ipGuest, sport: 443, dport: 50000, flags: "FA", seq: ss + 1 + uint32(len(sh)), ack: cs + 2 + uint32(len(ch))})
	g2r(281, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 443, flags: "A", seq: cs + 2 + uint32(len(ch)), ack: ss + 2 + uint32(len(sh))})
	// HTTP with two requests on one connection (to ipWeb:80), bad checksum on one packet.
	req1 := []byte("GET /a HTTP/1.1\r\nHost: Www.Example.com\r\nUser-Agent: test/1\r\n\r\n")
	resp1 := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
	req2 := []byte("POST /b HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 3\r\n\r\nabc")
	resp2 := []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
	c2, s2 := uint32(7000), uint32(9000)
	g2r(300, ipPkt{src: ipGuest, dst: ipWeb, sport: 50001, dport: 80, flags: "S", seq: c2})
	r2g(310, ipPkt{src: ipWeb, dst: ipGuest, sport: 80, dport: 50001, flags: "SA", seq: s2, ack: c2 + 1})
	g2r(311, ipPkt{src: ipGuest, dst: ipWeb, sport: 50001, dport: 80, flags: "A", seq: c2 + 1, ack: s2 + 1})
	g2r(312, ipPkt{src: ipGuest, dst: ipWeb, sport: 50001, dport: 80, flags: "PA", seq: c2 + 1, ack: s2 + 1, payload: req1, badSum: true})
	r2g(320, ipPkt{src: ipWeb, dst: ipGuest, sport: 80, dport: 50001, flags: "PA", seq: s2 + 1, ack: c2 + 1 + uint32(len(req1)), payload: resp1})
	g2r(321, ipPkt{src: ipGuest, dst: ipWeb, sport: 50001, dport: 80, flags: "PA", seq: c2 + 1 + uint32(len(req1)), ack: s2 + 1 + uint32(len(resp1)), payload: req2})
	r2g(330, ipPkt{src: ipWeb, dst: ipGuest, sport: 80, dport: 50001, flags: "PA", seq: s2 + 1 + uint32(len(resp1)), ack: c2 + 1 + uint32(len(req1)+len(req2)), payload: resp2})
	r2g(340, ipPkt{src: ipWeb, dst: ipGuest, sport: 80, dport: 50001, flags: "RA", seq: s2 + 1 + uint32(len(resp1)+len(resp2)), ack: c2 + 1 + uint32(len(req1)+len(req2))})
	// NTP.
	g2r(400, ipPkt{src: ipGuest, dst: ipRouter, proto: "udp", sport: 123, dport: 123, payload: ntpMsg(3, 0, time.Date(2026, 11, 23, 9, 59, 59, 0, time.UTC))})
	r2g(410, ipPkt{src: ipRouter, dst: ipGuest, proto: "udp", sport: 123, dport: 123, payload: ntpMsg(4, 2, at(410))})
	// Rejected connection.
	g2r(500, ipPkt{src: ipGuest, dst: ipRouter, sport: 50002, dport: 22, flags: "S", seq: 1})
	r2g(501, ipPkt{src: ipRouter, dst: ipGuest, sport: 22, dport: 50002, flags: "RA", seq: 0, ack: 2})
	// ICMP echo.
	g2r(600, ipPkt{src: ipGuest, dst: ipRouter, proto: "icmp", payload: []byte("ping")})
	// IPv6 SYN without answer.
	out = append(out, capPkt{ts: at(700), data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest6, dst: ipWeb6, sport: 50003, dport: 443, flags: "S", seq: 77}))})
	return out
}

func tempFile(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }
