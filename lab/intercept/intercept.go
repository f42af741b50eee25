// Package intercept is the transparent TLS-intercepting proxy of the
// real-internet modes (network.intercept_tls): the guest's TCP connections
// to port 443, redirected to it inside the lab namespace, are answered
// with a certificate from the lab CA for the name the guest asked for,
// after the proxy has connected to the real server, checked its
// certificate and agreed the same application protocol. Bytes are relayed
// unchanged; the secrets of both legs go to the run's key log (the guest's
// leg is the one the capture holds); what the real server showed
// (certificate chain, version, ALPN) and how each connection went is one
// JSON line per connection.
//
// A guest that refuses the lab certificate (it does not trust the CA, or
// pins its server's key) ends the handshake with an alert or closes before
// sending anything: that is recorded as a refused interception, a finding
// of its own.
package intercept

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/firstboot/firstboot/lab/simnet"
)

// Outcomes of a connection.
const (
	Intercepted    = "intercepted"     // both legs up, bytes relayed
	Refused        = "refused"         // the guest refused the lab certificate
	UpstreamFailed = "upstream_failed" // the real server could not be reached or did not verify
)

// Config configures a Proxy.
type Config struct {
	// CA signs the certificates shown to the guest.
	CA *simnet.CA
	// Roots verify the real servers; nil means the host's system roots.
	Roots *x509.CertPool
	// KeyLog receives both legs' secrets (NSS key log lines); nil discards.
	KeyLog io.Writer
	// Log receives one JSON line (Record) per connection; nil discards.
	Log io.Writer
	// Dial connects to the real server (default: a net.Dialer); the
	// address is the connection's original destination.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OriginalDst tells where a redirected connection was going (default
	// simnet.OriginalDst, SO_ORIGINAL_DST).
	OriginalDst func(net.Conn) string
	// Timeout bounds each handshake (default 15 s).
	Timeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Record is one connection, as logged.
type Record struct {
	TS     time.Time `json:"ts"`
	Client string    `json:"client"`
	Dst    string    `json:"dst"`
	SNI    string    `json:"sni"`
	// ClientALPN is what the guest offered.
	ClientALPN []string `json:"client_alpn,omitempty"`
	Outcome    string   `json:"outcome"`
	Detail     string   `json:"detail,omitempty"`
	// Upstream is what the real server showed.
	Upstream *Upstream `json:"upstream,omitempty"`
	// BytesUp and BytesDown count application bytes relayed.
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
}

// Upstream describes the real server's side of a connection.
type Upstream struct {
	Version string  `json:"version"`
	Cipher  string  `json:"cipher"`
	ALPN    string  `json:"alpn,omitempty"`
	Chain   []Certi `json:"chain"`
}

// Certi is one certificate of the real server's chain.
type Certi struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	DNSNames []string  `json:"dns_names,omitempty"`
	NotAfter time.Time `json:"not_after"`
	SHA256   string    `json:"sha256"`
}

// Proxy is a running interceptor.
type Proxy struct {
	cfg  Config
	ln   net.Listener
	mu   sync.Mutex
	logw io.Writer
	wg   sync.WaitGroup
	// ctx ends with Close: every connection closes then.
	ctx    context.Context
	cancel context.CancelFunc
}

