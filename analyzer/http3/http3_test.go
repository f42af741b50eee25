package http3

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	nethttp "net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/firstboot/firstboot/analyzer/http"
	"github.com/firstboot/firstboot/analyzer/tlsdecrypt"
)

// TestStaticTable checks every entry against quic-go's QPACK encoder, which
// refers to the static table for a field it holds.
func TestStaticTable(t *testing.T) {
	if len(staticTable) != 99 {
		t.Fatalf("%d entries, want 99", len(staticTable))
	}
	for i, f := range staticTable {
		var buf bytes.Buffer
		enc := qpack.NewEncoder(&buf)
		enc.WriteField(qpack.HeaderField{Name: f.name, Value: f.value})
		var tb table
		var got []field
		if err := tb.section(buf.Bytes(), func(n, v string) { got = append(got, field{n, v}) }); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if len(got) != 1 || got[0] != f {
			t.Errorf("entry %d %v: decoded %v", i, f, got)
		}
		// An indexed field line names the entry by its index: one byte 0xc0|i for i < 63.
		if i < 63 && buf.Len() == 3 && buf.Bytes()[2] != 0xc0|byte(i) {
			t.Errorf("entry %d: the encoder indexes it as %x", i, buf.Bytes()[2])
		}
	}
}

// TestDynamicTable decodes RFC 9204 B.2: two inserts on the encoder stream,
// then a section referring to them by post-base index.
func TestDynamicTable(t *testing.T) {
	enc, _ := hex.DecodeString("3fbd01" + "c00f7777772e6578616d706c652e636f6d" + "c10c2f73616d706c652f70617468")
	tb := table{maxCap: 220}
	sec, _ := hex.DecodeString("03811011")
	if err := tb.section(sec, func(string, string) {}); err != errBlocked {
		t.Fatalf("before the inserts: %v, want blocked", err)
	}
	n, err := tb.instructions(enc[:10])
	if err != nil || n != 3 {
		t.Fatalf("partial instructions: %d, %v", n, err)
	}
	n2, err := tb.instructions(enc[n:])
	if err != nil || n+n2 != len(enc) {
		t.Fatalf("instructions: %d, %v", n+n2, err)
	}
	var got []string
	if err := tb.section(sec, func(n, v string) { got = append(got, n+"="+v) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != ":authority=www.example.com :path=/sample/path" {
		t.Errorf("got %v", got)
	}
	// Duplicate the oldest (relative index 1), then refer to it by
	// relative index with a base past it.
	if _, err := tb.instructions([]byte{0x01}); err != nil || tb.inserted() != 3 {
		t.Fatalf("duplicate: %v, %d entries", err, tb.inserted())
	}
	got = nil
	// RIC 3 (encoded 4), base 3 (delta 0); indexed relative 0 = absolute 2; literal name ref relative 1 (:path) with value "/x".
	if err := tb.section([]byte{0x04, 0x00, 0x80, 0x41, 0x02, '/', 'x'}, func(n, v string) { got = append(got, n+"="+v) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != ":authority=www.example.com :path=/x" {
		t.Errorf("got %v", got)
	}
}

type events struct {
	mu    sync.Mutex
	heads []string
	body  map[string]int
}

func (e *events) Head(dir int, stream uint64, req *http.Request, resp *http.Response) {
	if req != nil {
		e.heads = append(e.heads, fmt.Sprintf("%d %s %s %s %s ua=%q ct=%q cl=%d", stream, req.Version, req.Method, req.Host, req.URI, req.UserAgent, req.ContentType, req.ContentLength))
	} else {
		e.heads = append(e.heads, fmt.Sprintf("%d %s status=%d ct=%q cl=%d", stream, resp.Version, resp.Status, resp.ContentType, resp.ContentLength))
	}
}

func (e *events) Body(dir int, stream uint64, n int) { e.body[fmt.Sprintf("%d/%d", dir, stream)] += n }

type datagram struct {
	dir  int
	data []byte
}

type recPacketConn struct {
	net.PacketConn
	mu  *sync.Mutex
	log *[]datagram
	dir int
}

func (c *recPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	*c.log = append(*c.log, datagram{c.dir, append([]byte{}, p...)})
	c.mu.Unlock()
	return c.PacketConn.WriteTo(p, addr)
}

type keyLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (k *keyLog) Write(p []byte) (int, error) { k.mu.Lock(); defer k.mu.Unlock(); return k.b.Write(p) }

func cert(t *testing.T) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "h3.test"}, DNSNames: []string{"h3.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestRealHTTP3 decrypts what quic-go's HTTP/3 client and server say to
// each other and parses the requests and responses.
func TestRealHTTP3(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var log []datagram
	kl := &keyLog{}
	sc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer sc.Close()
	cc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer cc.Close()
	st := &quic.Transport{Conn: &recPacketConn{sc, &mu, &log, 1}}
	defer st.Close()
	ln, err := st.ListenEarly(http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert(t)}, KeyLogWriter: kl}), &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/missing" {
			nethttp.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(strings.Repeat("y", 3000)))
	})}
	go srv.ServeListener(ln)
	defer srv.Close()
	ct := &quic.Transport{Conn: &recPacketConn{cc, &mu, &log, 0}}
	defer ct.Close()
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "h3.test"},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return ct.DialEarly(ctx, sc.LocalAddr(), tc, qc)
		}}
	defer tr.Close()
	client := &nethttp.Client{Transport: tr}
	for _, r := range []struct{ method, path, body string }{{"GET", "/a?x=1", ""}, {"POST", "/upload", "0123456789"}, {"GET", "/missing", ""}} {
		req, _ := nethttp.NewRequestWithContext(ctx, r.method, "https://h3.test/"+strings.TrimPrefix(r.path, "/"), strings.NewReader(r.body))
		req.Header.Set("User-Agent", "firstboot-h3/1.0")
		if r.body != "" {
			req.Header.Set("Content-Type", "application/octet-stream")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.Close()
	time.Sleep(50 * time.Millisecond)

	var keys tlsdecrypt.Keys
	keys.Add(kl.b.Bytes())
	ev := &events{body: map[string]int{}}
	h := NewConn(ev)
	q := tlsdecrypt.NewQUICConn(&keys, func(dir int, id uint64, data []byte, fin bool) { h.Stream(dir, id, data, fin) })
	mu.Lock()
	for _, d := range log {
		q.Datagram(d.dir, d.data)
	}
	mu.Unlock()
	if h.Err() != nil {
		t.Fatal(h.Err())
	}
	want := []string{
		`0 3 GET h3.test /a?x=1 ua="firstboot-h3/1.0" ct="" cl=-1`,
		`0 3 status=200 ct="text/plain" cl=3000`,
		`4 3 POST h3.test /upload ua="firstboot-h3/1.0" ct="application/octet-stream" cl=10`,
		`4 3 status=200 ct="text/plain" cl=3000`,
		`8 3 GET h3.test /missing ua="firstboot-h3/1.0" ct="" cl=-1`,
		`8 3 status=404 ct="text/plain; charset=utf-8" cl=19`,
	}
	if strings.Join(ev.heads, "\n") != strings.Join(want, "\n") {
		t.Errorf("heads:\n%s\nwant:\n%s", strings.Join(ev.heads, "\n"), strings.Join(want, "\n"))
	}
	if ev.body["0/4"] != 10 || ev.body["1/0"] != 3000 || ev.body["1/8"] != 19 {
		t.Errorf("body bytes %v", ev.body)
	}
}

func FuzzQPACK(f *testing.F) {
	f.Add([]byte{0x3f, 0xbd, 0x01, 0xc0, 0x01, 'a'}, []byte{0x03, 0x81, 0x10, 0x11})
	f.Add([]byte{}, []byte{0x00, 0x00, 0x51, 0x0b, '/', 'i', 'n', 'd', 'e', 'x', '.', 'h', 't', 'm', 'l'})
	f.Fuzz(func(t *testing.T, enc, sec []byte) {
		tb := table{maxCap: 4096}
		tb.instructions(enc)
		tb.section(sec, func(string, string) {})
	})
}

func FuzzHTTP3(f *testing.F) {
	f.Add(uint64(0), []byte{0x01, 0x03, 0x00, 0x00, 0xd1, 0x00, 0x02, 'h', 'i'}, uint64(3), []byte{0x00, 0x04, 0x02, 0x01, 0x40})
	f.Fuzz(func(t *testing.T, id1 uint64, a []byte, id2 uint64, b []byte) {
		c := NewConn(&events{body: map[string]int{}})
		for len(a) > 0 || len(b) > 0 {
			n := min(len(a), 5)
			c.Stream(0, id1, a[:n], false)
			a = a[n:]
			m := min(len(b), 3)
			c.Stream(1, id2, b[:m], len(b) == m)
			b = b[m:]
		}
	})
}
