package simnet

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it after review):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestRedirectRulesGolden(t *testing.T) {
	var b bytes.Buffer
	for _, r := range RedirectRules("virbr-lab", netip.MustParseAddr("192.168.150.1"), DefaultPorts()) {
		b.WriteString("iptables " + strings.Join(r, " ") + "\n")
	}
	golden(t, "rules.golden", b.Bytes())
}

func TestRedirectRulesDisabled(t *testing.T) {
	p := DefaultPorts()
	p.CatchAllUDP, p.CatchAllTCP, p.QUIC = Disabled, Disabled, Disabled
	rules := RedirectRules("br0", netip.MustParseAddr("10.0.0.1"), p)
	for _, r := range rules {
		s := strings.Join(r, " ")
		if strings.Contains(s, "TPROXY") || strings.Contains(s, "mangle") || strings.Contains(s, "-p udp --dport 443") ||
			(strings.Contains(s, "-p tcp") && !strings.Contains(s, "--dport")) {
			t.Errorf("rule for a disabled port: %s", s)
		}
	}
	if len(rules) != 5 { // DNS udp+tcp, NTP, HTTP, HTTPS
		t.Errorf("got %d rules, want 5", len(rules))
	}
	if d := deleteRule(rules[0]); d[2] != "-D" || rules[0][2] != "-A" {
		t.Errorf("deleteRule = %v (original %v)", d, rules[0])
	}
}

func TestEventLineGolden(t *testing.T) {
	var b bytes.Buffer
	fixed := time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.FixedZone("X", 3600))
	l := &eventLog{w: &b, now: func() time.Time { return fixed }}
	l.log(Event{Service: "tls", Proto: "tcp", Client: "10.0.0.2:5555", Dst: "203.0.113.7:443", SNI: "a.example", ALPN: []string{"h2", "http/1.1"}, Detail: "ClientHello"})
	l.log(Event{Service: "http", Proto: "tcp", Client: "10.0.0.2:5556", Dst: "203.0.113.7:80", Method: "GET", Host: "a.example", URI: "/x", UserAgent: "ua", Status: 200})
	hx, tx := firstBytes([]byte("GET /\r\n\x00\xff"), 4)
	l.log(Event{Service: "tcp", Proto: "tcp", Client: "10.0.0.2:5557", Dst: "192.0.2.1:22", Size: 9, Hex: hx, Text: tx})
	golden(t, "events.golden", b.Bytes())
}

func TestFirstBytes(t *testing.T) {
	h, tx := firstBytes([]byte{'A', 0, 0x7f, 0x80, ' ', '~'}, 10)
	if h != "41007f80207e" || tx != "A... ~" {
		t.Errorf("firstBytes = %q %q", h, tx)
	}
	if h, tx := firstBytes([]byte("abcdef"), 3); h != "616263" || tx != "abc" {
		t.Errorf("firstBytes limit = %q %q", h, tx)
	}
}

// ntpSeconds computes NTP-era seconds independently of ntpTime's constant.
func ntpSeconds(t time.Time) uint32 {
	return uint32(t.Sub(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)) / time.Second)
}

func TestNTPReply(t *testing.T) {
	recv := time.Date(2026, 11, 23, 12, 0, 0, 500_000_000, time.UTC)
	xmit := recv.Add(250 * time.Millisecond)
	req := func(first byte, n int) []byte {
		b := make([]byte, n)
		b[0] = first
		if n >= 48 {
			b[2] = 6 // poll 2^6
			copy(b[40:48], []byte{1, 2, 3, 4, 5, 6, 7, 8})
		}
		return b
	}
	tests := []struct {
		name      string
		req       []byte
		wantReply bool
		wantFirst byte
	}{
		{"v4 client", req(0x23, 48), true, 0x24}, // LI 0, VN 4, mode 3 → mode 4
		{"v3 client", req(0x1b, 48), true, 0x1c}, // VN 3 is echoed
		{"with extension", req(0x23, 68), true, 0x24},
		{"server mode", req(0x24, 48), false, 0},
		{"symmetric active", req(0x21, 48), false, 0},
		{"version 0", req(0x03, 48), false, 0},
		{"short", req(0x23, 47), false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, detail := ntpReply(tc.req, recv, xmit)
			if (out != nil) != tc.wantReply {
				t.Fatalf("reply = %v (%s), want reply %v", out != nil, detail, tc.wantReply)
			}
			if out == nil {
				return
			}
			if len(out) != 48 || out[0] != tc.wantFirst || out[1] != 2 || out[2] != 6 {
				t.Errorf("header = % x", out[:4])
			}
			if !bytes.Equal(out[24:32], tc.req[40:48]) {
				t.Errorf("origin timestamp %x does not echo the client's transmit %x", out[24:32], tc.req[40:48])
			}
			if !bytes.Equal(out[12:16], net.IPv4(192, 0, 2, 123).To4()) {
				t.Errorf("refid = % x", out[12:16])
			}
			if s, f := binary.BigEndian.Uint32(out[32:]), binary.BigEndian.Uint32(out[36:]); s != ntpSeconds(recv) || f != 1<<31 {
				t.Errorf("receive timestamp = %d.%08x, want %d.80000000", s, f, ntpSeconds(recv))
			}
			if s, f := binary.BigEndian.Uint32(out[40:]), binary.BigEndian.Uint32(out[44:]); s != ntpSeconds(xmit) || f != 3<<30 {
				t.Errorf("transmit timestamp = %d.%08x, want %d.c0000000", s, f, ntpSeconds(xmit))
			}
		})
	}
}

