package simnet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func TestDNSWithDig(t *testing.T) {
	needTool(t, "dig")
	checkNoLeaks(t)
	r, logBuf, _ := startLoopback(t, nil)
	port := strconv.Itoa(r.Addrs().DNS)
	tests := []struct {
		name, qname, qtype string
		tcp                bool
		wantAnswer         string // "" = NOERROR with an empty answer section
	}{
		{"A", "example.org", "A", false, "127.0.0.1"},
		{"A over TCP", "tcp.example.org", "A", true, "127.0.0.1"},
		{"A for any name", "connectivitycheck.gstatic.com", "A", false, "127.0.0.1"},
		{"AAAA empty", "example.org", "AAAA", false, ""},
		{"HTTPS empty", "www.example.com", "HTTPS", false, ""},
		{"SVCB empty", "_dns.resolver.arpa", "SVCB", false, ""},
		{"TXT empty", "example.org", "TXT", false, ""},
		{"PTR", "7.113.0.203.in-addr.arpa", "PTR", false, PTRName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"@127.0.0.1", "-p", port, "+time=2", "+tries=1", tc.qname, tc.qtype}
			if tc.tcp {
				args = append(args, "+tcp")
			}
			out, err := runTool(t, "dig", args...)
			if err != nil {
				t.Fatalf("dig: %v\n%s", err, out)
			}
			if !strings.Contains(out, "status: NOERROR") {
				t.Fatalf("dig status is not NOERROR:\n%s", out)
			}
			short, err := runTool(t, "dig", append(args, "+short")...)
			if err != nil {
				t.Fatalf("dig +short: %v\n%s", err, short)
			}
			if got := strings.TrimSpace(short); got != tc.wantAnswer {
				t.Errorf("answer = %q, want %q\n%s", got, tc.wantAnswer, out)
			}
			proto := map[bool]string{false: "udp", true: "tcp"}[tc.tcp]
			logBuf.waitEvent(t, "dns "+tc.qname+" "+tc.qtype, func(e Event) bool {
				return e.Service == "dns" && e.Proto == proto && e.Name == tc.qname+"." && e.QType == tc.qtype &&
					strings.HasPrefix(e.Client, "127.0.0.1:") && e.Dst == "127.0.0.1:"+port
			})
		})
	}
}

