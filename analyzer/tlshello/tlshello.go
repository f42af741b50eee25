// Package tlshello parses TLS ClientHello and ServerHello messages and computes
// the JA3 and JA4 fingerprints of a ClientHello.
//
// The parsers work on untrusted capture bytes: they never panic, never loop
// more than the input length allows and allocate at most in proportion to the
// input.
package tlshello

import (
	"errors"
	"fmt"
)

// ErrIncomplete means more stream bytes are needed before the message can be parsed.
var ErrIncomplete = errors.New("tlshello: incomplete message")

// ErrNotTLS means the bytes are not a TLS handshake record stream (or not the
// handshake message asked for); more bytes will not change that.
var ErrNotTLS = errors.New("tlshello: not a TLS handshake")

// Handshake message types.
const (
	TypeClientHello uint8 = 1
	TypeServerHello uint8 = 2
)

// Extension types the parsers look at.
const (
	extServerName          uint16 = 0x0000
	extSupportedGroups     uint16 = 0x000a
	extECPointFormats      uint16 = 0x000b
	extSignatureAlgs       uint16 = 0x000d
	extALPN                uint16 = 0x0010
	extSupportedVersions   uint16 = 0x002b
	extEncryptedClientHelo uint16 = 0xfe0d
)

const (
	recordChangeCipherSpec = 20
	recordHandshake        = 22
	recordHeaderLen        = 5
	// maxRecordLen is the largest TLSCiphertext length (RFC 8446 5.2); a
	// larger length field means the bytes are not TLS.
	maxRecordLen = 16384 + 2048
	// maxHelloLen bounds a hello message: real ones are a few KiB even with
	// post-quantum key shares; a bigger length field is garbage.
	maxHelloLen = 1 << 16
)

// ClientHello holds the fields fingerprints and logs need, in wire order.
type ClientHello struct {
	LegacyVersion     uint16   // client_version field
	CipherSuites      []uint16 // wire order, GREASE included
	Extensions        []uint16 // extension types, wire order, GREASE included
	SupportedGroups   []uint16 // extension 10, wire order
	ECPointFormats    []uint8  // extension 11
	SignatureAlgs     []uint16 // extension 13, wire order
	SupportedVersions []uint16 // extension 43, wire order
	ALPN              []string // extension 16, wire order
	ServerName        string   // extension 0, host_name; "" when absent
	HasECH            bool     // encrypted_client_hello (0xfe0d) present: ServerName is the outer SNI
	// HasCookie is set for a DTLS ClientHello with a cookie: the second
	// one, answering the server's HelloVerifyRequest.
	HasCookie bool
}

// ServerHello holds what ssl.log reports of the server's answer.
type ServerHello struct {
	LegacyVersion     uint16
	SelectedVersion   uint16 // from supported_versions when present, else LegacyVersion
	CipherSuite       uint16
	ALPN              string
	HelloRetryRequest bool
}

// ReadHandshake extracts the first handshake message of type msgType (1 ClientHello,
// 2 ServerHello) from the start of a TLS record stream (records may fragment the
// message). It returns ErrIncomplete when the stream ends before the message does,
// and an error when the bytes are not TLS.
//
// Handshake messages of other types before the wanted one are skipped, and
// so are ChangeCipherSpec records between messages (TLS 1.3's middlebox
// compatibility mode sends one before the ClientHello that answers a
// HelloRetryRequest). The result aliases stream when the message lies in one
// record and is a fresh copy when it was fragmented.
func ReadHandshake(stream []byte, msgType uint8) ([]byte, error) {
	msg, _, err := NextHandshake(stream, msgType)
	return msg, err
}

