package tlshello

import (
	"errors"
	"testing"
)

// TestDTLSClientHello reads DTLS ClientHellos built from the JA4 spec's
// example hello: the first without a cookie, the second, answering a
// HelloVerifyRequest, with one; fragments are not read.
func TestDTLSClientHello(t *testing.T) {
	msg := buildClientHello(helloSpec{legacy: 0xfefd, ciphers: []uint16{0xc02b, 0xc02f}, exts: []uint16{0, 10, 13, 43},
		sni: "dtls.test", sigalgs: []uint16{0x0403}, versions: []uint16{0xfefc, 0xfefd}, groups: []uint16{29}})
	for _, cookie := range [][]byte{nil, {1, 2, 3, 4}} {
		ch, err := ParseDTLSClientHello(dtlsDatagram(msg, cookie))
		if err != nil {
			t.Fatal(err)
		}
		if ch.ServerName != "dtls.test" || ch.HasCookie != (cookie != nil) || len(ch.CipherSuites) != 2 {
			t.Errorf("cookie %x: %+v", cookie, ch)
		}
		// The newest of DTLS 1.3 (0xfefc) and 1.2 (0xfefd) is 1.3.
		if j := JA4(ch, 'd'); j[:4] != "dd3d" {
			t.Errorf("JA4 %s", j)
		}
	}
	frag := dtlsDatagram(msg, nil)
	frag[13+11] = 10 // fragment length below the message length
	if _, err := ParseDTLSClientHello(frag); !errors.Is(err, ErrIncomplete) {
		t.Errorf("a fragment: %v", err)
	}
}

// TestNextHandshakeAfterRetry reads a second ClientHello after a
// ChangeCipherSpec record, as a TLS 1.3 client in middlebox compatibility
// mode sends it after a HelloRetryRequest, and tells where it ended.
func TestNextHandshakeAfterRetry(t *testing.T) {
	hello := records(seedSpec(), 3)
	stream := append(append(append([]byte{}, hello...), 20, 3, 3, 0, 1, 1), hello...)
	_, n, err := NextHandshake(stream, TypeClientHello)
	if err != nil || n != len(hello) {
		t.Fatalf("first hello: %d bytes, %v; want %d", n, err, len(hello))
	}
	msg, n2, err := NextHandshake(stream[n:], TypeClientHello)
	if err != nil || n2 != len(stream)-n || msg[0] != TypeClientHello {
		t.Fatalf("second hello after the ChangeCipherSpec: %d bytes, %v", n2, err)
	}
	if _, _, err := NextHandshake(append([]byte{21, 3, 3, 0, 2, 2, 40}, hello...), TypeClientHello); !errors.Is(err, ErrNotTLS) {
		t.Errorf("an alert record first: %v", err)
	}
}