func TestDNSAAAAWhenConfigured(t *testing.T) {
	needTool(t, "dig")
	checkNoLeaks(t)
	r, _, _ := startLoopback(t, func(c *Config) {
		c.AAAA = netip.MustParseAddr("fd00:fb::1")
		c.Ports = Ports{HTTP: Disabled, HTTPS: Disabled, QUIC: Disabled, NTP: Disabled, CatchAllTCP: Disabled, CatchAllUDP: Disabled}
	})
	out, err := runTool(t, "dig", "@127.0.0.1", "-p", strconv.Itoa(r.Addrs().DNS), "+time=2", "+tries=1", "+short", "v6.example", "AAAA")
	if err != nil {
		t.Fatalf("dig: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(out); got != "fd00:fb::1" {
		t.Errorf("AAAA answer = %q, want fd00:fb::1", got)
	}
}

func TestHTTPWithCurl(t *testing.T) {
	needTool(t, "curl")
	checkNoLeaks(t)
	r, logBuf, _ := startLoopback(t, nil)
	base := "http://127.0.0.1:" + strconv.Itoa(r.Addrs().HTTP)
	// Expected answers are the ones each OS documents for its probe.
	tests := []struct {
		host, path string
		status     int
		body       string
	}{
		{"connectivitycheck.gstatic.com", "/generate_204", 204, ""},
		{"www.msftconnecttest.com", "/connecttest.txt", 200, "Microsoft Connect Test"},
		{"www.msftncsi.com", "/ncsi.txt", 200, "Microsoft NCSI"},
		{"captive.apple.com", "/hotspot-detect.html", 200, "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"},
		{"network-test.debian.org", "/nm", 200, "NetworkManager is online\n"},
		{"detectportal.firefox.com", "/success.txt", 200, "success\n"},
		{"deb.debian.org", "/debian/dists/bookworm/InRelease?x=1", 200, DefaultBody},
	}
	for _, tc := range tests {
		t.Run(tc.host+tc.path, func(t *testing.T) {
			out, err := runTool(t, "curl", "-sS", "--max-time", "5", "-H", "Host: "+tc.host, "-A", "simnet-test/1.0",
				"-w", "\n%{http_code}", base+tc.path)
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			i := strings.LastIndexByte(out, '\n')
			body, code := out[:i], out[i+1:]
			if code != strconv.Itoa(tc.status) || body != tc.body {
				t.Errorf("got %s %q, want %d %q", code, body, tc.status, tc.body)
			}
			logBuf.waitEvent(t, "http "+tc.path, func(e Event) bool {
				return e.Service == "http" && e.Method == "GET" && e.Host == tc.host && e.URI == tc.path &&
					e.UserAgent == "simnet-test/1.0" && e.Status == tc.status && e.Dst == strings.TrimPrefix(base, "http://")
			})
		})
	}
}

func TestHTTPNetworkManagerHeader(t *testing.T) {
	needTool(t, "curl")
	checkNoLeaks(t)
	r, _, _ := startLoopback(t, nil)
	// Ubuntu's NetworkManager probes "/" and accepts this header as "online".
	out, err := runTool(t, "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-D", "-", "-H", "Host: connectivity-check.ubuntu.com",
		"http://127.0.0.1:"+strconv.Itoa(r.Addrs().HTTP)+"/")
	if err != nil || !strings.Contains(strings.ToLower(out), "x-networkmanager-status: online") {
		t.Errorf("curl: %v, headers:\n%s", err, out)
	}
}

func TestHTTPSWithCurlAndOpenSSL(t *testing.T) {
	needTool(t, "curl")
	needTool(t, "openssl")
	checkNoLeaks(t)
	r, logBuf, caPath := startLoopback(t, nil)
	port := strconv.Itoa(r.Addrs().HTTPS)
	for _, name := range []string{"example.org", "www.msftconnecttest.com", "a.b.c.deep.example.net"} {
		t.Run("curl "+name, func(t *testing.T) {
			out, err := runTool(t, "curl", "-sS", "--max-time", "5", "--cacert", caPath,
				"--resolve", name+":"+port+":127.0.0.1", "https://"+name+":"+port+"/connecttest.txt")
			if err != nil {
				t.Fatalf("curl with the lab CA: %v\n%s", err, out)
			}
			if out != "Microsoft Connect Test" {
				t.Errorf("body = %q", out)
			}
			logBuf.waitEvent(t, "https request for "+name, func(e Event) bool {
				return e.Service == "https" && e.SNI == name && e.Host == name+":"+port && e.URI == "/connecttest.txt"
			})
			// curl offers h2 and http/1.1; the ClientHello log keeps the
			// offer, the request log what was spoken.
			logBuf.waitEvent(t, "ClientHello for "+name, func(e Event) bool {
				return e.Service == "tls" && e.SNI == name && slices.Contains(e.ALPN, "http/1.1")
			})
			logBuf.waitEvent(t, "HTTP/2 for "+name, func(e Event) bool {
				return e.Service == "https" && e.SNI == name && slices.Equal(e.ALPN, []string{"h2"})
			})
		})
		t.Run("openssl "+name, func(t *testing.T) {
			out, err := runTool(t, "sh", "-c", fmt.Sprintf("openssl s_client -connect 127.0.0.1:%s -servername %s -CAfile %s -verify_return_error -verify_hostname %s </dev/null", port, name, caPath, name))
			if err != nil {
				t.Fatalf("openssl s_client: %v\n%s", err, out)
			}
			if !strings.Contains(out, "Verify return code: 0 (ok)") || !strings.Contains(out, "CN = "+name) {
				t.Errorf("openssl did not verify a certificate for %s:\n%s", name, out)
			}
		})
	}
	t.Run("no SNI, IP address", func(t *testing.T) {
		out, err := runTool(t, "curl", "-sS", "--max-time", "5", "--cacert", caPath, "https://127.0.0.1:"+port+"/generate_204", "-w", "%{http_code}")
		if err != nil || out != "204" {
			t.Fatalf("curl by IP: %v %q", err, out)
		}
	})
	t.Run("client without the CA is still recorded", func(t *testing.T) {
		out, err := runTool(t, "curl", "-sS", "--max-time", "5", "--resolve", "untrusted.example:"+port+":127.0.0.1", "https://untrusted.example:"+port+"/")
		if err == nil {
			t.Fatalf("curl trusted a certificate it has no CA for:\n%s", out)
		}
		logBuf.waitEvent(t, "ClientHello of the failing client", func(e Event) bool {
			return e.Service == "tls" && e.SNI == "untrusted.example" && slices.Equal(e.ALPN, []string{"h2", "http/1.1"}) &&
				strings.HasPrefix(e.Client, "127.0.0.1:") && e.Dst == "127.0.0.1:"+port
		})
		logBuf.waitEvent(t, "handshake error", func(e Event) bool {
			return e.Service == "https" && strings.HasPrefix(e.Detail, "TLS handshake error") && strings.HasPrefix(e.Client, "127.0.0.1:")
		})
	})
}

func TestNTPWithChrony(t *testing.T) {
	needTool(t, "chronyd")
	needRoot(t) // chronyd insists on root even with -Q
	checkNoLeaks(t)
	const skew = time.Hour
	r, logBuf, _ := startLoopback(t, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(skew) } })
	out, err := runTool(t, "chronyd", "-Q", "-t", "20", "-d", fmt.Sprintf("server 127.0.0.1 port %d iburst maxsamples 1", r.Addrs().NTP))
	if err != nil {
		t.Fatalf("chronyd -Q: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`System clock wrong by (-?[0-9.]+) seconds`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("chronyd printed no offset:\n%s", out)
	}
	off, _ := strconv.ParseFloat(m[1], 64)
	// The server runs an hour ahead, so the local clock is an hour slow.
	if math.Abs(off-skew.Seconds()) > 2 {
		t.Errorf("chrony offset = %v s, want about %v s\n%s", off, skew.Seconds(), out)
	}
	logBuf.waitEvent(t, "ntp request", func(e Event) bool {
		return e.Service == "ntp" && e.Size == 48 && strings.HasPrefix(e.Detail, "version 4 client request answered")
	})
}

