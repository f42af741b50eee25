package tlsdecrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"

	"golang.org/x/crypto/chacha20"

	"github.com/firstboot/firstboot/analyzer/quic"
)

// Bounds on what a QUIC connection keeps while decrypting.
const (
	maxQUICStreams  = 1024    // streams followed at once
	maxQUICHeld     = 1 << 20 // out-of-order stream bytes held per connection
	maxQUICCIDs     = 16      // connection IDs remembered per direction
	maxCryptoStream = 64 << 10
)

// quicKeys protect the packets of one direction in one packet number space.
type quicKeys struct {
	aead   cipher.AEAD
	iv     []byte
	secret []byte // for the next key phase (1-RTT)
	nonce  [12]byte
}

// headerMask computes header protection masks (RFC 9001 5.4).
type headerMask struct {
	block  cipher.Block // AES suites
	chacha []byte       // ChaCha20 key
}

func (h *headerMask) mask(sample []byte, out *[16]byte) bool {
	if h.block != nil {
		h.block.Encrypt(out[:], sample)
		return true
	}
	c, err := chacha20.NewUnauthenticatedCipher(h.chacha, sample[4:16])
	if err != nil {
		return false
	}
	c.SetCounter(binary.LittleEndian.Uint32(sample))
	clear(out[:5])
	c.XORKeyStream(out[:5], out[:5])
	return true
}

func newQUICKeys(version uint32, s *suite, secret []byte) (*quicKeys, *headerMask, error) {
	keyL, ivL, hpL, _, _ := quic.Labels(version)
	a, err := newAEAD(s, expandLabel(s.hash, secret, keyL, s.keyLen))
	if err != nil {
		return nil, nil, err
	}
	k := &quicKeys{aead: a, iv: expandLabel(s.hash, secret, ivL, 12), secret: secret}
	hp := expandLabel(s.hash, secret, hpL, s.keyLen)
	if s.kind == kindChaCha {
		return k, &headerMask{chacha: hp}, nil
	}
	b, err := aes.NewCipher(hp)
	if err != nil {
		return nil, nil, err
	}
	return k, &headerMask{block: b}, nil
}

// phaseKeys are one direction's 1-RTT keys: the current phase, and the
// previous and next ones for packets around a key update (RFC 9001 6).
type phaseKeys struct {
	hp               *headerMask // header protection does not change with the phase
	cur, prev, next  *quicKeys
	phase            byte // key phase bit of cur
	largest          int64
	early            *quicKeys // client: 0-RTT
	earlyHP          *headerMask
	initial          *quicKeys
	initialHP        *headerMask
	largestInitial   int64
	cids             [][]byte // destination connection IDs this direction's short headers carry
	cidLen           int
	haveCID, started bool
}

// QUICConn decrypts one QUIC connection (v1 or v2). Feed it the UDP
// payloads of both directions (0: client to server, 1: server to client) in
// capture order; stream data comes out in order through the callback given
// to NewQUICConn.
type QUICConn struct {
	keys   *Keys
	out    func(dir int, stream uint64, data []byte, fin bool)
	ver    uint32 // version of the Initial keys
	odcid  []byte
	d      [2]phaseKeys
	crypto [2]quic.CryptoStream
	hello  Hello
	suite  *suite
	sec    *Secrets
	status string
	opened bool
	app    bool
	plain  []byte

	streams map[streamKey]*qstream
	held    int
}

type streamKey struct {
	id  uint64
	dir uint8
}

// qstream is one direction of one stream being put in order.
type qstream struct {
	next    uint64
	pending []chunk
	done    bool
}

type chunk struct {
	off  uint64
	data []byte
	fin  bool
}

// NewQUICConn returns a connection decrypting with keys; out receives the
// bytes of each stream and direction in order, valid only during the call.
func NewQUICConn(keys *Keys, out func(dir int, stream uint64, data []byte, fin bool)) *QUICConn {
	q := &QUICConn{keys: keys, out: out, streams: map[streamKey]*qstream{}}
	q.d[0].largest, q.d[1].largest = -1, -1
	q.d[0].largestInitial, q.d[1].largestInitial = -1, -1
	return q
}

