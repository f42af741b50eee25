package analyzer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/results/schema"
	"github.com/gopacket/gopacket/layers"
)

func analyze(t *testing.T, path string, opts Options) *schema.Analysis {
	t.Helper()
	a, err := AnalyzeFile(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("AnalyzeFile(%s): %v", path, err)
	}
	return a
}

func findConn(t *testing.T, a *schema.Analysis, proto string, respPort uint16) *schema.Conn {
	t.Helper()
	for i := range a.Conns {
		if a.Conns[i].Proto == proto && a.Conns[i].RespP == respPort {
			return &a.Conns[i]
		}
	}
	t.Fatalf("no %s conn to port %d in %d conns", proto, respPort, len(a.Conns))
	return nil
}

// TestConversation checks the facts of the scenario built in conversation().
func TestConversation(t *testing.T) {
	p := tempFile(t, "c.pcap")
	pkts := conversation(t)
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	a := analyze(t, p, Options{FirstParty: []string{"example.com"}})

	s := a.Summary
	if s.Packets != int64(len(pkts)) {
		t.Errorf("packets = %d, want %d", s.Packets, len(pkts))
	}
	if s.TCPConnections != 4 || s.UDPFlows != 4 || s.ICMPFlows != 1 {
		t.Errorf("tcp/udp/icmp = %d/%d/%d, want 4/4/1", s.TCPConnections, s.UDPFlows, s.ICMPFlows)
	}
	if !s.IPv6Seen || s.DNSQueries != 1 {
		t.Errorf("ipv6_seen=%v dns_queries=%d", s.IPv6Seen, s.DNSQueries)
	}
	if s.Warnings.BadTCPChecksums != 1 {
		t.Errorf("bad tcp checksums = %d, want 1 (one packet was built broken)", s.Warnings.BadTCPChecksums)
	}

	tlsConn := findConn(t, a, "tcp", 443)
	if tlsConn.ConnState != "SF" || tlsConn.Service != "ssl" || !strings.Contains(tlsConn.History, "T") {
		t.Errorf("tls conn state=%s service=%s history=%s; want SF, ssl, a retransmission", tlsConn.ConnState, tlsConn.Service, tlsConn.History)
	}
	if tlsConn.Name != "www.example.com" || tlsConn.NameSource != "sni" {
		t.Errorf("tls conn name %s (%s)", tlsConn.Name, tlsConn.NameSource)
	}
	if tlsConn.OrigPkts != 7 || tlsConn.RespPkts != 3 {
		t.Errorf("tls conn pkts %d/%d, want 7/3", tlsConn.OrigPkts, tlsConn.RespPkts)
	}
	ch, sh := tlsHellos(t, "www.example.com")
	if tlsConn.OrigBytes != int64(len(ch)) || tlsConn.RespBytes != int64(len(sh)) {
		t.Errorf("tls conn bytes %d/%d, want %d/%d (retransmission counted once)", tlsConn.OrigBytes, tlsConn.RespBytes, len(ch), len(sh))
	}
	if len(a.TLS) != 1 {
		t.Fatalf("tls records: %d", len(a.TLS))
	}
	tr := a.TLS[0]
	if tr.ServerName != "www.example.com" || tr.Transport != "tcp" || !tr.Established || tr.Version != "TLSv13" {
		t.Errorf("tls record %+v", tr)
	}
	if !strings.HasPrefix(tr.JA4, "t13d") || len(tr.JA3) != 32 || strings.Join(tr.ClientALPN, ",") != "h2,http/1.1" {
		t.Errorf("tls fingerprints ja3=%s ja4=%s alpn=%v", tr.JA3, tr.JA4, tr.ClientALPN)
	}

	httpConn := findConn(t, a, "tcp", 80)
	if httpConn.ConnState != "RSTR" || httpConn.Name != "www.example.com" || httpConn.NameSource != "http_host" {
		t.Errorf("http conn %s %s (%s)", httpConn.ConnState, httpConn.Name, httpConn.NameSource)
	}
	if len(a.HTTP) != 2 {
		t.Fatalf("http records: %d, want 2", len(a.HTTP))
	}
	h1, h2 := a.HTTP[0], a.HTTP[1]
	if h1.Method != "GET" || h1.URI != "/a" || h1.StatusCode != 200 || h1.ResponseBodyLen != 5 || h1.UserAgent != "test/1" || h1.TransDepth != 1 {
		t.Errorf("first request %+v", h1)
	}
	if h2.Method != "POST" || h2.RequestBodyLen != 3 || h2.StatusCode != 404 || h2.ResponseBodyLen != 0 || h2.TransDepth != 2 {
		t.Errorf("second request %+v", h2)
	}

	rej := findConn(t, a, "tcp", 22)
	if rej.ConnState != "REJ" {
		t.Errorf("rejected conn state %s", rej.ConnState)
	}
	for _, c := range a.Conns {
		if c.OrigH == "fd00::2" && c.ConnState != "S0" {
			t.Errorf("unanswered IPv6 SYN state %s, want S0", c.ConnState)
		}
	}

	if len(a.DNS) != 1 {
		t.Fatalf("dns records %d", len(a.DNS))
	}
	d := a.DNS[0]
	if d.Query != "www.example.com" || d.QTypeName != "A" || d.RcodeName != "NOERROR" || d.RTT == nil || *d.RTT != 0.02 ||
		strings.Join(d.Answers, ",") != "edge.example.net,93.184.216.34" || d.Kind != "dns" {
		t.Errorf("dns record %+v", d)
	}

	if len(a.NTP) != 2 || a.NTP[0].Mode != 3 || a.NTP[1].Mode != 4 || a.NTP[1].Stratum != 2 || a.NTP[1].Sender != "10.0.0.1" {
		t.Errorf("ntp records %+v", a.NTP)
	}
	if len(a.DHCP) != 1 || strings.Join(a.DHCP[0].MsgTypes, ",") != "DISCOVER,OFFER,REQUEST,ACK" || a.DHCP[0].AssignedAddr != "10.0.0.2" ||
		a.DHCP[0].ParamList != "1,3,6,15,119,252" || len(a.DHCP[0].UIDs) != 2 {
		t.Errorf("dhcp records %+v", a.DHCP)
	}
	want := schema.Host{IP: "10.0.0.2", OtherIPs: []string{"fd00::2"}, MAC: "52:54:00:12:34:56", DHCPHostname: "debian",
		DHCPVendorClass: "firstboot-test", DHCPParamList: "1,3,6,15,119,252", Method: "dhcp"}
	if got := a.Host; got.IP != want.IP || got.MAC != want.MAC || got.DHCPHostname != want.DHCPHostname ||
		got.DHCPVendorClass != want.DHCPVendorClass || got.DHCPParamList != want.DHCPParamList || got.Method != want.Method ||
		strings.Join(got.OtherIPs, ",") != "fd00::2" {
		t.Errorf("host = %+v, want %+v", got, want)
	}

	var web *schema.Destination
	for i := range a.Destinations {
		if a.Destinations[i].Name == "www.example.com" {
			web = &a.Destinations[i]
		}
	}
	if web == nil {
		t.Fatalf("no destination www.example.com: %+v", a.Destinations)
	}
	if web.Connections != 2 || web.Org != "example.com" || web.Party != "first" || strings.Join(web.Protocols, ",") != "http,ssl" {
		t.Errorf("destination %+v", web)
	}
	if web.BytesUp != tlsConn.OrigIPBytes+httpConn.OrigIPBytes || web.BytesDown != tlsConn.RespIPBytes+httpConn.RespIPBytes {
		t.Errorf("destination bytes %d/%d", web.BytesUp, web.BytesDown)
	}

	var synFP bool
	for _, f := range a.Fingerprints {
		if f.Host == "10.0.0.2" && f.Kind == "syn" {
			synFP = true
			if f.Count != 3 || f.ITTL != 64 || !f.DF || !strings.HasPrefix(f.P0f, "4:64+0:") {
				t.Errorf("syn fingerprint %+v", f)
			}
		}
	}
	if !synFP {
		t.Errorf("no SYN fingerprint for the guest: %+v", a.Fingerprints)
	}
}

