package tlshello

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"github.com/firstboot/firstboot/internal/testenv"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// liveClient is a real TLS client whose ClientHello the tests record.
type liveClient struct {
	name     string // also the testdata file name stem
	sni      string
	alpn     []string
	maxVer   string // "13" or "12": highest version the client offers
	needTool string
	run      func(ctx context.Context, addr string) error
}

func liveClients() []liveClient {
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	return []liveClient{
		{
			name: "go-crypto-tls", sni: "go.example.test", alpn: []string{"h2", "http/1.1"}, maxVer: "13",
			run: func(ctx context.Context, addr string) error {
				d := tls.Dialer{Config: &tls.Config{ServerName: "go.example.test", NextProtos: []string{"h2", "http/1.1"}}}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err == nil {
					c.Close()
				}
				return err
			},
		},
		{
			name: "openssl-s_client", sni: "ossl.example.test", alpn: []string{"h2", "http/1.1"}, maxVer: "13", needTool: "openssl",
			run: func(ctx context.Context, addr string) error {
				return exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr,
					"-servername", "ossl.example.test", "-alpn", "h2,http/1.1").Run()
			},
		},
		{
			name: "openssl-s_client-tls12", sni: "ossl12.example.test", alpn: []string{"http/1.1"}, maxVer: "12", needTool: "openssl",
			run: func(ctx context.Context, addr string) error {
				return exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-tls1_2",
					"-servername", "ossl12.example.test", "-alpn", "http/1.1").Run()
			},
		},
		{
			name: "curl", sni: "curl.example.test", alpn: []string{"h2", "http/1.1"}, maxVer: "13", needTool: "curl",
			run: func(ctx context.Context, addr string) error {
				p := port(addr)
				return exec.CommandContext(ctx, "curl", "-sk", "--max-time", "10",
					"--resolve", "curl.example.test:"+p+":127.0.0.1", "https://curl.example.test:"+p+"/").Run()
			},
		},
	}
}

// TestLiveClientHellos records ClientHellos of real clients on loopback and
// checks what the parser reads against what each client was told to send.
func TestLiveClientHellos(t *testing.T) {
	for _, lc := range liveClients() {
		t.Run(lc.name, func(t *testing.T) {
			if lc.needTool != "" {
				if _, err := exec.LookPath(lc.needTool); err != nil {
					testenv.Missing(t, "%s not installed", lc.needTool)
				}
			}
			live := recordClientStream(t, lc.run)
			for name, stream := range map[string][]byte{"live": live, "golden": goldenStream(t, lc.name+".bin", live)} {
				msg, err := ReadHandshake(stream, TypeClientHello)
				if err != nil {
					t.Fatalf("%s: ReadHandshake: %v", name, err)
				}
				ch, err := ParseClientHello(msg)
				if err != nil {
					t.Fatalf("%s: ParseClientHello: %v", name, err)
				}
				if ch.ServerName != lc.sni {
					t.Errorf("%s: ServerName = %q, want %q", name, ch.ServerName, lc.sni)
				}
				if !slices.Equal(ch.ALPN, lc.alpn) {
					t.Errorf("%s: ALPN = %q, want %q", name, ch.ALPN, lc.alpn)
				}
				if ch.LegacyVersion != 0x0303 {
					t.Errorf("%s: LegacyVersion = %#04x, want 0x0303 (RFC 8446 4.1.2)", name, ch.LegacyVersion)
				}
				hasV13 := slices.Contains(ch.SupportedVersions, 0x0304)
				if (lc.maxVer == "13") != hasV13 {
					t.Errorf("%s: SupportedVersions = %#04x, TLS 1.3 offered %v, want %v", name, ch.SupportedVersions, hasV13, lc.maxVer == "13")
				}
				ja4 := JA4(ch, 't')
				wantA := "t" + lc.maxVer + "d"
				if !strings.HasPrefix(ja4, wantA) || ja4[8:10] != lc.alpn[0][:1]+lc.alpn[0][len(lc.alpn[0])-1:] {
					t.Errorf("%s: JA4 = %s, want prefix %s and ALPN chars of %q", name, ja4, wantA, lc.alpn[0])
				}
				if len(ch.CipherSuites) == 0 || len(ch.SignatureAlgs) == 0 || len(ch.SupportedGroups) == 0 {
					t.Errorf("%s: empty lists in %+v", name, ch)
				}
			}
		})
	}
}

