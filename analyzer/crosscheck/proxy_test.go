package crosscheck

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/results/schema"
)

// TestRealProxiesAndUpgrades captures real clients whose TLS runs inside
// something else, and checks firstboot reads the TLS (SNI, JA3, JA4) as
// tshark does and attributes it as it should: curl through tinyproxy (HTTP
// CONNECT) and dante (SOCKS4, SOCKS5, SOCKS5 with the proxy resolving;
// dante has no SOCKS4a: package socks' tests cover it), openssl s_client upgrading SMTP, IMAP, POP3, FTP and XMPP
// with STARTTLS, an openssl client offering a key share the server does not
// take (HelloRetryRequest: two ClientHellos), a DTLS 1.2 handshake, and HTTP
// through a kernel VXLAN tunnel. Then the same connections wrapped in the
// encapsulations this kernel cannot make (see wrapped_test.go).
func TestRealProxiesAndUpgrades(t *testing.T) {
	path, a := proxyCapture(t)
	byName := map[string]*schema.Conn{}
	for i := range a.Conns {
		c := &a.Conns[i]
		if c.Proto == "tcp" && c.Service != "" {
			byName[c.Name] = c
		}
	}
	for _, tc := range []struct{ name, service, proxy, to string }{
		{"connect.test", "http,ssl", "http_connect", "connect.test:443"},
		{"socks5h.test", "socks,ssl", "socks5", "socks5h.test:443"},
		{"socks5.test", "socks,ssl", "socks5", "10.80.0.1:443"},
		{"socks4.test", "socks,ssl", "socks4", "10.80.0.1:443"},
		{"smtp.test", "smtp,ssl", "", ""},
		{"imap.test", "imap,ssl", "", ""},
		{"pop3.test", "pop3,ssl", "", ""},
		{"ftp.test", "ftp,ssl", "", ""},
		{"xmpp.test", "xmpp,ssl", "", ""},
	} {
		c := byName[tc.name]
		if c == nil {
			t.Errorf("%s: no conn named so; conns: %v", tc.name, names(a))
			continue
		}
		if c.Service != tc.service || c.Proxy != tc.proxy || c.ProxiedTo != tc.to || c.NameSource != "sni" {
			t.Errorf("%s: service %q proxy %q to %q (name from %s), want %q %q %q from sni",
				tc.name, c.Service, c.Proxy, c.ProxiedTo, c.NameSource, tc.service, tc.proxy, tc.to)
		}
	}
	// The HelloRetryRequest connection: two records, the second marked.
	var hrr []schema.TLS
	for _, r := range a.TLS {
		if r.ServerName == "hrr.test" {
			hrr = append(hrr, r)
		}
	}
	if len(hrr) != 2 || hrr[0].UID != hrr[1].UID || hrr[0].HelloRetry || !hrr[1].HelloRetry || hrr[0].Established || !hrr[1].Established {
		t.Errorf("HelloRetryRequest connection's records: %+v", hrr)
	}
	var dtls int
	for _, r := range a.TLS {
		if r.Transport == "dtls" {
			dtls++
			if !strings.HasPrefix(r.JA4, "dd2") || r.ServerName != "dtls.test" {
				t.Errorf("DTLS record %+v", r)
			}
		}
	}
	if dtls == 0 {
		t.Error("no DTLS record")
	}
	// Linux picks a VXLAN source port per inner flow and direction: each
	// direction is a UDP flow, a tunnel of its own, and a parent.
	var vx []string
	for _, c := range a.Conns {
		if c.Service == "vxlan" {
			vx = append(vx, c.UID)
		}
	}
	inner := byName["vxlan.test"]
	if inner == nil || len(inner.TunnelParents) == 0 || len(vx) == 0 {
		t.Fatalf("HTTP inside VXLAN: %+v, VXLAN flows %v", inner, vx)
	}
	for _, p := range inner.TunnelParents {
		if !slices.Contains(vx, p) {
			t.Errorf("HTTP inside VXLAN: tunnel_parents %v, want VXLAN flows among %v", inner.TunnelParents, vx)
		}
	}
	var kinds []string
	for _, tn := range a.Tunnels {
		kinds = append(kinds, tn.TunnelType)
	}
	for _, k := range []string{"Tunnel::HTTP", "Tunnel::SOCKS", "Tunnel::VXLAN"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("tunnel.log types %v, want %s", kinds, k)
		}
	}
	report := newAgreementReport()
	report.add(t, "proxies", "proxies, STARTTLS, HRR, DTLS, VXLAN", firstbootValues(a), tsharkValues(t, path))
	report.check(t, 99)
	t.Run("wrapped", func(t *testing.T) { testWrappedTunnels(t, path) })
}

func names(a *schema.Analysis) []string {
	var out []string
	for _, c := range a.Conns {
		out = append(out, c.Name+"/"+c.Service)
	}
	return sortedSet(out)
}