// TestDNSAttribution: without SNI or Host, the most recent DNS answer before
// the connection names it; a later answer does not rename earlier connections.
func TestDNSAttribution(t *testing.T) {
	t0 := time.Unix(1800000000, 0).UTC()
	var pkts []capPkt
	add := func(ms int, p ipPkt) {
		pkts = append(pkts, capPkt{ts: t0.Add(time.Duration(ms) * time.Millisecond), data: ether(macGuest, macRouter, buildIP(t, p))})
	}
	add(0, ipPkt{src: ipRouter, dst: ipGuest, proto: "udp", sport: 53, dport: 40000, payload: dnsMsg(t, 1, "first.example", true, aRecord("first.example", ipWeb, 60))})
	add(10, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 8443, flags: "S", seq: 1})
	add(20, ipPkt{src: ipRouter, dst: ipGuest, proto: "udp", sport: 53, dport: 40001, payload: dnsMsg(t, 2, "second.example", true,
		cnameRecord("second.example", "a.cdn.example", 60), cnameRecord("a.cdn.example", "b.cdn.example", 60), aRecord("b.cdn.example", ipWeb, 60))})
	add(30, ipPkt{src: ipGuest, dst: ipWeb, sport: 50001, dport: 8443, flags: "S", seq: 1})
	// The lab resolver (the router) answers a name with its own address: DNS,
	// NTP and plain TCP to the resolver keep its address (infrastructure rule).
	add(35, ipPkt{src: ipRouter, dst: ipGuest, proto: "udp", sport: 53, dport: 40002, payload: dnsMsg(t, 3, "q4.host34.example.org", true, aRecord("q4.host34.example.org", ipRouter, 60))})
	add(40, ipPkt{src: ipGuest, dst: ipRouter, sport: 50002, dport: 8443, flags: "S", seq: 1})
	add(45, ipPkt{src: ipGuest, dst: ipRouter, proto: "udp", sport: 40003, dport: 53, payload: dnsMsg(t, 4, "later.example", false)})
	add(50, ipPkt{src: ipGuest, dst: ipRouter, proto: "udp", sport: 40004, dport: 123, payload: ntpMsg(3, 0, t0)})
	// NTP to a server that is not a resolver keeps its DNS name.
	add(55, ipPkt{src: ipGuest, dst: ipWeb, proto: "udp", sport: 40005, dport: 123, payload: ntpMsg(3, 0, t0)})
	p := tempFile(t, "a.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	a := analyze(t, p, Options{})
	got := map[uint16]string{}
	for _, c := range a.Conns {
		got[c.OrigP] = c.Name + "/" + c.NameSource
	}
	want := map[uint16]string{50000: "first.example/dns", 50001: "second.example/dns", 50002: "10.0.0.1/ip",
		40002: "10.0.0.1/ip", 40003: "10.0.0.1/ip", 40004: "10.0.0.1/ip", 40005: "second.example/dns"}
	for port, w := range want {
		if got[port] != w {
			t.Errorf("conn from port %d named %q, want %q", port, got[port], w)
		}
	}
	for _, d := range a.Destinations {
		want := "unknown" // no first-party list given
		if d.Name == "10.0.0.1" {
			want = "local" // a private address: the local network, no party
		}
		if d.Party != want {
			t.Errorf("destination %s party %s, want %s", d.Name, d.Party, want)
		}
	}
}

