package intercept

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/lab/simnet"
)

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// realServer is "the internet's" HTTPS server: a certificate from a CA the
// test made (as a real CA would sign it), HTTP/2 and HTTP/1.1.
func realServer(t *testing.T, ns *testnet.Namespace, addr string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Simulated Internet Root CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "www.example.org"}, DNSNames: []string{"www.example.org"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "the real server: %s %s\n", r.Proto, r.URL.Path)
	}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, caDER}, PrivateKey: key}}}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ca, key
}

// TestIntercept puts the proxy in a "lab" namespace routing between a
// guest namespace and an "internet" namespace, and checks with curl: a
// guest trusting the lab CA gets the real server's answer over the
// intercepted connection (the proxy verified the real server with its CA
// and logged the chain, version and ALPN; the guest leg's secrets decrypt
// the guest-side capture); a guest pinning the real server's key, and one
// not trusting the lab CA, are logged as refused; with QUIC refused, UDP
// 443 gets port-unreachable.
func TestIntercept(t *testing.T) {
	testnet.Require(t, "curl", "iptables", "tcpdump")
	guest, lab, inet := testnet.New(t, "fbig"), testnet.New(t, "fbil"), testnet.New(t, "fbii")
	testnet.NewVeth(t, testnet.Link{NS: guest, Iface: "eth0", Addrs: []string{"10.91.0.2/24"}}, testnet.Link{NS: lab, Iface: "br0", Addrs: []string{"10.91.0.1/24"}})
	testnet.NewVeth(t, testnet.Link{NS: lab, Iface: "up0", Addrs: []string{"10.92.0.1/24"}}, testnet.Link{NS: inet, Iface: "eth0", Addrs: []string{"10.92.0.2/24"}})
	guest.MustRun(t, "ip", "route", "add", "default", "via", "10.91.0.1")
	inet.MustRun(t, "ip", "route", "add", "default", "via", "10.92.0.1")
	lab.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	realCA, realKey := realServer(t, inet, "10.92.0.2:443")

	dir := t.TempDir()
	labCA, err := simnet.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(realCA)
	keys, log := &lockedBuf{}, &lockedBuf{}
	ln, err := lab.Listen("tcp", "0.0.0.0:8443")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(ln, Config{CA: labCA, Roots: roots, KeyLog: keys, Log: log,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) { return lab.Dial(ctx, network, addr) }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rules := Rules("br0", 8443, true)
	ctx := context.Background()
	if err := Install(ctx, lab.Name, rules); err != nil {
		t.Fatal(err)
	}
	defer Remove(ctx, lab.Name, rules)

	pcap := filepath.Join(dir, "guest.pcap")
	capture := testnet.NewCapture(t, guest, "eth0", pcap)
	caFile := filepath.Join(dir, "ca", simnet.CACertFile)
	curl := func(args ...string) (string, error) {
		out, err := guest.Run(ctx, "curl", append([]string{"-sS", "--max-time", "10", "--resolve", "www.example.org:443:10.92.0.2"}, args...)...)
		return string(out), err
	}
	if out, err := curl("--cacert", caFile, "-A", "trusting-guest/1", "https://www.example.org/hello"); err != nil || !strings.Contains(out, "the real server: HTTP/2.0 /hello") {
		t.Fatalf("a guest trusting the lab CA: %v\n%s", err, out)
	}
	der, _ := x509.MarshalPKIXPublicKey(&realKey.PublicKey)
	pin := sha256.Sum256(der)
	if out, err := curl("--cacert", caFile, "--pinnedpubkey", "sha256//"+base64.StdEncoding.EncodeToString(pin[:]), "https://www.example.org/pinned"); err == nil {
		t.Fatalf("a pinning guest accepted the lab certificate:\n%s", out)
	}
	if out, err := curl("https://www.example.org/untrusting"); err == nil {
		t.Fatalf("a guest without the lab CA accepted its certificate:\n%s", out)
	}
	// QUIC refused: UDP 443 gets port unreachable (a connected socket sees it).
	quic, err := guest.Dial(ctx, "udp", "10.92.0.2:443")
	if err != nil {
		t.Fatal(err)
	}
	quic.Write([]byte("quic initial"))
	quic.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := quic.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("UDP 443 was not refused: %v", err)
	}
	quic.Close()
	capture.Complete(t)
	p.Close()

	var recs []Record
	sc := bufio.NewScanner(strings.NewReader(log.String()))
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3:\n%s", len(recs), log.String())
	}
	ok := recs[0]
	if ok.Outcome != Intercepted || ok.SNI != "www.example.org" || ok.Dst != "10.92.0.2:443" || ok.Upstream == nil ||
		ok.Upstream.ALPN != "h2" || ok.Upstream.Version != "TLS 1.3" || len(ok.Upstream.Chain) != 2 ||
		ok.Upstream.Chain[1].Subject != "CN=Simulated Internet Root CA" || ok.BytesDown == 0 {
		t.Errorf("intercepted record %+v", ok)
	}
	for _, r := range recs[1:] {
		if r.Outcome != Refused || r.SNI != "www.example.org" {
			t.Errorf("refused record %+v", r)
		}
	}
	// The guest leg's secrets decrypt the guest-side capture.
	a, err := analyzer.AnalyzeFile(ctx, pcap, analyzer.Options{TLSKeyLog: []byte(keys.String())})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range a.HTTP {
		if h.TLS && h.URI == "/hello" && h.UserAgent == "trusting-guest/1" && h.StatusCode == 200 && h.Host == "www.example.org" {
			found = true
		}
	}
	if !found {
		t.Errorf("the intercepted request is not in the decrypted capture: %+v", a.HTTP)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys.log"), []byte(keys.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}
