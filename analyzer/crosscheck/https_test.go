package crosscheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	nethttp "net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/results/schema"
)

// testPKI makes a CA and a server certificate for names, and writes the CA
// to dir/ca.pem for the clients.
func testPKI(t *testing.T, dir string, names []string) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "firstboot test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}

// lockedFile is a key log several clients append to.
type lockedFile struct {
	mu sync.Mutex
	f  *os.File
}

func (l *lockedFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// TestHTTPSDecryption captures real clients speaking HTTPS to local
// servers, each client logging its TLS secrets (curl over HTTP/1.1 and
// HTTP/2 with TLS 1.2 and 1.3, openssl s_client, quic-go's HTTP/3 client),
// and checks that the analyzer decrypts the requests and responses tshark
// decrypts with the same key log — from the key log given on the side and
// from Decryption Secrets Blocks in the capture.
func TestHTTPSDecryption(t *testing.T) {
	testnet.Require(t, "tcpdump", "tshark", "editcap", "curl", "openssl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	names := []string{"h1.test", "h2.test", "tls12.test", "s-client.test", "h3.test"}
	cert := testPKI(t, dir, names)
	ns := testnet.New(t, "fbhttps")

	uc := startHTTPSServers(t, ns, cert)
	pcap := filepath.Join(dir, "https.pcap")
	capture := testnet.NewCapture(t, ns, "lo", pcap)
	keyLog := filepath.Join(dir, "keys.log")
	// O_APPEND: curl appends to the same file.
	kf, err := os.OpenFile(keyLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	keys := &lockedFile{f: kf}

	curl := func(args ...string) {
		t.Helper()
		cmd := ns.Command(ctx, "curl", append([]string{"-sS", "-o", "/dev/null", "--max-time", "10", "--cacert", filepath.Join(dir, "ca.pem")}, args...)...)
		cmd.Env = append(os.Environ(), "SSLKEYLOGFILE="+keyLog)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
	}
	curl("--http1.1", "--resolve", "h1.test:443:127.0.0.1", "-A", "curl-h1/1", "https://h1.test/one?x=1")
	curl("--http1.1", "--resolve", "h1.test:443:127.0.0.1", "-A", "curl-h1/1", "-H", "Content-Type: application/json", "-d", `{"k":"v"}`, "https://h1.test/post")
	curl("--http2", "--resolve", "h2.test:443:127.0.0.1", "-A", "curl-h2/2", "https://h2.test/two/page.html")
	curl("--http2", "--resolve", "h2.test:443:127.0.0.1", "-A", "curl-h2/2", "https://h2.test/missing")
	curl("--http2", "--tls-max", "1.2", "--resolve", "tls12.test:443:127.0.0.1", "-A", "curl-tls12", "https://tls12.test/twelve")
	curl("--http1.1", "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-SHA", "--resolve", "tls12.test:443:127.0.0.1", "-A", "curl-cbc", "https://tls12.test/cbc")

	sc := ns.Command(ctx, "openssl", "s_client", "-quiet", "-ign_eof", "-connect", "127.0.0.1:443", "-servername", "s-client.test",
		"-keylogfile", filepath.Join(dir, "openssl-keys.log"), "-CAfile", filepath.Join(dir, "ca.pem"))
	sc.Stdin = strings.NewReader("GET /openssl HTTP/1.1\r\nHost: s-client.test\r\nUser-Agent: openssl-s_client\r\nConnection: close\r\n\r\n")
	if out, err := sc.CombinedOutput(); err != nil || !strings.Contains(string(out), "hello /openssl") {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}

	// HTTP/3 from quic-go's client, its socket inside the namespace.
	cc, err := ns.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	qt := &quic.Transport{Conn: cc}
	pool := x509.NewCertPool()
	pool.AddCert(mustParse(t, cert.Certificate[1]))
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, KeyLogWriter: keys},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return qt.Dial(ctx, uc.LocalAddr(), tc, qc)
		}}
	for _, path := range []string{"/three", "/missing/3"} {
		req, _ := nethttp.NewRequestWithContext(ctx, "GET", "https://h3.test"+path, nil)
		req.Header.Set("User-Agent", "quic-go-h3")
		resp, err := (&nethttp.Client{Transport: h3}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	h3.Close()
	qt.Close()
	cc.Close()
	capture.Complete(t)
	if keep := os.Getenv("FIRSTBOOT_KEEP_CAPTURE"); keep != "" {
		t.Cleanup(func() { exec.Command("cp", pcap, keyLog, keep).Run() })
	}
	kf.Close()
	ossl, err := os.ReadFile(filepath.Join(dir, "openssl-keys.log"))
	if err != nil {
		t.Fatal(err)
	}
	keyText, err := os.ReadFile(keyLog)
	if err != nil {
		t.Fatal(err)
	}
	keyText = append(keyText, ossl...)
	if err := os.WriteFile(keyLog, keyText, 0o644); err != nil {
		t.Fatal(err)
	}

	// The analyzer with the key log on the side.
	a, err := analyzer.AnalyzeFile(ctx, pcap, analyzer.Options{TLSKeyLog: keyText})
	if err != nil {
		t.Fatal(err)
	}
	got := httpsRecords(a)
	want := []string{
		"1.1 GET h1.test /one?x=1 curl-h1/1 200 text/plain",
		"1.1 POST h1.test /post curl-h1/1 200 text/plain",
		"1.1 GET s-client.test /openssl openssl-s_client 200 text/plain",
		"1.1 GET tls12.test /cbc curl-cbc 200 text/plain",
		"2 GET h2.test /two/page.html curl-h2/2 200 text/plain",
		"2 GET h2.test /missing curl-h2/2 404 text/plain; charset=utf-8",
		"2 GET tls12.test /twelve curl-tls12 200 text/plain",
		"3 GET h3.test /three quic-go-h3 200 text/plain",
		"3 GET h3.test /missing/3 quic-go-h3 404 text/plain; charset=utf-8",
	}
	slices.Sort(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("decrypted requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Seven TLS connections, one QUIC connection with both HTTP/3 requests.
	if d := a.Summary.TLSDecryption; d == nil || d.Decrypted != 8 || d.Failed+d.Unsupported+d.NoKeys != 0 {
		t.Errorf("tls_decryption %+v, want 8 decrypted", d)
	}

	// tshark with the same key log sees the same HTTP/1.1 and HTTP/2 requests.
	sameAsTshark(t, a, pcap, "tls.keylog_file:"+keyLog)
	// tshark 4.0 cannot decode QPACK, but it decrypts the QUIC packets:
	// the HTTP/3 HEADERS frames it sees are our requests and responses.
	h3frames := testnet.Tshark(t, "-r", pcap, "-o", "tls.keylog_file:"+keyLog, "-Y", "http3.frame_type == 1", "-T", "fields",
		"-E", "occurrence=a", "-E", "aggregator=,", "-e", "http3.frame_type")
	n := 0
	for _, typ := range strings.FieldsFunc(h3frames, func(r rune) bool { return r == ',' || r == '\n' }) {
		if typ == "1" {
			n++
		}
	}
	if n != 4 {
		t.Errorf("tshark saw %d HTTP/3 HEADERS frames, want 4 (2 requests, 2 responses)", n)
	}

	// The same secrets as a Decryption Secrets Block in the capture:
	// the analyzer and tshark need nothing else.
	withDSB := filepath.Join(dir, "https-dsb.pcapng")
	if out, err := exec.Command("editcap", "--inject-secrets", "tls,"+keyLog, pcap, withDSB).CombinedOutput(); err != nil {
		t.Fatalf("editcap: %v\n%s", err, out)
	}
	b, err := analyzer.AnalyzeFile(ctx, withDSB, analyzer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g := httpsRecords(b); strings.Join(g, "\n") != strings.Join(got, "\n") {
		t.Errorf("from the capture's secrets:\n%s\nwith the key log:\n%s", strings.Join(g, "\n"), strings.Join(got, "\n"))
	}
	if d := b.Summary.TLSDecryption; d == nil || d.SecretsBlocks != 1 || d.Decrypted != 8 {
		t.Errorf("tls_decryption from the capture %+v", d)
	}
	sameAsTshark(t, b, withDSB, "")

	// Without secrets: nothing decrypted, no tls records, no summary.
	c, err := analyzer.AnalyzeFile(ctx, pcap, analyzer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g := httpsRecords(c); len(g) != 0 || c.Summary.TLSDecryption != nil {
		t.Errorf("without secrets: %v, %+v", g, c.Summary.TLSDecryption)
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// httpsRecords renders the decrypted http records, sorted.
func httpsRecords(a *schema.Analysis) []string {
	var out []string
	for _, h := range a.HTTP {
		if h.TLS {
			out = append(out, strings.Join([]string{h.Version, h.Method, h.Host, h.URI, h.UserAgent, fmt.Sprint(h.StatusCode), h.ResponseContentType}, " "))
		}
	}
	slices.Sort(out)
	return out
}

// tsharkHTTPS lists the HTTP/1.1 and HTTP/2 requests tshark decrypts (with
// the preference pref, if any) and, apart, their responses, in the forms of
// httpsRequests and httpsResponses: a connection may carry several, and
// tshark's fields do not say which HTTP/2 stream a header belongs to.
func tsharkHTTPS(t *testing.T, pcap, pref string) (reqs, resps []string) {
	t.Helper()
	args := []string{"-r", pcap, "-n", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=\x01", "-Y", "http || http2.type == 1"}
	if pref != "" {
		args = append(args, "-o", pref)
	}
	fields := []string{"http.request.method", "http.host", "http.request.uri", "http.user_agent",
		"http.response.code", "http.content_type", "http2.headers.method", "http2.headers.authority", "http2.headers.path",
		"http2.headers.user_agent", "http2.headers.status", "http2.headers.content_type"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	for _, line := range strings.Split(strings.TrimRight(testnet.Tshark(t, args...), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < len(fields) {
			continue
		}
		at := func(i, k int) string { // the k-th value of field i
			vs := strings.Split(f[i], "\x01")
			if k < len(vs) {
				return vs[k]
			}
			return ""
		}
		n := func(i int) int {
			if f[i] == "" {
				return 0
			}
			return len(strings.Split(f[i], "\x01"))
		}
		for k := 0; k < n(0); k++ {
			host, _, err := net.SplitHostPort(at(1, k))
			if err != nil {
				host = at(1, k)
			}
			reqs = append(reqs, strings.Join([]string{"1.1", at(0, k), host, at(2, k), at(3, k)}, " "))
		}
		for k := 0; k < n(4); k++ {
			resps = append(resps, "1.1 "+at(4, k)+" "+at(5, k))
		}
		for k := 0; k < n(6); k++ {
			reqs = append(reqs, strings.Join([]string{"2", at(6, k), at(7, k), at(8, k), at(9, k)}, " "))
		}
		for k := 0; k < n(10); k++ {
			resps = append(resps, "2 "+at(10, k)+" "+at(11, k))
		}
	}
	slices.Sort(reqs)
	slices.Sort(resps)
	return reqs, resps
}

// httpsRequests and httpsResponses are the analyzer's decrypted HTTP/1.1
// and HTTP/2 requests and responses in tsharkHTTPS's forms.
func httpsRequests(a *schema.Analysis) (reqs, resps []string) {
	for _, h := range a.HTTP {
		if !h.TLS || h.Version == "3" {
			continue
		}
		reqs = append(reqs, strings.Join([]string{h.Version, h.Method, h.Host, h.URI, h.UserAgent}, " "))
		if h.StatusCode != 0 {
			resps = append(resps, fmt.Sprintf("%s %d %s", h.Version, h.StatusCode, h.ResponseContentType))
		}
	}
	slices.Sort(reqs)
	slices.Sort(resps)
	return reqs, resps
}

// sameAsTshark compares the analyzer's requests and responses with tshark's.
func sameAsTshark(t *testing.T, a *schema.Analysis, pcap, pref string) {
	t.Helper()
	tr, ts := tsharkHTTPS(t, pcap, pref)
	or, os := httpsRequests(a)
	if strings.Join(tr, "\n") != strings.Join(or, "\n") {
		t.Errorf("requests tshark decrypted:\n%s\nthe analyzer's:\n%s", strings.Join(tr, "\n"), strings.Join(or, "\n"))
	}
	if strings.Join(ts, "\n") != strings.Join(os, "\n") {
		t.Errorf("responses tshark decrypted:\n%s\nthe analyzer's:\n%s", strings.Join(ts, "\n"), strings.Join(os, "\n"))
	}
}

// startHTTPSServers serves HTTPS (HTTP/2 and HTTP/1.1, TLS 1.2 and 1.3) and
// HTTP/3 on 127.0.0.1:443 inside ns: "hello PATH" as text/plain, 404 for
// /missing…; it returns the HTTP/3 socket.
func startHTTPSServers(t *testing.T, ns *testnet.Namespace, cert tls.Certificate) net.PacketConn {
	t.Helper()
	handler := nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.Copy(io.Discard, r.Body)
		if strings.HasPrefix(r.URL.Path, "/missing") {
			nethttp.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello %s\n", r.URL.Path)
	})
	srvTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	h3TLS := http3.ConfigureTLSConfig(srvTLS.Clone()) // before net/http changes srvTLS
	ln, err := ns.Listen("tcp", "127.0.0.1:443")
	if err != nil {
		t.Fatal(err)
	}
	srv := &nethttp.Server{Handler: handler, TLSConfig: srvTLS}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	uc, err := ns.ListenPacket("udp", "127.0.0.1:443")
	if err != nil {
		t.Fatal(err)
	}
	h3srv := &http3.Server{Handler: handler, TLSConfig: h3TLS}
	go h3srv.Serve(uc)
	t.Cleanup(func() { h3srv.Close() })

	return uc
}

// TestChromiumHTTPSDecryption has Debian's headless Chromium load pages over
// HTTP/2 and HTTP/3 (QUIC forced for the HTTP/3 origin) from local servers in
// a namespace that has nothing but loopback, logging its secrets with
// --ssl-key-log-file, and checks the analyzer decrypts the browser's
// requests (HPACK and QPACK as Chromium encodes them) and agrees with tshark
// on the HTTP/2 ones.
func TestChromiumHTTPSDecryption(t *testing.T) {
	testnet.Require(t, "tcpdump", "tshark")
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
		}
	}
	if bin == "" {
		testenv.Missing(t, "chromium is not installed (scripts/provision.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cert := testPKI(t, dir, []string{"browser.test", "quic.test"})
	ns := testnet.New(t, "fbchrome")
	startHTTPSServers(t, ns, cert)
	pcap := filepath.Join(dir, "chromium.pcap")
	capture := testnet.NewCapture(t, ns, "lo", pcap)
	keyLog := filepath.Join(dir, "keys.log")
	leaf := mustParse(t, cert.Certificate[0])
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	browse := func(url string, extra ...string) {
		t.Helper()
		args := append([]string{"netns", "exec", ns.Name, bin, "--headless", "--no-sandbox", "--disable-gpu",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
			"--user-data-dir=" + t.TempDir(), "--ssl-key-log-file=" + keyLog,
			// The test CA, for TLS and QUIC alike (QUIC ignores --ignore-certificate-errors).
			"--ignore-certificate-errors-spki-list=" + base64.StdEncoding.EncodeToString(spki[:]),
			"--host-resolver-rules=MAP * 127.0.0.1", "--user-agent=firstboot-chromium-test"}, extra...)
		cmd := exec.CommandContext(ctx, "ip", append(args, "--dump-dom", url)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "hello ") {
			t.Fatalf("chromium %s: %v\n%s", url, err, tail(string(out)))
		}
	}
	browse("https://browser.test/page.html?q=1")
	browse("https://quic.test/quic.html", "--enable-quic", "--origin-to-force-quic-on=quic.test:443")
	capture.Complete(t)
	keys, err := os.ReadFile(keyLog)
	if err != nil {
		t.Fatal(err)
	}
	a, err := analyzer.AnalyzeFile(ctx, pcap, analyzer.Options{TLSKeyLog: keys})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(httpsRecords(a), "\n")
	for _, want := range []string{
		"2 GET browser.test /page.html?q=1 firstboot-chromium-test 200 text/plain",
		"3 GET quic.test /quic.html firstboot-chromium-test 200 text/plain",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("decrypted requests lack %q:\n%s", want, got)
		}
	}
	sameAsTshark(t, a, pcap, "tls.keylog_file:"+keyLog)
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