// TestReadHandshakeFragmented re-frames real hellos into small records and
// checks the message comes back byte for byte.
func TestReadHandshakeFragmented(t *testing.T) {
	for _, lc := range liveClients() {
		stream := goldenStream(t, lc.name+".bin", nil)
		want, err := ReadHandshake(stream, TypeClientHello)
		if err != nil {
			t.Fatalf("%s: %v", lc.name, err)
		}
		for _, size := range []int{1, 3, 4, 5, 100, 511, 16384} {
			t.Run(lc.name+"/"+strconv.Itoa(size), func(t *testing.T) {
				re := records(want, size)
				got, err := ReadHandshake(re, TypeClientHello)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("records of %d: err %v, equal %v", size, err, bytes.Equal(got, want))
				}
				// Every strict prefix is incomplete, never an error or a message.
				for _, cut := range []int{0, 1, 2, 4, 5, 6, len(re) / 2, len(re) - 1} {
					if cut >= len(re) {
						continue
					}
					if _, err := ReadHandshake(re[:cut], TypeClientHello); !errors.Is(err, ErrIncomplete) {
						t.Errorf("prefix %d of %d: err %v, want ErrIncomplete", cut, len(re), err)
					}
				}
			})
		}
	}
}

func TestReadHandshakeErrors(t *testing.T) {
	hello := buildClientHello(helloSpec{legacy: 0x0303, ciphers: []uint16{0x1301}, exts: []uint16{}})
	cases := []struct {
		name    string
		stream  []byte
		msgType uint8
		wantErr error
	}{
		{"empty", nil, 1, ErrIncomplete},
		{"http request", []byte("GET / HTTP/1.1\r\n"), 1, ErrNotTLS},
		{"ssh banner", []byte("SSH-2.0-OpenSSH_9.2\r\n"), 1, ErrNotTLS},
		{"alert record", []byte{21, 3, 3, 0, 2, 2, 40}, 1, ErrNotTLS},
		{"bad major version", []byte{22, 9, 1}, 1, ErrNotTLS},
		{"oversized record", []byte{22, 3, 1, 0xff, 0xff}, 1, ErrNotTLS},
		{"oversized hello", records([]byte{1, 0x7f, 0xff, 0xff, 0}, 100), 1, ErrNotTLS},
		{"header only", []byte{22, 3, 1}, 1, ErrIncomplete},
		{"hello cut", records(hello, 1000)[:20], 1, ErrIncomplete},
		{"wrong type waits", records(hello, 1000), 2, ErrIncomplete},
		{"then non-handshake", append(records(hello[:10], 1000), 23, 3, 3, 0, 0), 1, ErrNotTLS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadHandshake(c.stream, c.msgType)
			if !errors.Is(err, c.wantErr) || got != nil {
				t.Fatalf("got %d bytes, err %v; want err %v", len(got), err, c.wantErr)
			}
		})
	}
	// Messages of other types before the wanted one are skipped.
	stream := records(append([]byte{0, 0, 0, 0}, hello...), 7)
	got, err := ReadHandshake(stream, TypeClientHello)
	if err != nil || !bytes.Equal(got, hello) {
		t.Fatalf("skip HelloRequest: err %v", err)
	}
}