// Hello returns what the hellos told so far.
func (q *QUICConn) Hello() *Hello { return &q.hello }

// Status is as for Conn.
func (q *QUICConn) Status() string {
	if q.status == StatusPending && q.opened {
		return StatusDecrypted
	}
	return q.status
}

// Done reports whether the connection is no longer being decrypted.
func (q *QUICConn) Done() bool { return q.status != StatusPending }

// Close ends the connection and settles its status.
func (q *QUICConn) Close() {
	if q.status != StatusPending {
		return
	}
	switch {
	case !q.hello.HaveClient || !q.hello.HaveServer:
		q.status = StatusNoHello
	case q.opened && q.app:
		q.status = StatusDecrypted
	case q.keys.Lookup(q.hello.ClientRandom[:]) == nil:
		q.status = StatusNoKeys
	default:
		q.status = StatusHandshake
	}
	q.streams = nil
}

func (q *QUICConn) stop(status string) {
	q.status = status
	q.streams = nil
	q.crypto[0].Reset()
	q.crypto[1].Reset()
}

// Datagram takes one UDP payload of direction dir.
func (q *QUICConn) Datagram(dir int, b []byte) {
	for len(b) > 0 && q.status == StatusPending {
		if b[0]&0x80 == 0 {
			if b[0]&0x40 != 0 {
				q.short(dir, b)
			}
			return // a short header packet runs to the end of the datagram
		}
		n := q.long(dir, b)
		if n <= 0 {
			return
		}
		b = b[n:]
	}
}

// long handles the long header packet at the start of b and returns its
// length (0: the rest of the datagram cannot be read).
func (q *QUICConn) long(dir int, b []byte) int {
	if len(b) < 7 {
		return 0
	}
	version := binary.BigEndian.Uint32(b[1:5])
	typ, ok := quic.LongType(version, b[0])
	if !ok {
		return 0 // version negotiation or unknown
	}
	i := 5
	dl := int(b[i])
	if dl > 20 || len(b) < i+1+dl+1 {
		return 0
	}
	dcid := b[i+1 : i+1+dl]
	i += 1 + dl
	sl := int(b[i])
	if sl > 20 || len(b) < i+1+sl {
		return 0
	}
	scid := b[i+1 : i+1+sl]
	i += 1 + sl
	// The source connection ID is what the peer's short headers will carry.
	q.addCID(1-dir, scid)
	if typ == quic.TypeRetry {
		return 0
	}
	if typ == quic.TypeInitial {
		tl, n, ok := quic.ReadVarint(b[i:])
		if !ok || tl > uint64(len(b)-i-n) {
			return 0
		}
		i += n + int(tl)
	}
	length, n, ok := quic.ReadVarint(b[i:])
	if !ok || length > uint64(len(b)-i-n) {
		return 0
	}
	pnOff := i + n
	end := pnOff + int(length)
	pkt := b[:end]
	switch typ {
	case quic.TypeInitial:
		q.initial(dir, version, dcid, pkt, pnOff)
	case quic.TypeZeroRTT:
		if dir == 0 && q.appReady(dir) && q.d[0].early != nil {
			if p, ok := q.openPacket(q.d[0].early, q.d[0].earlyHP, pkt, pnOff, 0x0f, &q.d[0].largest); ok {
				q.frames(dir, p)
			}
		}
	}
	return end
}

func (q *QUICConn) addCID(dir int, cid []byte) {
	d := &q.d[dir]
	for _, c := range d.cids {
		if string(c) == string(cid) {
			return
		}
	}
	if len(d.cids) >= maxQUICCIDs {
		return
	}
	d.cids = append(d.cids, append([]byte{}, cid...))
	if !d.haveCID {
		d.cidLen, d.haveCID = len(cid), true
	}
}

