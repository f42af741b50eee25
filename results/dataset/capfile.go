package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"time"
)

// This file reads and writes pcapng (and classic pcap) at the block level, so
// that splitting and anonymising keep every section header, interface
// description, name-resolution block and packet comment exactly as captured:
// a block we do not change is copied byte for byte.

// pcapng block types (draft-ietf-opsawg-pcapng).
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 0x00000001
	blockPB  = 0x00000002 // obsolete Packet Block
	blockSPB = 0x00000003
	blockNRB = 0x00000004
	blockISB = 0x00000005
	blockEPB = 0x00000006
	blockDSB = 0x0000000A // Decryption Secrets Block
)

const maxBlockLen = 256 << 20 // a block larger than this is damage, not a packet

// block is one raw pcapng block or one classic pcap record.
type block struct {
	typ  uint32
	raw  []byte // the whole block (pcapng) or record header + data (pcap)
	bo   binary.ByteOrder
	pcap bool // a classic pcap record
}

// capReader iterates over the blocks of a pcapng file or the records of a
// classic pcap file (after its 24-byte header), tracking per-interface
// timestamp resolution so packet times can be computed.
type capReader struct {
	r      *bufio.Reader
	name   string
	pcapng bool
	bo     binary.ByteOrder
	// classic pcap
	header  []byte
	nanos   bool
	linkTyp uint32
	// pcapng: per interface of the current section
	ifaces []ifaceInfo
	off    int64
}

type ifaceInfo struct {
	linkType uint16
	snaplen  uint32
	// tsUnitsPerSec is the timestamp resolution; tsOffset is added (seconds).
	tsUnitsPerSec uint64
	tsOffset      int64
}

func newCapReader(r io.Reader, name string) (*capReader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%s: too short for a capture file: %w", name, err)
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
		br = bufio.NewReaderSize(zr, 1<<16)
		if magic, err = br.Peek(4); err != nil {
			return nil, fmt.Errorf("%s: too short for a capture file: %w", name, err)
		}
	}
	c := &capReader{r: br, name: name}
	switch {
	case bytes.Equal(magic, []byte{0x0A, 0x0D, 0x0D, 0x0A}):
		c.pcapng = true
	default:
		hdr := make([]byte, 24)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return nil, fmt.Errorf("%s: truncated pcap header: %w", name, err)
		}
		switch binary.LittleEndian.Uint32(hdr) {
		case 0xa1b2c3d4:
			c.bo = binary.LittleEndian
		case 0xa1b23c4d:
			c.bo, c.nanos = binary.LittleEndian, true
		case 0xd4c3b2a1:
			c.bo = binary.BigEndian
		case 0x4d3cb2a1:
			c.bo, c.nanos = binary.BigEndian, true
		default:
			return nil, fmt.Errorf("%s: not a pcap or pcapng file (magic %x)", name, hdr[:4])
		}
		c.header = hdr
		c.linkTyp = c.bo.Uint32(hdr[20:24]) & 0x0fffffff
		c.off = 24
	}
	return c, nil
}