// TestResolverRuleAtFlush: a connection is named when its flow ends, so the
// resolver rule (schema.Destination) counts only DNS answers its responder
// sent before that: a connection that timed out before the address answered
// DNS keeps the DNS name, a later one to the same address keeps the address.
func TestResolverRuleAtFlush(t *testing.T) {
	t0 := time.Unix(1800000000, 0).UTC()
	var pkts []capPkt
	add := func(at time.Duration, p ipPkt) {
		pkts = append(pkts, capPkt{ts: t0.Add(at), data: ether(macGuest, macRouter, buildIP(t, p))})
	}
	add(0, ipPkt{src: ipRouter, dst: ipGuest, proto: "udp", sport: 53, dport: 40000, payload: dnsMsg(t, 1, "svc.example", true, aRecord("svc.example", ipWeb, 60))})
	add(10*time.Millisecond, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 8443, flags: "S", seq: 1})
	// Past the TCP timeout any packet ends the first connection (timeouts
	// are checked as packet time passes). Then ipWeb answers DNS.
	add(350*time.Second, ipPkt{src: ipGuest, dst: ipRouter, proto: "udp", sport: 40002, dport: 123, payload: ntpMsg(3, 0, t0)})
	add(400*time.Second, ipPkt{src: ipWeb, dst: ipGuest, proto: "udp", sport: 53, dport: 40001, payload: dnsMsg(t, 2, "other.example", true, aRecord("other.example", ipRouter, 60))})
	add(401*time.Second, ipPkt{src: ipGuest, dst: ipWeb, sport: 50001, dport: 8443, flags: "S", seq: 1})
	p := tempFile(t, "r.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	a := analyze(t, p, Options{})
	got := map[uint16]string{}
	for _, c := range a.Conns {
		got[c.OrigP] = c.Name + "/" + c.NameSource
	}
	want := map[uint16]string{50000: "svc.example/dns", 50001: ipWeb.String() + "/ip"}
	for port, w := range want {
		if got[port] != w {
			t.Errorf("conn from port %d named %q, want %q", port, got[port], w)
		}
	}
}

// TestLinkTypes analyses the same packets under every supported link layer
// and file format; the connections must come out the same.
func TestLinkTypes(t *testing.T) {
	base := conversation(t)
	strip := func(b []byte) []byte { return b[14:] } // the IP packet of an Ethernet frame
	ref := tempFile(t, "ref.pcap")
	writePcap(t, ref, layers.LinkTypeEthernet, base)
	want := analyze(t, ref, Options{})

	conv := func(f func(ip []byte, i int) []byte) []capPkt {
		out := make([]capPkt, len(base))
		for i, p := range base {
			out[i] = capPkt{ts: p.ts, data: f(strip(p.data), i)}
		}
		return out
	}
	srcMAC := func(i int) net.HardwareAddr { return net.HardwareAddr(base[i].data[6:12]) }
	cases := []struct {
		name  string
		lt    layers.LinkType
		ng    bool
		pkts  []capPkt
		l2    bool // MAC addresses survive
		multi []layers.LinkType
	}{
		{name: "vlan", lt: layers.LinkTypeEthernet, l2: true, pkts: conv(func(ip []byte, i int) []byte { return ether(srcMAC(i), macRouter, ip, 100) })},
		{name: "qinq", lt: layers.LinkTypeEthernet, l2: true, pkts: conv(func(ip []byte, i int) []byte { return ether(srcMAC(i), macRouter, ip, 200, 100) })},
		{name: "sll", lt: layers.LinkTypeLinuxSLL, pkts: conv(func(ip []byte, i int) []byte { return sll(srcMAC(i), ip) })},
		{name: "sll2", lt: layers.LinkType(276), pkts: conv(func(ip []byte, i int) []byte { return sll2(srcMAC(i), ip) })},
		{name: "null", lt: layers.LinkTypeNull, pkts: conv(func(ip []byte, i int) []byte { return null(ip) })},
		{name: "loop", lt: layers.LinkTypeLoop, pkts: conv(func(ip []byte, i int) []byte { return loop(ip) })},
		{name: "raw101", lt: layers.LinkTypeRaw, pkts: conv(func(ip []byte, i int) []byte { return ip })},
		{name: "raw12", lt: layers.LinkType(12), pkts: conv(func(ip []byte, i int) []byte { return ip })},
		{name: "raw14", lt: layers.LinkType(14), pkts: conv(func(ip []byte, i int) []byte { return ip })},
		{name: "pcapng-ethernet", lt: layers.LinkTypeEthernet, ng: true, l2: true, pkts: base},
		{name: "pcapng-mixed", ng: true, multi: []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeRaw},
			pkts: conv(func(ip []byte, i int) []byte {
				switch i % 3 {
				case 0:
					return ether(srcMAC(i), macRouter, ip)
				case 1:
					return sll(srcMAC(i), ip)
				}
				return ip
			})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := tempFile(t, "x.cap")
			switch {
			case tc.multi != nil:
				for i := range tc.pkts {
					tc.pkts[i].iface = i % 3
				}
				writePcapng(t, p, tc.multi, tc.pkts)
			case tc.ng:
				writePcapng(t, p, []layers.LinkType{tc.lt}, tc.pkts)
			default:
				writePcap(t, p, tc.lt, tc.pkts)
			}
			got := analyze(t, p, Options{})
			if len(got.Conns) != len(want.Conns) {
				t.Fatalf("%d conns, want %d", len(got.Conns), len(want.Conns))
			}
			for i := range got.Conns {
				g, w := got.Conns[i], want.Conns[i]
				if !tc.l2 {
					w.OrigL2Addr, w.RespL2Addr = g.OrigL2Addr, g.RespL2Addr
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("conn %d:\n got %+v\nwant %+v", i, g, w)
				}
			}
			if len(got.TLS) != 1 || got.TLS[0].JA4 != want.TLS[0].JA4 || len(got.DNS) != 1 || len(got.HTTP) != 2 {
				t.Errorf("records tls=%d dns=%d http=%d", len(got.TLS), len(got.DNS), len(got.HTTP))
			}
			if n := len(got.Summary.Warnings.DecodeErrors) + len(got.Summary.Warnings.UnknownLinkTypes); n != 0 {
				t.Errorf("decode warnings: %+v", got.Summary.Warnings)
			}
			if tc.multi != nil && got.Input.Interfaces != 3 {
				t.Errorf("interfaces = %d", got.Input.Interfaces)
			}
			tsharkCheck(t, p, got)
		})
	}
}