// proxyCapture runs the clients and servers and returns the capture and
// its analysis.
func proxyCapture(t *testing.T) (string, *schema.Analysis) {
	t.Helper()
	testnet.Require(t, "tcpdump", "tshark", "curl", "openssl", "tinyproxy", "danted")
	dir := t.TempDir()
	srv, cli := testnet.New(t, "fbp"), testnet.New(t, "fbp")
	testnet.NewVeth(t, testnet.Link{NS: srv, Iface: "fbs0", Addrs: []string{"10.80.0.1/24", "fd80::1/64"}},
		testnet.Link{NS: cli, Iface: "fbc0", Addrs: []string{"10.80.0.2/24", "fd80::2/64"}})
	// A kernel VXLAN tunnel over the link, with addresses of its own.
	for _, end := range []struct {
		ns          *testnet.Namespace
		dev, local  string
		remote, adr string
	}{{srv, "fbs0", "10.80.0.1", "10.80.0.2", "10.81.0.1/24"}, {cli, "fbc0", "10.80.0.2", "10.80.0.1", "10.81.0.2/24"}} {
		end.ns.MustRun(t, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "local", end.local, "remote", end.remote,
			"dstport", "4789", "dev", end.dev)
		end.ns.MustRun(t, "ip", "addr", "add", end.adr, "dev", "vx0")
		end.ns.MustRun(t, "ip", "link", "set", "vx0", "up")
	}
	path := filepath.Join(dir, "proxies.pcap")
	capture := testnet.NewCapture(t, srv, "fbs0", path)

	certFile, keyFile, cfg := testCert(t, dir)
	// The proxies resolve the names they are asked for through the server
	// namespace's /etc/hosts (ip netns exec mounts /etc/netns/NAME/hosts).
	hostsDir := filepath.Join("/etc/netns", srv.Name)
	write(t, filepath.Join(hostsDir, "hosts"), "127.0.0.1 localhost\n10.80.0.1 connect.test socks5h.test socks4a.test\n")
	serve := func(addr string, fn func(net.Listener)) {
		ln, err := srv.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go fn(ln)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }),
		TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second}
	t.Cleanup(func() { web.Close() })
	serve(":443", func(ln net.Listener) { _ = web.ServeTLS(ln, "", "") })
	serve(":80", func(ln net.Listener) { _ = web.Serve(ln) })
	for _, p := range []struct{ port, proto string }{{"25", "smtp"}, {"143", "imap"}, {"110", "pop3"}, {"21", "ftp"}, {"5222", "xmpp"}} {
		proto := p.proto
		serve(":"+p.port, func(ln net.Listener) { starttlsServer(ln, proto, cfg) })
	}
	write(t, filepath.Join(dir, "tinyproxy.conf"), "Port 3128\nListen 10.80.0.1\nTimeout 30\nAllow 10.80.0.0/24\nConnectPort 443\n"+
		"PidFile \""+filepath.Join(dir, "tinyproxy.pid")+"\"\n")
	srv.Background(t, "tinyproxy", "-d", "-c", filepath.Join(dir, "tinyproxy.conf"))
	write(t, filepath.Join(dir, "danted.conf"), "logoutput: stderr\ninternal: 10.80.0.1 port = 1080\nexternal: 10.80.0.1\n"+
		"socksmethod: none\nclientmethod: none\nuser.privileged: root\nuser.unprivileged: nobody\n"+
		"client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }\nsocks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }\n")
	srv.Background(t, "danted", "-f", filepath.Join(dir, "danted.conf"))
	// openssl servers: one that takes only P-256 key shares (a client
	// offering X25519 first gets a HelloRetryRequest), one for DTLS 1.2.
	srv.Background(t, "openssl", "s_server", "-accept", "8443", "-cert", certFile, "-key", keyFile, "-groups", "P-256", "-naccept", "1", "-quiet")
	srv.Background(t, "openssl", "s_server", "-dtls1_2", "-accept", "4433", "-cert", certFile, "-key", keyFile, "-naccept", "1", "-quiet")
	srv.WaitListening(t, "tcp", "3128")
	srv.WaitListening(t, "tcp", "1080")
	srv.WaitListening(t, "tcp", "8443")
	srv.WaitListening(t, "udp", "4433")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	curl := func(args ...string) {
		if out, err := cli.Run(ctx, "curl", append([]string{"-sS", "-k", "--http1.1", "--max-time", "10"}, args...)...); err != nil {
			t.Errorf("curl: %v\n%s", err, out)
		}
	}
	curl("-x", "http://10.80.0.1:3128", "https://connect.test/")
	curl("--socks5-hostname", "10.80.0.1:1080", "https://socks5h.test/")
	curl("--socks5", "10.80.0.1:1080", "--resolve", "socks5.test:443:10.80.0.1", "https://socks5.test/")
	curl("--socks4", "10.80.0.1:1080", "--resolve", "socks4.test:443:10.80.0.1", "https://socks4.test/")
	curl("-H", "Host: vxlan.test", "http://10.81.0.1/")
	curl("--resolve", "v6.test:443:[fd80::1]", "https://v6.test/")
	for _, p := range []struct{ proto, port string }{{"smtp", "25"}, {"imap", "143"}, {"pop3", "110"}, {"ftp", "21"}, {"xmpp", "5222"}} {
		args := []string{"s_client", "-starttls", p.proto, "-connect", "10.80.0.1:" + p.port, "-servername", p.proto + ".test", "-brief"}
		if p.proto == "xmpp" {
			args = append(args, "-xmpphost", "xmpp.test")
		}
		if out, err := runStdin(ctx, cli, "Q\n", "openssl", args...); err != nil {
			t.Errorf("openssl -starttls %s: %v\n%s", p.proto, err, out)
		}
	}
	if out, err := runStdin(ctx, cli, "Q\n", "openssl", "s_client", "-connect", "10.80.0.1:8443", "-groups", "X25519:P-256",
		"-servername", "hrr.test", "-brief"); err != nil {
		t.Errorf("openssl s_client (HelloRetryRequest): %v\n%s", err, out)
	}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	_, _ = runStdin(dctx, cli, "Q\n", "openssl", "s_client", "-dtls1_2", "-connect", "10.80.0.1:4433", "-servername", "dtls.test", "-brief")
	dcancel()
	capture.Complete(t)
	a, err := analyzer.AnalyzeFile(context.Background(), path, analyzer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("FIRSTBOOT_KEEP_CAPTURE"); keep != "" {
		b, _ := os.ReadFile(path)
		_ = os.WriteFile(keep, b, 0o644)
	}
	return path, a
}

