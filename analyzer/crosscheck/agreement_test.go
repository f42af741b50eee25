package crosscheck

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/results/schema"
)

// The values firstboot must agree on with tshark, read from tshark's PDML
// (the full dissection tree, in wire order), and the JA4 fingerprints
// computed here from tshark's dissection of each ClientHello, by the rules
// of FoxIO's specification (technical_details/JA4.md), independently of
// package tlshello.

// refValues are what tshark shows in a capture.
type refValues struct {
	sni, ja3, dns, http, ja4 []string
}

// pdmlField is a PDML field element and its children.
type pdmlField struct {
	Name   string      `xml:"name,attr"`
	Show   string      `xml:"show,attr"`
	Value  string      `xml:"value,attr"`
	Fields []pdmlField `xml:"field"`
	Protos []pdmlProto `xml:"proto"`
}

type pdmlProto struct {
	Name   string      `xml:"name,attr"`
	Fields []pdmlField `xml:"field"`
	Protos []pdmlProto `xml:"proto"`
}

type pdmlPacket struct {
	Protos []pdmlProto `xml:"proto"`
}

// tsharkValues dissects pcap with tshark and collects the values.
func tsharkValues(t *testing.T, pcap string) refValues {
	t.Helper()
	filter := "tls.handshake.type == 1 || dtls.handshake.type == 1 || dns.flags.response == 0 || http.request"
	cmd := exec.Command("tshark", "-r", pcap, "-n", "-T", "pdml", "-Y", filter)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -T pdml %s: %v\n%s", pcap, err, stderr.String())
	}
	var r refValues
	d := xml.NewDecoder(bytes.NewReader(out))
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "packet" {
			continue
		}
		var p pdmlPacket
		if err := d.DecodeElement(&p, &se); err != nil {
			t.Fatalf("tshark PDML of %s: %v", pcap, err)
		}
		r.addPacket(p.Protos, "")
	}
	return r
}

// addPacket collects the values of a packet's protocols; outer names the
// protocol carrying these ("quic" for TLS inside QUIC).
func (r *refValues) addPacket(protos []pdmlProto, outer string) {
	for _, p := range protos {
		switch p.Name {
		case "tls", "dtls":
			walk(p.Fields, func(f *pdmlField) bool {
				if f.Name == p.Name+".handshake" && hasChild(f, p.Name+".handshake.type", "1") {
					r.hello(f, p.Name, outer)
					return false
				}
				return true
			})
		case "dns", "mdns", "llmnr":
			if first(p.Fields, "dns.flags.response") == "0" {
				walk(p.Fields, func(f *pdmlField) bool {
					if f.Name == "dns.qry.name" {
						r.dns = append(r.dns, strings.ToLower(f.Show))
					}
					return true
				})
			}
		case "http", "ssdp":
			if first(p.Fields, "http.request.method") != "" || hasField(p.Fields, "http.request") {
				if h := first(p.Fields, "http.host"); h != "" {
					r.http = append(r.http, hostOnly(h))
				}
			}
		}
		r.addPacket(p.Protos, p.Name)
		for i := range p.Fields {
			r.nested(&p.Fields[i], p.Name)
		}
	}
}

// nested looks for protocols tshark shows inside fields (TLS inside QUIC
// CRYPTO frames).
func (r *refValues) nested(f *pdmlField, outer string) {
	if len(f.Protos) > 0 {
		r.addPacket(f.Protos, outer)
	}
	for i := range f.Fields {
		r.nested(&f.Fields[i], outer)
	}
}

