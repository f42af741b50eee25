// Package tlsdecrypt decrypts TLS 1.0–1.3 records carried over TCP and QUIC
// v1/v2 packets with secrets from an NSS key log (the SSLKEYLOGFILE format
// browsers, curl, OpenSSL and Go's crypto/tls write, and what pcapng
// Decryption Secrets Blocks carry).
//
// It is a passive reader: it never verifies certificates or Finished
// messages, only opens records with the keys the log gives. Everything
// works on untrusted capture bytes: no panics, bounded buffers, and a
// connection whose bytes do not make sense simply stops being decrypted.
package tlsdecrypt

import (
	"bytes"
	"encoding/hex"
	"fmt"
)

// SecretsTypeTLSKeyLog is the pcapng Decryption Secrets Block type of an
// NSS key log ("TLSK").
const SecretsTypeTLSKeyLog = 0x544c534b

// Secrets are what a key log holds for one connection, by label.
type Secrets struct {
	Master          []byte // CLIENT_RANDOM: the TLS 1.0–1.2 master secret
	ClientEarly     []byte // CLIENT_EARLY_TRAFFIC_SECRET (TLS 1.3 0-RTT)
	ClientHandshake []byte // CLIENT_HANDSHAKE_TRAFFIC_SECRET
	ServerHandshake []byte // SERVER_HANDSHAKE_TRAFFIC_SECRET
	ClientTraffic   []byte // CLIENT_TRAFFIC_SECRET_0
	ServerTraffic   []byte // SERVER_TRAFFIC_SECRET_0
}

// Keys are the secrets of a key log, by client random. The zero value is
// empty and ready to use.
type Keys struct {
	m map[[32]byte]*Secrets
}

// Len is the number of connections (client randoms) with secrets.
func (k *Keys) Len() int { return len(k.m) }

// Lookup returns the secrets for a ClientHello random, or nil.
func (k *Keys) Lookup(random []byte) *Secrets {
	if k == nil || len(random) != 32 {
		return nil
	}
	return k.m[[32]byte(random)]
}

// maxKeyLogLine bounds one line: a label, 64 hex digits and at most 128 of
// secret (SHA-512 sized) fit comfortably.
const maxKeyLogLine = 512

// Add reads key log text and adds its secrets. Lines it does not know (RSA
// pre-master secrets, exporter secrets, later labels) are skipped; a
// malformed line is skipped too, and the first one is returned as the error
// ("line N: …") after the rest of the text has been read, so one bad line
// loses only itself.
func (k *Keys) Add(text []byte) (added int, err error) {
	if k.m == nil {
		k.m = map[[32]byte]*Secrets{}
	}
	for n := 1; len(text) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		ok, lerr := k.addLine(line)
		if lerr != nil && err == nil {
			err = fmt.Errorf("line %d: %w", n, lerr)
		}
		if ok {
			added++
		}
	}
	return added, err
}

func (k *Keys) addLine(line []byte) (bool, error) {
	if len(line) > maxKeyLogLine {
		return false, fmt.Errorf("key log line of %d bytes is too long", len(line))
	}
	f := bytes.Fields(line)
	if len(f) != 3 {
		return false, fmt.Errorf("want LABEL CLIENT_RANDOM SECRET, got %d fields", len(f))
	}
	label := string(f[0])
	var slot func(*Secrets) *[]byte
	switch label {
	case "CLIENT_RANDOM":
		slot = func(s *Secrets) *[]byte { return &s.Master }
	case "CLIENT_EARLY_TRAFFIC_SECRET":
		slot = func(s *Secrets) *[]byte { return &s.ClientEarly }
	case "CLIENT_HANDSHAKE_TRAFFIC_SECRET":
		slot = func(s *Secrets) *[]byte { return &s.ClientHandshake }
	case "SERVER_HANDSHAKE_TRAFFIC_SECRET":
		slot = func(s *Secrets) *[]byte { return &s.ServerHandshake }
	case "CLIENT_TRAFFIC_SECRET_0":
		slot = func(s *Secrets) *[]byte { return &s.ClientTraffic }
	case "SERVER_TRAFFIC_SECRET_0":
		slot = func(s *Secrets) *[]byte { return &s.ServerTraffic }
	default:
		return false, nil // RSA, EXPORTER_SECRET, ECH secrets, …: not needed here
	}
	var random [32]byte
	if len(f[1]) != 64 {
		return false, fmt.Errorf("%s: client random has %d hex digits, want 64", label, len(f[1]))
	}
	if _, err := hex.Decode(random[:], f[1]); err != nil {
		return false, fmt.Errorf("%s: client random: %w", label, err)
	}
	if len(f[2]) < 32 || len(f[2])%2 != 0 {
		return false, fmt.Errorf("%s: secret has %d hex digits", label, len(f[2]))
	}
	secret := make([]byte, len(f[2])/2)
	if _, err := hex.Decode(secret, f[2]); err != nil {
		return false, fmt.Errorf("%s: secret: %w", label, err)
	}
	s := k.m[random]
	if s == nil {
		s = &Secrets{}
		k.m[random] = s
	}
	*slot(s) = secret
	return true, nil
}