// tsharkCheck compares packet, byte and TCP conversation counts with tshark,
// an independent reader of the same file.
func tsharkCheck(t *testing.T, path string, a *schema.Analysis) {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed: cross-check skipped")
		return
	}
	// One run: per-frame lengths, then the conversation table.
	out, err := exec.Command("tshark", "-n", "-r", path, "-T", "fields", "-e", "frame.len", "-z", "conv,tcp").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	var frames, bytes int64
	for _, l := range strings.Split(string(out), "\n") {
		if n, err := strconv.ParseInt(strings.TrimSpace(l), 10, 64); err == nil {
			frames++
			bytes += n
		}
	}
	if frames != a.Summary.Packets || bytes != a.Summary.FrameBytes {
		t.Errorf("tshark counts %d frames %d bytes; analyzer %d, %d", frames, bytes, a.Summary.Packets, a.Summary.FrameBytes)
	}
	convs := int64(strings.Count(string(out), "<->"))
	if convs != a.Summary.TCPConnections {
		t.Errorf("tshark sees %d TCP conversations, analyzer %d", convs, a.Summary.TCPConnections)
	}
}

// TestFileFormats: pcap, pcapng and gzip of either, under lying extensions,
// give the same analysis.
func TestFileFormats(t *testing.T) {
	pkts := conversation(t)
	dir := t.TempDir()
	pcap := filepath.Join(dir, "is-pcap.pcapng")
	ng := filepath.Join(dir, "is-pcapng.pcap")
	writePcap(t, pcap, layers.LinkTypeEthernet, pkts)
	writePcapng(t, ng, []layers.LinkType{layers.LinkTypeEthernet}, pkts)
	gz := filepath.Join(dir, "plain.pcap")
	gzipFile(t, ng, gz)
	want := analyze(t, pcap, Options{})
	for _, tc := range []struct {
		path, format string
		gzip         bool
	}{{pcap, "pcap", false}, {ng, "pcapng", false}, {gz, "pcapng", true}} {
		a := analyze(t, tc.path, Options{})
		if a.Input.Format != tc.format || a.Input.Gzip != tc.gzip {
			t.Errorf("%s: format %s gzip %v, want %s %v", tc.path, a.Input.Format, a.Input.Gzip, tc.format, tc.gzip)
		}
		a.Input = want.Input
		g, _ := MarshalAnalysis(a)
		w, _ := MarshalAnalysis(want)
		if !bytes.Equal(g, w) {
			t.Errorf("%s: analysis differs from the pcap's", tc.path)
		}
	}
}

// fragment splits an IPv4 packet into fragments of the given payload size.
func fragment(ip []byte, size int) [][]byte {
	ihl := int(ip[0]&0xf) * 4
	payload := ip[ihl:]
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		f := append([]byte(nil), ip[:ihl]...)
		f = append(f, payload[off:end]...)
		f[2], f[3] = byte(len(f)>>8), byte(len(f))
		fl := uint16(off / 8)
		if end < len(payload) {
			fl |= 0x2000
		}
		f[6], f[7] = byte(fl>>8), byte(fl)
		f[10], f[11] = 0, 0
		var sum uint32
		for i := 0; i < ihl; i += 2 {
			sum += uint32(f[i])<<8 | uint32(f[i+1])
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		cs := ^uint16(sum)
		f[10], f[11] = byte(cs>>8), byte(cs)
		out = append(out, f)
	}
	return out
}

// TestFragments: a DNS answer split into IPv4 fragments that arrive out of
// order is reassembled and parsed; a lone fragment is counted as dropped.
func TestFragments(t *testing.T) {
	t0 := time.Unix(1800000000, 0).UTC()
	var answers []layers.DNSResourceRecord
	for i := 0; i < 40; i++ {
		answers = append(answers, aRecord("many.example", net.IP{10, 1, byte(i), 1}, 30))
	}
	resp := buildIP(t, ipPkt{src: ipRouter, dst: ipGuest, proto: "udp", sport: 53, dport: 40000, ipID: 77,
		payload: dnsMsg(t, 9, "many.example", true, answers...)})
	frags := fragment(resp, 256)
	if len(frags) < 3 {
		t.Fatalf("only %d fragments", len(frags))
	}
	var pkts []capPkt
	pkts = append(pkts, capPkt{ts: t0, data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipRouter, proto: "udp", sport: 40000, dport: 53, payload: dnsMsg(t, 9, "many.example", false)}))})
	order := []int{len(frags) - 1}
	for i := 0; i < len(frags)-1; i++ {
		order = append(order, i)
	}
	for k, i := range order {
		pkts = append(pkts, capPkt{ts: t0.Add(time.Duration(k+1) * time.Millisecond), data: ether(macRouter, macGuest, frags[i])})
	}
	// A lone first fragment of another datagram, never completed.
	other := fragment(buildIP(t, ipPkt{src: ipRouter, dst: ipGuest, proto: "udp", sport: 53, dport: 40001, ipID: 78, payload: make([]byte, 600)}), 256)
	pkts = append(pkts, capPkt{ts: t0.Add(time.Second), data: ether(macRouter, macGuest, other[0])})
	p := tempFile(t, "f.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	a := analyze(t, p, Options{})
	w := a.Summary.Warnings
	if w.FragmentsReassembled != 1 || w.FragmentsDropped != 1 {
		t.Errorf("fragments reassembled %d dropped %d, want 1 and 1", w.FragmentsReassembled, w.FragmentsDropped)
	}
	if len(a.DNS) != 1 || len(a.DNS[0].Answers) != 40 {
		t.Fatalf("dns records %+v", a.DNS)
	}
	c := findConn(t, a, "udp", 53)
	if c.RespPkts != 1 || c.RespIPBytes != int64(len(resp)) {
		t.Errorf("reassembled datagram counted as %d packets, %d IP bytes; want 1, %d", c.RespPkts, c.RespIPBytes, len(resp))
	}
	tsharkCheck(t, p, a)
}

