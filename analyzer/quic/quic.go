// Package quic decrypts QUIC Initial packets (RFC 9001 initial keys, QUIC v1 and
// v2) so the ClientHello they carry can be fingerprinted like TLS over TCP.
//
// Initial packets are protected with keys anyone can derive from the
// destination connection ID, so a passive observer can read the CRYPTO frames
// of a client's first flight. Everything here works on untrusted bytes: no
// panics, bounded loops, allocation proportional to the datagram.
package quic

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/hkdf"
)

// ErrNotInitial means the datagram is not a client Initial packet of a known version.
var ErrNotInitial = errors.New("quic: not a client Initial packet")

// ErrDecrypt means a packet looked like a client Initial but did not
// authenticate with the client Initial keys (a server Initial, a corrupted
// packet, or keys derived from a connection ID the client did not choose).
var ErrDecrypt = errors.New("quic: Initial packet does not decrypt with client Initial keys")

// Known versions.
const (
	Version1 uint32 = 0x00000001 // RFC 9000
	Version2 uint32 = 0x6b3343cf // RFC 9369
)

// CryptoFrame is a CRYPTO frame's data at its offset in the Initial crypto stream.
type CryptoFrame struct {
	Offset uint64
	Data   []byte
}

// Initial is a decrypted client Initial packet.
type Initial struct {
	Version uint32
	DCID    []byte // destination connection ID: the key that derives the keys
	SCID    []byte
	Frames  []CryptoFrame
}

// versionParams are the per-version constants of initial packet protection.
type versionParams struct {
	salt              []byte
	keyLabel, ivLabel string
	hpLabel           string
	initialType       byte // long header packet type bits (0x30 of byte 0) of an Initial
}

var (
	// RFC 9001 5.2.
	saltV1 = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	// RFC 9369 3.3.1.
	saltV2 = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

func paramsFor(version uint32) (versionParams, bool) {
	var p versionParams
	switch version {
	case Version1:
		p.salt, p.keyLabel, p.ivLabel, p.hpLabel, p.initialType = saltV1, "quic key", "quic iv", "quic hp", 0
	case Version2:
		// RFC 9369 3.2 and 3.3: Initial is type 0b01, labels carry "quicv2".
		p.salt, p.keyLabel, p.ivLabel, p.hpLabel, p.initialType = saltV2, "quicv2 key", "quicv2 iv", "quicv2 hp", 1
	default:
		return p, false
	}
	return p, true
}

// hkdfExpandLabel is TLS 1.3's HKDF-Expand-Label (RFC 8446 7.1) with an
// empty context, as QUIC uses it.
func hkdfExpandLabel(secret []byte, label string, length int) []byte {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, 0) // empty context
	out := make([]byte, length)
	// Expand cannot fail for lengths this small.
	_, _ = hkdf.Expand(sha256.New, secret, info).Read(out)
	return out
}

// clientKeys are the client Initial packet protection keys for one DCID.
type clientKeys struct {
	aead cipher.AEAD
	iv   []byte
	hp   cipher.Block
}