// hello collects a ClientHello's SNI, JA3 and the JA4 computed from its fields.
func (r *refValues) hello(h *pdmlField, proto, outer string) {
	pre := proto + ".handshake."
	var ch refHello
	ch.transport = 't'
	switch {
	case proto == "dtls":
		ch.transport = 'd'
	case outer == "quic":
		ch.transport = 'q'
	}
	walk(h.Fields, func(f *pdmlField) bool {
		switch f.Name {
		case pre + "version":
			ch.legacy = hexValue(f.Value)
		case pre + "ciphersuite":
			ch.ciphers = append(ch.ciphers, hexValue(f.Value))
		case pre + "extension.type":
			n, _ := strconv.Atoi(f.Show)
			ch.exts = append(ch.exts, uint16(n))
		case pre + "extensions.supported_version":
			ch.versions = append(ch.versions, hexValue(f.Value))
		case pre + "extensions_alpn_str":
			if ch.alpn == nil {
				b, _ := hex.DecodeString(f.Value)
				ch.alpn = append([]byte{}, b...)
				ch.hasALPN = true
			}
		case pre + "extensions_server_name":
			r.sni = append(r.sni, f.Show)
		case pre + "ja3":
			r.ja3 = append(r.ja3, f.Show)
		case pre + "extension":
			return true
		}
		// The signature algorithms of extension 13 only (not those of
		// signature_algorithms_cert, 50, which tshark names alike).
		if strings.HasPrefix(f.Show, "Extension: signature_algorithms (") {
			walk(f.Fields, func(g *pdmlField) bool {
				if g.Name == pre+"sig_hash_alg" {
					ch.sigalgs = append(ch.sigalgs, hexValue(g.Value))
				}
				return true
			})
		}
		return true
	})
	r.ja4 = append(r.ja4, ch.ja4())
}

// refHello is a ClientHello as tshark dissected it.
type refHello struct {
	transport                        byte
	legacy                           uint16
	ciphers, exts, versions, sigalgs []uint16
	alpn                             []byte
	hasALPN                          bool
}

func grease(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// ja4 computes JA4 by the specification's rules, one by one.
func (h *refHello) ja4() string {
	// Version: the highest supported_versions value ignoring GREASE (the
	// newest; DTLS numbers count down), else the hello's version.
	v := h.legacy
	best := -1
	for _, s := range h.versions {
		if grease(s) {
			continue
		}
		rank := int(s)
		if s>>8 == 0xfe {
			rank = 0x10000 + 0xff - int(s&0xff)
		}
		if rank > best {
			best, v = rank, s
		}
	}
	ver := map[uint16]string{0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
		0xfeff: "d1", 0xfefd: "d2", 0xfefc: "d3"}[v]
	if ver == "" {
		ver = "00"
	}
	// SNI: the extension's presence.
	sni := "i"
	if slices.Contains(h.exts, 0) {
		sni = "d"
	}
	count := func(l []uint16) string {
		n := 0
		for _, x := range l {
			if !grease(x) {
				n++
			}
		}
		return fmt.Sprintf("%02d", min(n, 99))
	}
	// ALPN: first and last characters of the first value; "00" without
	// one; the hex form's first and last when either end is not
	// alphanumeric.
	alpn := "00"
	if h.hasALPN && len(h.alpn) > 0 {
		a, z := h.alpn[0], h.alpn[len(h.alpn)-1]
		alnum := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }
		if alnum(a) && alnum(z) {
			alpn = string([]byte{a, z})
		} else {
			x := hex.EncodeToString(h.alpn)
			alpn = x[:1] + x[len(x)-1:]
		}
	}
	list := func(l []uint16, drop ...uint16) []string {
		var out []string
		for _, x := range l {
			if !grease(x) && !slices.Contains(drop, x) {
				out = append(out, fmt.Sprintf("%04x", x))
			}
		}
		return out
	}
	hash := func(items []string, s string) string {
		if len(items) == 0 {
			return "000000000000"
		}
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])[:12]
	}
	ciphers := list(h.ciphers)
	slices.Sort(ciphers)
	exts := list(h.exts, 0x0000, 0x0010)
	slices.Sort(exts)
	extStr := strings.Join(exts, ",")
	if algs := list(h.sigalgs); len(algs) > 0 {
		extStr += "_" + strings.Join(algs, ",")
	}
	return string(h.transport) + ver + sni + count(h.ciphers) + count(h.exts) + alpn + "_" +
		hash(ciphers, strings.Join(ciphers, ",")) + "_" + hash(exts, extStr)
}

