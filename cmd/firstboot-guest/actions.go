package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// The agent's network actions. Each is bounded by the context, reports one
// short result string (key=value words) and an error; it never retries, so
// the traffic a step causes is exactly what the step names.

const userAgent = "firstboot-testguest/1"

func resolver() *net.Resolver { return &net.Resolver{PreferGo: true} }

func doDNS(ctx context.Context, name string) (string, error) {
	addrs, err := resolver().LookupHost(ctx, name)
	if err != nil {
		return "name=" + name, err
	}
	return fmt.Sprintf("name=%s addrs=%s", name, strings.Join(addrs, ",")), nil
}

func httpClient(tlsConf *tls.Config) *http.Client {
	d := &net.Dialer{Resolver: resolver()}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DialContext:       d.DialContext,
			TLSClientConfig:   tlsConf,
			DisableKeepAlives: true,
			// HTTP/2 when the server offers it, as browsers do (a custom
			// dialer would otherwise turn it off).
			ForceAttemptHTTP2: true,
		},
		// Report redirects instead of following them: one request per action.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func doHTTP(ctx context.Context, rawURL string) (string, error) {
	u, err := httpURL(rawURL, "http", "https")
	if err != nil {
		return "url=" + rawURL, err
	}
	var tlsConf *tls.Config
	if u.Scheme == "https" {
		tlsConf = guestTLS(u.Hostname(), nil)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "url=" + rawURL, err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := httpClient(tlsConf).Do(req)
	if err != nil {
		return "url=" + rawURL, err
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return fmt.Sprintf("url=%s status=%d bytes=%d", rawURL, resp.StatusCode, n), nil
}

// doHTTPS fetches https://HOST[:PORT]/ so the capture holds a ClientHello
// with HOST as SNI.
func doHTTPS(ctx context.Context, host string) (string, error) {
	hp, err := hostPort(host, "443")
	if err != nil {
		return "host=" + host, err
	}
	h, p, _ := net.SplitHostPort(hp)
	u := "https://" + h + "/"
	if p != "443" {
		u = "https://" + hp + "/"
	}
	res, err := doHTTP(ctx, u)
	return strings.Replace(res, "url=", "host="+host+" url=", 1), err
}

func doQUIC(ctx context.Context, host string, timeout time.Duration) (string, error) {
	hp, err := hostPort(host, "443")
	if err != nil {
		return "host=" + host, err
	}
	sni, port, _ := net.SplitHostPort(hp)
	// An HTTP/3 request: the handshake, and with the lab's secrets a
	// request the analysis can read.
	tr := &http3.Transport{TLSClientConfig: guestTLS(sni, []string{"h3"}), QUICConfig: &quic.Config{HandshakeIdleTimeout: timeout}}
	defer tr.Close()
	u := "https://" + sni + "/"
	if port != "443" {
		u = "https://" + hp + "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "host=" + host, err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "host=" + host, err
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return fmt.Sprintf("host=%s handshake=ok status=%d bytes=%d", host, resp.StatusCode, n), nil
}

// vendorPin is the SHA-256 of the public key a pinning client insists on:
// its vendor's own, which no one else, the lab included, can present.
var vendorPin = sha256.Sum256([]byte("firstboot test guest: the vendor's pinned key"))

// doPinned fetches https://HOST/ as an app that pins its server's key
// does: any certificate whose key is not the pinned one is refused, so
// intercepting its TLS shows as a refusal.
func doPinned(ctx context.Context, host string) (string, error) {
	hp, err := hostPort(host, "443")
	if err != nil {
		return "host=" + host, err
	}
	h, _, _ := net.SplitHostPort(hp)
	conf := &tls.Config{ServerName: h, InsecureSkipVerify: true, // the pin alone decides
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo) != vendorPin {
				return errors.New("server key does not match the pinned key")
			}
			return nil
		}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+hp+"/", nil)
	if err != nil {
		return "host=" + host, err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := httpClient(conf).Do(req)
	if err != nil {
		return "host=" + host + " pinned=refused", err
	}
	resp.Body.Close()
	return fmt.Sprintf("host=%s status=%d", host, resp.StatusCode), nil
}

// labCA is where an image made to trust the lab CA has it (lab/labca's
// CertPath; the same certificate is in the system bundle Go reads).
const labCA = "/usr/local/share/ca-certificates/firstboot-lab-ca.crt"

// guestTLS verifies servers against the system trust store when the image
// was made to trust the lab CA (trust_lab_ca), like a real OS; otherwise
// the point is the ClientHello the lab sees, and any certificate will do.
func guestTLS(serverName string, alpn []string) *tls.Config {
	c := &tls.Config{ServerName: serverName, NextProtos: alpn}
	if _, err := os.Stat(labCA); err != nil {
		c.InsecureSkipVerify = true
	}
	return c
}

// NTP epoch (1900) to Unix epoch (1970).
const ntpEpochOffset = 2208988800

func ntpTime(t time.Time) uint64 {
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

func fromNTPTime(v uint64) time.Time {
	secs := int64(v>>32) - ntpEpochOffset
	nanos := int64((v & 0xffffffff) * 1e9 >> 32)
	return time.Unix(secs, nanos)
}

// doNTP sends one SNTPv4 client request (RFC 4330) and reads the reply's
// transmit time. The guest clock is not set: the lab measures traffic, and a
// stepped clock would only blur the guest's own timestamps.
func doNTP(ctx context.Context, server string) (string, error) {
	hp, err := hostPort(server, "123")
	if err != nil {
		return "server=" + server, err
	}
	d := net.Dialer{Resolver: resolver()}
	c, err := d.DialContext(ctx, "udp", hp)
	if err != nil {
		return "server=" + server, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req := make([]byte, 48)
	req[0] = 0<<6 | 4<<3 | 3 // LI 0, version 4, mode 3 (client)
	sent := time.Now()
	xmt := ntpTime(sent)
	binary.BigEndian.PutUint64(req[40:], xmt)
	if _, err := c.Write(req); err != nil {
		return "server=" + server, err
	}
	resp := make([]byte, 512)
	for {
		n, err := c.Read(resp)
		if err != nil {
			return "server=" + server + " remote=" + c.RemoteAddr().String(), err
		}
		if n < 48 || resp[0]&7 != 4 || binary.BigEndian.Uint64(resp[24:]) != xmt {
			continue // not the answer to this request
		}
		rtt := time.Since(sent)
		st := fromNTPTime(binary.BigEndian.Uint64(resp[40:]))
		offset := st.Sub(sent.Add(rtt / 2))
		return fmt.Sprintf("server=%s remote=%s stratum=%d offset=%s", server, c.RemoteAddr(), resp[1], offset.Round(time.Millisecond)), nil
	}
}

func doTCP(ctx context.Context, hostport string) (string, error) {
	d := net.Dialer{Resolver: resolver()}
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return "addr=" + hostport, err
	}
	defer c.Close()
	return "addr=" + hostport + " remote=" + c.RemoteAddr().String(), nil
}

func doSleep(ctx context.Context, arg string) (string, error) {
	secs, err := strconv.ParseFloat(strings.TrimSuffix(arg, "s"), 64)
	if err != nil {
		return "", err
	}
	d := time.Duration(secs * float64(time.Second))
	select {
	case <-time.After(d):
		return "slept=" + d.String(), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// runAction performs one console or boot action with the per-action timeout
// (sleep is bounded by its own argument instead).
func runAction(ctx context.Context, cfg Config, a Action) (string, error) {
	timeout := cfg.Timeout
	if a.Kind == "sleep" {
		timeout = time.Hour + time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch a.Kind {
	case "dns":
		return doDNS(ctx, a.Arg)
	case "http":
		return doHTTP(ctx, a.Arg)
	case "https":
		return doHTTPS(ctx, a.Arg)
	case "quic":
		return doQUIC(ctx, a.Arg, cfg.Timeout)
	case "pinned":
		return doPinned(ctx, a.Arg)
	case "ntp":
		return doNTP(ctx, a.Arg)
	case "tcp":
		return doTCP(ctx, a.Arg)
	case "sleep":
		return doSleep(ctx, a.Arg)
	}
	return "", errors.New("action " + a.Kind + " cannot run here")
}
