package capture

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/lab/netns"
	"github.com/firstboot/firstboot/lab/simnet"
)

// keyLog hands each TLS key log line to the capture as it is written.
type keyLog struct{ c *Capture }

func (k keyLog) Write(p []byte) (int, error) {
	k.c.AddSecrets(SecretsTLSKeyLog, bytes.Clone(p))
	return len(p), nil
}

// Secrets added while a TLS session runs go into the file in stream order,
// as Decryption Secrets Blocks with which tshark, reading the file once,
// decrypts the session. TLS 1.2: its client logs the secret before the
// first encrypted record, so in stream order the secret always comes first.
// (A TLS 1.3 client logs its handshake secrets only after the server's
// first encrypted records arrived; Wireshark then cannot decrypt the
// session whenever the ring handed those records over first.)
func TestAddSecretsDecryptsTLS(t *testing.T) {
	c, ns, peer, path := startTest(t, Config{})
	ctx := context.Background()
	defer c.Stop(ctx)
	ca, err := simnet.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Leaf("capture.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}

	var ln net.Listener
	if err := netns.Do(ns, func() error {
		ln, err = net.Listen("tcp4", "10.99.0.1:443")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.URL.Path) }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{*cert}},
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
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, KeyLogWriter: keyLog{c}, MaxVersion: tls.VersionTLS12},
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

	// tshark decrypts the request with the file's secrets and nothing else.
	rows := strings.Fields(testnet.Tshark(t, "-r", path, "-Y", "http.request", "-T", "fields", "-e", "frame.number", "-e", "http.request.uri"))
	if len(rows) != 2 || rows[1] != secret {
		t.Fatalf("tshark decrypts requests %q, want [%s]", rows, secret)
	}
	request, _ := strconv.Atoi(rows[0])
	// The client logs its secret before it sends the request: in stream
	// order the secret comes first.
	blocks, _ := readBlocks(t, path)
	var dsbs, packets int
	for _, b := range blocks {
		switch b.typ {
		case blockEPB:
			packets++
		case blockDSB:
			dsbs++
			if typ := binary.LittleEndian.Uint32(b.body); typ != SecretsTLSKeyLog {
				t.Errorf("secrets type %#x", typ)
			}
			n := binary.LittleEndian.Uint32(b.body[4:])
			line := string(b.body[8 : 8+n])
			if !strings.HasSuffix(line, "\n") || len(b.body) != 8+pad4(int(n)) {
				t.Errorf("secrets %q in a body of %d bytes", line, len(b.body))
			}
			if strings.HasPrefix(line, "CLIENT_RANDOM ") && line != string(late) && packets >= request {
				t.Errorf("the client's secret comes after %d packets, the request is packet %d", packets, request)
			}
		}
	}
	if dsbs != 2 {
		t.Errorf("%d decryption secrets blocks, want the session's and the late one", dsbs)
	}
	if n := len(blocks); n < 2 || blocks[n-2].typ != blockDSB || !bytes.Equal(blocks[n-2].body[8:8+len(late)], late) {
		t.Errorf("the secrets added last are not the block before the statistics")
	}
}
