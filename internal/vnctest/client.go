// Package vnctest is a small RFB (VNC) viewer for tests: it plays the person
// at the keyboard. It speaks RFB 3.8 without authentication, asks for raw
// pixels only (so any server can serve it), reads whole screens, and sends
// keys and pointer events the way a viewer does.
package vnctest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"io"
	"net"
	"sync"
	"time"
)

// Keysyms of keys tests press (X11 keysymdef.h).
const (
	KeyReturn    = 0xff0d
	KeyTab       = 0xff09
	KeyBackSpace = 0xff08
	KeyEscape    = 0xff1b
	KeyShiftL    = 0xffe1
	KeyControlL  = 0xffe3
	KeyAltL      = 0xffe9
	KeyF1        = 0xffbe
)

// Client is a connected viewer.
type Client struct {
	conn net.Conn
	r    *bufio.Reader

	mu            sync.Mutex // one request at a time
	Width, Height int
	Name          string
	screen        *image.RGBA
}

// Dial connects to a VNC server at a TCP address and opens a shared session.
func Dial(addr string) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, r: bufio.NewReader(conn)}
	if err := c.handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("vnctest: handshake with %s: %w", addr, err)
	}
	return c, nil
}

// Close ends the session.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) handshake() error {
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.conn.SetDeadline(time.Time{})
	var ver [12]byte
	if _, err := io.ReadFull(c.r, ver[:]); err != nil {
		return err
	}
	if _, err := c.conn.Write([]byte("RFB 003.008\n")); err != nil {
		return err
	}
	n, err := c.r.ReadByte()
	if err != nil {
		return err
	}
	if n == 0 {
		var l [4]byte
		io.ReadFull(c.r, l[:])
		reason := make([]byte, min(binary.BigEndian.Uint32(l[:]), 4096))
		io.ReadFull(c.r, reason)
		return fmt.Errorf("refused: %s", reason)
	}
	types := make([]byte, n)
	if _, err := io.ReadFull(c.r, types); err != nil {
		return err
	}
	if _, err := c.conn.Write([]byte{1}); err != nil {
		return err
	}
	var res [4]byte
	if _, err := io.ReadFull(c.r, res[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(res[:]) != 0 {
		return fmt.Errorf("security result %x", res)
	}
	if _, err := c.conn.Write([]byte{1}); err != nil {
		return err
	}
	var init [24]byte
	if _, err := io.ReadFull(c.r, init[:]); err != nil {
		return err
	}
	c.Width, c.Height = int(binary.BigEndian.Uint16(init[0:])), int(binary.BigEndian.Uint16(init[2:]))
	name := make([]byte, binary.BigEndian.Uint32(init[20:]))
	if _, err := io.ReadFull(c.r, name); err != nil {
		return err
	}
	c.Name = string(name)
	c.screen = image.NewRGBA(image.Rect(0, 0, c.Width, c.Height))
	// 32 bits per pixel, depth 24, little-endian, true colour: red at bit 16.
	pf := []byte{0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}
	if _, err := c.conn.Write(pf); err != nil {
		return err
	}
	return c.SetEncodings(0, -223) // raw, DesktopSize
}

// SetEncodings sends a SetEncodings message (tests pass extensions the
// proxy must filter out).
func (c *Client) SetEncodings(encs ...int32) error {
	msg := []byte{2, 0, 0, 0}
	binary.BigEndian.PutUint16(msg[2:], uint16(len(encs)))
	for _, e := range encs {
		msg = binary.BigEndian.AppendUint32(msg, uint32(e))
	}
	_, err := c.conn.Write(msg)
	return err
}

// Screen asks for the whole screen and returns it once it has arrived.
func (c *Client) Screen() (*image.RGBA, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	req := []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(req[6:], uint16(c.Width))
	binary.BigEndian.PutUint16(req[8:], uint16(c.Height))
	if _, err := c.conn.Write(req); err != nil {
		return nil, err
	}
	c.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		typ, err := c.r.ReadByte()
		if err != nil {
			return nil, err
		}
		switch typ {
		case 0: // FramebufferUpdate
			resized, err := c.readUpdate()
			if err != nil {
				return nil, err
			}
			if resized {
				// Ask again for the new size.
				binary.BigEndian.PutUint16(req[6:], uint16(c.Width))
				binary.BigEndian.PutUint16(req[8:], uint16(c.Height))
				if _, err := c.conn.Write(req); err != nil {
					return nil, err
				}
				continue
			}
			out := image.NewRGBA(c.screen.Rect)
			copy(out.Pix, c.screen.Pix)
			return out, nil
		case 1: // SetColourMapEntries
			var h [5]byte
			if _, err := io.ReadFull(c.r, h[:]); err != nil {
				return nil, err
			}
			if _, err := c.r.Discard(6 * int(binary.BigEndian.Uint16(h[3:]))); err != nil {
				return nil, err
			}
		case 2: // Bell
		case 3: // ServerCutText
			var h [7]byte
			if _, err := io.ReadFull(c.r, h[:]); err != nil {
				return nil, err
			}
			if _, err := c.r.Discard(int(binary.BigEndian.Uint32(h[3:]))); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("vnctest: unknown server message %d", typ)
		}
	}
}

