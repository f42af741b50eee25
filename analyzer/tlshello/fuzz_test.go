package tlshello

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// seedStreams returns the recorded real client streams (testdata/*.bin) and
// synthetic edge cases as fuzz seeds.
func seedStreams(f *testing.F) [][]byte {
	f.Helper()
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.bin"))
	var seeds [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	if len(seeds) == 0 {
		f.Fatal("no testdata/*.bin seeds")
	}
	return append(seeds, records(seedSpec(), 7), []byte{22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff})
}

// seedSpec is a ClientHello with every list the fingerprints read.
func seedSpec() []byte {
	return buildClientHello(helloSpec{
		legacy: 0x0303, ciphers: []uint16{0x0a0a, 0x1301}, exts: []uint16{0, 10, 11, 13, 16, 43, 0xfe0d},
		sni: "x.test", alpn: []string{"h2", "\xab"}, sigalgs: []uint16{0x0403}, versions: []uint16{0x0304}, groups: []uint16{29}, points: []uint8{0},
	})
}

func FuzzReadHandshake(f *testing.F) {
	for _, s := range seedStreams(f) {
		f.Add(s, uint8(1))
	}
	f.Add(append([]byte{20, 3, 3, 0, 1, 1}, records(seedSpec(), 2)...), uint8(1)) // ChangeCipherSpec first (after a HelloRetryRequest)
	f.Fuzz(func(t *testing.T, stream []byte, typ uint8) {
		if _, n, err := NextHandshake(stream, typ); err == nil && (n <= 0 || n > len(stream)) {
			t.Fatalf("NextHandshake consumed %d of %d bytes", n, len(stream))
		}
		msg, err := ReadHandshake(stream, typ)
		if err != nil {
			if msg != nil {
				t.Fatal("message with error")
			}
			if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrNotTLS) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(msg) < 4 || msg[0] != typ || len(msg) != 4+(int(msg[1])<<16|int(msg[2])<<8|int(msg[3])) {
			t.Fatalf("bad message framing: % x", msg[:min(8, len(msg))])
		}
		if len(msg) > len(stream) {
			t.Fatal("message longer than the stream")
		}
	})
}

func FuzzParseClientHello(f *testing.F) {
	for _, s := range seedStreams(f) {
		if msg, err := ReadHandshake(s, TypeClientHello); err == nil {
			f.Add(msg)
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		// The same bytes as a DTLS datagram's ClientHello body.
		if d, err := ParseDTLSClientHello(dtlsDatagram(msg, nil)); err == nil && len(JA4(d, 'd')) != 36 {
			t.Fatal("DTLS JA4")
		}
		ch, err := ParseClientHello(msg)
		if err != nil {
			return
		}
		// Fingerprints of anything that parsed must be well formed.
		if j := JA4(ch, 't'); len(j) != 36 {
			t.Fatalf("JA4 %q", j)
		}
		_ = JA4Raw(ch, 'q')
		if _, h := JA3(ch); len(h) != 32 {
			t.Fatalf("JA3 hash %q", h)
		}
		if len(ch.ServerName) > len(msg) || len(ch.CipherSuites) > len(msg)/2 {
			t.Fatal("parsed more than the input holds")
		}
	})
}

func FuzzParseServerHello(f *testing.F) {
	// A ServerHello built by hand plus one with extensions.
	sh := []byte{2, 0, 0, 0x2e, 3, 3}
	sh = append(sh, helloRetryRandom[:]...)
	sh = append(sh, 0, 0x13, 0x01, 0, 0, 0x06, 0, 0x2b, 0, 2, 3, 4)
	f.Add(sh)
	f.Add([]byte{2, 0, 0, 0x26, 3, 3})
	f.Fuzz(func(t *testing.T, msg []byte) {
		sh, err := ParseServerHello(msg)
		if err == nil && sh == nil {
			t.Fatal("nil ServerHello without error")
		}
		if err == nil && len(sh.ALPN) > len(msg) {
			t.Fatal("ALPN longer than input")
		}
	})
}

// FuzzFirstALPN: the ServerHello's shortcut for the first ALPN name agrees
// with the full list parser.
func FuzzFirstALPN(f *testing.F) {
	f.Add([]byte{0, 3, 2, 'h', '2'})
	f.Add([]byte{0, 9, 0, 8, 'h', 't', 't', 'p', '/', '1', '.', '1'})
	f.Add([]byte{0, 5, 3, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		names := parseALPN(nil, data, newString)
		name, ok := firstALPN(data, newString)
		if ok != (len(names) > 0) || ok && name != names[0] {
			t.Fatalf("% x: firstALPN = %q, %v; parseALPN = %q", data, name, ok, names)
		}
	})
}

// dtlsDatagram wraps a TLS ClientHello handshake message into a DTLS 1.2
// record and handshake header, with a cookie after the session id.
func dtlsDatagram(msg, cookie []byte) []byte {
	if len(msg) < 4+2+32+1 {
		return msg
	}
	body := msg[4:]
	sidEnd := 2 + 32 + 1 + int(body[34])
	if sidEnd > len(body) {
		return msg
	}
	b := append(append(append([]byte{}, body[:sidEnd]...), byte(len(cookie))), cookie...)
	b = append(b, body[sidEnd:]...)
	n := len(b)
	h := []byte{msg[0], byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}
	rec := append(h, b...)
	return append([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(rec) >> 8), byte(len(rec))}, rec...)
}
