// Package http2 follows the frames of an HTTP/2 connection (RFC 9113), as
// the decrypted bytes of both directions arrive, and reports each request
// and response head (HPACK, RFC 7541, decoded with golang.org/x/net's
// decoder) and the body bytes of each stream.
//
// The bytes are untrusted: frames are bounded, a header block that does
// not decode ends the connection's parsing (the dynamic table would be
// wrong from then on), and nothing panics.
package http2

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/net/http2/hpack"

	"github.com/firstboot/firstboot/analyzer/http"
)

// Preface is what a client sends first (RFC 9113 3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Frame types.
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameSettings     = 0x4
	framePushPromise  = 0x5
	frameContinuation = 0x9
)

// Flags.
const (
	flagEndStream  = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// Bounds.
const (
	headerLen      = 9
	maxHeaderBlock = 256 << 10 // a header block (HEADERS and CONTINUATION) kept to decode
	maxString      = 64 << 10  // one decoded field name or value
)

// ErrNotHTTP2 means the client did not start with the connection preface.
var ErrNotHTTP2 = errors.New("http2: no connection preface")

// Handler receives what a connection says. dir is 0 for the client (requests),
// 1 for the server (responses); head is a *http.Request from the client
// and a *http.Response from the server, valid only during the call.
type Handler interface {
	Head(dir int, stream uint64, req *http.Request, resp *http.Response)
	Body(dir int, stream uint64, n int)
}

// Conn is one HTTP/2 connection.
type Conn struct {
	h    Handler
	side [2]side
	err  error
}

type side struct {
	preface int    // client: preface bytes matched so far
	hdr     []byte // an unfinished frame header
	payload []byte // the kept payload of the current frame
	left    int    // payload bytes of the current frame still to come
	inFrame bool   // a frame's payload is being read
	keep    bool   // the current frame's payload is kept
	typ     byte
	flags   byte
	stream  uint32
	// The header block being gathered: HEADERS or PUSH_PROMISE, then
	// CONTINUATION frames, on blockStream.
	block       []byte
	blockStream uint32
	blockPush   bool
	dec         *hpack.Decoder
}

// NewConn returns a connection reporting to h.
func NewConn(h Handler) *Conn {
	c := &Conn{h: h}
	for i := range c.side {
		c.side[i].dec = hpack.NewDecoder(4096, nil)
		c.side[i].dec.SetMaxStringLength(maxString)
	}
	return c
}

// Err is what ended the parsing, or nil while it goes on.
func (c *Conn) Err() error { return c.err }

// Feed takes the next bytes of direction dir.
func (c *Conn) Feed(dir int, b []byte) {
	s := &c.side[dir]
	if dir == 0 && s.preface < len(Preface) && c.err == nil {
		n := min(len(Preface)-s.preface, len(b))
		if string(b[:n]) != Preface[s.preface:s.preface+n] {
			c.err = ErrNotHTTP2
			return
		}
		s.preface += n
		b = b[n:]
	}
	for len(b) > 0 && c.err == nil {
		if !s.inFrame {
			if len(s.hdr) == 0 && len(b) >= headerLen {
				c.header(s, b[:headerLen])
				b = b[headerLen:]
			} else {
				n := min(headerLen-len(s.hdr), len(b))
				s.hdr, b = append(s.hdr, b[:n]...), b[n:]
				if len(s.hdr) < headerLen {
					return
				}
				c.header(s, s.hdr)
				s.hdr = s.hdr[:0]
			}
			s.inFrame = s.left > 0
			if !s.inFrame && c.err == nil {
				c.frame(dir, s)
			}
			continue
		}
		n := min(s.left, len(b))
		if s.keep {
			s.payload = append(s.payload, b[:n]...)
		} else if s.typ == frameData {
			c.h.Body(dir, uint64(s.stream), n)
		}
		s.left -= n
		b = b[n:]
		if s.left == 0 {
			s.inFrame = false
			c.frame(dir, s)
		}
	}
}

// header starts a frame from its 9-byte header.
func (c *Conn) header(s *side, h []byte) {
	s.left = int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	s.typ, s.flags = h[3], h[4]
	s.stream = binary.BigEndian.Uint32(h[5:]) & 0x7fffffff
	s.payload = s.payload[:0]
	switch s.typ {
	case frameHeaders, framePushPromise, frameContinuation, frameSettings:
		s.keep = true
		if len(s.block)+s.left > maxHeaderBlock {
			c.err = fmt.Errorf("http2: header block over %d bytes", maxHeaderBlock)
		}
	default:
		s.keep = false
	}
	if s.typ == frameData && s.flags&flagPadded != 0 {
		// The padding is counted with the body: a close bound, and what
		// the body occupied on the wire.
		s.keep = false
	}
}

// frame acts on a finished frame.
func (c *Conn) frame(dir int, s *side) {
	p := s.payload
	switch s.typ {
	case frameData:
		if s.flags&flagEndStream != 0 {
			c.h.Body(dir, uint64(s.stream), 0)
		}
	case frameSettings:
		if s.flags&0x1 == 0 { // not an ACK
			for ; len(p) >= 6; p = p[6:] {
				if binary.BigEndian.Uint16(p) == 0x1 { // SETTINGS_HEADER_TABLE_SIZE: the peer's encoder may use this much
					c.side[1-dir].dec.SetAllowedMaxDynamicTableSize(binary.BigEndian.Uint32(p[2:]))
				}
			}
		}
	case frameHeaders, framePushPromise:
		if s.block != nil && len(s.block) > 0 {
			c.err = errors.New("http2: a header block interrupted by another frame")
			return
		}
		frag, ok := unpad(p, s.flags)
		if !ok {
			c.err = errors.New("http2: bad padding")
			return
		}
		if s.typ == frameHeaders && s.flags&flagPriority != 0 {
			if len(frag) < 5 {
				c.err = errors.New("http2: short priority")
				return
			}
			frag = frag[5:]
		}
		if s.typ == framePushPromise {
			if len(frag) < 4 {
				c.err = errors.New("http2: short PUSH_PROMISE")
				return
			}
			frag = frag[4:]
		}
		s.block = append(s.block[:0], frag...)
		s.blockStream, s.blockPush = s.stream, s.typ == framePushPromise
		if s.flags&flagEndHeaders != 0 {
			c.headers(dir, s)
		}
		if s.typ == frameHeaders && s.flags&flagEndStream != 0 {
			c.h.Body(dir, uint64(s.stream), 0)
		}
	case frameContinuation:
		if s.stream != s.blockStream || s.block == nil {
			c.err = errors.New("http2: CONTINUATION without a header block")
			return
		}
		s.block = append(s.block, p...)
		if s.flags&flagEndHeaders != 0 {
			c.headers(dir, s)
		}
	}
}

func unpad(p []byte, flags byte) ([]byte, bool) {
	if flags&flagPadded == 0 {
		return p, true
	}
	if len(p) < 1 || int(p[0]) > len(p)-1 {
		return nil, false
	}
	return p[1 : len(p)-int(p[0])], true
}

// headers decodes a complete header block and reports its head. Every
// block is decoded, also a push promise's, to keep the dynamic table right.
func (c *Conn) headers(dir int, s *side) {
	var req http.Request
	var resp http.Response
	req.ContentLength, resp.ContentLength = -1, -1
	s.dec.SetEmitFunc(func(f hpack.HeaderField) {
		if dir == 0 || s.blockPush {
			req.AddField(f.Name, f.Value)
		} else {
			resp.AddField(f.Name, f.Value)
		}
	})
	_, err := s.dec.Write(s.block)
	if err == nil {
		err = s.dec.Close()
	}
	s.block = s.block[:0]
	if err != nil {
		c.err = fmt.Errorf("http2: header block: %w", err)
		return
	}
	switch {
	case s.blockPush:
		// A pushed request: its response arrives on the promised stream;
		// not a request the client sent.
	case dir == 0:
		if req.Method != "" {
			req.Version = "2"
			c.h.Head(dir, uint64(s.blockStream), &req, nil)
		}
	default:
		if resp.Status >= 200 {
			resp.Version = "2"
			c.h.Head(dir, uint64(s.blockStream), nil, &resp)
		}
	}
}
