package uplink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/firstboot/firstboot/internal/simuplink"
	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/testnet"
)

// upstream is a resolver on loopback (UDP and TCP, one port) that answers
// every A question with one address and records what it was asked.
type upstream struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen []string
}

func startUpstream(t *testing.T, answer netip.Addr) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	u := &upstream{addr: netip.MustParseAddrPort(pc.LocalAddr().String())}
	simuplink.ServeDNS(pc, ln, func(q []byte, _ string) []byte {
		resp, question, _ := simuplink.Answer(q, func(string) (netip.Addr, bool) { return answer, true })
		u.mu.Lock()
		u.seen = append(u.seen, question.Name)
		u.mu.Unlock()
		return resp
	})
	return u
}

// TestDNSForwarder: a query a guest sends to the lab bridge address (here in
// a namespace of the test's) is answered by the upstream resolver, over UDP
// and TCP, and logged; a query no upstream answers gets SERVFAIL, logged
// with the reason.
func TestDNSForwarder(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root (network namespaces)")
	}
	lab := testnet.New(t, "fbuplab")
	lab.MustRun(t, "ip", "addr", "add", "10.99.0.1/24", "dev", "lo")
	up := startUpstream(t, netip.MustParseAddr("203.0.113.10"))
	var logBuf syncBuffer
	dead := netip.MustParseAddrPort("127.0.0.1:9") // nothing listens: refused at once
	d, err := StartDNS(DNSConfig{Netns: lab.Name, Addr: netip.MustParseAddr("10.99.0.1"), Upstreams: []netip.AddrPort{dead, up.addr}, Log: &logBuf, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	resolver := func(network string) *net.Resolver {
		return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return lab.Dial(ctx, network, "10.99.0.1:53")
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, network := range []string{"udp", "tcp"} {
		addrs, err := resolver(network).LookupIP(ctx, "ip4", "news.example.com")
		if err != nil || len(addrs) != 1 || addrs[0].String() != "203.0.113.10" {
			t.Fatalf("%s lookup: %v %v", network, addrs, err)
		}
	}
	// The only upstream dead: SERVFAIL.
	d.Close()
	d, err = StartDNS(DNSConfig{Netns: lab.Name, Addr: netip.MustParseAddr("10.99.0.1"), Upstreams: []netip.AddrPort{dead}, Log: &logBuf, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// One hand-made query (a resolver library would retry).
	c, err := lab.Dial(ctx, "udp", "10.99.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4242, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("gone.example.com."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(q)
	resp := make([]byte, 512)
	n, err := c.Read(resp)
	c.Close()
	var p dnsmessage.Parser
	h, perr := p.Start(resp[:n])
	if err != nil || perr != nil || h.ID != 4242 || h.RCode != dnsmessage.RCodeServerFailure {
		t.Errorf("query with no upstream: %+v %v %v, want SERVFAIL", h, err, perr)
	}
	d.Close()

	var recs []DNSRecord
	sc := bufio.NewScanner(bytes.NewReader(logBuf.Bytes()))
	for sc.Scan() {
		var r DNSRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 3 {
		t.Fatalf("log has %d records, want 3: %s", len(recs), logBuf.Bytes())
	}
	for i, proto := range []string{"udp", "tcp"} {
		r := recs[i]
		if r.Proto != proto || r.Name != "news.example.com" || r.QType != "A" || r.Upstream != up.addr.String() ||
			r.RCode != "NOERROR" || len(r.Answers) != 1 || r.Answers[0] != "A 203.0.113.10" || !strings.HasPrefix(r.Client, "10.99.0.1:") {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if r := recs[2]; r.RCode != "SERVFAIL" || r.Upstream != "" || !strings.Contains(r.Error, "127.0.0.1:9") {
		t.Errorf("failed query's record: %+v", r)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.seen) != 2 {
		t.Errorf("upstream saw %v, want the two forwarded queries (no retries, no extra lookups)", up.seen)
	}
}

func TestResolvers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(path, []byte("# comment\nsearch lan\nnameserver 192.168.1.1\nnameserver fd00::1\nnameserver bogus\noptions ndots:1\n"), 0o644)
	got, err := Resolvers(path)
	if err != nil || len(got) != 2 || got[0].String() != "192.168.1.1:53" || got[1].String() != "[fd00::1]:53" {
		t.Errorf("Resolvers = %v, %v", got, err)
	}
	os.WriteFile(path, []byte("search lan\n"), 0o644)
	if _, err := Resolvers(path); err == nil || !strings.Contains(err.Error(), "no nameserver") {
		t.Errorf("no nameserver: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the forwarder's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}
