// Package e2etest renders reports from a real analysis: a capture built with
// gopacket serialization, analysed by the analyzer, reported by report. It
// lives apart from package report so that report's own tests never depend on
// the analyzer compiling.
package e2etest

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/results/expect"
	"github.com/firstboot/firstboot/results/report"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	t0       = time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	macGuest = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	macLab   = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
	ipGuest  = net.IP{10, 77, 0, 10}
	ipLab    = net.IP{10, 77, 0, 1}   // the lab's resolver
	ipWeb    = net.IP{10, 77, 0, 80}  // what the resolver answers for every name
	ipNTP    = net.IP{10, 77, 0, 123} // a hard-coded NTP server (no DNS)
)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

type packet struct {
	ts   time.Time
	data []byte
}

// gen builds frames between the guest and the lab.
type gen struct {
	t    *testing.T
	pkts []packet
}

func (g *gen) frame(ts time.Time, srv net.IP, fromGuest bool, transport gopacket.SerializableLayer, payload []byte) {
	g.t.Helper()
	eth := &layers.Ethernet{SrcMAC: macGuest, DstMAC: macLab, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: ipGuest, DstIP: srv, Flags: layers.IPv4DontFragment}
	if !fromGuest {
		eth.SrcMAC, eth.DstMAC = macLab, macGuest
		ip.SrcIP, ip.DstIP = srv, ipGuest
	}
	switch l := transport.(type) {
	case *layers.TCP:
		ip.Protocol = layers.IPProtocolTCP
		l.SetNetworkLayerForChecksum(ip)
	case *layers.UDP:
		ip.Protocol = layers.IPProtocolUDP
		l.SetNetworkLayerForChecksum(ip)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, transport, gopacket.Payload(payload)); err != nil {
		g.t.Fatal(err)
	}
	g.pkts = append(g.pkts, packet{ts, append([]byte(nil), buf.Bytes()...)})
}

func (g *gen) udp(sec float64, srv net.IP, fromGuest bool, sport, dport uint16, payload []byte) {
	g.frame(at(sec), srv, fromGuest, &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, payload)
}

// tcp plays a whole connection: handshake (the guest's SYN carries Linux's
// usual options), one request, one response, FIN both ways.
func (g *gen) tcp(sec float64, srv net.IP, sport, dport uint16, req, resp []byte) {
	c := uint32(1000)
	s := uint32(5000)
	ts := func(d float64) time.Time { return at(sec + d) }
	seg := func(d float64, fromGuest bool, flags string, seq, ack uint32, payload []byte) {
		l := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, Window: 64240}
		if !fromGuest {
			l.SrcPort, l.DstPort, l.Window = l.DstPort, l.SrcPort, 65160
		}
		for _, f := range flags {
			switch f {
			case 'S':
				l.SYN = true
			case 'A':
				l.ACK = true
			case 'P':
				l.PSH = true
			case 'F':
				l.FIN = true
			}
		}
		if l.SYN {
			tsv := make([]byte, 8)
			binary.BigEndian.PutUint32(tsv, 12345)
			l.Options = []layers.TCPOption{
				{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
				{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: tsv},
				{OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
			}
		}
		g.frame(ts(d), srv, fromGuest, l, payload)
	}
	seg(0, true, "S", c, 0, nil)
	seg(0.001, false, "SA", s, c+1, nil)
	seg(0.002, true, "A", c+1, s+1, nil)
	seg(0.003, true, "PA", c+1, s+1, req)
	c += 1 + uint32(len(req))
	seg(0.004, false, "A", s+1, c, nil)
	if len(resp) > 0 {
		seg(0.010, false, "PA", s+1, c, resp)
	}
	s += 1 + uint32(len(resp))
	seg(0.011, true, "A", c, s, nil)
	seg(0.020, true, "FA", c, s, nil)
	seg(0.021, false, "FA", s, c+1, nil)
	seg(0.022, true, "A", c+1, s+1, nil)
}

func dnsExchange(t *testing.T, g *gen, sec float64, sport uint16, id uint16, name string) {
	q := layers.DNSQuestion{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}
	query := &layers.DNS{ID: id, RD: true, QDCount: 1, Questions: []layers.DNSQuestion{q}}
	answer := &layers.DNS{ID: id, QR: true, RD: true, RA: true, QDCount: 1, ANCount: 1, Questions: []layers.DNSQuestion{q},
		Answers: []layers.DNSResourceRecord{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 60, IP: ipWeb}}}
	for i, m := range []*layers.DNS{query, answer} {
		buf := gopacket.NewSerializeBuffer()
		if err := m.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			g.udp(sec, ipLab, true, sport, 53, buf.Bytes())
		} else {
			g.udp(sec+0.004, ipLab, false, 53, sport, buf.Bytes())
		}
	}
}

