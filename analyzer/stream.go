package analyzer

import (
	"encoding/binary"
	"errors"

	"github.com/firstboot/firstboot/analyzer/dns"
	"github.com/firstboot/firstboot/analyzer/http"
	"github.com/firstboot/firstboot/analyzer/socks"
	"github.com/firstboot/firstboot/analyzer/tlshello"
	"github.com/firstboot/firstboot/results/schema"
)

// Application protocols recognised on a TCP flow.
const (
	appUnknown uint8 = iota
	appTLS
	appHTTP
	appDNS
	appNone
	appSTARTTLS // a protocol that may upgrade to TLS (upgrade.go)
	appSOCKS    // a SOCKS proxy handshake (upgrade.go)
)

// stream buffers one direction of a TCP flow, in sequence order, for parsing.
// It holds only bytes not yet parsed, at most engine.streamBytes of them;
// message bodies are skipped and counted, not stored. Data arriving when
// nothing is pending is parsed in place (no copy); only an unfinished rest is
// copied into pooled storage.
type stream struct {
	buf   []byte // unparsed bytes: a window into store, or into the packet while parsing it in place
	store []byte // owned storage, cap engine.streamBytes, from the engine's pool
	skip  int64  // body bytes still to skip; -1: everything until the end
	// bodyRec is the http record whose body is being skipped.
	bodyRec  int
	bodyResp bool
	done     bool
	owned    bool // buf lies in store
}

// wants reports whether the stream still needs the bytes themselves (a body
// that runs to the close is only counted).
func (s *stream) wants() bool { return !s.done && s.skip != -1 }

func (s *stream) consume(n int) { s.buf = s.buf[n:] }

func (e *engine) stopStream(s *stream) {
	s.done, s.buf, s.owned = true, nil, false
	e.putBuf(s)
}

func (e *engine) putBuf(s *stream) {
	if s.store != nil && len(e.bufPool) < 1024 {
		e.bufPool = append(e.bufPool, s.store[:0])
	}
	s.store = nil
}

func (e *engine) getBuf() []byte {
	if n := len(e.bufPool); n > 0 {
		b := e.bufPool[n-1]
		e.bufPool = e.bufPool[:n-1]
		return b
	}
	return make([]byte, 0, e.streamBytes)
}

// streamData takes in-order bytes of direction di, buffers them in s (the
// direction's stream; with tls, decrypted HTTP/1 bytes) and runs the
// parsers. The lines below keep the shape they had before decryption, so
// the PGO profile still matches them.
func (e *engine) streamData(f *flow, di int, s *stream, data []byte, tls bool) {
	e.tee(f, di, data, tls)
	if s.done || len(data) == 0 {
		return
	}
	if f.app == appNone && !tls {
		e.stopStream(s)
		return
	}
	for len(data) > 0 && !s.done {
		if s.skip != 0 {
			n := int64(len(data))
			if s.skip > 0 && n > s.skip {
				n = s.skip
			}
			creditBody(f, s, n)
			data = data[n:]
			continue
		}
		var take int
		if len(s.buf) == 0 {
			// Nothing pending: parse the packet's bytes in place.
			take = min(len(data), e.streamBytes)
			s.buf, s.owned = data[:take], false
		} else {
			take = min(len(data), e.streamBytes-len(s.buf))
			if !s.owned || cap(s.buf)-len(s.buf) < take {
				e.own(s)
			}
			s.buf = append(s.buf, data[:take]...)
		}
		data = data[take:]
		before := len(s.buf)
		if !tls {
			e.parseStream(f, di)
		} else {
			e.parseHTTP(f, di, s, true)
		}
		if s.done {
			return
		}
		switch {
		case len(s.buf) >= before && before >= e.streamBytes:
			// The parser could not make progress within the bound.
			e.stopStream(s)
			return
		case len(s.buf) == 0:
			s.owned = false
			e.putBuf(s)
		case !s.owned:
			e.own(s) // an unfinished rest of the packet: keep a copy
		}
		if take == 0 {
			break
		}
	}
}

