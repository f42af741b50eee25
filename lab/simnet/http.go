package simnet

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"time"
)

// DefaultBody is the answer to every HTTP request that is not a known
// connectivity check.
const DefaultBody = "firstboot lab\n"

// connectivityCheck is what an OS expects from its "am I online" probe. The
// table is keyed by path alone (any host), since the lab answers every name
// with its own address and paths do not collide.
type connectivityCheck struct {
	status int
	body   string
	who    string // documentation: which client probes this
}

// lookupCheck is the table of known probes (a switch, so the table cannot be
// modified at run time).
func lookupCheck(path string) (connectivityCheck, bool) {
	switch path {
	// Android, ChromeOS, Chrome: connectivitycheck.gstatic.com, clients3.google.com.
	case "/generate_204":
		return connectivityCheck{status: http.StatusNoContent, who: "Android/ChromeOS/Chrome"}, true
	case "/gen_204":
		return connectivityCheck{status: http.StatusNoContent, who: "Android (older)"}, true
	// Windows 10/11 NCSI: www.msftconnecttest.com; older Windows: www.msftncsi.com.
	case "/connecttest.txt":
		return connectivityCheck{status: http.StatusOK, body: "Microsoft Connect Test", who: "Windows 10/11 NCSI"}, true
	case "/ncsi.txt":
		return connectivityCheck{status: http.StatusOK, body: "Microsoft NCSI", who: "Windows 7/8 NCSI"}, true
	// Apple captive portal assistant: captive.apple.com, www.apple.com.
	case "/hotspot-detect.html":
		return connectivityCheck{status: http.StatusOK, body: appleSuccess, who: "macOS/iOS"}, true
	case "/library/test/success.html":
		return connectivityCheck{status: http.StatusOK, body: appleSuccess, who: "macOS/iOS (older)"}, true
	// NetworkManager as configured by Debian (network-test.debian.org/nm),
	// GNOME/Arch (nmcheck.gnome.org/check_network_status.txt) and Fedora.
	case "/nm":
		return connectivityCheck{status: http.StatusOK, body: "NetworkManager is online\n", who: "NetworkManager (Debian)"}, true
	case "/check_network_status.txt":
		return connectivityCheck{status: http.StatusOK, body: "NetworkManager is online\n", who: "NetworkManager (GNOME, Arch)"}, true
	case "/static/hotspot.txt":
		return connectivityCheck{status: http.StatusOK, body: "OK\n", who: "NetworkManager (Fedora)"}, true
	// Firefox captive portal detection: detectportal.firefox.com.
	case "/success.txt":
		return connectivityCheck{status: http.StatusOK, body: "success\n", who: "Firefox"}, true
	case "/canonical.html":
		return connectivityCheck{status: http.StatusOK, body: `<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>`, who: "Firefox"}, true
	}
	return connectivityCheck{}, false
}

const appleSuccess = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"

// connInfo travels in the request context: what the connection layer knew.
type connInfo struct {
	dst string // original destination
}

type connInfoKey struct{}

func (r *Responders) httpHandler(service string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		status, body := http.StatusOK, DefaultBody
		hdr := w.Header()
		if cc, ok := lookupCheck(req.URL.Path); ok {
			status, body = cc.status, cc.body
		}
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		if strings.HasPrefix(body, "<") {
			hdr.Set("Content-Type", "text/html")
		}
		hdr.Set("Cache-Control", "no-store")
		// NetworkManager counts this header as "online" whatever its
		// configured URL and expected body (Ubuntu's check on "/" included).
		hdr.Set("X-NetworkManager-Status", "online")
		ci, _ := req.Context().Value(connInfoKey{}).(connInfo)
		proto := "tcp"
		if req.ProtoMajor == 3 {
			proto = "udp"
		}
		e := Event{Service: service, Proto: proto, Client: req.RemoteAddr, Dst: ci.dst,
			Method: req.Method, Host: req.Host, URI: req.RequestURI, UserAgent: req.UserAgent(), Status: status}
		if req.TLS != nil {
			e.SNI = req.TLS.ServerName
			if req.TLS.NegotiatedProtocol != "" {
				e.ALPN = []string{req.TLS.NegotiatedProtocol}
			}
		}
		r.log.log(e)
		w.WriteHeader(status)
		if status != http.StatusNoContent {
			w.Write([]byte(body))
		}
	})
}

// logWriter turns net/http's error log lines (TLS handshake failures above
// all: "remote error: tls: unknown certificate authority") into events.
type logWriter struct {
	r       *Responders
	service string
}

func (l logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	e := Event{Service: l.service, Proto: "tcp", Detail: msg}
	// "http: TLS handshake error from 10.0.0.2:5555: ..." carries the client.
	if rest, ok := strings.CutPrefix(msg, "http: TLS handshake error from "); ok {
		if i := strings.Index(rest, ": "); i > 0 {
			e.Client, e.Detail = rest[:i], "TLS handshake error: "+rest[i+2:]
		}
	}
	l.r.log.log(e)
	return len(p), nil
}

func (r *Responders) newHTTPServer(service string) *http.Server {
	return &http.Server{
		Handler:           r.httpHandler(service),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          newErrorLog(logWriter{r: r, service: service}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn() // SO_ORIGINAL_DST needs the TCP socket
			}
			return context.WithValue(ctx, connInfoKey{}, connInfo{dst: originalDst(c)})
		},
	}
}

// tlsConfig mints a leaf for the SNI (or, without SNI, for the address the
// client connected to) and logs every ClientHello before the handshake can
// fail, so clients that do not trust the lab CA are still recorded.
func (r *Responders) tlsConfig(service, proto string, nextProtos []string) *tls.Config {
	base := &tls.Config{
		MinVersion:   tls.VersionTLS10, // old guests are worth recording, not rejecting
		NextProtos:   nextProtos,
		KeyLogWriter: r.cfg.KeyLog,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" && hello.Conn != nil {
				name = hostOnly(originalDst(hello.Conn))
			}
			return r.cfg.CA.Leaf(name, r.now())
		},
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		e := Event{Service: service, Proto: proto, SNI: hello.ServerName, ALPN: hello.SupportedProtos, Detail: "ClientHello"}
		if hello.Conn != nil {
			e.Client = hello.Conn.RemoteAddr().String()
			if proto == "udp" {
				e.Dst = r.udpDst(hello.Conn.LocalAddr(), addrPort(hello.Conn.RemoteAddr()))
			} else {
				e.Dst = originalDst(hello.Conn)
			}
		}
		r.log.log(e)
		if proto == "udp" && len(hello.SupportedProtos) > 0 {
			// QUIC requires an agreed ALPN; take the client's first choice
			// so the handshake completes whatever it asks for.
			c := base.Clone()
			c.NextProtos = hello.SupportedProtos[:1]
			return c, nil
		}
		return nil, nil
	}
	return base
}

func hostOnly(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}
