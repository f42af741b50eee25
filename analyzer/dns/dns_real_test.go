package dns

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/internal/testnet/corpus"
)

// dnsPayload returns the DNS message in a captured frame: a UDP payload, or a
// TCP segment holding one length-prefixed message.
func dnsPayload(f testnet.Frame) ([]byte, bool) {
	if u, ok := f.Packet.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && (u.SrcPort == 53 || u.DstPort == 53) {
		return u.Payload, true
	}
	if tc, ok := f.Packet.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && (tc.SrcPort == 53 || tc.DstPort == 53) {
		p := tc.Payload
		if len(p) > 2 && int(binary.BigEndian.Uint16(p)) == len(p)-2 {
			return p[2:], true
		}
	}
	return nil, false
}

var reDigHeader = regexp.MustCompile(`status: ([A-Za-z]+), id: ([0-9]+)`)

// digAnswer is what dig printed for one query: the response ID, status and
// answer lines normalised to "name ttl TYPE data".
type digAnswer struct {
	query  string
	id     uint16
	status string
	lines  []string
}

// normalizeDig lower-cases the owner name, drops the class and the trailing
// dots dig prints on names.
func normalizeDig(line string) string {
	f := strings.Fields(line)
	if len(f) < 5 {
		return line
	}
	name := strings.TrimSuffix(strings.ToLower(f[0]), ".")
	data := strings.Join(f[4:], " ")
	switch f[3] {
	case "CNAME", "PTR", "NS", "MX", "SRV", "DNAME":
		if data != "." {
			data = strings.TrimSuffix(data, ".")
		}
	}
	return name + " " + f[1] + " " + f[3] + " " + data
}

