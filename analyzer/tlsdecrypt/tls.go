package tlsdecrypt

import (
	"encoding/binary"
)

// Record content types.
const (
	typeCCS       = 20
	typeAlert     = 21
	typeHandshake = 22
	typeAppData   = 23
)

// Handshake message types this package acts on.
const (
	hsClientHello         = 1
	hsServerHello         = 2
	hsEncryptedExtensions = 8
	hsFinished            = 20
	hsKeyUpdate           = 24
)

const (
	recordHeader = 5
	maxRecord    = 16384 + 2048 // TLSCiphertext bound (RFC 8446 5.2)
	maxHandshake = 1 << 16      // a handshake message we buffer to parse
)

// Why a connection is not (or no longer) decrypted.
const (
	StatusPending   = ""               // still going
	StatusDecrypted = "decrypted"      // records opened with the logged secrets
	StatusNoKeys    = "no_keys"        // the key log has nothing for the ClientHello's random
	StatusCipher    = "unsupported"    // a cipher suite, version or feature this package cannot open
	StatusFailed    = "failed"         // records did not open with the logged secrets
	StatusNotTLS    = "not_tls"        // the bytes are not a TLS record stream
	StatusNoHello   = "no_hello"       // a hello was never seen (capture started mid-connection)
	StatusHandshake = "handshake_only" // keys found, but no application data was exchanged
	StatusGap       = "gap"            // bytes missing from the capture ended decryption
)

// Conn decrypts one TLS connection over TCP. Feed it each direction's
// in-order stream bytes as they arrive (0: client to server, 1: server to
// client); application data comes out through the callback given to NewConn.
type Conn struct {
	keys *Keys
	out  func(dir int, plain []byte)

	d      [2]tlsDir
	hello  Hello
	sec    *Secrets
	suite  *suite
	status string
	opened bool // a record was opened: the keys are right
	app    bool // application data came out
	plain  []byte
}

// Hello is what the hellos told.
type Hello struct {
	ClientRandom, ServerRandom [32]byte
	HaveClient, HaveServer     bool
	Version                    uint16 // negotiated (supported_versions when present)
	CipherSuite                uint16
	ALPN                       string // the server's choice
	EncryptThenMAC             bool
	retry                      bool // the last ServerHello was a HelloRetryRequest
}

type tlsDir struct {
	buf []byte // an unfinished record
	hs  []byte // an unfinished handshake message (plaintext or decrypted)
	op  opener
	seq uint64
	// TLS 1.3: the current traffic secret, and whether the handshake keys
	// have been replaced by the application keys.
	secret []byte
	app    bool
	early  opener // client: 0-RTT keys, tried before the handshake keys
	ccs    bool   // TLS 1.2: ChangeCipherSpec seen, records are protected
}

// NewConn returns a connection decrypting with keys; out receives each
// direction's application data in order, valid only during the call.
func NewConn(keys *Keys, out func(dir int, plain []byte)) *Conn {
	return &Conn{keys: keys, out: out}
}

// Hello returns what the hellos told so far.
func (c *Conn) Hello() *Hello { return &c.hello }

// Status says how decryption went: StatusPending while it goes on (or
// StatusDecrypted once records opened), else why it stopped.
func (c *Conn) Status() string {
	if c.status == StatusPending && c.opened {
		return StatusDecrypted
	}
	return c.status
}

// Done reports whether the connection is no longer being decrypted.
func (c *Conn) Done() bool { return c.status != StatusPending }

// Gap tells the connection that stream bytes are missing: records cannot
// be found past a hole, so decryption ends (what came before stays).
func (c *Conn) Gap() {
	if c.status == StatusPending {
		c.stop(StatusGap)
	}
}

// Close ends the connection and settles its status.
func (c *Conn) Close() {
	if c.status != StatusPending {
		return
	}
	switch {
	case !c.hello.HaveClient || !c.hello.HaveServer:
		c.status = StatusNoHello
	case c.opened && !c.app:
		c.status = StatusHandshake
	case c.opened:
		c.status = StatusDecrypted
	case c.sec == nil && c.keys.Lookup(c.hello.ClientRandom[:]) == nil:
		c.status = StatusNoKeys
	default:
		c.status = StatusHandshake
	}
}

