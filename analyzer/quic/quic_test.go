package quic

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/firstboot/firstboot/analyzer/tlshello"
)

var update = flag.Bool("update", false, "rewrite testdata/ captures from a live quic-go client")

func readHex(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	out, err := hex.DecodeString(strings.Join(strings.Fields(string(b)), ""))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// TestRFCVectors decrypts the client Initial of RFC 9001 Appendix A.2 (QUIC
// v1) and RFC 9369 Appendix A.2 (QUIC v2). Both RFCs give the same CRYPTO
// frame (testdata/rfc9001-a2-crypto-frame.hex: type 0x06, offset 0, length
// 0x40f1, then the ClientHello) followed by PADDING to 1162 bytes.
func TestRFCVectors(t *testing.T) {
	frame := readHex(t, "rfc9001-a2-crypto-frame.hex")
	if !bytes.Equal(frame[:4], []byte{0x06, 0x00, 0x40, 0xf1}) {
		t.Fatalf("crypto frame header %x", frame[:4])
	}
	wantData := frame[4:]
	dcid, _ := hex.DecodeString("8394c8f03e515708")
	for _, c := range []struct {
		file    string
		version uint32
	}{
		{"rfc9001-a2-client-initial.hex", Version1},
		{"rfc9369-a2-client-initial.hex", Version2},
	} {
		t.Run(c.file, func(t *testing.T) {
			pkt := readHex(t, c.file)
			orig := slices.Clone(pkt)
			ins, err := ParseInitials(pkt)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pkt, orig) {
				t.Fatal("ParseInitials modified its input")
			}
			if len(ins) != 1 {
				t.Fatalf("%d Initials, want 1", len(ins))
			}
			in := ins[0]
			if in.Version != c.version || !bytes.Equal(in.DCID, dcid) || len(in.SCID) != 0 {
				t.Fatalf("header: version %#x dcid %x scid %x", in.Version, in.DCID, in.SCID)
			}
			if len(in.Frames) != 1 || in.Frames[0].Offset != 0 || !bytes.Equal(in.Frames[0].Data, wantData) {
				t.Fatalf("frames %+v, want one CRYPTO frame at 0 with the RFC's %d bytes", in.Frames, len(wantData))
			}
			ch, err := tlshello.ParseClientHello(in.Frames[0].Data)
			if err != nil {
				t.Fatal(err)
			}
			// The RFC's hello: SNI example.com, ALPN "alpn".
			if ch.ServerName != "example.com" || !slices.Equal(ch.ALPN, []string{"alpn"}) {
				t.Fatalf("hello SNI %q ALPN %q", ch.ServerName, ch.ALPN)
			}
			// Flipping any single bit of the protected payload must fail
			// authentication, not yield garbage.
			bad := slices.Clone(pkt)
			bad[len(bad)-20] ^= 1
			if _, err := ParseInitials(bad); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("corrupted packet: %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestParseInitialsCoalescedAndRejects(t *testing.T) {
	v1 := readHex(t, "rfc9001-a2-client-initial.hex")
	v2 := readHex(t, "rfc9369-a2-client-initial.hex")

	t.Run("two coalesced initials", func(t *testing.T) {
		ins, err := ParseInitials(append(slices.Clone(v1), v2...))
		if err != nil || len(ins) != 2 || ins[0].Version != Version1 || ins[1].Version != Version2 {
			t.Fatalf("got %d initials, err %v", len(ins), err)
		}
	})
	t.Run("handshake packet before initial is skipped", func(t *testing.T) {
		// Long header, v1, type Handshake (0b10), empty CIDs, Length 3.
		hs := []byte{0xe0, 0, 0, 0, 1, 0, 0, 0x03, 0xaa, 0xbb, 0xcc}
		ins, err := ParseInitials(append(hs, v1...))
		if err != nil || len(ins) != 1 {
			t.Fatalf("got %d initials, err %v", len(ins), err)
		}
	})
	t.Run("trailing zero padding", func(t *testing.T) {
		ins, err := ParseInitials(append(slices.Clone(v1), make([]byte, 40)...))
		if err != nil || len(ins) != 1 {
			t.Fatalf("got %d initials, err %v", len(ins), err)
		}
	})
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotInitial},
		{"short header", append([]byte{0x40}, v1[1:]...), ErrNotInitial},
		{"version negotiation", []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, ErrNotInitial},
		{"unknown version", append([]byte{0xc0, 0xff, 0, 0, 0x1d}, v1[5:]...), ErrNotInitial},
		{"truncated", v1[:600], ErrNotInitial},
		{"header only", v1[:30], ErrNotInitial},
		{"dcid too long", []byte{0xc0, 0, 0, 0, 1, 21}, ErrNotInitial},
	} {
		t.Run(c.name, func(t *testing.T) {
			ins, err := ParseInitials(c.in)
			if !errors.Is(err, c.want) || ins != nil {
				t.Fatalf("got %d initials, err %v, want %v", len(ins), err, c.want)
			}
		})
	}
	t.Run("server initial does not decrypt with client keys", func(t *testing.T) {
		// RFC 9001 A.3 server Initial (keys derive from the client's
		// original DCID, which is not in this packet).
		srv, _ := hex.DecodeString("cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc42158407dd074ee")
		if _, err := ParseInitials(srv); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("err %v, want ErrDecrypt", err)
		}
	})
}

func TestParseFrames(t *testing.T) {
	crypto := func(off byte, data string) []byte { return append([]byte{0x06, off, byte(len(data))}, data...) }
	var p []byte
	p = append(p, 0x01)                                           // PING
	p = append(p, 0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x02)       // ACK largest 5, delay 0, 1 range, first 0, gap 1 len 2
	p = append(p, 0x03, 0x05, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03) // ACK-ECN, no extra ranges, 3 ECN counts
	p = append(p, crypto(0, "abc")...)
	p = append(p, 0x00, 0x00) // PADDING
	p = append(p, crypto(3, "de")...)
	p = append(p, 0x1c, 0x0a, 0x06, 0x02, 'h', 'i') // CONNECTION_CLOSE with reason "hi"
	p = append(p, crypto(5, "f")...)
	p = append(p, 0x08, 0x01) // STREAM: not allowed in Initial, parsing stops
	p = append(p, crypto(6, "zz")...)
	got := parseFrames(p)
	want := []CryptoFrame{{0, []byte("abc")}, {3, []byte("de")}, {5, []byte("f")}}
	if len(got) != len(want) {
		t.Fatalf("got %d frames %+v", len(got), got)
	}
	for i := range want {
		if got[i].Offset != want[i].Offset || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("frame %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// A CRYPTO frame whose length runs past the payload ends parsing.
	if f := parseFrames([]byte{0x06, 0x00, 0x10, 'a'}); len(f) != 0 {
		t.Fatalf("overlong CRYPTO frame accepted: %+v", f)
	}
	// An ACK claiming 2^62 ranges ends parsing without looping.
	if f := parseFrames([]byte{0x02, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x06, 0, 1, 'x'}); len(f) != 0 {
		t.Fatalf("bogus ACK: %+v", f)
	}
}

func TestCryptoStream(t *testing.T) {
	data := []byte("0123456789abcdefghij")
	fr := func(off, end int) CryptoFrame { return CryptoFrame{Offset: uint64(off), Data: data[off:end]} }
	cases := []struct {
		name   string
		frames []CryptoFrame
		max    int
		want   string
	}{
		{"in order", []CryptoFrame{fr(0, 5), fr(5, 20)}, 100, string(data)},
		{"reversed", []CryptoFrame{fr(15, 20), fr(10, 15), fr(5, 10), fr(0, 5)}, 100, string(data)},
		{"overlapping", []CryptoFrame{fr(3, 12), fr(0, 6), fr(10, 20), fr(2, 4)}, 100, string(data)},
		{"gap stays open", []CryptoFrame{fr(0, 5), fr(8, 20)}, 100, "01234"},
		{"bounded by max", []CryptoFrame{fr(10, 20), fr(0, 10)}, 12, "0123456789ab"},
		{"frame beyond max ignored", []CryptoFrame{fr(0, 5), fr(15, 20)}, 12, "01234"},
		{"duplicate pending", []CryptoFrame{fr(5, 10), fr(5, 10), fr(6, 9), fr(0, 5)}, 100, "0123456789"},
		{"nothing at zero", []CryptoFrame{fr(1, 20)}, 100, ""},
		{"huge offset", []CryptoFrame{{Offset: 1 << 62, Data: []byte("x")}, fr(0, 3)}, 100, "012"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s CryptoStream
			for _, f := range c.frames {
				s.Add(f, c.max)
			}
			if got := string(s.Bytes()); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			s.Reset()
			if len(s.Bytes()) != 0 {
				t.Fatal("Reset left bytes")
			}
		})
	}
	// Frames must be copied: changing the source afterwards changes nothing.
	src := []byte("hello")
	var s CryptoStream
	s.Add(CryptoFrame{Offset: 2, Data: src[2:]}, 100)
	s.Add(CryptoFrame{Offset: 0, Data: src[:2]}, 100)
	copy(src, "XXXXX")
	if string(s.Bytes()) != "hello" {
		t.Fatalf("stream aliases frame data: %q", s.Bytes())
	}
}

// captureQuicGo dials a plain UDP socket on loopback with a real quic-go
// client and returns the datagrams it sends until the ClientHello is
// complete. The handshake never finishes: nobody answers.
func captureQuicGo(t *testing.T, version quicgo.Version, tlsConf *tls.Config) (datagrams [][]byte, stream []byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		conn, err := quicgo.DialAddr(ctx, pc.LocalAddr().String(), tlsConf, &quicgo.Config{Versions: []quicgo.Version{version}})
		if err == nil {
			conn.CloseWithError(0, "")
		}
	}()
	var cs CryptoStream
	buf := make([]byte, 65536)
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("reading client datagrams: %v (have %d datagrams, %d stream bytes)", err, len(datagrams), len(cs.Bytes()))
		}
		dg := slices.Clone(buf[:n])
		datagrams = append(datagrams, dg)
		ins, err := ParseInitials(dg)
		if err != nil {
			t.Fatalf("datagram %d (%d bytes): %v", len(datagrams), n, err)
		}
		for _, in := range ins {
			for _, f := range in.Frames {
				cs.Add(f, 1<<16)
			}
		}
		if b := cs.Bytes(); len(b) >= 4 && len(b) >= 4+(int(b[1])<<16|int(b[2])<<8|int(b[3])) {
			return datagrams, b
		}
	}
}