func deriveClientKeys(p versionParams, dcid []byte) (clientKeys, error) {
	initial := hkdf.Extract(sha256.New, dcid, p.salt)
	secret := hkdfExpandLabel(initial, "client in", 32)
	key := hkdfExpandLabel(secret, p.keyLabel, 16)
	iv := hkdfExpandLabel(secret, p.ivLabel, 12)
	hpKey := hkdfExpandLabel(secret, p.hpLabel, 16)
	block, err := aes.NewCipher(key)
	if err != nil {
		return clientKeys{}, fmt.Errorf("quic: initial key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return clientKeys{}, fmt.Errorf("quic: initial AEAD: %w", err)
	}
	hp, err := aes.NewCipher(hpKey)
	if err != nil {
		return clientKeys{}, fmt.Errorf("quic: header protection key: %w", err)
	}
	return clientKeys{aead: aead, iv: iv, hp: hp}, nil
}

// readVarint decodes a QUIC variable-length integer (RFC 9000 16).
func readVarint(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0, false
	}
	v = uint64(b[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v, n, true
}

// longHeader is the unprotected part of a long header packet.
type longHeader struct {
	first      byte
	version    uint32
	dcid, scid []byte
	pnOffset   int // offset of the packet number in the packet
	end        int // offset just past this packet (pnOffset + Length)
}

// parseLongHeader reads a long header at the start of b.
func parseLongHeader(b []byte) (longHeader, error) {
	var h longHeader
	if len(b) < 7 || b[0]&0x80 == 0 {
		// Short header (1-RTT) packets are most of UDP/443: reject them
		// without allocating.
		return h, ErrNotInitial
	}
	h.first = b[0]
	h.version = binary.BigEndian.Uint32(b[1:5])
	i := 5
	dl := int(b[i])
	i++
	if dl > 20 || len(b) < i+dl+1 {
		return h, fmt.Errorf("%w: bad destination connection ID length %d", ErrNotInitial, dl)
	}
	h.dcid = b[i : i+dl]
	i += dl
	sl := int(b[i])
	i++
	if sl > 20 || len(b) < i+sl {
		return h, fmt.Errorf("%w: bad source connection ID length %d", ErrNotInitial, sl)
	}
	h.scid = b[i : i+sl]
	i += sl
	h.pnOffset = i // for packet types without token/length this is unused
	return h, nil
}

// ParseInitials decrypts every client Initial packet coalesced in one UDP datagram.
//
// Other coalesced long header packets (0-RTT, Handshake) are skipped by their
// length; parsing stops at a short header packet or trailing padding. It
// returns the Initials that decrypted; the error is nil when at least one did.
// The frames' Data point into buffers owned by the result, never into datagram,
// which is not modified.
func ParseInitials(datagram []byte) ([]Initial, error) {
	return parseInitials(datagram, nil)
}

// ParseInitialsWithDCID is ParseInitials with the keys derived from odcid,
// the destination connection ID of the client's first Initial. After the
// server's first Initial the client addresses the server's chosen connection
// ID, but the Initial keys stay derived from the original one (RFC 9001 5.2),
// so later client Initials only decrypt this way. An empty odcid behaves like
// ParseInitials.
func ParseInitialsWithDCID(datagram, odcid []byte) ([]Initial, error) {
	if len(odcid) == 0 {
		odcid = nil
	}
	return parseInitials(datagram, odcid)
}

func parseInitials(datagram, odcid []byte) ([]Initial, error) {
	var (
		out      []Initial
		firstErr error
		keys     clientKeys
		keysFor  []byte // DCID the keys were derived for
		keysVer  uint32
		haveKeys bool
	)
	rest := datagram
	for len(rest) > 0 {
		h, err := parseLongHeader(rest)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			break
		}
		p, known := paramsFor(h.version)
		if !known {
			if firstErr == nil {
				firstErr = ErrNotInitial // e.g. version negotiation; no allocation
			}
			break
		}
		ptype := h.first >> 4 & 0x03
		isInitial := ptype == p.initialType
		i := h.pnOffset
		if isInitial {
			tokLen, n, ok := readVarint(rest[i:])
			if !ok || tokLen > uint64(len(rest)-i-n) {
				if firstErr == nil {
					firstErr = fmt.Errorf("%w: bad token length", ErrNotInitial)
				}
				break
			}
			i += n + int(tokLen)
		} else if retry := ptypeRetry(h.version); ptype == retry {
			// Retry packets have no Length field; nothing follows them.
			break
		}
		length, n, ok := readVarint(rest[i:])
		if !ok || length > uint64(len(rest)-i-n) {
			if firstErr == nil {
				firstErr = fmt.Errorf("%w: packet length exceeds datagram", ErrNotInitial)
			}
			break
		}
		i += n
		h.pnOffset = i
		h.end = i + int(length)
		pkt := rest[:h.end]
		rest = rest[h.end:]
		if !isInitial {
			continue
		}
		keyID := h.dcid
		if odcid != nil {
			keyID = odcid
		}
		if !haveKeys || keysVer != h.version || string(keysFor) != string(keyID) {
			keys, err = deriveClientKeys(p, keyID)
			if err != nil {
				return nil, err
			}
			keysFor, keysVer, haveKeys = keyID, h.version, true
		}
		in, err := openInitial(pkt, h, keys)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		out = append(out, in)
	}
	if len(out) == 0 {
		if firstErr == nil {
			firstErr = fmt.Errorf("%w: empty datagram", ErrNotInitial)
		}
		return nil, firstErr
	}
	return out, nil
}

// ptypeRetry returns the long header type bits of a Retry packet.
func ptypeRetry(version uint32) byte {
	if version == Version2 {
		return 0 // RFC 9369 3.2
	}
	return 3
}

// openInitial removes header protection, decrypts and parses one Initial.
func openInitial(pkt []byte, h longHeader, k clientKeys) (Initial, error) {
	// RFC 9001 5.4.2: the sample starts 4 bytes after the packet number
	// offset, as if the packet number were 4 bytes long.
	if len(pkt) < h.pnOffset+4+16 {
		return Initial{}, fmt.Errorf("%w: packet too short to sample", ErrDecrypt)
	}
	var mask [16]byte
	k.hp.Encrypt(mask[:], pkt[h.pnOffset+4:h.pnOffset+4+16])
	first := pkt[0] ^ mask[0]&0x0f // long header: low 4 bits protected
	pnLen := int(first&0x03) + 1

	// One buffer: unprotected header (the AAD) then plaintext; the input is
	// left untouched.
	hdrLen := h.pnOffset + pnLen
	buf := make([]byte, len(pkt))
	copy(buf, pkt[:hdrLen])
	buf[0] = first
	var pn uint64
	for j := 0; j < pnLen; j++ {
		buf[h.pnOffset+j] ^= mask[1+j]
		pn = pn<<8 | uint64(buf[h.pnOffset+j])
	}
	// The first packets of a connection carry small numbers, so the
	// truncated packet number is the full one (RFC 9000 A.3 with no
	// packet received yet).
	var nonce [12]byte
	copy(nonce[:], k.iv)
	for j := 0; j < 8; j++ {
		nonce[11-j] ^= byte(pn >> (8 * j))
	}
	ct := pkt[hdrLen:]
	if len(ct) < k.aead.Overhead() {
		return Initial{}, fmt.Errorf("%w: payload shorter than the AEAD tag", ErrDecrypt)
	}
	plain, err := k.aead.Open(buf[hdrLen:hdrLen], nonce[:], ct, buf[:hdrLen])
	if err != nil {
		return Initial{}, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	in := Initial{
		Version: h.version,
		DCID:    buf[1+5 : 1+5+len(h.dcid)],
		SCID:    buf[1+5+len(h.dcid)+1 : 1+5+len(h.dcid)+1+len(h.scid)],
	}
	in.Frames = parseFrames(plain)
	return in, nil
}

// parseFrames returns the CRYPTO frames of an Initial payload. It stops at
// the first frame type an Initial may not carry or at malformed framing;
// what came before is kept.
func parseFrames(b []byte) []CryptoFrame {
	var frames []CryptoFrame
	for len(b) > 0 {
		typ, n, ok := readVarint(b)
		if !ok {
			return frames
		}
		b = b[n:]
		switch typ {
		case 0x00: // PADDING
		case 0x01: // PING
		case 0x02, 0x03: // ACK, ACK with ECN counts
			b, ok = skipACK(b, typ == 0x03)
		case 0x06: // CRYPTO
			var off, length uint64
			off, n, ok = readVarint(b)
			if !ok {
				return frames
			}
			b = b[n:]
			length, n, ok = readVarint(b)
			if !ok || length > uint64(len(b)-n) {
				return frames
			}
			frames = append(frames, CryptoFrame{Offset: off, Data: b[n : n+int(length)]})
			b = b[n+int(length):]
		case 0x1c, 0x1d: // CONNECTION_CLOSE (transport, application)
			b, ok = skipVarints(b, 1) // error code
			if ok && typ == 0x1c {
				b, ok = skipVarints(b, 1) // frame type
			}
			if ok {
				var rl uint64
				rl, n, ok = readVarint(b)
				ok = ok && rl <= uint64(len(b)-n)
				if ok {
					b = b[n+int(rl):]
				}
			}
		default:
			return frames
		}
		if !ok {
			return frames
		}
	}
	return frames
}

func skipVarints(b []byte, count int) ([]byte, bool) {
	for ; count > 0; count-- {
		_, n, ok := readVarint(b)
		if !ok {
			return nil, false
		}
		b = b[n:]
	}
	return b, true
}

// skipACK skips an ACK frame body (RFC 9000 19.3). Each range consumes at
// least two bytes, so a huge range count ends at the end of the payload.
func skipACK(b []byte, ecn bool) ([]byte, bool) {
	b, ok := skipVarints(b, 2) // largest acknowledged, ack delay
	if !ok {
		return nil, false
	}
	ranges, n, ok := readVarint(b)
	if !ok {
		return nil, false
	}
	b = b[n:]
	if b, ok = skipVarints(b, 1); !ok { // first ACK range
		return nil, false
	}
	if ranges > uint64(len(b)/2) {
		return nil, false
	}
	if b, ok = skipVarints(b, 2*int(ranges)); !ok {
		return nil, false
	}
	if ecn {
		return skipVarints(b, 3)
	}
	return b, true
}