// clientHello builds a TLS 1.3 ClientHello by its RFC 8446 layout with a
// fixed random and key share, so the capture is the same on every run.
func clientHello(sni string) []byte {
	u16 := func(v int) []byte { return []byte{byte(v >> 8), byte(v)} }
	vec16 := func(b []byte) []byte { return append(u16(len(b)), b...) }
	ext := func(typ int, body []byte) []byte { return append(u16(typ), vec16(body)...) }
	var exts []byte
	exts = append(exts, ext(0x0000, vec16(append([]byte{0}, vec16([]byte(sni))...)))...)   // server_name
	exts = append(exts, ext(0x000a, vec16([]byte{0x00, 0x1d, 0x00, 0x17}))...)             // supported_groups
	exts = append(exts, ext(0x000b, []byte{1, 0})...)                                      // ec_point_formats
	exts = append(exts, ext(0x000d, vec16([]byte{0x04, 0x03, 0x08, 0x04, 0x04, 0x01}))...) // signature_algorithms
	alpn := append(append([]byte{2}, "h2"...), append([]byte{8}, "http/1.1"...)...)
	exts = append(exts, ext(0x0010, vec16(alpn))...)                          // ALPN
	exts = append(exts, ext(0x002b, []byte{4, 0x03, 0x04, 0x03, 0x03})...)    // supported_versions
	share := append(u16(0x001d), vec16(bytes.Repeat([]byte{0x42}, 32))...)    // x25519 key share
	exts = append(exts, ext(0x0033, vec16(share))...)                         // key_share
	body := []byte{0x03, 0x03}                                                // legacy_version
	body = append(body, bytes.Repeat([]byte{0x17}, 32)...)                    // random
	body = append(body, 0)                                                    // session id
	body = append(body, vec16([]byte{0x13, 0x01, 0x13, 0x02, 0xc0, 0x2b})...) // cipher suites
	body = append(body, 1, 0)                                                 // compression: null
	body = append(body, vec16(exts)...)
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return append(append([]byte{0x16, 0x03, 0x01}, u16(len(hs))...), hs...)
}

func ntpPacket(mode byte, stratum byte) []byte {
	p := make([]byte, 48)
	p[0] = 4<<3 | mode // LI 0, version 4
	p[1] = stratum
	p[2], p[3] = 6, 0xe9 // poll 2^6, precision 2^-23
	binary.BigEndian.PutUint32(p[40:], 3_973_000_000)
	return p
}

// buildCapture writes the scenario's traffic: a first-boot step with DNS,
// NTP and a plain-HTTP update check; a browse step with HTTPS to a news site
// and an OCSP request.
func buildCapture(t *testing.T, path string) {
	g := &gen{t: t}
	dnsExchange(t, g, 0.5, 40001, 0x1111, "updates.firstboot.test")
	g.udp(0.6, ipNTP, true, 40002, 123, ntpPacket(3, 0))
	g.udp(0.61, ipNTP, false, 123, 40002, ntpPacket(4, 2))
	g.tcp(1.0, ipWeb, 40003, 80,
		[]byte("GET /check?channel=stable HTTP/1.1\r\nHost: updates.firstboot.test\r\nUser-Agent: fbguest/1 (update)\r\nAccept: */*\r\n\r\n"),
		[]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"))
	dnsExchange(t, g, 12.0, 40004, 0x2222, "news.example.com")
	g.tcp(12.1, ipWeb, 40005, 443, clientHello("news.example.com"), nil)
	ocspReq := bytes.Repeat([]byte{0x30}, 83)
	g.tcp(13.0, ipWeb, 40006, 80,
		append([]byte("POST / HTTP/1.1\r\nHost: ocsp.ca.example\r\nUser-Agent: fbguest/1\r\nContent-Type: application/ocsp-request\r\nContent-Length: 83\r\n\r\n"), ocspReq...),
		[]byte("HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: 0\r\n\r\n"))

	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range g.pkts {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: len(p.data)}, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			if i >= len(gl) || i >= len(wl) || gl[i] != wl[i] {
				var g, w string
				if i < len(gl) {
					g = gl[i]
				}
				if i < len(wl) {
					w = wl[i]
				}
				t.Fatalf("%s differs at line %d:\n got: %.300q\nwant: %.300q", name, i+1, g, w)
			}
		}
	}
}

