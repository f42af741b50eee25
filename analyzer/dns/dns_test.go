package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// header builds a 12-byte header (RFC 1035 section 4.1.1).
func header(id, flags, qd, an uint16) []byte {
	h := make([]byte, 12)
	binary.BigEndian.PutUint16(h, id)
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint16(h[4:], qd)
	binary.BigEndian.PutUint16(h[6:], an)
	return h
}

// name encodes a dotted name as labels (no compression).
func name(s string) []byte {
	var out []byte
	if s != "" {
		for _, l := range strings.Split(s, ".") {
			out = append(out, byte(len(l)))
			out = append(out, l...)
		}
	}
	return append(out, 0)
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// rr builds an answer record with an uncompressed or raw owner name.
func rr(owner []byte, typ uint16, ttl uint32, data []byte) []byte {
	return cat(owner, u16(typ), u16(1), u32(ttl), u16(uint16(len(data))), data)
}

func TestParseRecords(t *testing.T) {
	q := cat(name("www.example.com"), u16(1), u16(1))
	ptrQ := []byte{0xc0, 12} // the question name, at offset 12
	tests := []struct {
		name string
		msg  []byte
		want []string // "name TYPE data"
	}{
		{"A via pointer", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeA, 60, []byte{93, 184, 216, 34})),
			[]string{"www.example.com A 93.184.216.34"}},
		{"AAAA", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeAAAA, 60, []byte{0x20, 1, 0xd, 0xb8, 15: 1})),
			[]string{"www.example.com AAAA 2001:db8::1"}},
		{"CNAME compressed suffix", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeCNAME, 60, []byte{3, 'c', 'd', 'n', 0xc0, 16})),
			[]string{"www.example.com CNAME cdn.example.com"}},
		{"NS root", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeNS, 60, []byte{0})),
			[]string{"www.example.com NS ."}},
		{"MX", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeMX, 60, cat(u16(10), name("mail.example.com")))),
			[]string{"www.example.com MX 10 mail.example.com"}},
		{"SRV", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeSRV, 60, cat(u16(1), u16(2), u16(443), name("srv.example.com")))),
			[]string{"www.example.com SRV 1 2 443 srv.example.com"}},
		{"TXT escapes", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeTXT, 60, []byte{3, 'a', '"', 'b', 2, 0x01, '\\'})),
			[]string{`www.example.com TXT "a\"b" "\001\\"`}},
		{"SOA", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeSOA, 60, cat(name("ns.example.com"), []byte{0xc0, 12}, u32(1), u32(2), u32(3), u32(4), u32(5)))),
			[]string{"www.example.com SOA ns.example.com www.example.com 1 2 3 4 5"}},
		{"HTTPS", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeHTTPS, 60, cat(u16(1), []byte{0}, u16(1), u16(6), []byte{2, 'h', '2', 2, 'h', '3'}, u16(3), u16(2), u16(8443), u16(6), u16(16), []byte{0x20, 1, 0xd, 0xb8, 15: 2}, u16(5), u16(1), []byte{0}))),
			[]string{`www.example.com HTTPS 1 . alpn="h2,h3" port=8443 ipv6hint=2001:db8::2 ech`}},
		{"unknown type generic", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, 99, 60, []byte{0xde, 0xad})),
			[]string{`www.example.com SPF \# 2 dead`}},
		{"A with wrong size is generic", cat(header(1, 0x8180, 1, 1), q, rr(ptrQ, TypeA, 60, []byte{1, 2, 3})),
			[]string{`www.example.com A \# 3 010203`}},
		{"name escapes and case", cat(header(1, 0x8180, 1, 1), q, rr([]byte{3, 'A', '.', 0x07, 0}, TypeA, 60, []byte{1, 2, 3, 4})),
			[]string{`a\.\007 A 1.2.3.4`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.msg)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !m.Response || m.ID != 1 || m.Rcode != 0 || len(m.Questions) != 1 || m.Questions[0].Name != "www.example.com" {
				t.Fatalf("header/question: %+v", m)
			}
			var got []string
			for _, r := range m.Answers {
				got = append(got, r.Name+" "+TypeName(r.Type)+" "+r.Data)
				if r.TTL != 60 {
					t.Errorf("TTL %d", r.TTL)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestParseHeaderAndMDNS(t *testing.T) {
	// mDNS (RFC 6762 section 5.4 / 10.2): top bit of the class is the
	// unicast-response / cache-flush flag and must not leak into Class.
	msg := cat(header(0, 0x0000|4<<11|0x0200|5, 1, 0), name("Printer.Local"), u16(TypePTR), u16(0x8001))
	m, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	q := m.Questions[0]
	if q.Class != 1 || q.Name != "printer.local" || q.Type != TypePTR {
		t.Errorf("question %+v", q)
	}
	if m.Opcode != 4 || !m.Truncated || m.Rcode != 5 || m.Response {
		t.Errorf("header %+v", m)
	}
	root, err := Parse(cat(header(0, 0, 1, 0), []byte{0}, u16(2), u16(1)))
	if err != nil || root.Questions[0].Name != "" {
		t.Errorf("root question: %+v %v", root, err)
	}
}

func TestParseMalformed(t *testing.T) {
	q := cat(name("a.example"), u16(1), u16(1))
	long := []byte{}
	for i := 0; i < 5; i++ {
		long = append(long, 63)
		long = append(long, strings.Repeat("x", 63)...)
	}
	long = append(long, 0)
	tests := []struct {
		name    string
		msg     []byte
		want    error
		partial int // questions decoded before the error
	}{
		{"short header", []byte{1, 2, 3}, ErrShort, -1},
		{"pointer to itself", cat(header(1, 0, 1, 0), []byte{0xc0, 12}, u16(1), u16(1)), ErrBadName, 0},
		{"forward pointer", cat(header(1, 0, 1, 0), []byte{0xc0, 14, 0}, u16(1), u16(1)), ErrBadName, 0},
		{"loop through two pointers", cat(header(1, 0, 2, 0), []byte{1, 'a', 0xc0, 18}, u16(1), u16(1), []byte{1, 'b', 0xc0, 12}, u16(1), u16(1)), ErrBadName, 0},
		{"label loop inside name", cat(header(1, 0, 1, 0), []byte{1, 'a', 0xc0, 12}, u16(1), u16(1)), ErrBadName, 0},
		{"pointer out of range", cat(header(1, 0, 1, 1), q, []byte{0xff, 0xff}, u16(1)), ErrBadName, 1},
		{"reserved label type", cat(header(1, 0, 1, 0), []byte{0x41, 0}), ErrBadName, 0},
		{"name too long", cat(header(1, 0, 1, 0), long, u16(1), u16(1)), ErrBadName, 0},
		{"label past end", cat(header(1, 0, 1, 0), []byte{10, 'a'}), ErrShort, 0},
		{"no type/class", cat(header(1, 0, 1, 0), name("a")), ErrShort, 0},
		{"rdata past end", cat(header(1, 0x8000, 1, 1), q, []byte{0xc0, 12}, u16(1), u16(1), u32(1), u16(100), []byte{1, 2, 3, 4}), ErrShort, 1},
		{"counts larger than message", cat(header(1, 0, 65535, 65535), q), ErrShort, 1},
		{"cname past rdata", cat(header(1, 0x8000, 1, 1), q, []byte{0xc0, 12}, u16(TypeCNAME), u16(1), u32(1), u16(1), name("x")), ErrShort, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.msg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse error = %v, want %v", err, tc.want)
			}
			if tc.partial < 0 {
				if m != nil {
					t.Fatalf("message %+v with a bad header", m)
				}
				return
			}
			if m == nil || len(m.Questions) != tc.partial {
				t.Fatalf("partial message %+v, want %d questions", m, tc.partial)
			}
			if cap(m.Questions) > len(tc.msg) || cap(m.Answers) > len(tc.msg) {
				t.Errorf("allocation not bounded by message size: %d/%d", cap(m.Questions), cap(m.Answers))
			}
		})
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{TypeName(1), "A"}, {TypeName(28), "AAAA"}, {TypeName(65), "HTTPS"}, {TypeName(64), "SVCB"},
		{TypeName(255), "*"}, {TypeName(4242), "TYPE4242"},
		{RcodeName(0), "NOERROR"}, {RcodeName(3), "NXDOMAIN"}, {RcodeName(8), "NXRRSet"},
		{RcodeName(11), "unassigned-11"}, {RcodeName(200), "rcode-200"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func FuzzDNS(f *testing.F) {
	q := cat(name("www.example.com"), u16(1), u16(1))
	f.Add(cat(header(1, 0x8180, 1, 1), q, rr([]byte{0xc0, 12}, TypeA, 60, []byte{1, 2, 3, 4})))
	f.Add(cat(header(1, 0x8180, 1, 1), q, rr([]byte{0xc0, 12}, TypeHTTPS, 60, cat(u16(1), []byte{0}, u16(1), u16(3), []byte{2, 'h', '2'}))))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if m == nil {
			if err == nil {
				t.Fatal("nil message without error")
			}
			return
		}
		for _, q := range m.Questions {
			if len(q.Name) > 4*maxNameLen || q.Class&0x8000 != 0 {
				t.Fatalf("bad question %+v", q)
			}
		}
		if len(m.Questions)*minQuestion > len(b) || len(m.Answers)*minRR > len(b) {
			t.Fatalf("more records than bytes")
		}
		// Decode into reused storage, with and without a shared set, gives
		// what Parse gives; twice, so the second sees the first's leftovers.
		shared := map[string]string{}
		var qs [1]Question
		var as [2]RR
		for i := 0; i < 2; i++ {
			d, derr := Decode(b, qs[:0], as[:0], shared)
			if fmt.Sprint(derr) != fmt.Sprint(err) || !sameMessage(&d, m) {
				t.Fatalf("Decode = %+v, %v; Parse = %+v, %v", d, derr, m, err)
			}
		}
	})
}

// sameMessage compares messages as values (nil and empty sections alike).
func sameMessage(a, b *Message) bool {
	return a.ID == b.ID && a.Response == b.Response && a.Opcode == b.Opcode && a.Rcode == b.Rcode &&
		a.Truncated == b.Truncated && slices.Equal(a.Questions, b.Questions) && slices.Equal(a.Answers, b.Answers)
}

func FuzzLabel(f *testing.F) {
	f.Add([]byte("www"))
	f.Add([]byte("Mixed-Case_09"))
	f.Add([]byte("a.b\\c \x00\x7f\xff"))
	f.Fuzz(func(t *testing.T, label []byte) {
		var want []byte
		for _, c := range label {
			want = appendLabelByte(want, c)
		}
		if got := appendLabel([]byte("x."), label); string(got) != "x."+string(want) {
			t.Fatalf("appendLabel(%q) = %q, want %q", label, got[2:], want)
		}
	})
}

// benchMsg is a typical response: one question, a CNAME and two A records.
var benchMsg = cat(header(0x1234, 0x8180, 1, 3), name("www.example.com"), u16(1), u16(1),
	rr([]byte{0xc0, 12}, TypeCNAME, 300, []byte{3, 'c', 'd', 'n', 0xc0, 16}),
	rr([]byte{0xc0, 33}, TypeA, 60, []byte{93, 184, 216, 34}),
	rr([]byte{0xc0, 33}, TypeA, 60, []byte{93, 184, 216, 35}))

func BenchmarkParse(b *testing.B) {
	if _, err := Parse(benchMsg); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchMsg)))
	for b.Loop() {
		if _, err := Parse(benchMsg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseQuery(b *testing.B) {
	msg := cat(header(0x1234, 0x0100, 1, 0), name("www.example.com"), u16(1), u16(1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode decodes benchMsg into stack storage, as the analyzer does,
// without and with a shared string set holding a few thousand names.
func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{-1, 3000} {
		var shared map[string]string
		if n >= 0 {
			shared = map[string]string{}
			for i := 0; i < n; i++ {
				s := fmt.Sprintf("host%d.example.org", i)
				shared[s] = s
			}
		}
		b.Run(fmt.Sprintf("shared=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var qs [1]Question
				var as [8]RR
				if _, err := Decode(benchMsg, qs[:0], as[:0], shared); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParseFull reads an mDNS probe's authority section and a response's
// additional one, which Parse leaves out, and HINFO and TXT strings.
func TestParseFull(t *testing.T) {
	rr := func(n string, typ uint16, data []byte) []byte {
		return cat(name(n), u16(typ), u16(1), u32(120), u16(uint16(len(data))), data)
	}
	h := header(0, 0, 1, 0)
	binary.BigEndian.PutUint16(h[8:], 2)  // authority
	binary.BigEndian.PutUint16(h[10:], 1) // additional
	msg := cat(h, name("fbhost.local"), u16(255), u16(1),
		rr("fbhost.local", TypeA, []byte{10, 79, 0, 2}),
		rr("fbhost.local", TypeHINFO, []byte{6, 'X', '8', '6', '_', '6', '4', 5, 'L', 'I', 'N', 'U', 'X'}),
		rr("printer._ipp._tcp.local", TypeTXT, []byte{12, 't', 'y', '=', 'M', 'o', 'd', 'e', 'l', ' ', '"', '9', '"', 4, 'n', '=', 0x01, 'x'}))
	f, err := ParseFull(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Questions) != 1 || len(f.Answers) != 0 || len(f.Authority) != 2 || len(f.Additional) != 1 {
		t.Fatalf("sections q%d an%d ns%d ar%d", len(f.Questions), len(f.Answers), len(f.Authority), len(f.Additional))
	}
	if got := Strings(f.Authority[1].Data); !slices.Equal(got, []string{"X86_64", "LINUX"}) {
		t.Errorf("HINFO %q → %q", f.Authority[1].Data, got)
	}
	if got := Strings(f.Additional[0].Data); !slices.Equal(got, []string{`ty=Model "9"`, "n=\x01x"}) {
		t.Errorf("TXT %q → %q", f.Additional[0].Data, got)
	}
	// Cut anywhere: what decoded comes back with the error.
	for n := range len(msg) {
		if f, err := ParseFull(msg[:n]); f == nil || err == nil && n < len(msg) {
			t.Fatalf("cut at %d: %v %v", n, f, err)
		}
	}
}