func TestParseClientHelloFields(t *testing.T) {
	spec := helloSpec{
		legacy:   0x0303,
		ciphers:  []uint16{0x0a0a, 0x1301, 0xc02b},
		exts:     []uint16{0x1a1a, extServerName, extSupportedGroups, extECPointFormats, extSignatureAlgs, extALPN, extSupportedVersions, extEncryptedClientHelo},
		sni:      "public.example.test",
		alpn:     []string{"h3", "h2", ""},
		sigalgs:  []uint16{0x0403, 0x0804},
		versions: []uint16{0x2a2a, 0x0304, 0x0303},
		groups:   []uint16{0x3a3a, 0x001d, 0x0017},
		points:   []uint8{0},
	}
	ch, err := ParseClientHello(buildClientHello(spec))
	if err != nil {
		t.Fatal(err)
	}
	if ch.LegacyVersion != 0x0303 || !slices.Equal(ch.CipherSuites, spec.ciphers) || !slices.Equal(ch.Extensions, spec.exts) ||
		!slices.Equal(ch.SupportedGroups, spec.groups) || !slices.Equal(ch.ECPointFormats, spec.points) ||
		!slices.Equal(ch.SignatureAlgs, spec.sigalgs) || !slices.Equal(ch.SupportedVersions, spec.versions) ||
		!slices.Equal(ch.ALPN, spec.alpn) || ch.ServerName != spec.sni || !ch.HasECH {
		t.Fatalf("parsed %+v from %+v", ch, spec)
	}
	// No extensions at all (SSL 3.0 style).
	ch, err = ParseClientHello(buildClientHello(helloSpec{legacy: 0x0300, ciphers: []uint16{0x000a}}))
	if err != nil || len(ch.Extensions) != 0 || ch.ServerName != "" || ch.HasECH {
		t.Fatalf("no-extension hello: %+v, %v", ch, err)
	}
	// Parse into a reused struct leaves nothing from the previous hello.
	var reuse ClientHello
	if err := reuse.Parse(buildClientHello(spec)); err != nil {
		t.Fatal(err)
	}
	if err := reuse.Parse(buildClientHello(helloSpec{legacy: 0x0301, ciphers: []uint16{0x002f}, exts: []uint16{}})); err != nil {
		t.Fatal(err)
	}
	if reuse.ServerName != "" || len(reuse.ALPN) != 0 || reuse.HasECH || len(reuse.SignatureAlgs) != 0 || !slices.Equal(reuse.CipherSuites, []uint16{0x002f}) {
		t.Fatalf("reused parse kept old fields: %+v", reuse)
	}
}

func TestParseClientHelloMalformed(t *testing.T) {
	good := buildClientHello(helloSpec{legacy: 0x0303, ciphers: []uint16{0x1301}, exts: []uint16{extServerName}, sni: "a.test"})
	for cut := 0; cut < len(good); cut++ {
		if _, err := ParseClientHello(good[:cut]); err == nil {
			t.Errorf("truncated to %d of %d bytes: no error", cut, len(good))
		}
	}
	bad := slices.Clone(good)
	bad[0] = TypeServerHello
	if _, err := ParseClientHello(bad); !errors.Is(err, ErrNotTLS) {
		t.Errorf("wrong type: %v", err)
	}
	// Body length inside the message says more than there is.
	if _, err := ParseClientHello([]byte{1, 0, 0, 50, 3, 3}); !errors.Is(err, ErrIncomplete) {
		t.Errorf("short body: %v", err)
	}
}

// goServerHello runs a real crypto/tls handshake over a pipe and returns the
// bytes the server wrote.
func goServerHello(t *testing.T, client, server *tls.Config) (stream []byte, state tls.ConnectionState) {
	t.Helper()
	// Loopback TCP, not net.Pipe: the socket buffers let both sides write
	// at once (HelloRetryRequest plus middlebox-compat CCS would deadlock
	// an unbuffered pipe).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	rec := &recordingConn{Conn: sc}
	srv := tls.Server(rec, server)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	cli := tls.Client(cc, client)
	err = cli.Handshake()
	state = cli.ConnectionState()
	cc.Close()
	<-done
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return rec.written(), state
}