// NextHandshake is ReadHandshake that also returns how many bytes of stream
// the records up to the end of the message take, so that a caller can read
// the next message (the second ClientHello after a HelloRetryRequest) from
// what follows.
func NextHandshake(stream []byte, msgType uint8) (msg []byte, n int, err error) {
	var (
		cur    []byte // handshake bytes gathered so far
		joined []byte // owns cur once a second record was needed
		off    int    // start of the next unread message in cur
		pos    int    // next record header in stream
	)
	for {
		// Any complete messages in what we have?
		for len(cur)-off >= 4 {
			typ := cur[off]
			n := int(cur[off+1])<<16 | int(cur[off+2])<<8 | int(cur[off+3])
			if n > maxHelloLen && (typ == msgType || typ == TypeClientHello || typ == TypeServerHello) {
				return nil, 0, fmt.Errorf("%w: handshake message type %d claims %d bytes", ErrNotTLS, typ, n)
			}
			if len(cur)-off < 4+n {
				break
			}
			if typ == msgType {
				return cur[off : off+4+n], pos, nil
			}
			off += 4 + n
		}
		rest := stream[pos:]
		if len(rest) == 0 {
			return nil, 0, ErrIncomplete
		}
		// Check what is there of the header before asking for more, so
		// non-TLS bytes fail at once instead of waiting for more data.
		ccs := rest[0] == recordChangeCipherSpec && off == len(cur)
		if rest[0] != recordHandshake && !ccs {
			return nil, 0, fmt.Errorf("%w: record content type %d at offset %d, want handshake (22)", ErrNotTLS, rest[0], pos)
		}
		if len(rest) >= 2 && rest[1] != 3 {
			return nil, 0, fmt.Errorf("%w: record version major %d at offset %d", ErrNotTLS, rest[1], pos)
		}
		if len(rest) < recordHeaderLen {
			return nil, 0, ErrIncomplete
		}
		rlen := int(rest[3])<<8 | int(rest[4])
		if rlen > maxRecordLen {
			return nil, 0, fmt.Errorf("%w: record length %d at offset %d exceeds %d", ErrNotTLS, rlen, pos, maxRecordLen)
		}
		if len(rest) < recordHeaderLen+rlen {
			return nil, 0, ErrIncomplete
		}
		payload := rest[recordHeaderLen : recordHeaderLen+rlen]
		pos += recordHeaderLen + rlen
		switch {
		case ccs:
			// Between messages: nothing to gather.
		case cur == nil || off == len(cur):
			// Nothing pending: this record's payload starts fresh and can
			// be returned without copying.
			cur, off, joined = payload, 0, nil
		default:
			if joined == nil {
				joined = make([]byte, 0, len(cur)-off+len(payload))
				joined = append(joined, cur[off:]...)
			} else {
				joined = joined[off:]
			}
			joined = append(joined, payload...)
			cur, off = joined, 0
		}
	}
}