// TestQuicGoClient decrypts a real quic-go client's Initials (v1 and v2),
// reassembles the ClientHello and checks SNI and ALPN.
func TestQuicGoClient(t *testing.T) {
	for _, v := range []quicgo.Version{quicgo.Version1, quicgo.Version2} {
		t.Run(v.String(), func(t *testing.T) {
			conf := &tls.Config{ServerName: "quic.example.test", NextProtos: []string{"h3", "hq-interop"}}
			datagrams, stream := captureQuicGo(t, v, conf)
			ch, err := tlshello.ParseClientHello(stream)
			if err != nil {
				t.Fatal(err)
			}
			if ch.ServerName != "quic.example.test" || !slices.Equal(ch.ALPN, conf.NextProtos) {
				t.Fatalf("SNI %q ALPN %q", ch.ServerName, ch.ALPN)
			}
			if !slices.Contains(ch.Extensions, 0x0039) { // quic_transport_parameters
				t.Fatalf("no QUIC transport parameters in %x", ch.Extensions)
			}
			ja4 := tlshello.JA4(ch, 'q')
			if !strings.HasPrefix(ja4, "q13d") || ja4[8:10] != "h3" {
				t.Fatalf("JA4 %s", ja4)
			}
			t.Logf("%d datagrams, ClientHello %d bytes, JA4 %s", len(datagrams), len(stream), ja4)
			if v == quicgo.Version1 {
				writeGolden(t, "quic-go-v1-initials", datagrams)
			}
		})
	}
}

