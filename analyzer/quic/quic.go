// Package quic decrypts QUIC Initial packets (RFC 9001 initial keys, QUIC v1 and
// v2) so the ClientHello they carry can be fingerprinted like TLS over TCP.
package quic

import "errors"

// ErrNotImplemented marks a stub awaiting its implementation.
var ErrNotImplemented = errors.New("quic: not implemented")

// ErrNotInitial means the datagram is not a client Initial packet of a known version.
var ErrNotInitial = errors.New("quic: not a client Initial packet")

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

// ParseInitials decrypts every client Initial packet coalesced in one UDP datagram.
func ParseInitials(datagram []byte) ([]Initial, error) { return nil, ErrNotImplemented }

// CryptoStream assembles CRYPTO frames of one connection (several Initials, in any
// order) into the contiguous crypto stream from offset 0.
type CryptoStream struct {
	buf []byte
}

// Add adds a frame; data beyond max bytes from offset 0 is ignored.
func (s *CryptoStream) Add(f CryptoFrame, max int) {}

// Bytes returns the contiguous bytes from offset 0 (a ClientHello handshake message
// starts there: type 1, 3-byte length, body).
func (s *CryptoStream) Bytes() []byte { return s.buf }