// unescapeName turns a name's presentation form ("my\\032printer", as dig
// writes it) into the bytes tshark shows ("my printer").
func unescapeName(n string) string {
	if !strings.Contains(n, `\`) {
		return n
	}
	var b strings.Builder
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c == '\\' && i+1 < len(n) {
			if i+3 < len(n) && n[i+1] >= '0' && n[i+1] <= '9' {
				v, err := strconv.Atoi(n[i+1 : i+4])
				if err == nil && v < 256 {
					b.WriteByte(byte(v))
					i += 3
					continue
				}
			}
			i++
			c = n[i]
		}
		b.WriteByte(c)
	}
	return b.String()
}

// hostOnly is an HTTP Host as firstboot reports it: lower case, without
// the port (tshark shows the header as sent).
func hostOnly(h string) string {
	h = strings.ToLower(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.Trim(h, "[]")
}

func hexValue(s string) uint16 {
	n, _ := strconv.ParseUint(s, 16, 16)
	return uint16(n)
}

// walk calls fn for every field below fs, depth first; fn returns whether
// to descend into the field.
func walk(fs []pdmlField, fn func(*pdmlField) bool) {
	for i := range fs {
		if fn(&fs[i]) {
			walk(fs[i].Fields, fn)
		}
	}
}

func first(fs []pdmlField, name string) string {
	v := ""
	found := false
	walk(fs, func(f *pdmlField) bool {
		if !found && f.Name == name {
			v, found = f.Show, true
		}
		return !found
	})
	return v
}

func hasField(fs []pdmlField, name string) bool {
	found := false
	walk(fs, func(f *pdmlField) bool {
		found = found || f.Name == name
		return !found
	})
	return found
}

func hasChild(f *pdmlField, name, show string) bool {
	for _, c := range f.Fields {
		if c.Name == name && c.Show == show {
			return true
		}
	}
	return false
}

// firstbootValues are the same values from an analysis.
func firstbootValues(a *schema.Analysis) refValues {
	var r refValues
	for _, t := range a.TLS {
		if t.ServerName != "" {
			r.sni = append(r.sni, t.ServerName)
		}
		r.ja3 = append(r.ja3, t.JA3)
		r.ja4 = append(r.ja4, t.JA4)
	}
	for _, d := range a.DNS {
		if d.RTT == nil && d.Rcode != nil {
			continue // a response without its query
		}
		qs := d.Questions
		if len(qs) == 0 {
			qs = []string{d.Query}
		}
		for _, q := range qs {
			r.dns = append(r.dns, unescapeName(q))
		}
	}
	for _, h := range a.HTTP {
		if h.Method != "" && h.Host != "" {
			r.http = append(r.http, hostOnly(h.Host))
		}
	}
	return r
}

// tally counts agreeing values of one kind: matched values (as multisets)
// and all distinct occurrences of either side.
type tally struct{ matched, total int }

func (t *tally) add(o tally) { t.matched += o.matched; t.total += o.total }

func (t tally) String() string {
	if t.total == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d (%.1f%%)", t.matched, t.total, t.pct())
}

func (t tally) pct() float64 {
	if t.total == 0 {
		return 100
	}
	return 100 * float64(t.matched) / float64(t.total)
}

// agree compares two multisets: total is the size of their union.
func agree(got, want []string) (tally, []string) {
	w := map[string]int{}
	for _, v := range want {
		w[v]++
	}
	var m int
	var extra []string
	for _, v := range got {
		if w[v] > 0 {
			w[v]--
			m++
		} else {
			extra = append(extra, "+"+v)
		}
	}
	for v, n := range w {
		for range n {
			extra = append(extra, "-"+v)
		}
	}
	slices.Sort(extra)
	return tally{m, len(got) + len(want) - m}, extra
}

// kinds names the compared values in order.
var kinds = []string{"sni", "ja3", "ja4", "dns", "http"}

func (r *refValues) get(k string) []string {
	switch k {
	case "sni":
		return r.sni
	case "ja3":
		return r.ja3
	case "ja4":
		return r.ja4
	case "dns":
		return r.dns
	}
	return r.http
}
