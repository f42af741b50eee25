package tlshello

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/ captures from live clients")

// helloSpec describes a ClientHello for buildClientHello.
type helloSpec struct {
	legacy   uint16
	ciphers  []uint16
	exts     []uint16 // extension order; known ones get their data from the fields below
	sni      string
	alpn     []string
	sigalgs  []uint16
	versions []uint16
	groups   []uint16
	points   []uint8
}

func u16s(b []byte, vs []uint16) []byte {
	for _, v := range vs {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func vec16(b, data []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// buildClientHello encodes s as a ClientHello handshake message.
func buildClientHello(s helloSpec) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, s.legacy)
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // empty session id
	body = vec16(body, u16s(nil, s.ciphers))
	body = append(body, 1, 0) // compression: null
	var exts []byte
	for _, e := range s.exts {
		var d []byte
		switch e {
		case extServerName:
			entry := append([]byte{0}, vec16(nil, []byte(s.sni))...)
			d = vec16(nil, entry)
		case extALPN:
			var l []byte
			for _, p := range s.alpn {
				l = append(l, byte(len(p)))
				l = append(l, p...)
			}
			d = vec16(nil, l)
		case extSignatureAlgs:
			d = vec16(nil, u16s(nil, s.sigalgs))
		case extSupportedGroups:
			d = vec16(nil, u16s(nil, s.groups))
		case extSupportedVersions:
			v := u16s(nil, s.versions)
			d = append([]byte{byte(len(v))}, v...)
		case extECPointFormats:
			d = append([]byte{byte(len(s.points))}, s.points...)
		}
		exts = binary.BigEndian.AppendUint16(exts, e)
		exts = vec16(exts, d)
	}
	if s.exts != nil {
		body = vec16(body, exts)
	}
	msg := []byte{TypeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	return append(msg, body...)
}

// records frames a handshake byte stream into TLS records of at most size bytes.
func records(hs []byte, size int) []byte {
	var out []byte
	for len(hs) > 0 {
		n := min(size, len(hs))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

// recordClientStream listens on 127.0.0.1, runs client against the address and
// returns the bytes the client sent up to the end of its ClientHello.
func recordClientStream(t *testing.T, client func(ctx context.Context, addr string) error) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	clientDone := make(chan error, 1)
	go func() { clientDone <- client(ctx, ln.Addr().String()) }()
	t.Cleanup(func() {
		cancel()
		<-clientDone
	})

	type result struct {
		b   []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{nil, err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		var buf []byte
		tmp := make([]byte, 4096)
		for {
			n, err := c.Read(tmp)
			buf = append(buf, tmp[:n]...)
			if _, herr := ReadHandshake(buf, TypeClientHello); !errors.Is(herr, ErrIncomplete) {
				got <- result{buf, nil}
				return
			}
			if err != nil {
				got <- result{buf, err}
				return
			}
		}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("recording ClientHello: %v (got %d bytes)", r.err, len(r.b))
		}
		return r.b
	case err := <-clientDone:
		// The client gave up before connecting; wait briefly for the
		// accept side in case it already has the bytes.
		select {
		case r := <-got:
			if r.err == nil {
				return r.b
			}
		case <-time.After(2 * time.Second):
		}
		t.Fatalf("client ended before sending a ClientHello: %v", err)
	}
	return nil
}

// goldenStream returns a capture from testdata, rewriting it from live when -update.
func goldenStream(t *testing.T, name string, live []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, live, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s (run with -update to capture it): %v", path, err)
	}
	return b
}

// selfSignedCert makes a throwaway ECDSA certificate for loopback servers.
func selfSignedCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		DNSNames:     []string{"server.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