// TestMidstream: a capture that starts mid-connection, server packet first:
// the ephemeral-port side is the originator.
func TestMidstream(t *testing.T) {
	t0 := time.Unix(1800000000, 0).UTC()
	pkts := []capPkt{
		{ts: t0, data: ether(macRouter, macGuest, buildIP(t, ipPkt{src: ipWeb, dst: ipGuest, sport: 443, dport: 51000, flags: "PA", seq: 100, ack: 200, payload: []byte("server data")}))},
		{ts: t0.Add(time.Millisecond), data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipWeb, sport: 51000, dport: 443, flags: "A", seq: 200, ack: 111}))},
		{ts: t0.Add(2 * time.Millisecond), data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipWeb, sport: 51000, dport: 443, flags: "PA", seq: 200, ack: 111, payload: []byte("client")}))},
	}
	p := tempFile(t, "m.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	a := analyze(t, p, Options{})
	if len(a.Conns) != 1 {
		t.Fatalf("%d conns", len(a.Conns))
	}
	c := a.Conns[0]
	if c.OrigH != "10.0.0.2" || c.OrigP != 51000 || c.RespP != 443 || c.ConnState != "OTH" || !strings.HasPrefix(c.History, "^") {
		t.Errorf("midstream conn %+v", c)
	}
	if c.OrigBytes != 6 || c.RespBytes != 11 {
		t.Errorf("bytes %d/%d, want 6/11", c.OrigBytes, c.RespBytes)
	}
}

// TestTimeJumps: time that goes backwards or jumps years must not lose
// packets from flows: every packet is counted in some conn.
func TestTimeJumps(t *testing.T) {
	t0 := time.Unix(1800000000, 0).UTC()
	times := []time.Time{t0, t0.Add(-time.Hour * 2), t0.Add(24 * 365 * 5 * time.Hour), t0.Add(time.Second), t0.Add(-24 * 365 * 10 * time.Hour), t0.Add(2 * time.Second)}
	var pkts []capPkt
	for i, ts := range times {
		pkts = append(pkts, capPkt{ts: ts, data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipRouter, proto: "udp", sport: 5000, dport: 9999, payload: []byte{byte(i)}}))})
		pkts = append(pkts, capPkt{ts: ts, data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 80, flags: "A", seq: uint32(1000 + i), ack: 1}))})
	}
	p := tempFile(t, "t.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	a := analyze(t, p, Options{})
	var total int64
	for _, c := range a.Conns {
		total += c.OrigPkts + c.RespPkts
	}
	if total != int64(len(pkts)) {
		t.Errorf("conns hold %d packets, capture has %d", total, len(pkts))
	}
	// Backwards steps: t0 → t0-2h, t0+5y → t0+1s, t0+1s → t0-10y.
	if a.Summary.Warnings.TimestampsBackwards != 3 {
		t.Errorf("timestamps_backwards = %d, want 3", a.Summary.Warnings.TimestampsBackwards)
	}
	if !a.Summary.FirstTS.Equal(times[4]) || !a.Summary.LastTS.Equal(times[2]) {
		t.Errorf("span %v – %v", a.Summary.FirstTS, a.Summary.LastTS)
	}
}