func TestReportFromAnalysedCapture(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "capture.pcapng")
	buildCapture(t, pcap)
	a, err := analyzer.AnalyzeFile(context.Background(), pcap, analyzer.Options{
		FirstParty: []string{"firstboot.test"},
		Steps:      []analyzer.Step{{Name: "first-boot", Start: at(0), End: at(10)}, {Name: "browse", Start: at(10), End: at(20)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ten := 10
	in := &report.Input{Analysis: a, HasScenario: true, Expectations: expect.Evaluate([]expect.Expect{
		{Absent: []string{"*.tencent.com"}, MaxPlainHTTP: &ten},
		{Step: "browse", Present: []string{"news.example.com"}, ThirdParty: []string{"*.example.com"}},
	}, a)}
	md, err := report.Markdown(in)
	if err != nil {
		t.Fatal(err)
	}
	page, err := report.HTML(in)
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	// Facts the capture was built with, whatever the analyzer's details.
	for _, want := range []string{
		"## Step: first-boot", "## Step: browse",
		"`GET` | `updates.firstboot.test` | `/check?channel=stable` | `fbguest/1 (update)` | `200 OK` |",
		"`POST` (OCSP) | `ocsp.ca.example` | `/` | `fbguest/1` | `200 OK` |",
		"| `news.example.com` | third |",
		"| `updates.firstboot.test` | first |",
		"| Machine IP | 10.77.0.10 |",
		"`Flags [S], win 64240, options [mss 1460,sackOK,TS,nop,wscale 7]`",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// JA4 of the hand-built hello, worked out from the JA4 spec: t13d0307h2
	// (TLS 1.3 over TCP, SNI, 3 ciphers, 7 extensions, ALPN h2);
	// sha256("1301,1302,c02b")[:12]; sha256("000a,000b,000d,002b,0033_0403,0804,0401")[:12]
	// (extensions sorted without SNI and ALPN, then the signature algorithms).
	if !strings.Contains(s, "`t13d0307h2_5559582ccdc4_5e6a61e7dae5`") {
		t.Errorf("report.md lacks the ClientHello's JA4:\n%s", grep(s, "t13"))
	}
	// ocsp.ca.example is third party and not allowed in browse: that check fails.
	met, failed := expect.Count(in.Expectations)
	if failed != 1 || met != 3 {
		t.Errorf("expectations: %d met, %d failed; want 3, 1: %+v", met, failed, in.Expectations)
	}
	golden(t, "capture.md.golden", md)
	golden(t, "capture.html.golden", page)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReportHTTPS reports a capture of real HTTPS clients whose secrets it
// carries (see analyzer's TestGoldenHTTPS): the decrypted requests appear
// under their destinations, not among the plain-HTTP ones.
func TestReportHTTPS(t *testing.T) {
	a, err := analyzer.AnalyzeFile(context.Background(), filepath.Join("..", "..", "..", "analyzer", "testdata", "https-dsb.pcapng"), analyzer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	in := &report.Input{Analysis: a, HasScenario: true, Expectations: expect.Evaluate([]expect.Expect{{MaxPlainHTTP: &zero}}, a)}
	md, err := report.Markdown(in)
	if err != nil {
		t.Fatal(err)
	}
	page, err := report.HTML(in)
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	for _, want := range []string{
		"### HTTPS requests (9)\n\n8 of 8 TLS and QUIC connections decrypted.",
		"#### h1.test\n",
		"| `GET` | `h1.test` | `/one?x=1` | HTTP/1.1 | `curl-h1/1` | `200 OK` | `text/plain` | 11 |",
		"#### h3.test\n",
		"| `GET` | `h3.test` | `/missing/3` | HTTP/3 | `quic-go-h3` | `404` | `text/plain; charset=utf-8` | 19 |",
		"| `GET` | `h2.test` | `/two/page.html` | HTTP/2 | `curl-h2/2` | `200` | `text/plain` | 21 |",
		"### Plain-HTTP requests (0)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if !strings.Contains(string(page), "<h4 class=\"code\">s-client.test</h4>") {
		t.Errorf("report.html lacks the s-client.test group")
	}
	if met, failed := expect.Count(in.Expectations); met != 1 || failed != 0 {
		t.Errorf("no plain HTTP expected and none sent: %d met, %d failed", met, failed)
	}
}