// initial opens an Initial packet and follows the hellos in its CRYPTO frames.
func (q *QUICConn) initial(dir int, version uint32, dcid, pkt []byte, pnOff int) {
	if q.odcid == nil {
		if dir != 0 {
			return
		}
		q.odcid = append([]byte{}, dcid...)
	}
	d := &q.d[dir]
	if d.initial == nil || q.ver != version {
		if !q.initialKeys(version, q.odcid) {
			return
		}
	}
	p, ok := q.openPacket(d.initial, d.initialHP, pkt, pnOff, 0x0f, &d.largestInitial)
	if !ok && dir == 0 && string(dcid) != string(q.odcid) {
		// After a Retry the client's keys come from the new connection ID.
		if !q.initialKeys(version, dcid) {
			return
		}
		if p, ok = q.openPacket(d.initial, d.initialHP, pkt, pnOff, 0x0f, &d.largestInitial); ok {
			q.odcid = append(q.odcid[:0], dcid...)
		}
	}
	if !ok {
		return
	}
	q.initialFrames(dir, p)
}

func (q *QUICConn) initialKeys(version uint32, dcid []byte) bool {
	cs, ss, ok := quic.InitialSecrets(version, dcid)
	if !ok {
		return false
	}
	for dir, secret := range [2][]byte{cs, ss} {
		k, hp, err := newQUICKeys(version, aes128GCM, secret)
		if err != nil {
			q.stop(StatusFailed)
			return false
		}
		q.d[dir].initial, q.d[dir].initialHP = k, hp
	}
	q.ver = version
	return true
}

// initialFrames takes the CRYPTO frames of an Initial: the ClientHello
// and the ServerHello.
func (q *QUICConn) initialFrames(dir int, p []byte) {
	forFrames(p, func(typ uint64, f []byte) {
		if typ != 0x06 {
			return
		}
		off, n, _ := quic.ReadVarint(f)
		_, m, _ := quic.ReadVarint(f[n:]) // the length: f ends with the data
		q.crypto[dir].Add(quic.CryptoFrame{Offset: off, Data: f[n+m:]}, maxCryptoStream)
	})
	s := q.crypto[dir].Bytes()
	if len(s) < 4 {
		return
	}
	need := 4 + (int(s[1])<<16 | int(s[2])<<8 | int(s[3]))
	if len(s) < need {
		return
	}
	switch {
	case dir == 0 && s[0] == hsClientHello:
		q.hello.clientHello(s[:need])
	case dir == 1 && s[0] == hsServerHello && !q.hello.HaveServer:
		if !q.hello.serverHello(s[:need]) {
			q.stop(StatusNotTLS)
			return
		}
		q.suite = suiteFor(q.hello.CipherSuite)
	}
	if q.hello.HaveClient && q.hello.HaveServer {
		q.crypto[0].Reset()
		q.crypto[1].Reset()
	}
}

// appReady sets up the 0-RTT and 1-RTT keys once the hellos are known; false
// when they cannot be (yet).
func (q *QUICConn) appReady(dir int) bool {
	if q.d[dir].started {
		return true
	}
	if !q.hello.HaveClient {
		return false
	}
	if q.sec == nil {
		q.sec = q.keys.Lookup(q.hello.ClientRandom[:])
		if q.sec == nil {
			if q.hello.HaveServer {
				q.stop(StatusNoKeys)
			}
			return false
		}
	}
	s := q.suite
	if s == nil {
		if !q.hello.HaveServer || dir != 0 || len(q.sec.ClientEarly) == 0 {
			if q.hello.HaveServer {
				q.stop(StatusCipher)
			}
			return false
		}
		s = suiteForEarly()
	}
	d := &q.d[dir]
	secret := q.sec.ClientTraffic
	if dir == 1 {
		secret = q.sec.ServerTraffic
	}
	if dir == 0 && len(q.sec.ClientEarly) > 0 && d.early == nil {
		if k, hp, err := newQUICKeys(q.ver, s, q.sec.ClientEarly); err == nil {
			d.early, d.earlyHP = k, hp
		}
	}
	if q.suite == nil || len(secret) == 0 {
		return d.early != nil
	}
	k, hp, err := newQUICKeys(q.ver, q.suite, secret)
	if err != nil {
		q.stop(StatusFailed)
		return false
	}
	d.cur, d.hp, d.started = k, hp, true
	return true
}