// TestSnaplen: packets cut by the capture's snaplen count at their original
// length, and parsers stop cleanly at the cut.
func TestSnaplen(t *testing.T) {
	pkts := conversation(t)
	const snap = 96
	var origTotal int64
	for i := range pkts {
		origTotal += int64(len(pkts[i].data))
		if len(pkts[i].data) > snap {
			pkts[i].origLen = len(pkts[i].data)
			pkts[i].data = pkts[i].data[:snap]
		}
	}
	p := tempFile(t, "s.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	a := analyze(t, p, Options{})
	if a.Summary.FrameBytes != origTotal || a.Summary.CapturedBytes >= origTotal || a.Summary.Warnings.TruncatedPackets == 0 {
		t.Errorf("frame bytes %d (want %d), captured %d, truncated %d", a.Summary.FrameBytes, origTotal, a.Summary.CapturedBytes, a.Summary.Warnings.TruncatedPackets)
	}
	ref := tempFile(t, "ref.pcap")
	writePcap(t, ref, layers.LinkTypeEthernet, conversation(t))
	full := analyze(t, ref, Options{})
	if a.Summary.IPBytes != full.Summary.IPBytes {
		t.Errorf("ip bytes %d, want %d as from the IP headers", a.Summary.IPBytes, full.Summary.IPBytes)
	}
	tc, ftc := findConn(t, a, "tcp", 443), findConn(t, full, "tcp", 443)
	if tc.OrigBytes != ftc.OrigBytes || tc.OrigIPBytes != ftc.OrigIPBytes || tc.MissedBytes == 0 {
		t.Errorf("cut tls conn bytes %d ip %d missed %d; full %d ip %d", tc.OrigBytes, tc.OrigIPBytes, tc.MissedBytes, ftc.OrigBytes, ftc.OrigIPBytes)
	}
	if len(a.TLS) != 0 {
		t.Errorf("a ClientHello was parsed from a cut stream: %+v", a.TLS)
	}
	tsharkCheck(t, p, a)
}

// TestDamagedFiles: broken headers are errors naming the file and offset;
// damage after good packets is a warning, and the good packets count.
func TestDamagedFiles(t *testing.T) {
	good := tempFile(t, "good.pcap")
	writePcap(t, good, layers.LinkTypeEthernet, conversation(t))
	gb, _ := os.ReadFile(good)
	unknown := append([]byte(nil), gb...)
	unknown[20] = 147 // LINKTYPE_USER0
	first := 24 + 16 + int(binary.LittleEndian.Uint32(gb[24+8:]))
	cases := []struct {
		name    string
		data    []byte
		errText string // non-empty: AnalyzeFile must fail with this in the message
		damage  bool
	}{
		{name: "empty", data: nil, errText: "empty file at byte offset 0"},
		{name: "garbage", data: []byte("hello, this is not a capture"), errText: "not a pcap or pcapng file"},
		{name: "short header", data: gb[:10], errText: "truncated pcap file header"},
		{name: "unknown link type", data: unknown, errText: "unsupported link type 147"},
		{name: "cut record", data: gb[:len(gb)-7], damage: true},
		{name: "bad record length", data: append(append([]byte(nil), gb[:first]...), 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0), damage: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tempFile(t, "d.pcap")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			a, err := AnalyzeFile(context.Background(), p, Options{})
			if tc.errText != "" {
				var ce *capfile.Error
				if err == nil || !strings.Contains(err.Error(), tc.errText) || !strings.Contains(err.Error(), p) || !errors.As(err, &ce) {
					t.Fatalf("error %v, want a capfile.Error naming %s and %q", err, p, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.damage && (len(a.Summary.Warnings.CaptureDamage) != 1 || !strings.Contains(a.Summary.Warnings.CaptureDamage[0], "offset")) {
				t.Errorf("capture damage %v", a.Summary.Warnings.CaptureDamage)
			}
			if a.Summary.Packets == 0 {
				t.Errorf("no packets kept before the damage")
			}
			// Read on the engine's goroutine (one core), not ahead of it: the same.
			r, err := capfile.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			one, err := run(context.Background(), r, "d.pcap", Options{}, &memSink{}, false)
			if err != nil {
				t.Fatal(err)
			}
			if one.Summary.Packets != a.Summary.Packets || !slices.Equal(one.Summary.Warnings.CaptureDamage, a.Summary.Warnings.CaptureDamage) {
				t.Errorf("without read-ahead: %d packets, damage %v; with: %d, %v", one.Summary.Packets,
					one.Summary.Warnings.CaptureDamage, a.Summary.Packets, a.Summary.Warnings.CaptureDamage)
			}
		})
	}
}

// TestQUIC: the client Initial of RFC 9001 appendix A.2, on UDP 443.
func TestQUIC(t *testing.T) {
	raw, err := os.ReadFile("testdata/rfc9001-a2-client-initial.hex")
	if err != nil {
		t.Fatal(err)
	}
	dgram, err := hex.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
	if err != nil {
		t.Fatal(err)
	}
	pkts := []capPkt{{ts: time.Unix(1800000000, 0), data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipWeb, proto: "udp", sport: 51000, dport: 443, payload: dgram}))}}
	p := tempFile(t, "q.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	a := analyze(t, p, Options{})
	if len(a.TLS) != 1 {
		t.Fatalf("tls records %d (parser errors %v)", len(a.TLS), a.Summary.Warnings.ParserErrors)
	}
	r := a.TLS[0]
	// RFC 9001 A.2: the ClientHello names example.com.
	if r.Transport != "quic" || r.ServerName != "example.com" || !strings.HasPrefix(r.JA4, "q13") {
		t.Errorf("quic tls record %+v", r)
	}
	if a.Conns[0].Service != "quic" || a.Conns[0].Name != "example.com" {
		t.Errorf("quic conn %+v", a.Conns[0])
	}
}

// TestSteps: records are labelled with the step they started in; per-step views
// cover their step only.
func TestSteps(t *testing.T) {
	p := tempFile(t, "c.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, conversation(t))
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	steps, err := ParseSteps("boot=" + t0.Add(50*time.Millisecond).Format(time.RFC3339Nano) + ",browse=" +
		strconv.FormatFloat(float64(t0.Add(250*time.Millisecond).UnixNano())/1e9, 'f', 3, 64))
	if err != nil {
		t.Fatal(err)
	}
	steps = append(steps, Step{Name: "idle", Start: t0.Add(350 * time.Millisecond), End: t0.Add(450 * time.Millisecond)})
	a := analyze(t, p, Options{Steps: steps})
	stepOf := map[string]string{}
	for _, c := range a.Conns {
		stepOf[c.Proto+"/"+strconv.Itoa(int(c.OrigP))+"/"+strconv.Itoa(int(c.RespP))] = c.Step
	}
	want := map[string]string{"udp/68/67": "before", "udp/40000/53": "boot", "tcp/50000/443": "boot", "tcp/50001/80": "browse",
		"udp/123/123": "idle", "tcp/50002/22": "after", "tcp/50003/443": "after"}
	for k, w := range want {
		if stepOf[k] != w {
			t.Errorf("conn %s in step %q, want %q", k, stepOf[k], w)
		}
	}
	if a.HTTP[0].Step != "browse" || a.DNS[0].Step != "boot" || a.TLS[0].Step != "boot" {
		t.Errorf("record steps http=%s dns=%s tls=%s", a.HTTP[0].Step, a.DNS[0].Step, a.TLS[0].Step)
	}
	var names []string
	var pk int64
	for _, v := range a.Steps {
		names = append(names, v.Name)
		pk += v.Summary.Packets
	}
	if strings.Join(names, ",") != "before,boot,browse,idle,after" {
		t.Errorf("step views %v", names)
	}
	if pk != a.Summary.Packets {
		t.Errorf("step packets sum to %d, want %d", pk, a.Summary.Packets)
	}
	boot := a.Steps[1]
	if boot.Summary.DNSQueries != 1 || boot.Summary.TCPConnections != 1 || len(boot.Destinations) != 2 || !boot.Start.Equal(t0.Add(50*time.Millisecond)) || !boot.End.Equal(t0.Add(250*time.Millisecond)) {
		t.Errorf("boot view %+v", boot)
	}
	if _, err := ParseSteps("x=yesterday"); err == nil {
		t.Error("bad step time accepted")
	}
	if _, err := AnalyzeFile(context.Background(), p, Options{Steps: []Step{{Name: "b", Start: t0.Add(time.Second)}, {Name: "a", Start: t0}}}); err == nil {
		t.Error("steps out of order accepted")
	}
}

// TestDeterminism: the same input gives the same bytes in every output, run
// after run, whether the records are held in memory (AnalyzeFile and
// WriteOutputs) or streamed out as flows end (AnalyzeFileTo, with records
// kept in memory or moved to spill files). The capture has
// flows that time out mid-capture, in several sweeps, so record order follows
// flush order rather than a final sort.
func TestDeterminism(t *testing.T) {
	p := tempFile(t, "c.pcap")
	pkts := append(conversation(t), benchPackets(t, 300)...)
	// Two later batches, minutes apart: earlier flows are swept by timeout.
	for i, off := range []time.Duration{10 * time.Minute, 25 * time.Minute} {
		pkts = append(pkts, benchPacketsSegs(t, 1000*(i+1), 200, 3, time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).Add(off))...)
	}
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	opts := Options{FirstParty: []string{"example.com"}}
	read := func(dir string) map[string][]byte {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		out := map[string][]byte{}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(f)] = b
		}
		if len(out) != 9 {
			t.Errorf("%d output files %v, want 9 with lan.log (and no spill directory left)", len(out), files)
		}
		return out
	}
	for _, lf := range []string{LogsTSV, LogsJSON} {
		var outs []map[string][]byte
		for i := range 3 {
			a := analyze(t, p, opts)
			dir := t.TempDir()
			if err := WriteOutputs(dir, a, lf); err != nil {
				t.Fatal(err)
			}
			outs = append(outs, read(dir))
			// The second streamed run has 4 KiB of memory for records: it
			// moves them to spill files early and must still write the same.
			// The second and third hand records to the writer on its own
			// goroutine (asyncSink), as with more than one core.
			memory := int64(spillMemory)
			if i == 1 {
				memory = 4 << 10
			}
			dir = t.TempDir()
			if _, err := analyzeFileTo(context.Background(), p, opts, dir, lf, memory, i > 0); err != nil {
				t.Fatal(err)
			}
			outs = append(outs, read(dir))
		}
		if n := bytes.Count(outs[0]["conn.log"], []byte("\n")); n < 700 {
			t.Errorf("conn.log has %d lines: the capture is too small to test anything", n)
		}
		for i := 1; i < len(outs); i++ {
			for k, v := range outs[0] {
				if !bytes.Equal(v, outs[i][k]) {
					t.Errorf("%s/%s differs between run 0 and run %d (odd runs stream, runs 3 and 5 on a writer goroutine)", lf, k, i)
				}
			}
		}
	}
}

