package analyzer

import (
	"bytes"

	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/analyzer/http"
	"github.com/firstboot/firstboot/analyzer/http2"
	"github.com/firstboot/firstboot/analyzer/http3"
	"github.com/firstboot/firstboot/analyzer/tlsdecrypt"
	"github.com/firstboot/firstboot/results/schema"
)

// Decryption: with TLS secrets (Options.TLSKeys, or the capture's
// Decryption Secrets Blocks), TLS connections over TCP and QUIC
// connections that start after the first secret is known are followed
// record by record; the HTTP/1.1, HTTP/2 and HTTP/3 requests inside become
// http records marked tls. Without secrets none of this runs: the engine
// pays one flag test per TCP segment and one pointer test per datagram.

// Plaintext protocols of a decrypted connection.
const (
	plainUnknown uint8 = iota
	plainHTTP1
	plainHTTP2
	plainOther
)

// decFlow is a flow's decryption state.
type decFlow struct {
	tls   *tlsdecrypt.Conn
	quic  *tlsdecrypt.QUICConn
	proto uint8
	h1    [2]stream // HTTP/1 plaintext, parsed like a cleartext stream
	h2    *http2.Conn
	h3    *http3.Conn
	reqs  map[uint64]int // HTTP/2 and HTTP/3: stream → index in flow.http
	e     *engine
	f     *flow
}

// decryptStats counts decrypted connections by outcome, per step.
type decryptStats map[string]int64

// secretsBlock takes a Decryption Secrets Block of the capture.
func (e *engine) secretsBlock(cp *capfile.Packet) {
	if cp.Secrets != tlsdecrypt.SecretsTypeTLSKeyLog {
		return
	}
	if e.keys == nil {
		e.keys = &tlsdecrypt.Keys{}
	}
	e.secretBlocks++
	if _, err := e.keys.Add(cp.Data); err != nil {
		e.parserError("tls_keylog")
	}
	e.decrypting = e.keys.Len() > 0
}

// teeTLS hands in-order TCP bytes to the flow's decryption, starting it
// when the client's first byte opens a TLS handshake record.
func (e *engine) teeTLS(f *flow, di int, data []byte) {
	d := f.dec
	if d == nil {
		if f.app != appUnknown || di != 0 || len(f.d[0].stream.buf) > 0 || data[0] != 0x16 {
			return
		}
		d = &decFlow{e: e, f: f}
		d.tls = tlsdecrypt.NewConn(e.keys, d.plaintext)
		f.dec = d
	}
	if d.tls == nil || d.tls.Done() {
		return
	}
	d.tls.Feed(di, data)
}

// startQUIC starts decrypting a QUIC flow at its first client Initial (the
// datagram itself reaches it through udpPayload's hook).
func (e *engine) startQUIC(f *flow) {
	d := &decFlow{e: e, f: f}
	d.h3 = http3.NewConn(d)
	d.quic = tlsdecrypt.NewQUICConn(e.keys, d.h3.Stream)
	f.dec = d
}

// quicDecrypt hands a datagram of a QUIC flow to its decryption; small
// enough to inline where every datagram passes.
func (e *engine) quicDecrypt(f *flow, di int, b []byte) {
	if f.dec != nil {
		f.dec.datagram(di, b)
	}
}

//go:noinline (quicDecrypt, inlined, stays a pointer test)
func (d *decFlow) datagram(di int, b []byte) {
	if q := d.quic; q != nil && !q.Done() {
		q.Datagram(di, b)
	}
}

// decrypting reports whether d (nil or not) still wants the flow's bytes.
func (d *decFlow) decrypting() bool {
	return d != nil && (d.tls != nil && !d.tls.Done() || d.quic != nil && !d.quic.Done())
}

// gap ends decryption at bytes missing from the capture: records cannot
// be found again after a hole.
func (d *decFlow) gap() {
	if d.tls != nil {
		d.tls.Gap()
	}
}

// plaintext takes decrypted application data of a TLS connection.
func (d *decFlow) plaintext(di int, p []byte) {
	if d.proto == plainUnknown {
		alpn := d.tls.Hello().ALPN
		switch {
		case alpn == "h2" || di == 0 && bytes.HasPrefix(p, []byte(http2.Preface[:min(len(p), len(http2.Preface))])),
			alpn == "" && di == 1 && len(p) >= 9 && p[3] == 0x04: // the server's SETTINGS frame came first
			d.proto = plainHTTP2
			d.h2 = http2.NewConn(d)
		case di == 0 && http.LooksLikeRequest(p):
			d.proto = plainHTTP1
		default:
			d.proto = plainOther
		}
	}
	switch d.proto {
	case plainHTTP1:
		d.e.streamData(d.f, di, &d.h1[di], p, true)
	case plainHTTP2:
		if d.h2.Err() == nil {
			d.h2.Feed(di, p)
		}
	}
}