// suiteForEarly is the suite 0-RTT packets are guessed to use before the
// ServerHello tells: the one nearly every client offers first.
func suiteForEarly() *suite { return aes128GCM }

// short opens a 1-RTT packet.
func (q *QUICConn) short(dir int, b []byte) {
	d := &q.d[dir]
	if !q.appReady(dir) || d.cur == nil {
		return
	}
	cl := d.cidLen
	for _, c := range d.cids {
		if len(b) > len(c) && string(b[1:1+len(c)]) == string(c) {
			cl = len(c)
			break
		}
	}
	pnOff := 1 + cl
	if len(b) < pnOff+4+16 {
		return
	}
	var mask [16]byte
	if !d.hp.mask(b[pnOff+4:pnOff+4+16], &mask) {
		return
	}
	phase := (b[0] ^ mask[0]&0x1f) >> 2 & 1
	k := d.cur
	if phase != d.phase {
		// A key update, or a late packet from before one.
		if pn := q.peekPN(b, pnOff, &mask, d.largest); pn < d.largest && d.prev != nil {
			k = d.prev
		} else {
			if d.next == nil {
				d.next = q.nextKeys(d.cur)
			}
			k = d.next
		}
	}
	if k == nil {
		return
	}
	p, ok := q.openPacket(k, d.hp, b, pnOff, 0x1f, &d.largest)
	if !ok {
		return // not ours to open (a stateless reset, a corrupt datagram)
	}
	if k == d.next {
		d.prev, d.cur, d.next, d.phase = d.cur, d.next, nil, phase
	}
	q.frames(dir, p)
}

func (q *QUICConn) nextKeys(k *quicKeys) *quicKeys {
	_, _, _, ku, _ := quic.Labels(q.ver)
	next := expandLabel(q.suite.hash, k.secret, ku, q.suite.hash().Size())
	nk, _, err := newQUICKeys(q.ver, q.suite, next)
	if err != nil {
		return nil
	}
	return nk
}

// peekPN reads the packet number of a short header packet without opening it.
func (q *QUICConn) peekPN(b []byte, pnOff int, mask *[16]byte, largest int64) int64 {
	first := b[0] ^ mask[0]&0x1f
	pl := int(first&3) + 1
	var trunc uint64
	for j := 0; j < pl; j++ {
		trunc = trunc<<8 | uint64(b[pnOff+j]^mask[1+j])
	}
	return decodePN(largest, trunc, pl)
}

// decodePN recovers a full packet number from its truncated form (RFC 9000 A.3).
func decodePN(largest int64, trunc uint64, pnLen int) int64 {
	expected := largest + 1
	win := int64(1) << (8 * pnLen)
	hwin, mask := win/2, win-1
	cand := expected&^mask | int64(trunc)
	switch {
	case cand <= expected-hwin && cand < (1<<62)-win:
		return cand + win
	case cand > expected+hwin && cand >= win:
		return cand - win
	}
	return cand
}