// readUpdate reads one FramebufferUpdate into the screen; resized says the
// server changed the screen size (DesktopSize).
func (c *Client) readUpdate() (resized bool, err error) {
	var h [3]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return false, err
	}
	n := int(binary.BigEndian.Uint16(h[1:]))
	for i := 0; i < n; i++ {
		var rh [12]byte
		if _, err := io.ReadFull(c.r, rh[:]); err != nil {
			return false, err
		}
		x, y := int(binary.BigEndian.Uint16(rh[0:])), int(binary.BigEndian.Uint16(rh[2:]))
		w, hh := int(binary.BigEndian.Uint16(rh[4:])), int(binary.BigEndian.Uint16(rh[6:]))
		switch enc := int32(binary.BigEndian.Uint32(rh[8:])); enc {
		case 0:
			px := make([]byte, 4*w*hh)
			if _, err := io.ReadFull(c.r, px); err != nil {
				return false, err
			}
			for j := 0; j < w*hh; j++ {
				v := binary.LittleEndian.Uint32(px[4*j:])
				c.screen.SetRGBA(x+j%w, y+j/w, color.RGBA{uint8(v >> 16), uint8(v >> 8), uint8(v), 255})
			}
		case -223:
			c.Width, c.Height = w, hh
			c.screen = image.NewRGBA(image.Rect(0, 0, w, hh))
			resized = true
		default:
			return false, fmt.Errorf("vnctest: the server sent encoding %d, which was not asked for", enc)
		}
	}
	return resized, nil
}

// Key sends one key event.
func (c *Client) Key(keysym uint32, down bool) error {
	msg := []byte{4, 0, 0, 0, 0, 0, 0, 0}
	if down {
		msg[1] = 1
	}
	binary.BigEndian.PutUint32(msg[4:], keysym)
	_, err := c.conn.Write(msg)
	return err
}

// Press presses and releases a key, the way a person does (a short hold).
func (c *Client) Press(keysym uint32) error {
	if err := c.Key(keysym, true); err != nil {
		return err
	}
	time.Sleep(40 * time.Millisecond)
	return c.Key(keysym, false)
}

// Type types ASCII text a key at a time, with Shift for upper case and
// shifted symbols as a US keyboard needs.
func (c *Client) Type(text string, gap time.Duration) error {
	for _, r := range text {
		shift := (r >= 'A' && r <= 'Z') || containsRune(`~!@#$%^&*()_+{}|:"<>?`, r)
		if shift {
			if err := c.Key(KeyShiftL, true); err != nil {
				return err
			}
		}
		sym := uint32(r)
		if r == '\n' {
			sym = KeyReturn
		}
		if err := c.Press(sym); err != nil {
			return err
		}
		if shift {
			if err := c.Key(KeyShiftL, false); err != nil {
				return err
			}
		}
		time.Sleep(gap)
	}
	return nil
}

func containsRune(s string, r rune) bool {
	for _, x := range s {
		if x == r {
			return true
		}
	}
	return false
}

// Pointer sends a pointer event: buttons is the mask (1 left, 2 middle, 4
// right, 8 and 16 the wheel).
func (c *Client) Pointer(buttons uint8, x, y int) error {
	msg := []byte{5, buttons, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(msg[2:], uint16(x))
	binary.BigEndian.PutUint16(msg[4:], uint16(y))
	_, err := c.conn.Write(msg)
	return err
}

// Click moves to x, y and clicks the left button.
func (c *Client) Click(x, y int) error {
	for _, b := range []uint8{0, 1, 0} {
		if err := c.Pointer(b, x, y); err != nil {
			return err
		}
		time.Sleep(60 * time.Millisecond)
	}
	return nil
}
