package quic

import (
	"crypto/sha256"

	"golang.org/x/crypto/hkdf"
)

// ReadVarint decodes a QUIC variable-length integer (RFC 9000 section 16):
// its value and length in bytes; ok is false when b is too short.
func ReadVarint(b []byte) (v uint64, n int, ok bool) { return readVarint(b) }

// Long header packet types, whatever bits a version gives them.
const (
	TypeInitial = iota
	TypeZeroRTT
	TypeHandshake
	TypeRetry
)

// LongType returns the type of a long header packet of a known version from
// its first byte (RFC 9000 17.2; RFC 9369 3.2 shuffles the bits); ok is
// false for an unknown version.
func LongType(version uint32, first byte) (typ int, ok bool) {
	bits := int(first>>4) & 3
	switch version {
	case Version1:
		return bits, true
	case Version2:
		return [4]int{TypeRetry, TypeInitial, TypeZeroRTT, TypeHandshake}[bits], true
	}
	return 0, false
}

// Labels returns the HKDF labels of version's packet protection: key, IV,
// header protection and key update (RFC 9001 5.1 and 6.1; RFC 9369 3.3.2).
func Labels(version uint32) (key, iv, hp, ku string, ok bool) {
	switch version {
	case Version1:
		return "quic key", "quic iv", "quic hp", "quic ku", true
	case Version2:
		return "quicv2 key", "quicv2 iv", "quicv2 hp", "quicv2 ku", true
	}
	return "", "", "", "", false
}

// InitialSecrets derives the client and server Initial secrets from the
// destination connection ID of the client's first Initial (RFC 9001 5.2).
func InitialSecrets(version uint32, dcid []byte) (client, server []byte, ok bool) {
	p, ok := paramsFor(version)
	if !ok {
		return nil, nil, false
	}
	initial := hkdf.Extract(sha256.New, dcid, p.salt)
	return hkdfExpandLabel(initial, "client in", 32), hkdfExpandLabel(initial, "server in", 32), true
}