// openPacket removes header protection (bits: 0x0f long, 0x1f short) and
// opens the payload of pkt, whose packet number starts at pnOff.
func (q *QUICConn) openPacket(k *quicKeys, hp *headerMask, pkt []byte, pnOff int, bits byte, largest *int64) ([]byte, bool) {
	if k == nil || hp == nil || len(pkt) < pnOff+4+16 {
		return nil, false
	}
	var mask [16]byte
	if !hp.mask(pkt[pnOff+4:pnOff+4+16], &mask) {
		return nil, false
	}
	first := pkt[0] ^ mask[0]&bits
	pl := int(first&3) + 1
	hdrLen := pnOff + pl
	if cap(q.plain) < len(pkt) {
		q.plain = make([]byte, len(pkt), max(len(pkt), 1500))
	}
	buf := q.plain[:len(pkt)]
	copy(buf, pkt[:hdrLen])
	buf[0] = first
	var trunc uint64
	for j := 0; j < pl; j++ {
		buf[pnOff+j] ^= mask[1+j]
		trunc = trunc<<8 | uint64(buf[pnOff+j])
	}
	pn := decodePN(*largest, trunc, pl)
	xorNonce(k.nonce[:], k.iv, uint64(pn))
	p, err := k.aead.Open(buf[hdrLen:hdrLen], k.nonce[:], pkt[hdrLen:], buf[:hdrLen])
	if err != nil {
		return nil, false
	}
	if pn > *largest {
		*largest = pn
	}
	q.opened = true
	return p, true
}

// frames takes the frames of a 0-RTT or 1-RTT packet: stream data, and the
// connection IDs the peer may address next.
func (q *QUICConn) frames(dir int, p []byte) {
	forFrames(p, func(typ uint64, f []byte) {
		switch {
		case typ >= 0x08 && typ <= 0x0f:
			q.streamFrame(dir, typ, f)
		case typ == 0x18: // NEW_CONNECTION_ID: the peer will address it
			_, n1, _ := quic.ReadVarint(f)
			_, n2, _ := quic.ReadVarint(f[n1:])
			l := int(f[n1+n2])
			q.addCID(1-dir, f[n1+n2+1:n1+n2+1+l])
		}
	})
}

// streamFrame puts a STREAM frame (its type, then the rest f, already
// bounds-checked by forFrames) in order.
func (q *QUICConn) streamFrame(dir int, typ uint64, f []byte) {
	id, n, _ := quic.ReadVarint(f)
	f = f[n:]
	var off uint64
	if typ&0x04 != 0 {
		off, n, _ = quic.ReadVarint(f)
		f = f[n:]
	}
	if typ&0x02 != 0 {
		l, n, _ := quic.ReadVarint(f)
		f = f[n : n+int(l)]
	}
	fin := typ&0x01 != 0
	k := streamKey{id, uint8(dir)}
	s := q.streams[k]
	if s == nil {
		if len(q.streams) >= maxQUICStreams {
			return
		}
		s = &qstream{}
		q.streams[k] = s
	}
	if s.done {
		return
	}
	q.app = true
	if off > s.next {
		if q.held+len(f) > maxQUICHeld {
			return
		}
		q.held += len(f)
		s.pending = append(s.pending, chunk{off: off, data: append([]byte{}, f...), fin: fin})
		return
	}
	q.deliver(dir, k, s, off, f, fin)
	for progress := true; progress && len(s.pending) > 0 && !s.done; {
		progress = false
		for i, c := range s.pending {
			if c.off <= s.next {
				s.pending = append(s.pending[:i], s.pending[i+1:]...)
				q.held -= len(c.data)
				q.deliver(dir, k, s, c.off, c.data, c.fin)
				progress = true
				break
			}
		}
	}
}

// deliver hands the part of data (at off <= s.next) beyond s.next on.
func (q *QUICConn) deliver(dir int, k streamKey, s *qstream, off uint64, data []byte, fin bool) {
	if skip := s.next - off; skip < uint64(len(data)) {
		data = data[skip:]
		s.next += uint64(len(data))
	} else {
		data = nil
	}
	if len(data) > 0 || fin {
		q.out(dir, k.id, data, fin)
	}
	if fin {
		s.done = true
		for _, c := range s.pending {
			q.held -= len(c.data)
		}
		s.pending = nil
	}
}

