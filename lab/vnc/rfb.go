// Package vnc serves a lab machine's screen to a person's VNC viewer. QEMU's
// own VNC server listens on a private unix socket; firstboot stands in front
// of it as an RFB proxy (RFC 6143) on a local TCP address, reading the
// viewer's key and pointer messages on their way to the machine, so a person
// can watch a run, take it over, and have what they do recorded.
package vnc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Protocol versions: the proxy speaks 3.8 and accepts viewers that answer
// with 3.3 or 3.7 (older viewers such as vncsnapshot still do).
const (
	version38 = "RFB 003.008\n"
	version37 = "RFB 003.007\n"
	version33 = "RFB 003.003\n"
)

// Security types (RFC 6143 7.1.2).
const (
	securityInvalid = 0
	securityNone    = 1
)

// Client-to-server message types (RFC 6143 7.5). The proxy keeps viewers to
// these by filtering SetEncodings (see allowedEncoding), so it always knows
// where one message ends and the next begins.
const (
	msgSetPixelFormat           = 0
	msgSetEncodings             = 2
	msgFramebufferUpdateRequest = 3
	msgKeyEvent                 = 4
	msgPointerEvent             = 5
	msgClientCutText            = 6
)

// maxCutText bounds a viewer's clipboard message; a larger one ends the
// connection rather than the proxy's memory.
const maxCutText = 1 << 20

// ServerInit is the server's description of its framebuffer (RFC 6143 7.3.2).
type ServerInit struct {
	Width, Height uint16
	PixelFormat   [16]byte
	Name          string
}

func (s ServerInit) marshal() []byte {
	b := make([]byte, 24, 24+len(s.Name))
	binary.BigEndian.PutUint16(b[0:], s.Width)
	binary.BigEndian.PutUint16(b[2:], s.Height)
	copy(b[4:20], s.PixelFormat[:])
	binary.BigEndian.PutUint32(b[20:], uint32(len(s.Name)))
	return append(b, s.Name...)
}

func readServerInit(r io.Reader) (ServerInit, error) {
	var hdr [24]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return ServerInit{}, fmt.Errorf("reading ServerInit: %w", err)
	}
	var s ServerInit
	s.Width = binary.BigEndian.Uint16(hdr[0:])
	s.Height = binary.BigEndian.Uint16(hdr[2:])
	copy(s.PixelFormat[:], hdr[4:20])
	n := binary.BigEndian.Uint32(hdr[20:])
	if n > 4096 {
		return ServerInit{}, fmt.Errorf("ServerInit: a %d-byte desktop name", n)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return ServerInit{}, fmt.Errorf("reading the desktop name: %w", err)
	}
	s.Name = string(name)
	return s, nil
}

// readReason reads a length-prefixed failure reason.
func readReason(r io.Reader) string {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "(no reason given)"
	}
	l := min(binary.BigEndian.Uint32(n[:]), 4096)
	b := make([]byte, l)
	io.ReadFull(r, b)
	return string(b)
}

// clientHandshake opens an RFB session as a viewer would, with no
// authentication (QEMU's socket is private to the host) and a shared
// session, so several viewers can be connected at once.
func clientHandshake(rw io.ReadWriter) (ServerInit, error) {
	var ver [12]byte
	if _, err := io.ReadFull(rw, ver[:]); err != nil {
		return ServerInit{}, fmt.Errorf("reading the server's version: %w", err)
	}
	if string(ver[:4]) != "RFB " {
		return ServerInit{}, fmt.Errorf("not an RFB server (it said %q)", ver[:])
	}
	// 3.8 or 3.7 both send a list of security types; QEMU speaks 3.8.
	mine := version38
	if string(ver[:]) < version38 {
		mine = version37
	}
	if string(ver[:]) < version37 {
		return ServerInit{}, fmt.Errorf("server speaks %q; want RFB 3.7 or later", ver[:11])
	}
	if _, err := io.WriteString(rw, mine); err != nil {
		return ServerInit{}, err
	}
	var n [1]byte
	if _, err := io.ReadFull(rw, n[:]); err != nil {
		return ServerInit{}, fmt.Errorf("reading security types: %w", err)
	}
	if n[0] == 0 {
		return ServerInit{}, fmt.Errorf("the server refused the connection: %s", readReason(rw))
	}
	types := make([]byte, n[0])
	if _, err := io.ReadFull(rw, types); err != nil {
		return ServerInit{}, fmt.Errorf("reading security types: %w", err)
	}
	found := false
	for _, t := range types {
		found = found || t == securityNone
	}
	if !found {
		return ServerInit{}, fmt.Errorf("the server wants authentication (security types %v); firstboot expects QEMU's VNC without a password", types)
	}
	if _, err := rw.Write([]byte{securityNone}); err != nil {
		return ServerInit{}, err
	}
	if mine == version38 {
		var res [4]byte
		if _, err := io.ReadFull(rw, res[:]); err != nil {
			return ServerInit{}, fmt.Errorf("reading the security result: %w", err)
		}
		if binary.BigEndian.Uint32(res[:]) != 0 {
			return ServerInit{}, fmt.Errorf("the server refused the session: %s", readReason(rw))
		}
	}
	if _, err := rw.Write([]byte{1}); err != nil { // ClientInit: shared
		return ServerInit{}, err
	}
	return readServerInit(rw)
}

