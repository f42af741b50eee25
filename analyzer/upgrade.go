package analyzer

import (
	"errors"
	"net"
	"net/netip"

	"github.com/firstboot/firstboot/analyzer/http"
	"github.com/firstboot/firstboot/analyzer/socks"
	"github.com/firstboot/firstboot/analyzer/starttls"
	"github.com/firstboot/firstboot/results/schema"
)

// Connections that change protocol midway: a plain-text protocol upgraded
// by STARTTLS, an HTTP CONNECT or SOCKS proxy whose connection carries a
// tunnel after the handshake. Each ends by handing the rest of the stream
// to classifyTCP again, as a new connection's first bytes.

// maxPlainLines bounds the lines read of a STARTTLS-capable protocol
// waiting for the upgrade: a session that does not upgrade early is not
// read to its end.
const maxPlainLines = 256

// reclassify hands the bytes after a protocol change to the parsers, as a
// connection's first bytes: the client's first, which tell the protocol.
func (e *engine) reclassify(f *flow) {
	f.app = appUnknown
	if len(f.d[0].stream.buf) > 0 {
		e.parseStream(f, 0)
	}
	if len(f.d[1].stream.buf) > 0 && !f.d[1].stream.done {
		e.parseStream(f, 1)
	}
}

// startSTARTTLS tells whether a connection is a protocol that can upgrade
// to TLS, from the server's greeting (srv) or the client's first bytes.
func (e *engine) startSTARTTLS(f *flow, srv, cli []byte) bool {
	proto := starttls.ClientFirst(cli)
	if proto == "" && len(cli) == 0 {
		if n := starttls.Next("", srv); n > 0 {
			_, rp := f.ports()
			proto = starttls.Greeting(srv[:n], rp)
		}
	}
	if proto == "" {
		return false
	}
	f.app = appSTARTTLS
	x := f.extra()
	x.starttls, f.service = proto, proto
	return true
}

// parseSTARTTLS reads the lines of a STARTTLS-capable protocol until the
// client asks for TLS and the server agrees; then the TLS parser takes over.
func (e *engine) parseSTARTTLS(f *flow, di int) {
	s := &f.d[di].stream
	x := f.x
	for !s.done && f.app == appSTARTTLS {
		if di == 0 && x.starttlsAsked {
			return // the ClientHello waits for the server's answer
		}
		n := starttls.Next(x.starttls, s.buf)
		if n == 0 {
			return
		}
		line := s.buf[:n]
		s.consume(n)
		if x.plainLines++; x.plainLines > maxPlainLines {
			e.stopStream(&f.d[0].stream)
			e.stopStream(&f.d[1].stream)
			return
		}
		if di == 0 {
			if asks, proto := starttls.Request(x.starttls, line); asks {
				x.starttlsAsked, x.starttls, f.service = true, proto, proto
			}
			continue
		}
		if !x.starttlsAsked {
			continue
		}
		switch starttls.Reply(x.starttls, line) {
		case starttls.Agreed:
			x.firstService = x.starttls
			e.reclassify(f)
			return
		case starttls.Refused:
			x.starttlsAsked = false
			if len(f.d[0].stream.buf) > 0 {
				e.parseSTARTTLS(f, 0)
			}
		}
	}
}

// connectRequest notes an HTTP CONNECT request (record idx of f.http):
// what the client sends next waits for the proxy's answer.
func (e *engine) connectRequest(f *flow, req *http.Request) {
	x := f.extra()
	x.connectWait, x.proxiedTo = true, req.URI
}

// connectResponse takes the proxy's answer to a CONNECT: a 2xx opens the
// tunnel, anything else lets HTTP go on.
func (e *engine) connectResponse(f *flow, status int) {
	x := f.x
	x.connectWait = false
	if status < 200 || status > 299 {
		if len(f.d[0].stream.buf) > 0 {
			e.parseHTTP(f, 0, &f.d[0].stream, false)
		}
		return
	}
	x.proxy, x.firstService = "http_connect", "http"
	x.proxiedHost, x.proxiedAddr = splitTarget(x.proxiedTo)
	e.addTunnel(e.connID(f, f.first), "Tunnel::HTTP", f.first)
	e.reclassify(f)
}

// splitTarget splits a "host:port" target into a host name or an address.
func splitTarget(t string) (string, netip.Addr) {
	h, _, err := net.SplitHostPort(t)
	if err != nil {
		h = t
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return "", a
	}
	return h, netip.Addr{}
}

// socksState is a SOCKS handshake being read.
type socksState struct {
	client socks.Client
	server socks.Server
}

// parseSOCKS reads a SOCKS handshake; once the proxy granted the request,
// the rest of the stream is the tunnel's.
func (e *engine) parseSOCKS(f *flow, di int) {
	s := &f.d[di].stream
	x := f.extra()
	st := &x.socks
	for !s.done && len(s.buf) > 0 && f.app == appSOCKS {
		var n int
		var err error
		if di == 0 {
			if st.client.Done {
				return // tunnel bytes wait for the reply
			}
			n, err = st.client.Next(s.buf)
		} else {
			if st.server.Done {
				return
			}
			n, err = st.server.Next(s.buf, st.client.Request.Version)
		}
		if errors.Is(err, socks.ErrIncomplete) {
			return
		}
		if err != nil {
			e.parserError("socks")
			f.app = appNone
			e.stopStream(&f.d[0].stream)
			e.stopStream(&f.d[1].stream)
			return
		}
		s.consume(n)
		f.service = "socks"
		if st.client.Done && st.server.Done {
			e.socksDone(f)
			return
		}
		if di == 1 && st.server.Done && len(f.d[0].stream.buf) > 0 {
			e.parseSOCKS(f, 0) // the request arrived before the reply
			return
		}
		if di == 0 && st.client.Done && len(f.d[1].stream.buf) > 0 {
			e.parseSOCKS(f, 1)
			return
		}
	}
}

// socksDone ends a SOCKS handshake: a granted CONNECT opens the tunnel.
func (e *engine) socksDone(f *flow) {
	x := f.x
	req := &x.socks.client.Request
	if !x.socks.server.Granted || req.Cmd != 1 {
		f.app = appNone
		e.stopStream(&f.d[0].stream)
		e.stopStream(&f.d[1].stream)
		return
	}
	x.proxy, x.proxiedTo, x.firstService = req.Version, req.Target(), "socks"
	x.proxiedHost, x.proxiedAddr = req.Host, req.Addr
	e.addTunnel(e.connID(f, f.first), "Tunnel::SOCKS", f.first)
	e.reclassify(f)
}

// tunnelRecords returns tunnel.log's records.
func (e *engine) tunnelRecords() []schema.Tunnel { return e.tun.recs }