// forFrames calls fn with each frame's type and body (from after the type
// to the frame's end, whole) until the packet ends or a frame cannot be
// read (an unknown type, a length beyond the packet).
func forFrames(p []byte, fn func(typ uint64, f []byte)) {
	for len(p) > 0 {
		typ, n, ok := quic.ReadVarint(p)
		if !ok {
			return
		}
		rest := p[n:]
		l, ok := frameLen(typ, rest)
		if !ok {
			return
		}
		if typ != 0x00 {
			fn(typ, rest[:l])
		}
		p = rest[l:]
	}
}

// frameLen returns the length of a frame body after its type (RFC 9000 19,
// RFC 9221 DATAGRAM, ACK_FREQUENCY and IMMEDIATE_ACK).
func frameLen(typ uint64, b []byte) (int, bool) {
	vs := func(k int) (int, bool) { // k varints
		i := 0
		for ; k > 0; k-- {
			_, n, ok := quic.ReadVarint(b[i:])
			if !ok {
				return 0, false
			}
			i += n
		}
		return i, true
	}
	lenPrefixed := func(i int) (int, bool) { // a varint length at i, then that many bytes
		l, n, ok := quic.ReadVarint(b[i:])
		if !ok || l > uint64(len(b)-i-n) {
			return 0, false
		}
		return i + n + int(l), true
	}
	switch {
	case typ == 0x00 || typ == 0x01 || typ == 0x1e || typ == 0x1f: // PADDING, PING, HANDSHAKE_DONE, IMMEDIATE_ACK
		return 0, true
	case typ == 0x02 || typ == 0x03: // ACK
		i, ok := vs(2)
		if !ok {
			return 0, false
		}
		ranges, n, ok := quic.ReadVarint(b[i:])
		if !ok || ranges > uint64(len(b)) {
			return 0, false
		}
		i += n
		k := 1 + 2*int(ranges)
		if typ == 0x03 {
			k += 3
		}
		for ; k > 0; k-- {
			_, n, ok := quic.ReadVarint(b[i:])
			if !ok {
				return 0, false
			}
			i += n
		}
		return i, true
	case typ == 0x04: // RESET_STREAM
		return vs(3)
	case typ == 0x05: // STOP_SENDING
		return vs(2)
	case typ == 0x06: // CRYPTO
		i, ok := vs(1)
		if !ok {
			return 0, false
		}
		return lenPrefixed(i)
	case typ == 0x07: // NEW_TOKEN
		return lenPrefixed(0)
	case typ >= 0x08 && typ <= 0x0f: // STREAM
		k := 1
		if typ&0x04 != 0 {
			k++
		}
		i, ok := vs(k)
		if !ok {
			return 0, false
		}
		if typ&0x02 != 0 {
			return lenPrefixed(i)
		}
		return len(b), true
	case typ == 0x10 || typ == 0x12 || typ == 0x13 || typ == 0x14 || typ == 0x16 || typ == 0x17 || typ == 0x19:
		return vs(1)
	case typ == 0x11 || typ == 0x15:
		return vs(2)
	case typ == 0x18: // NEW_CONNECTION_ID
		i, ok := vs(2)
		if !ok || i >= len(b) {
			return 0, false
		}
		l := int(b[i])
		if l < 1 || l > 20 || len(b) < i+1+l+16 {
			return 0, false
		}
		return i + 1 + l + 16, true
	case typ == 0x1a || typ == 0x1b: // PATH_CHALLENGE, PATH_RESPONSE
		if len(b) < 8 {
			return 0, false
		}
		return 8, true
	case typ == 0x1c || typ == 0x1d: // CONNECTION_CLOSE
		k := 1
		if typ == 0x1c {
			k = 2
		}
		i, ok := vs(k)
		if !ok {
			return 0, false
		}
		return lenPrefixed(i)
	case typ == 0x30: // DATAGRAM to the end
		return len(b), true
	case typ == 0x31:
		return lenPrefixed(0)
	case typ == 0xaf: // ACK_FREQUENCY
		return vs(4)
	}
	return 0, false
}