// runStdin runs a client in ns with input on its standard input.
func runStdin(ctx context.Context, ns *testnet.Namespace, input, name string, args ...string) ([]byte, error) {
	cmd := ns.Command(ctx, name, args...)
	cmd.Stdin = strings.NewReader(input)
	return cmd.CombinedOutput()
}

// starttlsServer answers the clients of one protocol up to its STARTTLS
// and then completes a TLS handshake.
func starttlsServer(ln net.Listener, proto string, cfg *tls.Config) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if plainUntilTLS(c, proto) {
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					_, _ = io.Copy(io.Discard, tc)
				}
			}
		}()
	}
}

// plainUntilTLS speaks proto in plain text until the client asks for TLS
// and is told to go ahead.
func plainUntilTLS(c net.Conn, proto string) bool {
	r := bufio.NewReader(c)
	say := func(s string) { _, _ = io.WriteString(c, s) }
	switch proto {
	case "smtp":
		say("220 smtp.test ESMTP firstboot test\r\n")
	case "imap":
		say("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
	case "pop3":
		say("+OK POP3 ready\r\n")
	case "ftp":
		say("220 firstboot test FTP server ready\r\n")
	case "xmpp":
		for { // an optional <?xml …?>, then <stream:stream …>
			el, err := r.ReadString('>')
			if err != nil {
				return false
			}
			if strings.Contains(el, "<stream:stream") {
				break
			}
		}
		say("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' " +
			"id='fb1' from='xmpp.test' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>" +
			"<required/></starttls></stream:features>")
		for {
			el, err := r.ReadString('>')
			if err != nil {
				return false
			}
			if strings.Contains(el, "<starttls") {
				say("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
				return true
			}
		}
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		tag, rest, _ := strings.Cut(cmd, " ")
		switch {
		case proto == "smtp" && (strings.HasPrefix(cmd, "EHLO") || strings.HasPrefix(cmd, "HELO")):
			say("250-smtp.test\r\n250 STARTTLS\r\n")
		case proto == "smtp" && cmd == "STARTTLS":
			say("220 2.0.0 Ready to start TLS\r\n")
			return true
		case proto == "imap" && rest == "CAPABILITY":
			say("* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + " OK done\r\n")
		case proto == "imap" && rest == "STARTTLS":
			say(tag + " OK Begin TLS negotiation\r\n")
			return true
		case proto == "pop3" && cmd == "CAPA":
			say("+OK\r\nSTLS\r\n.\r\n")
		case proto == "pop3" && cmd == "STLS":
			say("+OK Begin TLS\r\n")
			return true
		case proto == "ftp" && (cmd == "AUTH TLS" || cmd == "AUTH SSL"):
			say("234 AUTH TLS successful\r\n")
			return true
		default:
			say(map[string]string{"smtp": "502 no\r\n", "imap": tag + " BAD no\r\n", "pop3": "-ERR no\r\n", "ftp": "500 no\r\n"}[proto])
		}
	}
}

// testCert makes a self-signed ECDSA certificate for every test name and
// writes it and its key as PEM files (for openssl s_server).
func testCert(t *testing.T, dir string) (certFile, keyFile string, cfg *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "firstboot test"},
		DNSNames:  []string{"*.test", "connect.test", "hrr.test", "dtls.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	write(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})))
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, &tls.Config{Certificates: []tls.Certificate{pair}}
}
