package tlsdecrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

var errOpen = errors.New("tlsdecrypt: record does not decrypt")

// opener removes one direction's record protection. open returns the
// plaintext of the record (header hdr, body payload, sequence number seq),
// written into dst's storage; dst must not overlap payload.
type opener interface {
	open(dst, hdr, payload []byte, seq uint64) ([]byte, error)
}

func newAEAD(s *suite, key []byte) (cipher.AEAD, error) {
	if s.kind == kindChaCha {
		return chacha20poly1305.New(key)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// xorNonce sets nonce to iv XOR the big-endian sequence number (TLS 1.3,
// ChaCha20 in TLS 1.2, QUIC).
func xorNonce(nonce, iv []byte, seq uint64) {
	copy(nonce, iv)
	for i := 0; i < 8; i++ {
		nonce[len(nonce)-1-i] ^= byte(seq >> (8 * i))
	}
}

// tls13Opener opens TLS 1.3 records: the AEAD over the record header.
type tls13Opener struct {
	aead  cipher.AEAD
	iv    []byte
	nonce [12]byte
}

func newTLS13Opener(s *suite, secret []byte) (*tls13Opener, error) {
	a, err := newAEAD(s, expandLabel(s.hash, secret, "key", s.keyLen))
	if err != nil {
		return nil, err
	}
	return &tls13Opener{aead: a, iv: expandLabel(s.hash, secret, "iv", 12)}, nil
}

func (o *tls13Opener) open(dst, hdr, payload []byte, seq uint64) ([]byte, error) {
	xorNonce(o.nonce[:], o.iv, seq)
	p, err := o.aead.Open(dst[:0], o.nonce[:], payload, hdr)
	if err != nil {
		return nil, errOpen
	}
	return p, nil
}

// tls12AEAD opens TLS 1.2 AES-GCM (explicit nonce, RFC 5288) and
// ChaCha20-Poly1305 (RFC 7905) records.
type tls12AEAD struct {
	aead     cipher.AEAD
	iv       []byte // 4 bytes fixed (GCM) or 12 (ChaCha20)
	explicit bool
	nonce    [12]byte
	ad       [13]byte
}

func (o *tls12AEAD) open(dst, hdr, payload []byte, seq uint64) ([]byte, error) {
	if o.explicit {
		if len(payload) < 8 {
			return nil, errOpen
		}
		copy(o.nonce[:4], o.iv)
		copy(o.nonce[4:], payload[:8])
		payload = payload[8:]
	} else {
		xorNonce(o.nonce[:], o.iv, seq)
	}
	n := len(payload) - o.aead.Overhead()
	if n < 0 {
		return nil, errOpen
	}
	additional(o.ad[:], seq, hdr, n)
	p, err := o.aead.Open(dst[:0], o.nonce[:], payload, o.ad[:])
	if err != nil {
		return nil, errOpen
	}
	return p, nil
}

// additional fills the TLS 1.0–1.2 additional data and MAC prefix:
// sequence number, type, version, length.
func additional(ad []byte, seq uint64, hdr []byte, n int) {
	binary.BigEndian.PutUint64(ad, seq)
	ad[8], ad[9], ad[10] = hdr[0], hdr[1], hdr[2]
	binary.BigEndian.PutUint16(ad[11:], uint16(n))
}

// cbcOpener opens CBC records with an HMAC: MAC-then-encrypt, or
// encrypt-then-MAC (RFC 7366) when the server agreed to it. TLS 1.0 chains
// the IV from record to record; later versions send it explicitly.
type cbcOpener struct {
	block   cipher.Block
	mac     hash.Hash
	macLen  int
	chained []byte // TLS 1.0: the IV for the next record
	etm     bool
	ad      [13]byte
	macSum  []byte
	ivCopy  [16]byte
}

func (o *cbcOpener) open(dst, hdr, payload []byte, seq uint64) ([]byte, error) {
	bs := o.block.BlockSize()
	if o.etm {
		if len(payload) < o.macLen {
			return nil, errOpen
		}
		body, tag := payload[:len(payload)-o.macLen], payload[len(payload)-o.macLen:]
		if !o.verify(seq, hdr, body, tag) {
			return nil, errOpen
		}
		payload = body
	}
	iv := o.chained
	if iv == nil {
		if len(payload) < bs {
			return nil, errOpen
		}
		iv, payload = payload[:bs], payload[bs:]
	}
	if len(payload) == 0 || len(payload)%bs != 0 {
		return nil, errOpen
	}
	if cap(dst) < len(payload) {
		dst = make([]byte, len(payload))
	}
	p := dst[:len(payload)]
	copy(o.ivCopy[:], iv) // iv may lie in payload's predecessor record storage
	if o.chained != nil {
		defer copy(o.chained, payload[len(payload)-bs:])
	}
	cipher.NewCBCDecrypter(o.block, o.ivCopy[:bs]).CryptBlocks(p, payload)
	pad := int(p[len(p)-1])
	if pad+1 > len(p) {
		return nil, errOpen
	}
	for _, b := range p[len(p)-1-pad:] {
		if int(b) != pad {
			return nil, errOpen
		}
	}
	p = p[:len(p)-1-pad]
	if o.etm {
		return p, nil
	}
	if len(p) < o.macLen {
		return nil, errOpen
	}
	p, tag := p[:len(p)-o.macLen], p[len(p)-o.macLen:]
	if !o.verify(seq, hdr, p, tag) {
		return nil, errOpen
	}
	return p, nil
}

// verify checks a record MAC over sequence number, header fields and data.
func (o *cbcOpener) verify(seq uint64, hdr, data, tag []byte) bool {
	additional(o.ad[:], seq, hdr, len(data))
	o.mac.Reset()
	o.mac.Write(o.ad[:])
	o.mac.Write(data)
	return hmac.Equal(o.mac.Sum(o.macSum[:0]), tag)
}

// tls12Openers derives both directions' openers from a TLS 1.0–1.2 master
// secret (RFC 5246 6.3: the key block).
func tls12Openers(version uint16, s *suite, master, clientRandom, serverRandom []byte, etm bool) (client, server opener, err error) {
	macLen, ivLen := 0, 0
	switch s.kind {
	case kindGCM:
		ivLen = 4
	case kindChaCha:
		ivLen = 12
	case kindCBC:
		macLen = s.macLen
		if version <= 0x0301 {
			ivLen = 16
		}
	}
	seed := append(append([]byte{}, serverRandom...), clientRandom...)
	kb := prf(version, s.hash, master, "key expansion", seed, 2*(macLen+s.keyLen+ivLen))
	take := func(n int) []byte {
		b := kb[:n:n]
		kb = kb[n:]
		return b
	}
	cMAC, sMAC := take(macLen), take(macLen)
	cKey, sKey := take(s.keyLen), take(s.keyLen)
	cIV, sIV := take(ivLen), take(ivLen)
	mk := func(mac, key, iv []byte) (opener, error) {
		if s.kind == kindCBC {
			b, err := aes.NewCipher(key)
			if err != nil {
				return nil, err
			}
			o := &cbcOpener{block: b, mac: hmac.New(s.mac, mac), macLen: s.macLen, etm: etm}
			if ivLen > 0 {
				o.chained = append([]byte{}, iv...)
			}
			return o, nil
		}
		a, err := newAEAD(s, key)
		if err != nil {
			return nil, err
		}
		return &tls12AEAD{aead: a, iv: iv, explicit: s.kind == kindGCM}, nil
	}
	if client, err = mk(cMAC, cKey, cIV); err != nil {
		return nil, nil, err
	}
	server, err = mk(sMAC, sKey, sIV)
	return client, server, err
}