func TestQUICHandshake(t *testing.T) {
	checkNoLeaks(t)
	keyLog := &lockedBuffer{}
	r, logBuf, caPath := startLoopback(t, func(c *Config) { c.KeyLog = keyLog })
	pem, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	addr := "127.0.0.1:" + strconv.Itoa(r.Addrs().QUIC)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := quic.DialAddr(ctx, addr, &tls.Config{RootCAs: pool, ServerName: "quic.example", NextProtos: []string{"h3"}}, nil)
	if err != nil {
		t.Fatalf("QUIC handshake with the lab CA: %v", err)
	}
	if got := c.ConnectionState().TLS.PeerCertificates[0].DNSNames; !slices.Equal(got, []string{"quic.example"}) {
		t.Errorf("certificate names = %v", got)
	}
	c.CloseWithError(0, "")
	// HTTP/3 is answered like HTTP and HTTPS, and its session secrets logged.
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer h3.Close()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+addr+"/connecttest.txt", nil)
	req.Host = "h3.example"
	req.Header.Set("User-Agent", "simnet-h3/1")
	h3.TLSClientConfig.ServerName = "h3.example"
	resp, err := h3.RoundTrip(req)
	if err != nil {
		t.Fatalf("HTTP/3 request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "Microsoft Connect Test" || resp.ProtoMajor != 3 {
		t.Errorf("HTTP/3 answer %s %q", resp.Proto, body)
	}
	logBuf.waitEvent(t, "HTTP/3 request", func(e Event) bool {
		return e.Service == "quic" && e.Proto == "udp" && e.Method == "GET" && e.URI == "/connecttest.txt" && e.UserAgent == "simnet-h3/1" &&
			e.Status == 200 && e.SNI == "h3.example" && e.Dst == addr
	})
	if !strings.Contains(keyLog.String(), "SERVER_TRAFFIC_SECRET_0 ") || !strings.Contains(keyLog.String(), "CLIENT_HANDSHAKE_TRAFFIC_SECRET ") {
		t.Errorf("key log:\n%s", keyLog.String())
	}
	logBuf.waitEvent(t, "QUIC Initial", func(e Event) bool {
		// RFC 9000 section 14.1: a client's Initial datagram is padded to at least 1200 bytes.
		return e.Service == "quic" && e.Size >= 1200 && strings.HasPrefix(e.Detail, "Initial packet, version 0x00000001")
	})
	logBuf.waitEvent(t, "QUIC ClientHello", func(e Event) bool {
		return e.Service == "quic" && e.Proto == "udp" && e.SNI == "quic.example" && slices.Equal(e.ALPN, []string{"h3"}) && e.Detail == "ClientHello"
	})
	logBuf.waitEvent(t, "QUIC handshake complete", func(e Event) bool {
		return e.Service == "quic" && e.SNI == "quic.example" && strings.HasPrefix(e.Detail, "handshake complete")
	})

	// A client that does not trust the CA fails, but its hello is recorded.
	_, err = quic.DialAddr(ctx, addr, &tls.Config{ServerName: "untrusted-quic.example", NextProtos: []string{"h3"}}, nil)
	if err == nil {
		t.Fatal("QUIC client trusted a certificate it has no CA for")
	}
	logBuf.waitEvent(t, "untrusted QUIC ClientHello", func(e Event) bool {
		return e.Service == "quic" && e.SNI == "untrusted-quic.example"
	})
}