// tee hands TCP bytes to decryption (decrypt.go) before s.done, which the
// hello parsers set, is looked at; inlined, a flag test without secrets.
func (e *engine) tee(f *flow, di int, data []byte, tls bool) {
	if !tls && e.decrypting && f.app <= appTLS && len(data) > 0 {
		e.teeTLS(f, di, data)
	}
}

// own moves the pending bytes to the start of the stream's own storage.
func (e *engine) own(s *stream) {
	if s.store == nil {
		s.store = e.getBuf()
	}
	// copy handles the overlap when buf already lies in store.
	s.buf = s.store[:copy(s.store[:cap(s.store)], s.buf)]
	s.owned = true
}

// streamGap tells the stream that bytes are missing: parsing cannot go on.
func (e *engine) streamGap(f *flow, di int) {
	e.stopStream(&f.d[di].stream)
	if f.dec != nil {
		f.dec.gap() // decrypt.go
	}
}

func (e *engine) parseStream(f *flow, di int) {
	if f.app == appUnknown {
		e.classifyTCP(f, di)
	}
	switch f.app {
	case appUnknown:
		return
	case appNone:
		e.stopStream(&f.d[0].stream)
		e.stopStream(&f.d[1].stream)
	case appTLS:
		e.parseTLS(f, di)
	case appHTTP:
		e.parseHTTP(f, di, &f.d[di].stream, false)
	case appDNS:
		e.parseDNSTCP(f, di)
	case appSTARTTLS:
		e.parseSTARTTLS(f, di)
	case appSOCKS:
		e.parseSOCKS(f, di)
	}
}

func (e *engine) classifyTCP(f *flow, di int) {
	b := f.d[0].stream.buf
	if di == 1 && len(b) == 0 {
		// The server spoke first: a greeting of a protocol that can upgrade
		// to TLS, or a protocol not parsed here.
		if !e.startSTARTTLS(f, f.d[1].stream.buf, nil) {
			f.app = appNone
		}
		return
	}
	if len(b) == 0 {
		return
	}
	op, rp := f.ports()
	switch {
	case b[0] == 0x16:
		f.app = appTLS
	case rp == 53 || op == 53:
		f.app = appDNS
	case http.LooksLikeRequest(b) || (rp == 80 || rp == 8080) && http.LooksLikeAnyRequest(b):
		f.app = appHTTP
	case socks.Looks(b):
		f.app = appSOCKS
	case e.startSTARTTLS(f, nil, b):
	case len(b) >= 16:
		f.app = appNone
	}
}

func (e *engine) parserError(name string) { e.warn.ParserErrors[name]++ }

// parseTLS reads the ClientHello and the server's answer to it; after a
// HelloRetryRequest, the second ClientHello and its ServerHello too, each
// ClientHello getting its own ssl.log record.
func (e *engine) parseTLS(f *flow, di int) {
	s := &f.d[di].stream
	retry := f.x != nil && f.x.helloRetry
	if di == 0 {
		switch {
		case f.tls == nil:
			// The first ClientHello, or the second after a HelloRetryRequest.
		case f.tls.Cipher == "" && !retry:
			return // keep what follows until the server says whether a second hello comes
		default:
			e.stopStream(s)
			return
		}
		msg, n, err := tlshello.NextHandshake(s.buf, 1)
		if errors.Is(err, tlshello.ErrIncomplete) {
			return
		}
		if err != nil {
			e.parserError("tls")
			f.app = appNone
			e.stopStream(s)
			e.stopStream(&f.d[1].stream)
			return
		}
		var ch tlshello.ClientHello
		if err := ch.ParseInterned(msg, e.intern); err != nil {
			e.parserError("tls")
			e.stopStream(s)
			e.stopStream(&f.d[1].stream)
			return
		}
		e.addClientHello(f, &ch, "tcp", 't')
		if retry {
			f.tls.HelloRetry = true
			e.stopStream(s) // no third ClientHello
		} else {
			s.consume(n)
		}
		if len(f.d[1].stream.buf) > 0 {
			e.parseTLS(f, 1)
		}
		return
	}
	if f.tls == nil || f.tls.Cipher != "" {
		return // wait for the ClientHello
	}
	msg, n, err := tlshello.NextHandshake(s.buf, 2)
	if errors.Is(err, tlshello.ErrIncomplete) {
		return
	}
	if err != nil {
		e.stopStream(s)
		e.parserError("tls")
		return
	}
	var sh tlshello.ServerHello
	if err := sh.ParseInterned(msg, e.intern); err != nil {
		e.stopStream(s)
		e.parserError("tls")
		return
	}
	e.addServerHello(f, &sh)
	if !sh.HelloRetryRequest || retry {
		e.stopStream(s)
		e.stopStream(&f.d[0].stream)
		return
	}
	// A HelloRetryRequest: the first hello's record is complete, the
	// client's second ClientHello follows.
	x := f.extra()
	x.helloRetry, x.retried, f.tls = true, f.tls, nil
	s.consume(n)
	if len(f.d[0].stream.buf) > 0 {
		e.parseTLS(f, 0)
	}
}