type recordingConn struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recordingConn) Write(b []byte) (int, error) {
	r.buf.Write(b)
	return r.Conn.Write(b)
}

func (r *recordingConn) written() []byte { return r.buf.Bytes() }

func TestParseServerHelloGo(t *testing.T) {
	cert := selfSignedCert(t)
	base := func() (*tls.Config, *tls.Config) {
		return &tls.Config{InsecureSkipVerify: true, ServerName: "server.example.test", NextProtos: []string{"h2", "http/1.1"}},
			&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	}
	t.Run("tls13", func(t *testing.T) {
		c, s := base()
		stream, st := goServerHello(t, c, s)
		sh := mustServerHello(t, stream)
		// TLS 1.3 moves the server's ALPN into the encrypted
		// EncryptedExtensions (RFC 8446 4.3.1): the ServerHello has none.
		if sh.LegacyVersion != 0x0303 || sh.SelectedVersion != 0x0304 || sh.CipherSuite != st.CipherSuite || sh.ALPN != "" || sh.HelloRetryRequest {
			t.Fatalf("got %+v, state version %#x cipher %#x", sh, st.Version, st.CipherSuite)
		}
		if VersionName(sh.SelectedVersion) != "TLSv13" {
			t.Fatal(VersionName(sh.SelectedVersion))
		}
	})
	t.Run("tls12", func(t *testing.T) {
		c, s := base()
		s.MaxVersion = tls.VersionTLS12
		c.NextProtos = []string{"http/1.1"}
		stream, st := goServerHello(t, c, s)
		sh := mustServerHello(t, stream)
		if sh.SelectedVersion != 0x0303 || sh.CipherSuite != st.CipherSuite || sh.ALPN != "http/1.1" {
			t.Fatalf("got %+v, state cipher %#x", sh, st.CipherSuite)
		}
	})
	t.Run("hello retry request", func(t *testing.T) {
		c, s := base()
		c.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256} // key share for X25519 only
		s.CurvePreferences = []tls.CurveID{tls.CurveP256}
		stream, _ := goServerHello(t, c, s)
		sh := mustServerHello(t, stream)
		if !sh.HelloRetryRequest || sh.SelectedVersion != 0x0304 {
			t.Fatalf("got %+v, want a TLS 1.3 HelloRetryRequest", sh)
		}
	})
}

func mustServerHello(t *testing.T, stream []byte) *ServerHello {
	t.Helper()
	msg, err := ReadHandshake(stream, TypeServerHello)
	if err != nil {
		t.Fatalf("ReadHandshake: %v", err)
	}
	sh, err := ParseServerHello(msg)
	if err != nil {
		t.Fatalf("ParseServerHello: %v", err)
	}
	return sh
}

func TestVersionName(t *testing.T) {
	// Expected strings from Zeek's base/protocols/ssl/consts.zeek.
	cases := map[uint16]string{
		0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv10", 0x0302: "TLSv11", 0x0303: "TLSv12", 0x0304: "TLSv13",
		0xfeff: "DTLSv10", 0xfefd: "DTLSv12", 0xfefc: "DTLSv13",
		0x7f1c: "TLSv13-draft28", 0x7f17: "TLSv13-draft23", 0x1234: "unknown-4660",
	}
	for v, want := range cases {
		if got := VersionName(v); got != want {
			t.Errorf("VersionName(%#04x) = %q, want %q", v, got, want)
		}
	}
}

func TestIsGREASE(t *testing.T) {
	n := 0
	for v := 0; v <= 0xffff; v++ {
		if IsGREASE(uint16(v)) {
			n++
			if v&0x0f0f != 0x0a0a || v>>8 != v&0xff {
				t.Errorf("%#04x is not GREASE", v)
			}
		}
	}
	if n != 16 { // RFC 8701: 0x0a0a, 0x1a1a, …, 0xfafa
		t.Fatalf("%d GREASE values, want 16", n)
	}
}