// Start serves ln (a listener in the lab namespace that the redirect rules
// feed) until Close.
func Start(ln net.Listener, cfg Config) (*Proxy, error) {
	if cfg.CA == nil {
		return nil, errors.New("intercept: Config.CA is nil: the lab CA signs the certificates shown to the guest")
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.OriginalDst == nil {
		cfg.OriginalDst = simnet.OriginalDst
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Proxy{cfg: cfg, ln: ln, logw: cfg.Log}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if p.logw == nil {
		p.logw = io.Discard
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Close stops accepting, ends open connections and waits for them.
func (p *Proxy) Close() error {
	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil // closed twice
	}
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

func (p *Proxy) log(r *Record) {
	b, _ := json.Marshal(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logw.Write(append(b, '\n'))
}

// serve intercepts one guest connection.
func (p *Proxy) serve(c net.Conn) {
	defer c.Close()
	rec := &Record{TS: p.cfg.Now().UTC(), Client: c.RemoteAddr().String(), Dst: p.cfg.OriginalDst(c)}
	defer p.log(rec)
	defer context.AfterFunc(p.ctx, func() { c.Close() })()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.Timeout)
	defer cancel()
	var up *tls.Conn
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS10,
		KeyLogWriter: p.cfg.KeyLog,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			rec.SNI, rec.ClientALPN = hello.ServerName, hello.SupportedProtos
			var err error
			up, err = p.upstream(ctx, rec, hello)
			if err != nil {
				rec.Outcome, rec.Detail = UpstreamFailed, err.Error()
				return nil, err
			}
			name := hello.ServerName
			if name == "" {
				name, _, _ = net.SplitHostPort(rec.Dst)
			}
			leaf, err := p.cfg.CA.Leaf(name, p.cfg.Now())
			if err != nil {
				return nil, err
			}
			st := up.ConnectionState()
			// The guest gets what the real server agreed to (nothing, if it agreed to nothing).
			var protos []string
			if st.NegotiatedProtocol != "" {
				protos = []string{st.NegotiatedProtocol}
			}
			return &tls.Config{Certificates: []tls.Certificate{*leaf}, NextProtos: protos, KeyLogWriter: p.cfg.KeyLog,
				MinVersion: tls.VersionTLS10}, nil
		},
	}
	guest := tls.Server(c, conf)
	c.SetDeadline(time.Now().Add(p.cfg.Timeout))
	err := guest.HandshakeContext(ctx)
	if up != nil {
		defer up.Close()
		defer context.AfterFunc(p.ctx, func() { up.Close() })()
	}
	if err != nil {
		if rec.Outcome == "" {
			rec.Outcome, rec.Detail = Refused, "the guest ended the handshake: "+err.Error()
		}
		return
	}
	// A guest that pins its server's key learns of the lab certificate
	// after the handshake and closes without a word.
	first := make([]byte, 32<<10)
	n, err := guest.Read(first)
	if n == 0 {
		rec.Outcome, rec.Detail = Refused, "the guest closed before sending anything (certificate pinning?)"
		if err != nil && !errors.Is(err, io.EOF) {
			rec.Detail += ": " + err.Error()
		}
		return
	}
	c.SetDeadline(time.Time{})
	rec.Outcome = Intercepted
	if _, err := up.Write(first[:n]); err != nil {
		rec.Detail = "writing to the real server: " + err.Error()
		return
	}
	rec.BytesUp = int64(n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, _ := io.Copy(guest, up)
		rec.BytesDown = n
		guest.CloseWrite()
	}()
	m, _ := io.Copy(up, guest)
	rec.BytesUp += m
	up.CloseWrite()
	wg.Wait()
}

// upstream connects to the real server the guest was going to, with the
// guest's name and offered protocols, and verifies its certificate.
func (p *Proxy) upstream(ctx context.Context, rec *Record, hello *tls.ClientHelloInfo) (*tls.Conn, error) {
	raw, err := p.cfg.Dial(ctx, "tcp", rec.Dst)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", rec.Dst, err)
	}
	name := hello.ServerName
	if name == "" {
		name, _, _ = net.SplitHostPort(rec.Dst)
	}
	up := tls.Client(raw, &tls.Config{ServerName: name, RootCAs: p.cfg.Roots, NextProtos: hello.SupportedProtos, KeyLogWriter: p.cfg.KeyLog})
	if err := up.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS with %s (%s): %w", rec.Dst, name, err)
	}
	st := up.ConnectionState()
	u := &Upstream{Version: tls.VersionName(st.Version), Cipher: tls.CipherSuiteName(st.CipherSuite), ALPN: st.NegotiatedProtocol}
	for _, c := range st.PeerCertificates {
		sum := sha256.Sum256(c.Raw)
		u.Chain = append(u.Chain, Certi{Subject: c.Subject.String(), Issuer: c.Issuer.String(), DNSNames: c.DNSNames,
			NotAfter: c.NotAfter.UTC(), SHA256: hex.EncodeToString(sum[:])})
	}
	rec.Upstream = u
	return up, nil
}
