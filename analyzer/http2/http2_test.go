package http2

import (
	"context"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"sync"
	"testing"

	"github.com/firstboot/firstboot/analyzer/http"
)

// recorder keeps what each side of a connection wrote, in order.
type recorder struct {
	mu     sync.Mutex
	writes []struct {
		dir  int
		data []byte
	}
}

type recConn struct {
	net.Conn
	r   *recorder
	dir int
}

func (c *recConn) Write(p []byte) (int, error) {
	c.r.mu.Lock()
	c.r.writes = append(c.r.writes, struct {
		dir  int
		data []byte
	}{c.dir, append([]byte{}, p...)})
	c.r.mu.Unlock()
	return c.Conn.Write(p)
}

type recListener struct {
	net.Listener
	r *recorder
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recConn{c, l.r, 1}, nil
}

// events records what the parser reported.
type events struct {
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

func (e *events) Body(dir int, stream uint64, n int) {
	e.body[fmt.Sprintf("%d/%d", dir, stream)] += n
}

// TestRealHTTP2 parses what Go's HTTP/2 client and server (cleartext
// HTTP/2, so the bytes are the ones TLS would carry) say to each other.
func TestRealHTTP2(t *testing.T) {
	rec := &recorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos nethttp.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &nethttp.Server{Protocols: &protos, Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/missing":
			nethttp.NotFound(w, r)
		case "/big":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write([]byte(strings.Repeat("x", 100000)))
		default:
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("hello"))
		}
	})}
	go srv.Serve(&recListener{ln, rec})
	defer srv.Close()
	tr := &nethttp.Transport{Protocols: &protos, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &recConn{c, rec, 0}, nil
	}}
	defer tr.CloseIdleConnections()
	client := &nethttp.Client{Transport: tr}
	base := "http://" + ln.Addr().String()
	do := func(method, path, body string) {
		req, _ := nethttp.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("User-Agent", "firstboot-test/1.0")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "/index.html?q=1", "")
	do("POST", "/submit", `{"a":1}`)
	do("GET", "/missing", "")
	do("GET", "/big", "")
	do("GET", "/index.html?q=1", "") // the same headers again: from the dynamic table

	ev := &events{body: map[string]int{}}
	c := NewConn(ev)
	for _, w := range rec.writes {
		for d := w.data; len(d) > 0; {
			n := min(len(d), 5) // split everywhere
			c.Feed(w.dir, d[:n])
			d = d[n:]
		}
	}
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
	host := "127.0.0.1"
	want := []string{
		`1 2 GET ` + host + ` /index.html?q=1 ua="firstboot-test/1.0" ct="" cl=-1`,
		`1 2 status=200 ct="text/plain" cl=5`,
		`3 2 POST ` + host + ` /submit ua="firstboot-test/1.0" ct="application/json" cl=7`,
		`3 2 status=200 ct="text/plain" cl=5`,
		`5 2 GET ` + host + ` /missing ua="firstboot-test/1.0" ct="" cl=-1`,
		`5 2 status=404 ct="text/plain; charset=utf-8" cl=19`,
		`7 2 GET ` + host + ` /big ua="firstboot-test/1.0" ct="" cl=-1`,
		`7 2 status=200 ct="application/octet-stream" cl=-1`,
		`9 2 GET ` + host + ` /index.html?q=1 ua="firstboot-test/1.0" ct="" cl=-1`,
		`9 2 status=200 ct="text/plain" cl=5`,
	}
	if strings.Join(ev.heads, "\n") != strings.Join(want, "\n") {
		t.Errorf("heads:\n%s\nwant:\n%s", strings.Join(ev.heads, "\n"), strings.Join(want, "\n"))
	}
	if ev.body["0/3"] != 7 || ev.body["1/7"] != 100000 || ev.body["1/5"] != 19 {
		t.Errorf("body bytes %v", ev.body)
	}
}

func TestNotHTTP2(t *testing.T) {
	c := NewConn(&events{body: map[string]int{}})
	c.Feed(0, []byte("GET / HTTP/1.1\r\n"))
	if c.Err() != ErrNotHTTP2 {
		t.Fatalf("err %v", c.Err())
	}
}

func FuzzHTTP2(f *testing.F) {
	f.Add([]byte(Preface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), []byte("\x00\x00\x05\x01\x05\x00\x00\x00\x01\x88\x5f\x87\x49\x7c"))
	f.Fuzz(func(t *testing.T, client, server []byte) {
		c := NewConn(&events{body: map[string]int{}})
		for len(client) > 0 || len(server) > 0 {
			n := min(len(client), 7)
			c.Feed(0, client[:n])
			client = client[n:]
			m := min(len(server), 11)
			c.Feed(1, server[:m])
			server = server[m:]
		}
	})
}