// TestSplitClientHello checks a ClientHello spread over two Initial packets:
// quic-go's hello with the default post-quantum key share does not fit in
// one packet; if a quic-go version ever fits it, the test splits a real
// hello's CRYPTO data itself.
func TestSplitClientHello(t *testing.T) {
	datagrams := readGolden(t, "quic-go-v1-initials")
	var frames []CryptoFrame
	var cs CryptoStream
	for _, dg := range datagrams {
		ins, err := ParseInitials(dg)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range ins {
			frames = append(frames, in.Frames...)
		}
	}
	packetsWithCrypto := 0
	for _, dg := range datagrams {
		ins, _ := ParseInitials(dg)
		for _, in := range ins {
			if len(in.Frames) > 0 {
				packetsWithCrypto++
			}
		}
	}
	if packetsWithCrypto < 2 {
		// Build the split ourselves from the real hello.
		var whole CryptoStream
		for _, f := range frames {
			whole.Add(f, 1<<16)
		}
		b := whole.Bytes()
		frames = []CryptoFrame{{Offset: uint64(len(b) / 2), Data: b[len(b)/2:]}, {Offset: 0, Data: b[:len(b)/2]}}
	}
	t.Logf("ClientHello over %d Initial packets in %d datagrams", packetsWithCrypto, len(datagrams))
	// Feed the frames in reverse order: reassembly must not depend on order.
	for i := len(frames) - 1; i >= 0; i-- {
		cs.Add(frames[i], 1<<16)
	}
	ch, err := tlshello.ParseClientHello(cs.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if ch.ServerName != "quic.example.test" {
		t.Fatalf("SNI %q", ch.ServerName)
	}
	// One half alone is not a complete hello.
	var half CryptoStream
	half.Add(frames[0], 1<<16)
	if _, err := tlshello.ParseClientHello(half.Bytes()); err == nil && len(frames) > 1 {
		t.Fatal("partial stream parsed as a complete ClientHello")
	}
}

func goldenPath(name string) string { return filepath.Join("testdata", name+".hex") }

// writeGolden stores captured datagrams (one hex line each) when -update.
func writeGolden(t *testing.T, name string, datagrams [][]byte) {
	t.Helper()
	if !*update {
		return
	}
	var sb strings.Builder
	for _, d := range datagrams {
		sb.WriteString(hex.EncodeToString(d))
		sb.WriteByte('\n')
	}
	if err := os.WriteFile(goldenPath(name), []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(goldenPath(name))
	if err != nil {
		t.Fatalf("%v (run go test -run TestQuicGoClient -update)", err)
	}
	var out [][]byte
	for _, line := range strings.Fields(string(b)) {
		d, err := hex.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}