func TestCatchAllLoopback(t *testing.T) {
	checkNoLeaks(t)
	r, logBuf, _ := startLoopback(t, nil)
	tcpAddr := "127.0.0.1:" + strconv.Itoa(r.Addrs().CatchAllTCP)
	t.Run("tcp first bytes", func(t *testing.T) {
		c, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n\x00\x01"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 10)); n != 0 || err == nil {
			t.Fatalf("catch-all answered (%d bytes, %v); it should only close", n, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("catch-all held a client that had spoken for %v", d)
		}
		e := logBuf.waitEvent(t, "catch-all tcp", func(e Event) bool { return e.Service == "tcp" && e.Size == 23 })
		if e.Text != "SSH-2.0-OpenSSH_9.2...." || e.Hex != fmt.Sprintf("%x", "SSH-2.0-OpenSSH_9.2\r\n\x00\x01") || e.Dst != tcpAddr {
			t.Errorf("event = %+v", e)
		}
	})
	t.Run("tcp silent client", func(t *testing.T) {
		c, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1)) // returns when the server gives up
		logBuf.waitEvent(t, "silent client", func(e Event) bool {
			return e.Service == "tcp" && e.Client == c.LocalAddr().String() && e.Size == 0 && strings.Contains(e.Detail, "sent nothing")
		})
	})
	t.Run("udp", func(t *testing.T) {
		udpAddr := "127.0.0.1:" + strconv.Itoa(r.Addrs().CatchAllUDP)
		c, err := net.Dial("udp", udpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hello udp"))
		logBuf.waitEvent(t, "catch-all udp", func(e Event) bool {
			return e.Service == "udp" && e.Text == "hello udp" && e.Dst == udpAddr && e.Client == c.LocalAddr().String()
		})
	})
}

func TestCloseWithOpenConnections(t *testing.T) {
	checkNoLeaks(t)
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := Start(ctx, Config{Addr: netip.MustParseAddr("127.0.0.1"), CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	p := r.Addrs()
	// Idle connections on every TCP service must not keep Close waiting.
	var conns []net.Conn
	for _, port := range []int{p.DNS, p.HTTP, p.HTTPS, p.CatchAllTCP} {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(100 * time.Millisecond) // let the servers pick them up
	cancel()                           // context cancellation closes the responders
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung with open connections")
	}
	// Close waits for its goroutines: none may remain even though the
	// clients have not hung up yet (the TCP handlers would otherwise wait for
	// them for seconds). Goroutines that signalled completion (net/http's
	// "closed" hook, the context watcher) get a moment to return.
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		var left []string
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "lab/simnet.(*Responders)") || strings.Contains(g, "quic-go.") || strings.Contains(g, "net/http.(*conn).serve") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines still running after Close:\n%s", strings.Join(left, "\n\n"))
		}
	}
	for _, c := range conns {
		c.Close()
	}
	if _, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(p.HTTP)); err == nil {
		t.Error("HTTP still accepts after Close")
	}
}