func (e *engine) addClientHello(f *flow, ch *tlshello.ClientHello, transport string, ja4t byte) {
	// The fingerprints repeat from connection to connection: shared strings.
	var buf [1024]byte
	var hash [32]byte
	ja3 := tlshello.AppendJA3(buf[:0], ch)
	ja3hash := e.intern(tlshello.AppendJA3Hash(hash[:0], ja3))
	ja3str := e.intern(ja3)
	rec := e.baseTLS(f)
	rec.Transport = transport
	rec.ServerName = ch.ServerName
	rec.ClientALPN = nonNil(ch.ALPN)
	rec.ClientVersions = hexList(ch.SupportedVersions)
	rec.ECH = ch.HasECH
	rec.JA3, rec.JA3String = ja3hash, ja3str
	rec.JA4 = e.intern(tlshello.AppendJA4(buf[:0], ch, ja4t))
	f.tls = &rec
	if ch.ServerName != "" {
		f.sni = ch.ServerName
	}
	f.service = "ssl"
	if transport != "tcp" {
		f.service = transport // quic, dtls
	}
}

func (e *engine) addServerHello(f *flow, sh *tlshello.ServerHello) {
	rec := f.tls
	rec.Version = tlshello.VersionName(sh.SelectedVersion)
	rec.Cipher = e.cipherName(sh.CipherSuite)
	rec.NextProtocol = sh.ALPN
	rec.Established = !sh.HelloRetryRequest
}