// acceptVersion offers 3.8 to a viewer and returns the version it chose.
func acceptVersion(rw io.ReadWriter) (string, error) {
	if _, err := io.WriteString(rw, version38); err != nil {
		return "", err
	}
	var ver [12]byte
	if _, err := io.ReadFull(rw, ver[:]); err != nil {
		return "", fmt.Errorf("reading the viewer's version: %w", err)
	}
	v := string(ver[:])
	switch {
	case v == version38 || v == version37 || v == version33:
		return v, nil
	case v > version38 && v[:4] == "RFB ":
		// A viewer may not answer with more than offered; some do anyway.
		return version38, nil
	case v[:4] == "RFB " && v > version33:
		// 3.4–3.6 exist in the wild and mean 3.3 (RFC 6143 Appendix A).
		return version33, nil
	}
	return "", fmt.Errorf("not an RFB viewer (it said %q)", v)
}

// refuse tells a viewer why it cannot connect, in the form its version
// understands.
func refuse(w io.Writer, version, reason string) {
	b := []byte{0}
	if version == version33 {
		b = []byte{0, 0, 0, securityInvalid}
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(reason)))
	w.Write(append(b, reason...))
}

// acceptSecurity offers no authentication (the proxy listens on loopback
// only) and reads the viewer's ClientInit.
func acceptSecurity(rw io.ReadWriter, version string) error {
	if version == version33 {
		// 3.3: the server decides; no SecurityResult for None.
		if _, err := rw.Write([]byte{0, 0, 0, securityNone}); err != nil {
			return err
		}
	} else {
		if _, err := rw.Write([]byte{1, securityNone}); err != nil {
			return err
		}
		var choice [1]byte
		if _, err := io.ReadFull(rw, choice[:]); err != nil {
			return fmt.Errorf("reading the viewer's security type: %w", err)
		}
		if choice[0] != securityNone {
			return fmt.Errorf("the viewer chose security type %d; only None (1) is offered", choice[0])
		}
		if version == version38 {
			if _, err := rw.Write([]byte{0, 0, 0, 0}); err != nil {
				return err
			}
		}
	}
	var shared [1]byte
	if _, err := io.ReadFull(rw, shared[:]); err != nil {
		return fmt.Errorf("reading ClientInit: %w", err)
	}
	return nil
}

// errUnknownMessage ends a viewer connection whose next message the proxy
// cannot delimit.
var errUnknownMessage = errors.New("unknown message type")

// readClientMessage reads one whole viewer message.
func readClientMessage(r *bufio.Reader) ([]byte, error) {
	typ, err := r.Peek(1)
	if err != nil {
		return nil, err
	}
	var n int
	switch typ[0] {
	case msgSetPixelFormat:
		n = 20
	case msgFramebufferUpdateRequest:
		n = 10
	case msgKeyEvent:
		n = 8
	case msgPointerEvent:
		n = 6
	case msgSetEncodings:
		hdr, err := r.Peek(4)
		if err != nil {
			return nil, err
		}
		n = 4 + 4*int(binary.BigEndian.Uint16(hdr[2:]))
	case msgClientCutText:
		hdr, err := r.Peek(8)
		if err != nil {
			return nil, err
		}
		l := int64(int32(binary.BigEndian.Uint32(hdr[4:])))
		if l < 0 { // extended clipboard sends a negated length
			l = -l
		}
		if l > maxCutText {
			return nil, fmt.Errorf("a %d-byte clipboard message (at most %d)", l, maxCutText)
		}
		n = 8 + int(l)
	default:
		return nil, fmt.Errorf("%w %d from the viewer", errUnknownMessage, typ[0])
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// allowedEncoding says whether the proxy passes an encoding a viewer asks
// for. Real encodings only change what the server sends, which the proxy
// copies untouched. Pseudo-encodings that would let the viewer send messages
// beyond RFC 6143's (QEMU's extended key events and audio, fences, continuous
// updates, desktop resizing, extended clipboard) are dropped, as is QEMU's
// pointer-type change, so pointer positions always stay absolute screen
// coordinates.
func allowedEncoding(e int32) bool {
	switch {
	case e >= 0:
		return true
	case e >= -32 && e <= -23: // JPEG quality levels
		return true
	case e >= -256 && e <= -247: // compression levels
		return true
	case e >= -512 && e <= -412: // fine quality and subsampling levels
		return true
	}
	switch e {
	case -223, // DesktopSize
		-224, // LastRect
		-232, // PointerPos
		-239, // Cursor
		-240, // XCursor
		-307: // DesktopName
		return true
	}
	return false
}

// filterEncodings rewrites a SetEncodings message to the allowed encodings.
func filterEncodings(msg []byte) []byte {
	out := append([]byte(nil), msg[:4]...)
	n := 0
	for i := 4; i+4 <= len(msg); i += 4 {
		if allowedEncoding(int32(binary.BigEndian.Uint32(msg[i:]))) {
			out = append(out, msg[i:i+4]...)
			n++
		}
	}
	binary.BigEndian.PutUint16(out[2:], uint16(n))
	return out
}
