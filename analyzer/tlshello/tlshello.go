// Package tlshello parses TLS ClientHello and ServerHello messages and computes
// the JA3 and JA4 fingerprints of a ClientHello.
package tlshello

import "errors"

// ErrNotImplemented marks a stub awaiting its implementation.
var ErrNotImplemented = errors.New("tlshello: not implemented")

// ErrIncomplete means more stream bytes are needed before the message can be parsed.
var ErrIncomplete = errors.New("tlshello: incomplete message")

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
func ReadHandshake(stream []byte, msgType uint8) ([]byte, error) { return nil, ErrNotImplemented }

// ParseClientHello parses a handshake message (type byte, 3-byte length, body).
func ParseClientHello(msg []byte) (*ClientHello, error) { return nil, ErrNotImplemented }

// ParseServerHello parses a handshake message (type byte, 3-byte length, body).
func ParseServerHello(msg []byte) (*ServerHello, error) { return nil, ErrNotImplemented }

// JA3 returns the JA3 string and its MD5 in hex.
func JA3(ch *ClientHello) (full, hash string) { return "", "" }

// JA4 returns the JA4 fingerprint; transport is 't' for TCP, 'q' for QUIC, 'd' for DTLS.
func JA4(ch *ClientHello, transport byte) string { return "" }

// VersionName returns "TLSv12", "TLSv13", … as Zeek's ssl.log writes it.
func VersionName(v uint16) string { return "" }