// parseHTTP parses HTTP/1 heads from s: a cleartext stream, or with tls
// decrypted bytes (whose records are marked, and do not name the flow).
// A cleartext CONNECT hands the stream to the tunnel (upgrade.go).
func (e *engine) parseHTTP(f *flow, di int, s *stream, tls bool) {
	for !s.done && len(s.buf) > 0 && (tls || f.app == appHTTP) {
		if s.skip != 0 {
			skipBuffered(f, s)
			continue
		}
		if di == 0 {
			if !tls && f.x != nil && f.x.connectWait {
				return // after a CONNECT: the tunnel, or HTTP again if refused
			}
			var req http.Request
			n, err := http.ParseRequestTo(s.buf, &req, e.intern)
			if errors.Is(err, http.ErrIncomplete) {
				return
			}
			if err == nil && (n <= 0 || n > len(s.buf)) {
				err = errors.New("parser consumed no bytes") // never loop on a parser bug
			}
			if err != nil {
				e.parserError("http")
				e.stopStream(s)
				return
			}
			s.consume(n)
			f.httpN++
			rec := e.baseHTTP(f)
			rec.TransDepth = f.httpN
			rec.Method, rec.URI, rec.Version = req.Method, req.URI, req.Version
			rec.Host, rec.UserAgent, rec.RequestContentType = req.Host, req.UserAgent, req.ContentType
			if http.IsOCSP(&req) {
				rec.OCSP, rec.OCSPResponder = true, req.Host
			}
			if tls {
				rec.TLS = true
			} else {
				if f.httpHost == "" {
					f.httpHost = req.Host
				}
				f.service = "http"
			}
			idx := len(f.http)
			f.http = append(f.http, rec)
			f.httpReqs = append(f.httpReqs, idx)
			switch {
			case req.Method == "CONNECT" && !tls:
				e.connectRequest(f, &req)
			case req.Chunked:
				e.stopStream(s) // bodies are skipped by length only
			case req.ContentLength > 0:
				s.skip, s.bodyRec, s.bodyResp = req.ContentLength, idx, false
			}
			continue
		}
		var resp http.Response
		n, err := http.ParseResponseTo(s.buf, &resp, e.intern)
		if errors.Is(err, http.ErrIncomplete) {
			return
		}
		if err == nil && (n <= 0 || n > len(s.buf)) {
			err = errors.New("parser consumed no bytes")
		}
		if err != nil {
			e.parserError("http")
			e.stopStream(s)
			return
		}
		s.consume(n)
		if resp.Status >= 100 && resp.Status < 200 {
			continue // interim response; the final one follows
		}
		idx := -1
		method := ""
		if len(f.httpReqs) > 0 {
			idx = f.httpReqs[0]
			// Shifted rather than resliced, so the queue keeps its storage.
			f.httpReqs = f.httpReqs[:copy(f.httpReqs, f.httpReqs[1:])]
			method = f.http[idx].Method
		} else {
			idx = len(f.http)
			f.http = append(f.http, e.baseHTTP(f))
			f.http[idx].TLS = tls
		}
		rec := &f.http[idx]
		rec.StatusCode, rec.StatusMsg, rec.ResponseContentType = resp.Status, resp.Reason, resp.ContentType
		if !tls && method == "CONNECT" && f.x != nil && f.x.connectWait {
			e.connectResponse(f, resp.Status)
			if f.app != appHTTP {
				return // a tunnel now
			}
			continue
		}
		switch {
		case method == "HEAD" || resp.Status == 204 || resp.Status == 304:
		case resp.Chunked:
			e.stopStream(s)
		case resp.ContentLength >= 0:
			if resp.ContentLength > 0 {
				s.skip, s.bodyRec, s.bodyResp = resp.ContentLength, idx, true
			}
		default:
			s.skip, s.bodyRec, s.bodyResp = -1, idx, true // body runs to the close
		}
	}
}

// skipBuffered drops body bytes that arrived with the head.
func skipBuffered(f *flow, s *stream) {
	n := int64(len(s.buf))
	if s.skip > 0 && n > s.skip {
		n = s.skip
	}
	creditBody(f, s, n)
	s.consume(int(n))
}

func creditBody(f *flow, s *stream, n int64) {
	if s.bodyRec >= 0 && s.bodyRec < len(f.http) {
		if s.bodyResp {
			f.http[s.bodyRec].ResponseBodyLen += n
		} else {
			f.http[s.bodyRec].RequestBodyLen += n
		}
	}
	if s.skip > 0 {
		s.skip -= n
	}
}

func (e *engine) parseDNSTCP(f *flow, di int) {
	s := &f.d[di].stream
	for !s.done && len(s.buf) >= 2 {
		l := int(binary.BigEndian.Uint16(s.buf))
		if len(s.buf) < 2+l {
			return
		}
		msg, err := dns.Parse(s.buf[2 : 2+l])
		if err != nil {
			e.parserError("dns")
		}
		if msg != nil && (err == nil || len(msg.Questions) > 0) {
			f.service = "dns"
			e.dnsMessage(f, di, msg, e.now, "tcp")
		}
		s.consume(2 + l)
	}
}

func (e *engine) baseTLS(f *flow) schema.TLS {
	return schema.TLS{ConnID: e.connID(f, f.first),
		ClientALPN: []string{}, ClientVersions: []string{}, Step: e.steps.name(f.step)}
}

func (e *engine) baseHTTP(f *flow) schema.HTTP {
	return schema.HTTP{ConnID: e.connID(f, e.now),
		Step: e.steps.name(e.steps.index(e.now))}
}
