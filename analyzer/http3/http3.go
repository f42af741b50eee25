// Package http3 follows the streams of an HTTP/3 connection (RFC 9114) as
// the decrypted stream data of both directions arrives, and reports each
// request and response head (QPACK, RFC 9204, with the dynamic table the
// encoder streams build) and the body bytes of each request stream.
//
// The bytes are untrusted: frames and pending field sections are bounded,
// and a stream or connection that stops making sense is dropped, without
// panics.
package http3

import (
	"errors"

	"github.com/firstboot/firstboot/analyzer/http"
	"github.com/firstboot/firstboot/analyzer/quic"
)

// Frame and stream types.
const (
	frameData     = 0x0
	frameHeaders  = 0x1
	frameSettings = 0x4

	streamControl = 0x00
	streamPush    = 0x01
	streamEncoder = 0x02
	streamDecoder = 0x03

	settingMaxTableCapacity = 0x01
)

// Bounds.
const (
	maxFrameKept = 64 << 10 // a HEADERS or SETTINGS frame kept to decode
	maxBlocked   = 16       // field sections waiting for the encoder stream
	maxStreams   = 4096
)

// Handler receives what a connection says. dir is 0 for the client, 1 for
// the server; req or resp is set (valid only during the call).
type Handler interface {
	Head(dir int, stream uint64, req *http.Request, resp *http.Response)
	Body(dir int, stream uint64, n int)
}

// Conn is one HTTP/3 connection.
type Conn struct {
	h       Handler
	streams map[streamKey]*stream
	// tables[d] is the dynamic table of d's encoder, built from d's
	// encoder stream; it decodes the field sections d sends.
	tables  [2]table
	blocked []blockedSection
	err     error
}

type streamKey struct {
	id  uint64
	dir uint8
}

type stream struct {
	uni     bool
	uniType int64  // -1 until read
	buf     []byte // an unfinished varint, frame header, kept frame or instructions
	inFrame bool
	typ     uint64
	left    uint64
	keep    bool
	drop    bool // nothing more to read on this stream
}

type blockedSection struct {
	dir     int
	id      uint64
	section []byte
}

// NewConn returns a connection reporting to h.
func NewConn(h Handler) *Conn {
	return &Conn{h: h, streams: map[streamKey]*stream{}}
}

// Err is what ended the parsing of the connection, or nil.
func (c *Conn) Err() error { return c.err }

// Stream takes the next in-order bytes of stream id in direction dir.
func (c *Conn) Stream(dir int, id uint64, data []byte, fin bool) {
	if c.err != nil {
		return
	}
	k := streamKey{id, uint8(dir)}
	s := c.streams[k]
	if s == nil {
		if len(c.streams) >= maxStreams {
			return
		}
		s = &stream{uni: id&0x2 != 0, uniType: -1}
		if !s.uni && (id&0x1 != 0) {
			s.drop = true // server-initiated bidirectional streams carry no HTTP/3
		}
		c.streams[k] = s
	}
	if !s.drop {
		c.feed(dir, id, s, data)
	}
	if fin {
		delete(c.streams, k)
	}
}

func (c *Conn) feed(dir int, id uint64, s *stream, data []byte) {
	if s.uni && s.uniType < 0 {
		s.buf = append(s.buf, data...)
		t, n, ok := quic.ReadVarint(s.buf)
		if !ok {
			if len(s.buf) > 8 {
				s.drop = true
			}
			return
		}
		s.uniType = int64(t)
		data = append([]byte{}, s.buf[n:]...)
		s.buf = s.buf[:0]
		switch t {
		case streamControl, streamEncoder:
		default:
			s.drop = true // push, decoder, reserved and unknown streams
			return
		}
	}
	if s.uni && s.uniType == streamEncoder {
		c.encoder(dir, s, data)
		return
	}
	for len(data) > 0 && !s.drop && c.err == nil {
		if !s.inFrame {
			// A frame header: two varints, possibly split over calls.
			if len(s.buf) > 0 {
				data = append(s.buf, data...)
				s.buf = nil
			}
			typ, n1, ok := quic.ReadVarint(data)
			var l uint64
			var n2 int
			if ok {
				l, n2, ok = quic.ReadVarint(data[n1:])
			}
			if !ok {
				if len(data) > 16 {
					s.drop = true
					return
				}
				s.buf = append([]byte{}, data...)
				return
			}
			data = data[n1+n2:]
			s.typ, s.left, s.inFrame = typ, l, true
			s.keep = typ == frameHeaders || typ == frameSettings
			if s.keep && l > maxFrameKept {
				s.drop = true
				return
			}
			if l == 0 {
				s.inFrame = false
				c.frame(dir, id, s, nil)
			}
			continue
		}
		n := min(s.left, uint64(len(data)))
		switch {
		case s.keep:
			s.buf = append(s.buf, data[:n]...)
		case s.typ == frameData && !s.uni:
			c.h.Body(dir, id, int(n))
		}
		s.left -= n
		data = data[n:]
		if s.left == 0 {
			s.inFrame = false
			payload := s.buf
			s.buf = s.buf[:0]
			c.frame(dir, id, s, payload)
		}
	}
}

// frame acts on a complete frame.
func (c *Conn) frame(dir int, id uint64, s *stream, p []byte) {
	switch {
	case s.uni && s.typ == frameSettings:
		for len(p) > 0 {
			k, n1, ok1 := quic.ReadVarint(p)
			if !ok1 {
				return
			}
			v, n2, ok2 := quic.ReadVarint(p[n1:])
			if !ok2 {
				return
			}
			if k == settingMaxTableCapacity {
				// The sender decodes with this much: the peer's encoder may use it.
				c.tables[1-dir].maxCap = min(v, maxTableCapacity)
			}
			p = p[n1+n2:]
		}
	case !s.uni && s.typ == frameHeaders:
		c.section(dir, id, p)
	}
}

// section decodes a field section, or holds it until the encoder stream
// has inserted what it refers to.
func (c *Conn) section(dir int, id uint64, p []byte) {
	var req http.Request
	var resp http.Response
	req.ContentLength, resp.ContentLength = -1, -1
	err := c.tables[dir].section(p, func(name, value string) {
		if dir == 0 {
			req.AddField(name, value)
		} else {
			resp.AddField(name, value)
		}
	})
	switch {
	case errors.Is(err, errBlocked):
		if len(c.blocked) >= maxBlocked {
			c.err = errors.New("http3: too many field sections blocked on the encoder stream")
			return
		}
		c.blocked = append(c.blocked, blockedSection{dir, id, append([]byte{}, p...)})
		return
	case err != nil:
		c.err = err // the dynamic table cannot be trusted any more
		return
	}
	switch {
	case dir == 0 && req.Method != "":
		req.Version = "3"
		c.h.Head(dir, id, &req, nil)
	case dir == 1 && resp.Status >= 200:
		resp.Version = "3"
		c.h.Head(dir, id, nil, &resp)
	}
}

// encoder applies encoder stream instructions, then retries sections that
// were waiting for them.
func (c *Conn) encoder(dir int, s *stream, data []byte) {
	s.buf = append(s.buf, data...)
	n, err := c.tables[dir].instructions(s.buf)
	if err != nil {
		c.err = err
		return
	}
	s.buf = append(s.buf[:0], s.buf[n:]...)
	if len(s.buf) > maxFrameKept {
		c.err = errors.New("http3: encoder instruction too long")
		return
	}
	if n == 0 || len(c.blocked) == 0 {
		return
	}
	waiting := c.blocked
	c.blocked = nil
	for _, b := range waiting {
		c.section(b.dir, b.id, b.section)
	}
}