// reader is a bounds-checked cursor over a byte slice.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) u8() uint8 {
	if len(r.b) < 1 {
		r.ok = false
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if len(r.b) < 2 {
		r.ok = false
		r.b = nil
		return 0
	}
	v := uint16(r.b[0])<<8 | uint16(r.b[1])
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.ok = false
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// vec8 and vec16 read a vector with a 1- or 2-byte length prefix.
func (r *reader) vec8() []byte  { return r.bytes(int(r.u8())) }
func (r *reader) vec16() []byte { return r.bytes(int(r.u16())) }

// helloBody checks the handshake header and returns the body.
func helloBody(msg []byte, want uint8) ([]byte, error) {
	if len(msg) < 4 {
		return nil, fmt.Errorf("%w: handshake message of %d bytes is shorter than its header", ErrIncomplete, len(msg))
	}
	if msg[0] != want {
		return nil, fmt.Errorf("%w: handshake type %d, want %d", ErrNotTLS, msg[0], want)
	}
	n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if len(msg)-4 < n {
		return nil, fmt.Errorf("%w: handshake body has %d of %d bytes", ErrIncomplete, len(msg)-4, n)
	}
	return msg[4 : 4+n], nil
}

func malformed(what string) error {
	return fmt.Errorf("%w: malformed %s", ErrNotTLS, what)
}

// ParseClientHello parses a handshake message (type byte, 3-byte length, body).
func ParseClientHello(msg []byte) (*ClientHello, error) {
	ch := new(ClientHello)
	if err := ch.Parse(msg); err != nil {
		return nil, err
	}
	return ch, nil
}

// Parse parses a ClientHello handshake message into ch, reusing the capacity
// of ch's slices so a long-lived ClientHello parses without allocating its
// number lists. The result does not alias msg.
func (ch *ClientHello) Parse(msg []byte) error { return ch.ParseInterned(msg, newString) }

// ParseInterned is Parse with the server name and the ALPN names made by
// intern, which must return a string equal to string(b): a caller parsing
// many hellos can share the strings that repeat.
func (ch *ClientHello) ParseInterned(msg []byte, intern func(b []byte) string) error {
	body, err := helloBody(msg, TypeClientHello)
	if err != nil {
		return err
	}
	return ch.parseBody(body, intern, false)
}

// parseBody parses a ClientHello's body; a DTLS ClientHello has a cookie
// after the session id.
func (ch *ClientHello) parseBody(body []byte, intern func(b []byte) string, dtls bool) error {
	r := reader{b: body, ok: true}
	legacy := r.u16()
	r.bytes(32) // random
	sid := r.vec8()
	ch.HasCookie = false
	if dtls {
		ch.HasCookie = len(r.vec8()) > 0
	}
	ciphers := r.vec16()
	r.vec8() // compression methods
	if !r.ok || len(sid) > 32 {
		return malformed("ClientHello fixed fields")
	}
	if len(ciphers)%2 != 0 {
		return malformed("ClientHello cipher suite list (odd length)")
	}
	var exts []byte
	if len(r.b) > 0 { // extensions are optional (pre-TLS 1.2 clients)
		exts = r.vec16()
		if !r.ok {
			return malformed("ClientHello extensions length")
		}
	}

	// First pass: validate the extension block and find the parts we keep.
	var sni, groups, pointFormats, sigAlgs, versions, alpn []byte
	hasECH := false
	nExt := 0
	er := reader{b: exts, ok: true}
	for len(er.b) > 0 {
		typ := er.u16()
		data := er.vec16()
		if !er.ok {
			return malformed("ClientHello extension framing")
		}
		nExt++
		switch typ {
		case extServerName:
			sni = data
		case extSupportedGroups:
			groups = data
		case extECPointFormats:
			pointFormats = data
		case extSignatureAlgs:
			sigAlgs = data
		case extALPN:
			alpn = data
		case extSupportedVersions:
			versions = data
		case extEncryptedClientHelo:
			hasECH = true
		}
	}
	groups = innerVec16(groups)
	sigAlgs = innerVec16(sigAlgs)
	versions = innerVec8(versions)
	pointFormats = innerVec8(pointFormats)

	ch.LegacyVersion = legacy
	ch.HasECH = hasECH
	ch.reserve(len(ciphers)/2, nExt, len(groups)/2, len(sigAlgs)/2, len(versions)/2)
	ch.CipherSuites = appendU16s(ch.CipherSuites[:0], ciphers)
	ch.Extensions = ch.Extensions[:0]
	er = reader{b: exts, ok: true}
	for len(er.b) > 0 {
		ch.Extensions = append(ch.Extensions, er.u16())
		er.vec16()
	}
	ch.SupportedGroups = appendU16s(ch.SupportedGroups[:0], groups)
	ch.SignatureAlgs = appendU16s(ch.SignatureAlgs[:0], sigAlgs)
	ch.SupportedVersions = appendU16s(ch.SupportedVersions[:0], versions)
	ch.ECPointFormats = append(ch.ECPointFormats[:0], pointFormats...)
	ch.ServerName = parseSNI(sni, intern)
	ch.ALPN = parseALPN(ch.ALPN[:0], alpn, intern)
	return nil
}

func newString(b []byte) string { return string(b) }

// reserve makes sure the five number lists have room for the given counts,
// carving them from one allocation when any is too small. The three-index
// slices keep an append to one list from running into the next.
func (ch *ClientHello) reserve(ciphers, exts, groups, sigAlgs, versions int) {
	if cap(ch.CipherSuites) >= ciphers && cap(ch.Extensions) >= exts && cap(ch.SupportedGroups) >= groups &&
		cap(ch.SignatureAlgs) >= sigAlgs && cap(ch.SupportedVersions) >= versions {
		return
	}
	back := make([]uint16, ciphers+exts+groups+sigAlgs+versions)
	carve := func(n int) []uint16 {
		s := back[:0:n]
		back = back[n:]
		return s
	}
	ch.CipherSuites = carve(ciphers)
	ch.Extensions = carve(exts)
	ch.SupportedGroups = carve(groups)
	ch.SignatureAlgs = carve(sigAlgs)
	ch.SupportedVersions = carve(versions)
}

// innerVec16 returns the contents of a vector with a 2-byte length, clipped
// to the bytes present (lenient: a bad inner length keeps what is there, as
// fingerprinting tools do).
func innerVec16(b []byte) []byte {
	if len(b) < 2 {
		return nil
	}
	n := int(b[0])<<8 | int(b[1])
	b = b[2:]
	if n < len(b) {
		b = b[:n]
	}
	return b[:len(b)&^1]
}

func innerVec8(b []byte) []byte {
	if len(b) < 1 {
		return nil
	}
	n := int(b[0])
	b = b[1:]
	if n < len(b) {
		b = b[:n]
	}
	return b
}

func appendU16s(dst []uint16, b []byte) []uint16 {
	if need := len(dst) + len(b)/2; cap(dst) < need {
		nd := make([]uint16, len(dst), need)
		copy(nd, dst)
		dst = nd
	}
	for i := 0; i+1 < len(b); i += 2 {
		dst = append(dst, uint16(b[i])<<8|uint16(b[i+1]))
	}
	return dst
}

// parseSNI returns the first host_name entry of a server_name extension.
func parseSNI(data []byte, intern func([]byte) string) string {
	r := reader{b: data, ok: true}
	list := r.vec16()
	lr := reader{b: list, ok: true}
	for len(lr.b) > 0 {
		typ := lr.u8()
		name := lr.vec16()
		if !lr.ok {
			return ""
		}
		if typ == 0 {
			return intern(name)
		}
	}
	return ""
}

// parseALPN appends the protocol names of an ALPN extension. One string, made
// by intern, holds all names, so the list costs at most two allocations
// however long it is.
func parseALPN(dst []string, data []byte, intern func([]byte) string) []string {
	if len(data) < 2 {
		return dst
	}
	all := intern(alpnList(data))
	for i := 0; i < len(all); {
		n := int(all[i])
		if i+1+n > len(all) {
			break
		}
		dst = append(dst, all[i+1:i+1+n])
		i += 1 + n
	}
	return dst
}

// alpnList returns the protocol name list of an ALPN extension, clipped to
// the bytes present.
func alpnList(data []byte) []byte {
	r := reader{b: data, ok: true}
	list := r.vec16()
	if !r.ok {
		list = data[2:]
	}
	return list
}

// firstALPN is parseALPN(nil, data, intern)[0]; ok is false when that list
// is empty.
func firstALPN(data []byte, intern func([]byte) string) (name string, ok bool) {
	if len(data) < 2 {
		return "", false
	}
	list := alpnList(data)
	if len(list) == 0 || 1+int(list[0]) > len(list) {
		return "", false
	}
	return intern(list[1 : 1+int(list[0])]), true
}

// DTLS record and handshake header sizes (RFC 6347 4.1, 4.2.2).
const (
	dtlsRecordHeaderLen    = 13
	dtlsHandshakeHeaderLen = 12
)

// ParseDTLSClientHello parses the ClientHello at the start of a DTLS
// datagram (DTLS 1.0, 1.2 or 1.3 record framing). A ClientHello fragmented
// over several records is not read (ErrIncomplete).
func ParseDTLSClientHello(datagram []byte) (*ClientHello, error) {
	b := datagram
	if len(b) < dtlsRecordHeaderLen+dtlsHandshakeHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes are no DTLS handshake", ErrIncomplete, len(b))
	}
	if b[0] != recordHandshake || b[1] != 0xfe {
		return nil, fmt.Errorf("%w: DTLS record type %d version %#x", ErrNotTLS, b[0], b[1])
	}
	rlen := int(b[11])<<8 | int(b[12])
	rec := b[dtlsRecordHeaderLen:]
	if len(rec) < rlen {
		return nil, fmt.Errorf("%w: DTLS record of %d bytes has %d", ErrIncomplete, rlen, len(rec))
	}
	h := rec[:rlen]
	if len(h) < dtlsHandshakeHeaderLen || h[0] != TypeClientHello {
		return nil, fmt.Errorf("%w: not a DTLS ClientHello", ErrNotTLS)
	}
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	off := int(h[6])<<16 | int(h[7])<<8 | int(h[8])
	frag := int(h[9])<<16 | int(h[10])<<8 | int(h[11])
	if off != 0 || frag != n || len(h) < dtlsHandshakeHeaderLen+n {
		return nil, fmt.Errorf("%w: DTLS ClientHello fragment %d+%d of %d", ErrIncomplete, off, frag, n)
	}
	ch := new(ClientHello)
	if err := ch.parseBody(h[dtlsHandshakeHeaderLen:dtlsHandshakeHeaderLen+n], newString, true); err != nil {
		return nil, err
	}
	return ch, nil
}

