package tlsdecrypt

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// wire records what both ends of a connection wrote, in the order written:
// a capture of the connection.
type wire struct {
	mu      sync.Mutex
	writes  []write
	keyLog  bytes.Buffer
	keyLock sync.Mutex
}

type write struct {
	dir  int
	data []byte
}

func (w *wire) Write(p []byte) (int, error) { // the key log writer
	w.keyLock.Lock()
	defer w.keyLock.Unlock()
	return w.keyLog.Write(p)
}

type recConn struct {
	net.Conn
	w   *wire
	dir int
}

func (c *recConn) Write(p []byte) (int, error) {
	c.w.mu.Lock()
	c.w.writes = append(c.w.writes, write{c.dir, append([]byte{}, p...)})
	c.w.mu.Unlock()
	return c.Conn.Write(p)
}

func testCert(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// exchange runs a TLS connection between crypto/tls ends configured by
// client and server: the client writes each of reqs and reads the echo.
func exchange(t *testing.T, client, server *tls.Config, reqs []string) *wire {
	t.Helper()
	w := &wire{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server.Certificates = []tls.Certificate{testCert(t, "example.test")}
	server.KeyLogWriter = w
	client.ServerName, client.InsecureSkipVerify = "example.test", true
	done := make(chan error, 1)
	go func() {
		s := tls.Server(&recConn{b, w, 1}, server)
		err := echo(s)
		s.Close() // its close_notify is part of the recording: before done
		done <- err
	}()
	c := tls.Client(&recConn{a, w, 0}, client)
	for _, r := range reqs {
		if _, err := c.Write([]byte(r)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(r))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if err := <-done; err != nil && !strings.Contains(err.Error(), "closed") && !strings.Contains(err.Error(), "reset") {
		t.Fatal(err)
	}
	return w
}

// echo answers what s reads in upper case until the peer closes.
func echo(s *tls.Conn) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := s.Write(bytes.ToUpper(buf[:n])); err != nil {
			return err
		}
	}
}

// replay feeds the recorded writes to a Conn, in pieces of at most chunk bytes.
func replay(t *testing.T, w *wire, keys *Keys, chunk int) (*Conn, [2]string) {
	t.Helper()
	var got [2]bytes.Buffer
	c := NewConn(keys, func(dir int, p []byte) { got[dir].Write(p) })
	for _, wr := range w.writes {
		for d := wr.data; len(d) > 0; {
			n := min(chunk, len(d))
			c.Feed(wr.dir, d[:n])
			d = d[n:]
		}
	}
	c.Close()
	return c, [2]string{got[0].String(), got[1].String()}
}

func TestDecryptTLS(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 3000) // several full records
	reqs := []string{"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", "second request", big}
	want := strings.Join(reqs, "")
	for _, tc := range []struct {
		name   string
		client *tls.Config
		server *tls.Config
	}{
		{name: "TLS1.3-AES128", client: &tls.Config{CipherSuites: nil}, server: &tls.Config{}},
		{name: "TLS1.3-HRR", client: &tls.Config{CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}, server: &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256}}},
		{name: "TLS1.2-ECDHE-GCM128", client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, server: &tls.Config{}},
		{name: "TLS1.2-ECDHE-GCM256", client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}, server: &tls.Config{}},
		{name: "TLS1.2-ChaCha20", client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, server: &tls.Config{}},
		{name: "TLS1.2-CBC-SHA", client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, server: &tls.Config{CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}},
		{name: "TLS1.2-CBC-SHA256", client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, server: &tls.Config{CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}},
		{name: "TLS1.1-CBC", client: &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}}, server: &tls.Config{MinVersion: tls.VersionTLS10}},
		{name: "TLS1.0-CBC", client: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, server: &tls.Config{MinVersion: tls.VersionTLS10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := exchange(t, tc.client, tc.server, reqs)
			var keys Keys
			if n, err := keys.Add(w.keyLog.Bytes()); err != nil || n == 0 {
				t.Fatalf("key log: %d lines, %v\n%s", n, err, w.keyLog.String())
			}
			for _, chunk := range []int{1 << 20, 1, 7, 1460} {
				c, got := replay(t, w, &keys, chunk)
				if got[0] != want || got[1] != strings.ToUpper(want) {
					t.Fatalf("chunk %d: status %s: client sent %d bytes, decrypted %d; server %d", chunk, c.Status(), len(want), len(got[0]), len(got[1]))
				}
				if c.Status() != StatusDecrypted {
					t.Errorf("status %q", c.Status())
				}
			}
			// Without keys: nothing comes out, and the reason says so.
			c, got := replay(t, w, &Keys{}, 1<<20)
			if got[0] != "" || got[1] != "" || c.Status() != StatusNoKeys {
				t.Errorf("without keys: status %q, %d/%d bytes", c.Status(), len(got[0]), len(got[1]))
			}
			// Wrong keys: records do not open.
			var wrong Keys
			wrong.Add(bytes.Map(func(r rune) rune {
				if r == 'a' {
					return 'b'
				}
				return r
			}, w.keyLog.Bytes()))
			if c, got := replay(t, w, &wrong, 1<<20); got[0] != "" || c.Status() != StatusFailed && c.Status() != StatusNoKeys {
				t.Errorf("wrong keys: status %q, %d bytes", c.Status(), len(got[0]))
			}
		})
	}
}

func TestKeyLogAdd(t *testing.T) {
	cr := strings.Repeat("ab", 32)
	text := "# comment\n\nCLIENT_RANDOM " + cr + " " + strings.Repeat("11", 48) + "\n" +
		"SERVER_HANDSHAKE_TRAFFIC_SECRET " + cr + " " + strings.Repeat("22", 32) + "\n" +
		"EXPORTER_SECRET " + cr + " " + strings.Repeat("33", 32) + "\n" +
		"CLIENT_TRAFFIC_SECRET_0 zz " + strings.Repeat("44", 32) + "\n" +
		"CLIENT_TRAFFIC_SECRET_0 " + cr + " 4\n"
	var k Keys
	n, err := k.Add([]byte(text))
	if n != 2 || err == nil || !strings.HasPrefix(err.Error(), "line 6:") {
		t.Fatalf("Add = %d, %v; want 2 and an error on line 6", n, err)
	}
	s := k.Lookup(bytes.Repeat([]byte{0xab}, 32))
	if s == nil || len(s.Master) != 48 || len(s.ServerHandshake) != 32 || s.ClientTraffic != nil {
		t.Fatalf("secrets %+v", s)
	}
}