// TestAnalysisJSONStreaming: the streamed analysis.json is byte for byte what
// encoding/json writes for the whole document once both are compacted, and
// every record of the record lists is on a line of its own.
func TestAnalysisJSONStreaming(t *testing.T) {
	p := tempFile(t, "c.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, conversation(t))
	a := analyze(t, p, Options{Steps: []Step{{Name: "x", Start: time.Date(2026, 11, 23, 10, 0, 0, 3e8, time.UTC)}}})
	got, err := MarshalAnalysis(a)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(a); err != nil {
		t.Fatal(err)
	}
	var gotC, wantC bytes.Buffer
	if err := json.Compact(&gotC, got); err != nil {
		t.Fatalf("streamed analysis.json is not valid JSON: %v", err)
	}
	if err := json.Compact(&wantC, want.Bytes()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotC.Bytes(), wantC.Bytes()) {
		t.Errorf("streamed JSON differs from encoding/json's")
	}
	// Lines of the record lists: `  "conns": [`, then one `    {...}` per record.
	lines := strings.Split(string(got), "\n")
	for _, field := range []string{"conns", "dns", "tls", "http"} {
		var n int
		for i, l := range lines {
			if l != "  \""+field+"\": [" {
				continue
			}
			for _, rec := range lines[i+1:] {
				if rec == "  ]" || rec == "  ]," {
					break
				}
				rec = strings.TrimSuffix(strings.TrimPrefix(rec, "    "), ",")
				if !json.Valid([]byte(rec)) || rec[0] != '{' {
					t.Errorf("%s: line %q is not one whole record", field, rec)
				}
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s: no records on their own lines", field)
		}
	}
}

// TestProtocolsMisc: mDNS is labelled, an OCSP request is recognised, and
// packets of an interface with an unknown link type are counted, not fatal.
func TestProtocolsMisc(t *testing.T) {
	t0 := time.Unix(1800000000, 0).UTC()
	mdnsGroup := net.IP{224, 0, 0, 251}
	ocspReq := []byte("POST / HTTP/1.1\r\nHost: ocsp.example.net\r\nContent-Type: application/ocsp-request\r\nContent-Length: 4\r\n\r\nabcd")
	pkts := []capPkt{
		{ts: t0, data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: mdnsGroup, proto: "udp", sport: 5353, dport: 5353, payload: dnsMsg(t, 0, "printer.local", false)}))},
		{ts: t0.Add(time.Millisecond), data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 80, flags: "PA", seq: 1, ack: 1, payload: ocspReq}))},
		{ts: t0.Add(2 * time.Millisecond), iface: 1, data: []byte{1, 2, 3, 4}},
	}
	p := tempFile(t, "m.pcapng")
	writePcapng(t, p, []layers.LinkType{layers.LinkTypeEthernet, layers.LinkType(147)}, pkts)
	a := analyze(t, p, Options{})
	if len(a.DNS) != 1 || a.DNS[0].Kind != "mdns" || a.DNS[0].Query != "printer.local" {
		t.Errorf("mdns record %+v", a.DNS)
	}
	if len(a.HTTP) != 1 || !a.HTTP[0].OCSP || a.HTTP[0].OCSPResponder != "ocsp.example.net" || a.HTTP[0].RequestBodyLen != 4 {
		t.Errorf("ocsp record %+v", a.HTTP)
	}
	if n := a.Summary.Warnings.UnknownLinkTypes["LINKTYPE_147"]; n != 1 || a.Summary.Packets != 3 {
		t.Errorf("unknown link type packets %d, packets %d", n, a.Summary.Packets)
	}
}

