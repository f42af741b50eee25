package capture

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/lab/netns"
)

// keyLog hands each TLS key log line to the capture as it is written.
type keyLog struct{ c *Capture }

func (k keyLog) Write(p []byte) (int, error) {
	k.c.AddSecrets(SecretsTLSKeyLog, bytes.Clone(p))
	return len(p), nil
}

// Secrets added while a TLS session runs go into the file before the
// records they decrypt: tshark, reading the file once, decrypts the HTTP
// request with nothing but the file's Decryption Secrets Blocks.
func TestAddSecretsDecryptsTLS(t *testing.T) {
	ns, peer := testNetns(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.pcapng")
	c, err := Start(ctx, Config{Netns: ns, Iface: "cap0", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)

	var ln net.Listener
	if err := netns.Do(ns, func() error {
		ln, err = net.Listen("tcp4", "10.99.0.1:443")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.URL.Path) }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}},
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = netns.Do(peer, func() error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, KeyLogWriter: keyLog{c}},
	}}
	const secret = "/only-visible-decrypted"
	resp, err := client.Get("https://10.99.0.1" + secret)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	if string(body) != "hello "+secret {
		t.Fatalf("response %q", body)
	}
	time.Sleep(200 * time.Millisecond) // the connection's last packets
	// Secrets with no packet after them still reach the file, before the
	// final statistics.
	late := []byte("CLIENT_RANDOM 00 00\n")
	c.AddSecrets(SecretsTLSKeyLog, late)
	if _, err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	uris := tshark(t, path, "http.request.uri")
	if strings.Join(uris, ",") != secret {
		t.Errorf("tshark decrypts requests %q, want [%s]", uris, secret)
	}
	blocks, _ := readBlocks(t, path)
	var dsbs int
	for _, b := range blocks {
		if b.typ != blockDSB {
			continue
		}
		dsbs++
		if typ := binary.LittleEndian.Uint32(b.body); typ != SecretsTLSKeyLog {
			t.Errorf("secrets type %#x", typ)
		}
		n := binary.LittleEndian.Uint32(b.body[4:])
		if line := string(b.body[8 : 8+n]); !strings.HasSuffix(line, "\n") || len(b.body) != 8+pad4(int(n)) {
			t.Errorf("secrets %q in a body of %d bytes", line, len(b.body))
		}
	}
	if dsbs < 2 {
		t.Errorf("%d decryption secrets blocks, want one per key log line", dsbs)
	}
	if n := len(blocks); n < 2 || blocks[n-2].typ != blockDSB || !bytes.Equal(blocks[n-2].body[8:8+len(late)], late) {
		t.Errorf("the secrets added last are not the block before the statistics")
	}
}

// selfSigned makes a throwaway server certificate.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "capture test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