// next returns the next block; io.EOF at a clean end.
func (c *capReader) next() (*block, error) {
	if !c.pcapng {
		hdr := make([]byte, 16)
		if _, err := io.ReadFull(c.r, hdr); err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("%s: truncated record header at byte %d", c.name, c.off)
		}
		incl := c.bo.Uint32(hdr[8:12])
		if incl > maxBlockLen {
			return nil, fmt.Errorf("%s: record at byte %d claims %d bytes", c.name, c.off, incl)
		}
		raw := make([]byte, 16+int(incl))
		copy(raw, hdr)
		if _, err := io.ReadFull(c.r, raw[16:]); err != nil {
			return nil, fmt.Errorf("%s: truncated record at byte %d", c.name, c.off)
		}
		c.off += int64(len(raw))
		return &block{typ: blockEPB, raw: raw, bo: c.bo, pcap: true}, nil
	}
	hdr := make([]byte, 12)
	n, err := io.ReadFull(c.r, hdr[:8])
	if err != nil {
		if err == io.EOF && n == 0 {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%s: truncated block header at byte %d", c.name, c.off)
	}
	typ := binary.LittleEndian.Uint32(hdr[0:4])
	if typ == blockSHB {
		if _, err := io.ReadFull(c.r, hdr[8:12]); err != nil {
			return nil, fmt.Errorf("%s: truncated section header at byte %d", c.name, c.off)
		}
		switch binary.LittleEndian.Uint32(hdr[8:12]) {
		case 0x1A2B3C4D:
			c.bo = binary.LittleEndian
		case 0x4D3C2B1A:
			c.bo = binary.BigEndian
		default:
			return nil, fmt.Errorf("%s: bad byte-order magic at byte %d", c.name, c.off)
		}
		c.ifaces = c.ifaces[:0]
	} else if c.bo == nil {
		return nil, fmt.Errorf("%s: block before the first section header", c.name)
	}
	typ = c.bo.Uint32(hdr[0:4])
	length := c.bo.Uint32(hdr[4:8])
	if length < 12 || length%4 != 0 || length > maxBlockLen {
		return nil, fmt.Errorf("%s: block at byte %d has bad length %d", c.name, c.off, length)
	}
	raw := make([]byte, length)
	got := 8
	if typ == blockSHB {
		got = 12
	}
	copy(raw, hdr[:got])
	if _, err := io.ReadFull(c.r, raw[got:]); err != nil {
		return nil, fmt.Errorf("%s: truncated block at byte %d", c.name, c.off)
	}
	if c.bo.Uint32(raw[length-4:]) != length {
		return nil, fmt.Errorf("%s: block at byte %d: trailing length does not match", c.name, c.off)
	}
	c.off += int64(length)
	b := &block{typ: typ, raw: raw, bo: c.bo}
	if typ == blockIDB {
		if err := c.addIface(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (c *capReader) addIface(b *block) error {
	if len(b.raw) < 20 {
		return fmt.Errorf("%s: short interface description block", c.name)
	}
	info := ifaceInfo{linkType: b.bo.Uint16(b.raw[8:10]), snaplen: b.bo.Uint32(b.raw[12:16]), tsUnitsPerSec: 1e6}
	for _, o := range parseOptions(b.raw[16:len(b.raw)-4], b.bo) {
		switch o.code {
		case 9: // if_tsresol
			if len(o.val) >= 1 {
				v := o.val[0]
				exp := uint(v & 0x7f)
				if v&0x80 != 0 {
					if exp < 64 {
						info.tsUnitsPerSec = 1 << exp
					}
				} else if exp <= 19 {
					info.tsUnitsPerSec = uint64(math.Pow10(int(exp)))
				}
			}
		case 14: // if_tsoffset
			if len(o.val) >= 8 {
				info.tsOffset = int64(b.bo.Uint64(o.val))
			}
		}
	}
	c.ifaces = append(c.ifaces, info)
	return nil
}

// packet describes a packet block's timestamp and data location. ok is false
// for blocks that carry no packet.
type packet struct {
	ok       bool
	hasTime  bool
	ts       time.Time
	iface    int
	dataOff  int // offset of the packet data in raw
	capLen   int
	linkType uint32
}

func (c *capReader) packetOf(b *block) (packet, error) {
	if b.pcap {
		sec := int64(c.bo.Uint32(b.raw[0:4]))
		frac := int64(c.bo.Uint32(b.raw[4:8]))
		if !c.nanos {
			frac *= 1000
		}
		return packet{ok: true, hasTime: true, ts: time.Unix(sec, frac).UTC(), dataOff: 16, capLen: len(b.raw) - 16, linkType: c.linkTyp}, nil
	}
	var p packet
	switch b.typ {
	case blockEPB, blockPB:
		if len(b.raw) < 32 {
			return p, fmt.Errorf("%s: short packet block", c.name)
		}
		var ifid int
		if b.typ == blockEPB {
			ifid = int(b.bo.Uint32(b.raw[8:12]))
		} else {
			ifid = int(b.bo.Uint16(b.raw[8:10]))
		}
		if ifid >= len(c.ifaces) {
			return p, fmt.Errorf("%s: packet on undeclared interface %d", c.name, ifid)
		}
		capLen := int(b.bo.Uint32(b.raw[20:24]))
		if 28+capLen > len(b.raw)-4 {
			return p, fmt.Errorf("%s: packet block data overruns the block", c.name)
		}
		in := c.ifaces[ifid]
		ts := uint64(b.bo.Uint32(b.raw[12:16]))<<32 | uint64(b.bo.Uint32(b.raw[16:20]))
		sec := int64(ts/in.tsUnitsPerSec) + in.tsOffset
		nsec := int64(float64(ts%in.tsUnitsPerSec) * 1e9 / float64(in.tsUnitsPerSec))
		return packet{ok: true, hasTime: true, ts: time.Unix(sec, nsec).UTC(), iface: ifid, dataOff: 28, capLen: capLen, linkType: uint32(in.linkType)}, nil
	case blockSPB:
		if len(c.ifaces) == 0 || len(b.raw) < 16 {
			return p, fmt.Errorf("%s: simple packet block without an interface", c.name)
		}
		orig := int(b.bo.Uint32(b.raw[8:12]))
		capLen := min(orig, len(b.raw)-16)
		if sl := int(c.ifaces[0].snaplen); sl > 0 && capLen > sl {
			capLen = sl
		}
		return packet{ok: true, dataOff: 12, capLen: capLen, linkType: uint32(c.ifaces[0].linkType)}, nil
	}
	return p, nil
}

// option is one pcapng option (code, value without padding).
type option struct {
	code uint16
	val  []byte
}

// parseOptions reads an options list; it stops at opt_endofopt or damage.
func parseOptions(b []byte, bo binary.ByteOrder) []option {
	var out []option
	for len(b) >= 4 {
		code, n := bo.Uint16(b[0:2]), int(bo.Uint16(b[2:4]))
		if code == 0 {
			break
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(b) {
			break
		}
		out = append(out, option{code: code, val: b[4 : 4+n]})
		b = b[4+padded:]
	}
	return out
}

// appendOptions serialises options followed by opt_endofopt (nothing when empty).
func appendOptions(dst []byte, opts []option, bo binary.ByteOrder) []byte {
	if len(opts) == 0 {
		return dst
	}
	for _, o := range opts {
		var h [4]byte
		bo.PutUint16(h[0:2], o.code)
		bo.PutUint16(h[2:4], uint16(len(o.val)))
		dst = append(dst, h[:]...)
		dst = append(dst, o.val...)
		for i := len(o.val); i%4 != 0; i++ {
			dst = append(dst, 0)
		}
	}
	return append(dst, 0, 0, 0, 0)
}

// withUnknownSectionLength returns a copy of an SHB whose section length is
// -1, because a split file's sections are shorter than the original's.
func withUnknownSectionLength(b *block) []byte {
	raw := append([]byte(nil), b.raw...)
	if len(raw) >= 24 {
		b.bo.PutUint64(raw[16:24], math.MaxUint64)
	}
	return raw
}