func (c *Conn) stop(status string) {
	c.status = status
	c.d[0], c.d[1] = tlsDir{}, tlsDir{}
}

// Feed takes the next in-order bytes of direction dir.
func (c *Conn) Feed(dir int, data []byte) {
	d := &c.d[dir]
	for len(data) > 0 && c.status == StatusPending {
		if len(d.buf) > 0 {
			// Complete the pending record first.
			if len(d.buf) < recordHeader {
				take := min(recordHeader-len(d.buf), len(data))
				d.buf, data = append(d.buf, data[:take]...), data[take:]
				if len(d.buf) < recordHeader {
					return
				}
				if !c.checkHeader(d.buf) {
					return
				}
			}
			need := recordHeader + int(binary.BigEndian.Uint16(d.buf[3:]))
			take := min(need-len(d.buf), len(data))
			d.buf, data = append(d.buf, data[:take]...), data[take:]
			if len(d.buf) < need {
				return
			}
			c.record(dir, d.buf)
			d.buf = d.buf[:0]
			continue
		}
		if len(data) >= recordHeader && !c.checkHeader(data) {
			return
		}
		n := recordHeader
		if len(data) >= recordHeader {
			n += int(binary.BigEndian.Uint16(data[3:]))
		}
		if n > len(data) {
			d.buf = append(d.buf, data...)
			return
		}
		c.record(dir, data[:n])
		data = data[n:]
	}
}

// checkHeader stops the connection when a record header is not TLS.
func (c *Conn) checkHeader(h []byte) bool {
	if h[0] < typeCCS || h[0] > typeAppData || h[1] != 3 || int(binary.BigEndian.Uint16(h[3:])) > maxRecord {
		c.stop(StatusNotTLS)
		return false
	}
	return true
}

// record handles one whole record.
func (c *Conn) record(dir int, rec []byte) {
	d := &c.d[dir]
	hdr, body := rec[:recordHeader], rec[recordHeader:]
	typ := hdr[0]
	tls13 := c.hello.HaveServer && c.hello.Version == 0x0304
	switch {
	case typ == typeCCS && (tls13 || !c.hello.HaveServer):
		return // TLS 1.3 middlebox compatibility: not protected, no meaning
	case typ == typeCCS:
		if d.ccs {
			c.stop(StatusCipher) // renegotiation: not followed
			return
		}
		d.ccs, d.seq = true, 0
		if c.d[0].op == nil && !c.tls12Keys() {
			return
		}
		return
	case tls13 && typ == typeAppData:
		c.tls13Record(dir, hdr, body)
		return
	case d.ccs:
		p, ok := c.open(dir, hdr, body)
		if !ok {
			return
		}
		switch typ {
		case typeAppData:
			c.deliver(dir, p)
		case typeHandshake:
			// The Finished message; later handshakes would be a renegotiation.
		}
		return
	case typ == typeHandshake:
		c.handshake(dir, body)
		return
	case typ == typeAppData:
		// Protected data before the keys could be known: the hellos were
		// not seen (a capture that started mid-connection).
		c.stop(StatusNoHello)
	}
}

// open opens a record of direction dir with its opener, advancing the
// sequence number; a failure stops the connection.
func (c *Conn) open(dir int, hdr, body []byte) ([]byte, bool) {
	d := &c.d[dir]
	if d.op == nil {
		c.stop(StatusFailed)
		return nil, false
	}
	p, err := d.op.open(c.plain[:0], hdr, body, d.seq)
	if err != nil {
		c.stop(StatusFailed)
		return nil, false
	}
	c.plainGrow(p)
	d.seq++
	c.opened = true
	return p, true
}

// plainGrow keeps the storage an opener returned for the next record.
func (c *Conn) plainGrow(p []byte) {
	if cap(p) > cap(c.plain) {
		c.plain = p[:0]
	}
}

func (c *Conn) deliver(dir int, p []byte) {
	if len(p) == 0 {
		return
	}
	c.app = true
	c.out(dir, p)
}