// TestAnalyzeFileToFailure: a failed streaming analysis leaves neither spill
// files nor half-written outputs behind.
func TestAnalyzeFileToFailure(t *testing.T) {
	p := tempFile(t, "c.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, conversation(t))
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := AnalyzeFileTo(ctx, p, Options{}, dir, LogsTSV); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled analysis: err %v, want context.Canceled", err)
	}
	if _, err := AnalyzeFileTo(context.Background(), p, Options{}, dir, "xml"); err == nil {
		t.Error("log format xml accepted")
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left behind in the output directory: %v", left)
	}
}

// TestFileShrinksWhileRead: a mapped capture cut short while it is read (a
// capture rotated under the analysis) fails with an error that says so, on
// both read paths, instead of crashing the process on the lost pages.
func TestFileShrinksWhileRead(t *testing.T) {
	src := tempFile(t, "full.pcap")
	writePcap(t, src, layers.LinkTypeEthernet, benchPackets(t, 200))
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, ahead := range []bool{false, true} {
		t.Run(fmt.Sprintf("ahead=%v", ahead), func(t *testing.T) {
			p := tempFile(t, "shrinks.pcap")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := capfile.OpenMapped(p)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := os.Truncate(p, 4096); err != nil {
				t.Fatal(err)
			}
			_, err = run(context.Background(), r, "shrinks.pcap", Options{}, &memSink{}, ahead)
			if err == nil || !strings.Contains(err.Error(), "shrinks.pcap") || !strings.Contains(err.Error(), "shrank while it was read") {
				t.Fatalf("error %v, want one saying shrinks.pcap shrank while it was read", err)
			}
		})
	}
}

// TestICMPErrorsAddNoProtocol: an ICMP port unreachable the guest sends for
// a late datagram counts as a connection to the destination but adds no
// protocol to it (whether it is sent depends on timing, so two runs of one
// scenario would differ); an echo request is a protocol like any other.
func TestICMPErrorsAddNoProtocol(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	reply := buildIP(t, ipPkt{src: ipWeb, dst: ipGuest, proto: "udp", sport: 443, dport: 50000, payload: make([]byte, 40)})
	pkts := []capPkt{
		{ts: t0, data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipWeb, proto: "udp", sport: 50000, dport: 443, payload: make([]byte, 40)}))},
		{ts: t0.Add(10 * time.Millisecond), data: ether(macRouter, macGuest, reply)},
		// The guest's socket is closed by now: the kernel answers a late datagram.
		{ts: t0.Add(20 * time.Millisecond), data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipWeb, proto: "icmp",
			icmp: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort), payload: reply[:28]}))},
		{ts: t0.Add(30 * time.Millisecond), data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipRouter, proto: "icmp", payload: []byte("ping")}))},
	}
	p := tempFile(t, "icmp.pcap")
	writePcap(t, p, layers.LinkTypeEthernet, pkts)
	a := analyze(t, p, Options{})
	dests := map[string]schema.Destination{}
	for _, d := range a.Destinations {
		dests[d.Name] = d
	}
	web := dests[ipWeb.String()]
	if web.Connections != 2 || !slices.Equal(web.Protocols, []string{"udp"}) {
		t.Errorf("%s: %d connections, protocols %v; want 2 (the datagrams and the unreachable), [udp]", ipWeb, web.Connections, web.Protocols)
	}
	var local schema.Destination
	for _, d := range a.Destinations {
		if slices.Contains(d.Addresses, ipRouter.String()) {
			local = d
		}
	}
	if !slices.Contains(local.Protocols, "icmp") {
		t.Errorf("the echo request to the router adds no icmp protocol: %+v", local)
	}
}