func buildQuery(t testing.TB, h dnsmessage.Header, qs []dnsmessage.Question, edns bool) []byte {
	b := dnsmessage.NewBuilder(nil, h)
	b.StartQuestions()
	for _, q := range qs {
		if err := b.Question(q); err != nil {
			t.Fatal(err)
		}
	}
	if edns {
		b.StartAdditionals()
		var rh dnsmessage.ResourceHeader
		rh.SetEDNS0(4096, 0, false)
		b.OPTResource(rh, dnsmessage.OPTResource{})
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDNSAnswer(t *testing.T) {
	d := dnsAnswerer{a: netip.MustParseAddr("192.168.150.1")}
	q := func(name string, typ dnsmessage.Type) []dnsmessage.Question {
		return []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}}
	}
	tests := []struct {
		name     string
		query    []byte
		wantNil  bool
		rcode    dnsmessage.RCode
		answers  int
		wantOPT  bool
		wantInfo string
	}{
		{"A with EDNS", buildQuery(t, dnsmessage.Header{ID: 7, RecursionDesired: true}, q("a.example.", dnsmessage.TypeA), true), false, dnsmessage.RCodeSuccess, 1, true, "a.example. A"},
		{"AAAA", buildQuery(t, dnsmessage.Header{ID: 8}, q("a.example.", dnsmessage.TypeAAAA), false), false, dnsmessage.RCodeSuccess, 0, false, "a.example. AAAA"},
		{"HTTPS", buildQuery(t, dnsmessage.Header{ID: 9}, q("a.example.", dnsmessage.TypeHTTPS), false), false, dnsmessage.RCodeSuccess, 0, false, "a.example. HTTPS"},
		{"unknown type", buildQuery(t, dnsmessage.Header{ID: 9}, q("a.example.", dnsmessage.Type(999)), false), false, dnsmessage.RCodeSuccess, 0, false, "a.example. TYPE999"},
		{"no question", buildQuery(t, dnsmessage.Header{ID: 10}, nil, false), false, dnsmessage.RCodeFormatError, 0, false, " "},
		{"opcode status", buildQuery(t, dnsmessage.Header{ID: 11, OpCode: 2}, q("a.example.", dnsmessage.TypeA), false), false, dnsmessage.RCodeNotImplemented, 0, false, "a.example. A"},
		{"response", buildQuery(t, dnsmessage.Header{ID: 12, Response: true}, q("a.example.", dnsmessage.TypeA), false), true, 0, 0, false, " "},
		{"garbage", []byte{1, 2, 3}, true, 0, 0, false, " "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, info := d.answer(tc.query, 512)
			if got := info.name + " " + info.qtype; got != tc.wantInfo {
				t.Errorf("info = %q, want %q", got, tc.wantInfo)
			}
			if (out == nil) != tc.wantNil {
				t.Fatalf("reply nil = %v, want %v", out == nil, tc.wantNil)
			}
			if out == nil {
				return
			}
			var m dnsmessage.Message
			if err := m.Unpack(out); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if m.ID != binary.BigEndian.Uint16(tc.query) || !m.Response || m.RCode != tc.rcode || len(m.Answers) != tc.answers {
				t.Errorf("reply header %+v with %d answers", m.Header, len(m.Answers))
			}
			if tc.answers == 1 {
				if a, ok := m.Answers[0].Body.(*dnsmessage.AResource); !ok || netip.AddrFrom4(a.A) != d.a {
					t.Errorf("answer = %v", m.Answers[0])
				}
			}
			hasOPT := len(m.Additionals) == 1 && m.Additionals[0].Header.Type == dnsmessage.TypeOPT
			if hasOPT != tc.wantOPT {
				t.Errorf("OPT in reply = %v, want %v", hasOPT, tc.wantOPT)
			}
		})
	}
}