// tls12Keys derives the record keys at the first ChangeCipherSpec.
func (c *Conn) tls12Keys() bool {
	h := &c.hello
	if !h.HaveClient || !h.HaveServer {
		c.stop(StatusNoHello)
		return false
	}
	if c.suite == nil || h.Version < 0x0301 {
		c.stop(StatusCipher)
		return false
	}
	c.sec = c.keys.Lookup(h.ClientRandom[:])
	if c.sec == nil || len(c.sec.Master) == 0 {
		c.stop(StatusNoKeys)
		return false
	}
	cl, sv, err := tls12Openers(h.Version, c.suite, c.sec.Master, h.ClientRandom[:], h.ServerRandom[:], h.EncryptThenMAC)
	if err != nil {
		c.stop(StatusFailed)
		return false
	}
	c.d[0].op, c.d[1].op = cl, sv
	return true
}

// tls13Record opens a protected TLS 1.3 record.
func (c *Conn) tls13Record(dir int, hdr, body []byte) {
	d := &c.d[dir]
	if c.sec == nil && !c.tls13Keys() {
		return
	}
	if d.early != nil {
		// 0-RTT data comes before the client's handshake flight; once a
		// record opens with the handshake keys, early data is over.
		if p, err := d.early.open(c.plain[:0], hdr, body, d.seq); err == nil {
			c.plainGrow(p)
			d.seq++
			c.opened = true
			c.inner(dir, p)
			return
		}
		d.early, d.seq = nil, 0
	}
	if d.op == nil {
		c.stop(StatusNoKeys)
		return
	}
	p, err := d.op.open(c.plain[:0], hdr, body, d.seq)
	if err != nil {
		if dir == 0 && !d.app {
			// Early data the server rejected, sent before the client knew
			// it: skipped by trial decryption as the server does (RFC 8446 4.2.10).
			return
		}
		c.stop(StatusFailed)
		return
	}
	c.plainGrow(p)
	d.seq++
	c.opened = true
	c.inner(dir, p)
}

// inner handles the plaintext of a TLS 1.3 record: content, then the real
// type, then zero padding.
func (c *Conn) inner(dir int, p []byte) {
	i := len(p) - 1
	for i >= 0 && p[i] == 0 {
		i--
	}
	if i < 0 {
		c.stop(StatusFailed)
		return
	}
	switch p[i] {
	case typeAppData:
		c.deliver(dir, p[:i])
	case typeHandshake:
		c.handshake(dir, p[:i])
	}
}

// tls13Keys looks the connection's secrets up and sets the handshake
// keys of both directions.
func (c *Conn) tls13Keys() bool {
	h := &c.hello
	if c.suite == nil || c.suite.kind == kindCBC {
		c.stop(StatusCipher)
		return false
	}
	c.sec = c.keys.Lookup(h.ClientRandom[:])
	if c.sec == nil || len(c.sec.ServerHandshake) == 0 && len(c.sec.ServerTraffic) == 0 {
		c.sec = nil
		c.stop(StatusNoKeys)
		return false
	}
	for dir, secret := range [2][]byte{c.sec.ClientHandshake, c.sec.ServerHandshake} {
		if len(secret) == 0 {
			continue
		}
		if !c.setSecret(dir, secret, false) {
			return false
		}
	}
	if len(c.sec.ClientEarly) > 0 {
		o, err := newTLS13Opener(c.suite, c.sec.ClientEarly)
		if err == nil {
			c.d[0].early = o
		}
	}
	return true
}

func (c *Conn) setSecret(dir int, secret []byte, app bool) bool {
	o, err := newTLS13Opener(c.suite, secret)
	if err != nil {
		c.stop(StatusFailed)
		return false
	}
	d := &c.d[dir]
	d.op, d.secret, d.seq, d.app = o, secret, 0, app
	return true
}