// TestRealDNS runs dnsmasq in a namespace, queries it with dig (UDP and TCP,
// many record types) while tcpdump captures, then checks Parse against tshark
// (header, question, answer values) and against dig's own answer section.
func TestRealDNS(t *testing.T) {
	testnet.Require(t, "dnsmasq", "dig", "tshark", "tcpdump")
	ns := testnet.New(t, "fbt")
	capture := testnet.NewCapture(t, ns, "lo", filepath.Join(t.TempDir(), "capture.pcap"))
	ns.Background(t, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
		"--listen-address=127.0.0.1", "--bind-interfaces", "--port=53", "--local-ttl=300",
		"--address=/#/127.0.0.2",
		"--host-record=target.example.test,192.0.2.7,2001:db8::7",
		"--cname=alias.example.test,target.example.test",
		"--mx-host=example.test,mail.example.test,10",
		`--txt-record=txt.example.test,"v=spf1 -all","second string"`,
		"--srv-host=_http._tcp.example.test,web.example.test,80,1,2",
		"--ptr-record=7.2.0.192.in-addr.arpa,ptr.example.test",
		// HTTPS RR (RFC 9460): priority 1, target ".", alpn=h2, ipv4hint=1.2.3.4.
		"--dns-rr=svc.example.test,65,000100000100030268320004000401020304",
	)
	queries := [][]string{
		{"target.example.test", "A"},
		{"TARGET.Example.Test", "AAAA"},
		{"alias.example.test", "A"},
		{"example.test", "MX"},
		{"txt.example.test", "TXT"},
		{"_http._tcp.example.test", "SRV"},
		{"-x", "192.0.2.7"},
		{"svc.example.test", "HTTPS"},
		{"anything.else.test", "A"},
		{"+tcp", "tcp.example.test", "A"},
		{"+noedns", "www.Example.COM", "A"},
	}
	var digs []digAnswer
	deadline := time.Now().Add(10 * time.Second)
	for _, q := range queries {
		args := append([]string{"@127.0.0.1", "+tries=1", "+time=2", "+noall", "+answer", "+comments"}, q...)
		out, err := dig(ns, args)
		for err != nil && time.Now().Before(deadline) { // dnsmasq may still be starting
			time.Sleep(100 * time.Millisecond)
			out, err = dig(ns, args)
		}
		if err != nil {
			t.Fatalf("dig %v: %v", q, err)
		}
		d := digAnswer{query: strings.Join(q, " ")}
		for _, line := range strings.Split(string(out), "\n") {
			if m := reDigHeader.FindStringSubmatch(line); m != nil {
				id, _ := strconv.Atoi(m[2])
				d.id, d.status = uint16(id), m[1]
			}
			if line != "" && !strings.HasPrefix(line, ";") {
				d.lines = append(d.lines, normalizeDig(line))
			}
		}
		if d.status == "" {
			t.Fatalf("dig %v printed no header:\n%s", q, out)
		}
		digs = append(digs, d)
	}
	path := capture.Complete(t)

	fields := []string{"dns.id", "dns.flags.response", "dns.flags.rcode", "dns.flags.opcode", "dns.flags.truncated",
		"dns.qry.name", "dns.qry.type", "dns.count.answers", "dns.a", "dns.aaaa", "dns.cname",
		"dns.ptr.domain_name", "dns.mx.mail_exchange", "dns.srv.target", "dns.srv.port", "dns.resp.ttl"}
	ts := testnet.FrameFields(t, path, "dns", fields...)
	responses := map[uint16]*Message{}
	parsed := 0
	var seeds [][]byte
	defer func() { corpus.Save(t, "FuzzDNS", seeds) }()
	for _, f := range testnet.ReadPcap(t, path) {
		payload, ok := dnsPayload(f)
		if !ok {
			continue
		}
		seeds = append(seeds, payload)
		m, err := Parse(payload)
		if err != nil {
			t.Errorf("frame %d: Parse: %v", f.Num, err)
			continue
		}
		parsed++
		if m.Response {
			responses[m.ID] = m
		}
		want, ok := ts[f.Num]
		if !ok {
			t.Errorf("frame %d: tshark did not decode it as DNS", f.Num)
			continue
		}
		col := func(name string) string { return want[slices.Index(fields, name)] }
		list := func(name string) []string {
			if v := col(name); v != "" {
				return strings.Split(v, ",")
			}
			return nil
		}
		check := func(what, got, wantV string) {
			if got != wantV {
				t.Errorf("frame %d %s: got %q, tshark %q", f.Num, what, got, wantV)
			}
		}
		if id, err := strconv.ParseUint(col("dns.id"), 0, 16); err != nil || uint16(id) != m.ID {
			t.Errorf("frame %d id: got %d, tshark %q", f.Num, m.ID, col("dns.id"))
		}
		check("response", map[bool]string{true: "1", false: "0"}[m.Response], col("dns.flags.response"))
		if m.Response { // tshark shows the rcode of responses only
			check("rcode", strconv.Itoa(int(m.Rcode)), col("dns.flags.rcode"))
		}
		check("opcode", strconv.Itoa(int(m.Opcode)), col("dns.flags.opcode"))
		check("answers", strconv.Itoa(len(m.Answers)), col("dns.count.answers"))
		if len(m.Questions) != 1 {
			t.Errorf("frame %d: %d questions", f.Num, len(m.Questions))
			continue
		}
		check("qname", m.Questions[0].Name, strings.ToLower(col("dns.qry.name")))
		check("qtype", strconv.Itoa(int(m.Questions[0].Type)), col("dns.qry.type"))
		// tshark's value lists also hold authority/additional records: each of
		// our answers must be among them.
		byType := map[uint16]string{TypeA: "dns.a", TypeAAAA: "dns.aaaa", TypeCNAME: "dns.cname", TypePTR: "dns.ptr.domain_name"}
		for _, rr := range m.Answers {
			var field, val string
			switch rr.Type {
			case TypeMX:
				field, val = "dns.mx.mail_exchange", rr.Data[strings.IndexByte(rr.Data, ' ')+1:]
			case TypeSRV:
				field, val = "dns.srv.target", rr.Data[strings.LastIndexByte(rr.Data, ' ')+1:]
			default:
				field, val = byType[rr.Type], rr.Data
			}
			if field != "" && !slices.Contains(list(field), val) {
				t.Errorf("frame %d: answer %s %q not in tshark's %s %v", f.Num, TypeName(rr.Type), val, field, list(field))
			}
			if !slices.Contains(list("dns.resp.ttl"), strconv.Itoa(int(rr.TTL))) {
				t.Errorf("frame %d: TTL %d not in tshark's %v", f.Num, rr.TTL, list("dns.resp.ttl"))
			}
		}
	}
	if parsed < 2*len(queries) {
		t.Errorf("parsed %d DNS messages, want at least %d", parsed, 2*len(queries))
	}
	for _, d := range digs {
		m, ok := responses[d.id]
		if !ok {
			t.Errorf("dig %s: no captured response with id %d", d.query, d.id)
			continue
		}
		if RcodeName(m.Rcode) != d.status {
			t.Errorf("dig %s: RcodeName %s, dig status %s", d.query, RcodeName(m.Rcode), d.status)
		}
		var got []string
		for _, rr := range m.Answers {
			got = append(got, rr.Name+" "+strconv.Itoa(int(rr.TTL))+" "+TypeName(rr.Type)+" "+rr.Data)
		}
		if !slices.Equal(got, d.lines) {
			t.Errorf("dig %s answers:\n got %q\nwant %q", d.query, got, d.lines)
		}
	}
}

// dig runs one dig query inside ns, giving it 10 s.
func dig(ns *testnet.Namespace, args []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ns.Run(ctx, "dig", args...)
}