func FuzzDNSAnswer(f *testing.F) {
	f.Add(buildQuery(f, dnsmessage.Header{ID: 1}, []dnsmessage.Question{{Name: dnsmessage.MustNewName("x."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}, true))
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c})
	d := dnsAnswerer{a: netip.MustParseAddr("10.0.0.1"), aaaa: netip.MustParseAddr("fd00::1")}
	f.Fuzz(func(t *testing.T, q []byte) {
		out, _ := d.answer(q, 512)
		if out == nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(out); err != nil {
			t.Fatalf("reply to %x does not parse: %v", q, err)
		}
		if len(out) > 512 {
			t.Fatalf("UDP reply of %d bytes", len(out))
		}
	})
}

func FuzzNTPReply(f *testing.F) {
	f.Add(make([]byte, 48))
	f.Add(append([]byte{0x23}, make([]byte, 47)...))
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		if out, _ := ntpReply(b, now, now); out != nil && (len(out) != 48 || out[0]&7 != 4) {
			t.Fatalf("bad reply % x", out)
		}
	})
}

func FuzzQUICLongHeader(f *testing.F) {
	f.Add([]byte{0xc0, 0, 0, 0, 1, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		quicLongHeader(b)
	})
}

func TestQUICLongHeader(t *testing.T) {
	tests := []struct {
		b    []byte
		kind string
		ok   bool
	}{
		{[]byte{0xc3, 0, 0, 0, 1}, "Initial", true},             // RFC 9000 17.2: type 0 = Initial
		{[]byte{0xe0, 0, 0, 0, 1}, "Handshake", true},           // type 2
		{[]byte{0xd0, 0x6b, 0x33, 0x43, 0xcf}, "Initial", true}, // RFC 9369 3.2: v2 Initial = 0b01
		{[]byte{0x80, 0, 0, 0, 0}, "version negotiation", true},
		{[]byte{0x40, 0, 0, 0, 1}, "", false}, // short header
		{[]byte{0xc0, 0, 0}, "", false},
	}
	for _, tc := range tests {
		kind, _, ok := quicLongHeader(tc.b)
		if kind != tc.kind || ok != tc.ok {
			t.Errorf("quicLongHeader(% x) = %q %v, want %q %v", tc.b, kind, ok, tc.kind, tc.ok)
		}
	}
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v mode %v", err, fi.Mode())
	}
	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(ca.Cert) || !again.Key.Equal(ca.Key) {
		t.Error("reloaded CA differs from the created one")
	}
	// Leaves from the reloaded CA verify against the persisted PEM.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca.pem does not parse")
	}
	for _, name := range []string{"www.example.com", "192.0.2.9", "Mixed.Case.Example."} {
		leaf, err := again.Leaf(name, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		host := strings.ToLower(strings.TrimSuffix(name, "."))
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("leaf for %s does not verify: %v", name, err)
		}
		if again2, _ := again.Leaf(host, time.Now()); again2 != leaf {
			t.Errorf("leaf for %s minted twice", name)
		}
	}
	if _, err := again.Leaf("", time.Now()); err == nil {
		t.Error("empty name minted a leaf")
	}

	t.Run("incomplete", func(t *testing.T) {
		os.Remove(filepath.Join(dir, CAKeyFile))
		if _, err := LoadOrCreateCA(dir); err == nil || !strings.Contains(err.Error(), "incomplete") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("mismatched", func(t *testing.T) {
		other := t.TempDir()
		if _, err := LoadOrCreateCA(other); err != nil {
			t.Fatal(err)
		}
		key, _ := os.ReadFile(filepath.Join(other, CAKeyFile))
		os.WriteFile(filepath.Join(dir, CAKeyFile), key, 0o600)
		if _, err := LoadOrCreateCA(dir); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestStartErrors(t *testing.T) {
	checkNoLeaks(t)
	if _, err := Start(t.Context(), Config{}); err == nil {
		t.Error("Start without Addr succeeded")
	}
	if _, err := Start(t.Context(), Config{Addr: netip.MustParseAddr("127.0.0.1")}); err == nil {
		t.Error("Start without CA succeeded")
	}
	// A port in use: Start fails and closes what it had bound.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := Ports{HTTPS: Disabled, QUIC: Disabled, HTTP: ln.Addr().(*net.TCPAddr).Port}
	if _, err := Start(t.Context(), Config{Addr: netip.MustParseAddr("127.0.0.1"), Ports: p}); err == nil || !strings.Contains(err.Error(), "listen http") {
		t.Errorf("err = %v", err)
	}
}