// helloRetryRandom is the ServerHello.random value that marks a
// HelloRetryRequest (RFC 8446 4.1.3: SHA-256 of "HelloRetryRequest").
var helloRetryRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// ParseServerHello parses a handshake message (type byte, 3-byte length, body).
func ParseServerHello(msg []byte) (*ServerHello, error) {
	sh := new(ServerHello)
	if err := sh.ParseInterned(msg, newString); err != nil {
		return nil, err
	}
	return sh, nil
}

// ParseInterned is ParseServerHello into sh, with the ALPN name made by
// intern as for ClientHello.ParseInterned.
func (sh *ServerHello) ParseInterned(msg []byte, intern func(b []byte) string) error {
	body, err := helloBody(msg, TypeServerHello)
	if err != nil {
		return err
	}
	r := reader{b: body, ok: true}
	*sh = ServerHello{}
	sh.LegacyVersion = r.u16()
	random := r.bytes(32)
	sid := r.vec8()
	sh.CipherSuite = r.u16()
	r.u8() // compression method
	if !r.ok || len(sid) > 32 {
		return malformed("ServerHello fixed fields")
	}
	sh.HelloRetryRequest = [32]byte(random) == helloRetryRandom
	sh.SelectedVersion = sh.LegacyVersion
	if len(r.b) == 0 {
		return nil
	}
	exts := r.vec16()
	if !r.ok {
		return malformed("ServerHello extensions length")
	}
	er := reader{b: exts, ok: true}
	for len(er.b) > 0 {
		typ := er.u16()
		data := er.vec16()
		if !er.ok {
			return malformed("ServerHello extension framing")
		}
		switch typ {
		case extSupportedVersions:
			if len(data) >= 2 {
				sh.SelectedVersion = uint16(data[0])<<8 | uint16(data[1])
			}
		case extALPN:
			if name, ok := firstALPN(data, intern); ok {
				sh.ALPN = name
			}
		}
	}
	return nil
}

// IsGREASE reports whether v is one of the RFC 8701 GREASE values
// (0x0a0a, 0x1a1a, … 0xfafa).
func IsGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// VersionName returns "TLSv12", "TLSv13", … as Zeek's ssl.log writes it.
func VersionName(v uint16) string {
	switch v {
	case 0x0002:
		return "SSLv2"
	case 0x0300:
		return "SSLv3"
	case 0x0301:
		return "TLSv10"
	case 0x0302:
		return "TLSv11"
	case 0x0303:
		return "TLSv12"
	case 0x0304:
		return "TLSv13"
	case 0xfeff:
		return "DTLSv10"
	case 0xfefd:
		return "DTLSv12"
	case 0xfefc:
		return "DTLSv13"
	}
	// Zeek's default for unknown values (base/protocols/ssl/consts.zeek),
	// integer arithmetic kept as Zeek has it.
	if v/0xff == 0x7f {
		return fmt.Sprintf("TLSv13-draft%d", v%0x7f)
	}
	return fmt.Sprintf("unknown-%d", v)
}