// handshake gathers handshake messages (possibly spread over records)
// and acts on the ones that matter.
func (c *Conn) handshake(dir int, b []byte) {
	d := &c.d[dir]
	if len(d.hs) > 0 {
		if len(d.hs)+len(b) > maxHandshake+4 {
			d.hs = d.hs[:0] // a huge certificate chain: not needed
			return
		}
		d.hs = append(d.hs, b...)
		b = d.hs
	}
	for len(b) >= 4 {
		n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		if len(b) < 4+n {
			break
		}
		msg := b[:4+n]
		b = b[4+n:]
		if !c.message(dir, msg) {
			return
		}
	}
	switch {
	case len(b) == 0:
		d.hs = d.hs[:0]
	case len(d.hs) == 0:
		d.hs = append(d.hs, b...)
	default:
		d.hs = append(d.hs[:0], b...)
	}
}

// message acts on one handshake message; false when the connection stopped.
func (c *Conn) message(dir int, msg []byte) bool {
	tls13 := c.hello.HaveServer && c.hello.Version == 0x0304
	switch msg[0] {
	case hsClientHello:
		if dir == 0 {
			c.hello.clientHello(msg)
		}
	case hsServerHello:
		if dir == 1 && (!c.hello.HaveServer || c.hello.retry) {
			if !c.hello.serverHello(msg) {
				c.stop(StatusNotTLS)
				return false
			}
			c.suite = suiteFor(c.hello.CipherSuite)
		}
	case hsEncryptedExtensions:
		// TLS 1.3 moved the server's ALPN choice here.
		if dir == 1 && len(msg) >= 6 {
			c.hello.extensions(msg[6:])
		}
	case hsFinished:
		if tls13 && !c.d[dir].app && c.sec != nil {
			secret := c.sec.ClientTraffic
			if dir == 1 {
				secret = c.sec.ServerTraffic
			}
			if len(secret) == 0 {
				c.stop(StatusNoKeys)
				return false
			}
			return c.setSecret(dir, secret, true)
		}
	case hsKeyUpdate:
		if tls13 && c.d[dir].app {
			next := expandLabel(c.suite.hash, c.d[dir].secret, "traffic upd", c.suite.hash().Size())
			return c.setSecret(dir, next, true)
		}
	}
	return true
}

// helloRetryRandom is the ServerHello random of a HelloRetryRequest (RFC 8446 4.1.3).
var helloRetryRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// clientHello takes the random of the first ClientHello (a second one,
// after a HelloRetryRequest, repeats it).
func (h *Hello) clientHello(msg []byte) {
	if !h.HaveClient && len(msg) >= 4+2+32 {
		copy(h.ClientRandom[:], msg[6:38])
		h.HaveClient = true
	}
}

// serverHello reads a ServerHello: random, version, suite, extensions.
func (h *Hello) serverHello(msg []byte) bool {
	b := msg[4:]
	if len(b) < 2+32+1 {
		return false
	}
	h.Version = binary.BigEndian.Uint16(b)
	copy(h.ServerRandom[:], b[2:34])
	sid := int(b[34])
	b = b[35:]
	if len(b) < sid+3 {
		return false
	}
	b = b[sid:]
	h.CipherSuite = binary.BigEndian.Uint16(b)
	b = b[3:] // suite, compression
	h.retry = h.ServerRandom == helloRetryRandom
	h.HaveServer = true
	if len(b) < 2 {
		return true
	}
	return h.extensions(b[2:min(len(b), 2+int(binary.BigEndian.Uint16(b)))])
}

// extensions reads the extensions of a ServerHello or EncryptedExtensions.
func (h *Hello) extensions(exts []byte) bool {
	for len(exts) >= 4 {
		typ, n := binary.BigEndian.Uint16(exts), int(binary.BigEndian.Uint16(exts[2:]))
		if len(exts) < 4+n {
			return false
		}
		v := exts[4 : 4+n]
		exts = exts[4+n:]
		switch typ {
		case 0x002b: // supported_versions: the selected version
			if len(v) == 2 {
				h.Version = binary.BigEndian.Uint16(v)
			}
		case 0x0010: // ALPN: one protocol
			if len(v) >= 3 && int(v[2]) == len(v)-3 {
				h.ALPN = string(v[3:])
			}
		case 0x0016: // encrypt_then_mac
			h.EncryptThenMAC = true
		}
	}
	if h.Version == 0x0304 {
		h.EncryptThenMAC = false
	}
	return true
}
