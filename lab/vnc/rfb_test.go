package vnc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func be32(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

// TestReadClientMessage splits a stream holding one of each RFC 6143 viewer
// message at the right places, and stops at a type it cannot delimit.
func TestReadClientMessage(t *testing.T) {
	var stream []byte
	want := [][]byte{
		append([]byte{msgSetPixelFormat, 0, 0, 0}, make([]byte, 16)...),
		append(append([]byte{msgSetEncodings, 0, 0, 3}, be32(0)...), append(be32(-223), be32(-258)...)...),
		{msgFramebufferUpdateRequest, 1, 0, 0, 0, 0, 2, 208, 1, 144},
		{msgKeyEvent, 1, 0, 0, 0, 0, 0xff, 0x0d},
		{msgPointerEvent, 1, 0, 100, 0, 50},
		append([]byte{msgClientCutText, 0, 0, 0, 0, 0, 0, 5}, "hello"...),
		append(append([]byte{msgClientCutText, 0, 0, 0}, be32(-3)...), "abc"...), // extended clipboard
	}
	for _, m := range want {
		stream = append(stream, m...)
	}
	stream = append(stream, 150, 0, 0, 0) // EnableContinuousUpdates: not offered, so not expected
	r := bufio.NewReader(bytes.NewReader(stream))
	for i, w := range want {
		got, err := readClientMessage(r)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("message %d = %v, want %v", i, got, w)
		}
	}
	if _, err := readClientMessage(r); !errors.Is(err, errUnknownMessage) {
		t.Errorf("type 150: err %v, want errUnknownMessage", err)
	}
	// A message cut short is an error, not a short message.
	if _, err := readClientMessage(bufio.NewReader(bytes.NewReader([]byte{msgKeyEvent, 1, 0}))); err == nil {
		t.Error("a truncated KeyEvent was accepted")
	}
	huge := append([]byte{msgClientCutText, 0, 0, 0}, be32(maxCutText+1)...)
	if _, err := readClientMessage(bufio.NewReader(bytes.NewReader(huge))); err == nil || !strings.Contains(err.Error(), "clipboard") {
		t.Errorf("an oversized clipboard message: %v", err)
	}
}

// TestFilterEncodings keeps encodings and harmless pseudo-encodings, and
// drops those that would let a viewer send messages the proxy cannot read
// or switch the pointer to relative motion.
func TestFilterEncodings(t *testing.T) {
	in := []int32{7, 16, 0, -223, -239, -258, -257, -259, -312, -313, -308, -26, -250, -1063131698}
	msg := []byte{msgSetEncodings, 0, 0, 0}
	binary.BigEndian.PutUint16(msg[2:], uint16(len(in)))
	for _, e := range in {
		msg = append(msg, be32(e)...)
	}
	out := filterEncodings(msg)
	var got []int32
	for i := 4; i < len(out); i += 4 {
		got = append(got, int32(binary.BigEndian.Uint32(out[i:])))
	}
	want := []int32{7, 16, 0, -223, -239, -26, -250}
	if len(got) != len(want) || int(binary.BigEndian.Uint16(out[2:])) != len(want) {
		t.Fatalf("filtered = %v (count %d), want %v", got, binary.BigEndian.Uint16(out[2:]), want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("filtered = %v, want %v", got, want)
		}
	}
}

func TestParseInput(t *testing.T) {
	now := time.Unix(100, 0)
	k := parseInput([]byte{msgKeyEvent, 1, 0, 0, 0, 0, 0xff, 0x0d}, 2, now)
	if k.Kind != Key || !k.Down || k.Keysym != 0xff0d || k.Viewer != 2 || !k.Time.Equal(now) {
		t.Errorf("key = %+v", k)
	}
	p := parseInput([]byte{msgPointerEvent, 4, 0x01, 0x2c, 0x00, 0xc8}, 1, now)
	if p.Kind != Pointer || p.Buttons != 4 || p.X != 300 || p.Y != 200 {
		t.Errorf("pointer = %+v", p)
	}
}

func TestCheckAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5901": "127.0.0.1:5901",
		":5901":          "127.0.0.1:5901",
		"localhost:0":    "localhost:0",
		"[::1]:5902":     "[::1]:5902",
	} {
		if got, err := CheckAddr(in); err != nil || got != want {
			t.Errorf("CheckAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"0.0.0.0:5901", "192.0.2.1:5901", "example.com:5901", "5901"} {
		if _, err := CheckAddr(bad); err == nil {
			t.Errorf("CheckAddr(%q) accepted", bad)
		}
	}
}

// TestHandshakeVersions: the proxy's server side talks to 3.3, 3.7 and 3.8
// viewers, each in its own dialect, and its client side to a 3.8 server.
func TestHandshakeVersions(t *testing.T) {
	init := ServerInit{Width: 640, Height: 480, Name: "m"}
	for _, tc := range []struct {
		viewer string
		// what the viewer reads after its version, up to ServerInit
		security []byte
	}{
		{version33, []byte{0, 0, 0, 1}},
		{version37, []byte{1, 1}},
		{version38, []byte{1, 1, 0, 0, 0, 0}},
	} {
		t.Run(strings.TrimSpace(tc.viewer), func(t *testing.T) {
			srv, cli := net.Pipe()
			defer srv.Close()
			defer cli.Close()
			errc := make(chan error, 1)
			go func() {
				v, err := acceptVersion(srv)
				if err == nil {
					err = acceptSecurity(srv, v)
				}
				if err == nil {
					_, err = srv.Write(init.marshal())
				}
				errc <- err
			}()
			var ver [12]byte
			io.ReadFull(cli, ver[:])
			if string(ver[:]) != version38 {
				t.Fatalf("offered %q", ver)
			}
			cli.Write([]byte(tc.viewer))
			got := make([]byte, len(tc.security))
			if tc.viewer == version33 {
				io.ReadFull(cli, got)
			} else {
				io.ReadFull(cli, got[:2])
				cli.Write([]byte{securityNone})
				io.ReadFull(cli, got[2:])
			}
			if !bytes.Equal(got, tc.security) {
				t.Fatalf("security phase = %v, want %v", got, tc.security)
			}
			cli.Write([]byte{1}) // ClientInit
			si, err := readServerInit(cli)
			if err != nil || si.Width != 640 || si.Height != 480 || si.Name != "m" {
				t.Fatalf("ServerInit = %+v, %v", si, err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("client side", func(t *testing.T) {
		srv, cli := net.Pipe()
		defer srv.Close()
		go func() {
			srv.Write([]byte(version38))
			io.ReadFull(srv, make([]byte, 12))
			srv.Write([]byte{2, 2, securityNone})
			io.ReadFull(srv, make([]byte, 1))
			srv.Write([]byte{0, 0, 0, 0})
			io.ReadFull(srv, make([]byte, 1))
			srv.Write(init.marshal())
		}()
		si, err := clientHandshake(cli)
		if err != nil || si.Name != "m" {
			t.Fatalf("clientHandshake = %+v, %v", si, err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		srv, cli := net.Pipe()
		defer srv.Close()
		go func() {
			srv.Write([]byte(version38))
			io.ReadFull(srv, make([]byte, 12))
			refuse(srv, version38, "too many clients")
		}()
		if _, err := clientHandshake(cli); err == nil || !strings.Contains(err.Error(), "too many clients") {
			t.Fatalf("refusal: %v", err)
		}
	})
}