// Head records an HTTP/2 or HTTP/3 request or response head.
func (d *decFlow) Head(dir int, stream uint64, req *http.Request, resp *http.Response) {
	e, f := d.e, d.f
	if d.reqs == nil {
		d.reqs = map[uint64]int{}
	}
	if req != nil {
		f.httpN++
		rec := e.baseHTTP(f)
		rec.TransDepth = f.httpN
		rec.TLS = true
		e.requestFields(&rec, req)
		d.reqs[stream] = len(f.http)
		f.http = append(f.http, rec)
		return
	}
	idx, ok := d.reqs[stream]
	if !ok {
		rec := e.baseHTTP(f)
		rec.TLS, rec.Version = true, resp.Version
		idx = len(f.http)
		d.reqs[stream] = idx
		f.http = append(f.http, rec)
	}
	rec := &f.http[idx]
	rec.StatusCode, rec.ResponseContentType = resp.Status, e.intern([]byte(resp.ContentType))
}

// Body counts body bytes of an HTTP/2 or HTTP/3 stream.
func (d *decFlow) Body(dir int, stream uint64, n int) {
	idx, ok := d.reqs[stream]
	if !ok || n == 0 {
		return
	}
	if dir == 0 {
		d.f.http[idx].RequestBodyLen += int64(n)
	} else {
		d.f.http[idx].ResponseBodyLen += int64(n)
	}
}

// requestFields fills an http record from a parsed request.
func (e *engine) requestFields(rec *schema.HTTP, req *http.Request) {
	rec.Method, rec.URI, rec.Version = e.intern([]byte(req.Method)), req.URI, req.Version
	rec.Host, rec.UserAgent, rec.RequestContentType = req.Host, req.UserAgent, req.ContentType
	if http.IsOCSP(req) {
		rec.OCSP, rec.OCSPResponder = true, req.Host
	}
}

// finishDecrypt settles a flow's decryption when it ends (inlined: a
// pointer test for flows without any).
func (e *engine) finishDecrypt(f *flow) {
	if f.dec != nil {
		e.settleDecrypt(f)
	}
}

func (e *engine) settleDecrypt(f *flow) {
	d := f.dec
	status := ""
	switch {
	case d.tls != nil:
		d.tls.Close()
		status = d.tls.Status()
	case d.quic != nil:
		d.quic.Close()
		status = d.quic.Status()
	}
	if d.proto == plainHTTP2 && d.h2.Err() != nil || d.h3 != nil && d.h3.Err() != nil {
		e.parserError("http_tls")
	}
	e.decryptCount(f.step, status)
	e.putBuf(&d.h1[0])
	e.putBuf(&d.h1[1])
	f.dec = nil
}

func (e *engine) decryptCount(step int, status string) {
	if e.decStats == nil {
		e.decStats = make([]decryptStats, e.steps.count())
	}
	if e.decStats[step] == nil {
		e.decStats[step] = decryptStats{}
	}
	e.decStats[step][status]++
}

// decryptionSummary is the Summary's tls_decryption for step si (-1: all),
// nil when the capture gave no secrets.
func (e *engine) decryptionSummary(si int) *schema.TLSDecryption {
	if e.keys == nil {
		return nil
	}
	s := &schema.TLSDecryption{}
	if si < 0 {
		s.Secrets, s.SecretsBlocks = int64(e.keys.Len()), e.secretBlocks
	}
	for i, st := range e.decStats {
		if si >= 0 && i != si {
			continue
		}
		s.Decrypted += st[tlsdecrypt.StatusDecrypted]
		s.NoKeys += st[tlsdecrypt.StatusNoKeys]
		s.HandshakeOnly += st[tlsdecrypt.StatusHandshake]
		s.Failed += st[tlsdecrypt.StatusFailed] + st[tlsdecrypt.StatusNotTLS]
		s.Incomplete += st[tlsdecrypt.StatusGap]
		s.Unsupported += st[tlsdecrypt.StatusCipher] + st[tlsdecrypt.StatusNoHello]
	}
	return s
}
