// Package capfile reads pcap and pcapng captures, optionally gzip-compressed,
// recognised by their magic numbers (never by file extension).
//
// It is written for the analyzer's hot path: packet data is returned as a slice
// into the read buffer (valid until the next call to Next), nothing is
// allocated per packet, and every length read from the file is checked before
// use so damaged files give errors, not panics.
package capfile

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"

	"golang.org/x/sys/unix"
)

// bufSize is the read buffer; records up to this size are returned without copying.
const bufSize = 1 << 20

// maxRecord bounds a record or block length; anything larger is damage, not data.
const maxRecord = 64 << 20

// Error is a problem in the capture file at a byte offset. Offsets count bytes
// of the decompressed stream when the file is gzip-compressed.
type Error struct {
	File   string
	Offset int64
	// Gzip tells that Offset counts decompressed bytes.
	Gzip bool
	Msg  string
	Err  error // may be nil
}

func (e *Error) Error() string {
	where := "byte offset"
	if e.Gzip {
		where = "decompressed byte offset"
	}
	s := fmt.Sprintf("capture %s: %s at %s %d", e.File, e.Msg, where, e.Offset)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ErrDamaged marks damage found inside a capture after a valid header: the
// packets before it are good, reading cannot go on. Next returns an *Error that
// wraps it.
var ErrDamaged = errors.New("capture damaged")

// Packet is one packet record.
type Packet struct {
	// TS is the timestamp in nanoseconds since the Unix epoch.
	TS int64
	// Iface is the pcapng interface index (0 for pcap).
	Iface int
	// LinkType is the LINKTYPE_ value of the packet's interface.
	LinkType uint32
	// Secrets is set when Next returned ErrSecrets: the Decryption Secrets
	// Block's secrets type (e.g. 0x544c534b, an NSS key log), with the
	// secrets in Data. (Beside LinkType it takes no room: padding.)
	Secrets uint32
	// Data holds the captured bytes; valid until the next call to Next.
	Data []byte
	// OrigLen is the packet's length on the wire (≥ len(Data)).
	OrigLen int
	// Offset is the record's byte offset in the (decompressed) file.
	Offset int64
}

// ErrSecrets is what Next returns, with WantSecrets, for a pcapng Decryption
// Secrets Block: not a packet, not an error either. It is an error value so
// that reading packets costs nothing more per packet.
var ErrSecrets = errors.New("capfile: decryption secrets block")

type iface struct {
	linkType uint32
	snaplen  uint32
	mul, div uint64 // ns = units*mul/div for decimal resolutions
	shift    uint   // binary resolution 2^-shift when > 0
	offsetNS int64  // if_tsoffset
}

// Reader reads packets from a pcap or pcapng stream.
type Reader struct {
	name    string
	file    *os.File
	gz      *gzip.Reader
	br      *bufio.Reader
	mem     []byte // the whole file when mapped (OpenMapped); br is nil then
	pos     int    // in mem: bytes consumed
	dropped int    // in mem: bytes whose pages were handed back
	off     int64  // offset of the next unread byte
	pending int    // bytes handed out by take, to discard before reading on
	format  string
	isGzip  bool

	order binary.ByteOrder
	// pcap
	nano     bool
	extraHdr int // 8 for the "modified" (Kuznetzov) pcap format
	ifaces   []iface
	allLinks []uint32 // link types in interface order across sections
	scratch  []byte
	done     bool
	secrets  bool // return Decryption Secrets Blocks from Next
}

// WantSecrets makes Next return pcapng Decryption Secrets Blocks too, in
// file order among the packets, as ErrSecrets; by default they are skipped
// like other non-packet blocks.
func (r *Reader) WantSecrets() { r.secrets = true }

// Open opens a capture file. Close releases it.
func Open(name string) (*Reader, error) { return open(name, false) }

// OpenMapped is Open, but an uncompressed file is mapped into memory instead
// of read, so packets are not copied out of the page cache. Packet data then
// stays valid until Close.
//
// A file that shrinks while it is mapped faults (SIGBUS) when the lost pages
// are touched: callers must read with debug.SetPanicOnFault(true) and
// recover (see IsFault). Compressed files, and anything that cannot be
// mapped, are read as Open reads them.
func OpenMapped(name string) (*Reader, error) { return open(name, true) }

func open(name string, mapped bool) (*Reader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("opening capture: %w", err)
	}
	var r *Reader
	if mem, ok := mapFile(f, mapped); ok {
		r = &Reader{name: name, mem: mem}
		err = r.readHeader()
	} else {
		r, err = NewReader(f, name)
	}
	if err != nil {
		if r != nil {
			r.Close() // unmaps
		}
		f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// mapFile maps a regular, uncompressed file read-only when mapped is set;
// ok is false when it is to be read instead.
func mapFile(f *os.File, mapped bool) (mem []byte, ok bool) {
	if !mapped {
		return nil, false
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < 4 || int64(int(fi.Size())) != fi.Size() {
		return nil, false
	}
	var head [2]byte
	if _, err := f.ReadAt(head[:], 0); err != nil || head[0] == 0x1f && head[1] == 0x8b {
		return nil, false
	}
	mem, err = unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, false
	}
	_ = unix.Madvise(mem, unix.MADV_SEQUENTIAL)
	return mem, true
}

// IsFault reports whether v, a value recovered from a panic, is the memory
// fault of a mapped file that shrank (under debug.SetPanicOnFault).
func IsFault(v any) bool {
	_, ok := v.(interface{ Addr() uintptr })
	return ok
}

// NewReader reads a capture from rd; name is used in error messages.
func NewReader(rd io.Reader, name string) (*Reader, error) {
	r := &Reader{name: name, br: bufio.NewReaderSize(rd, bufSize)}
	head, err := r.br.Peek(4)
	if len(head) == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, r.errf(0, nil, "empty file")
		}
		return nil, r.errf(0, err, "reading file header")
	}
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		gz, err := gzip.NewReader(r.br)
		if err != nil {
			return nil, r.errf(0, err, "bad gzip header")
		}
		r.gz = gz
		r.isGzip = true
		r.br = bufio.NewReaderSize(gz, bufSize)
		head, err = r.br.Peek(4)
		if len(head) == 0 {
			return nil, r.errf(0, err, "empty file inside gzip")
		}
	}
	if err := r.readHeader(); err != nil {
		return nil, err
	}
	return r, nil
}

// readHeader recognises the format by its magic and reads the file header.
func (r *Reader) readHeader() error {
	head, err := r.peek(4)
	if len(head) < 4 {
		return r.errf(0, err, "truncated file header (%d bytes)", len(head))
	}
	switch {
	case isPcapMagic(head):
		r.format = "pcap"
		return r.readPcapHeader()
	case binary.LittleEndian.Uint32(head) == blockSHB:
		r.format = "pcapng"
		return r.readFirstSHB()
	}
	return r.errf(0, nil, "not a pcap or pcapng file (magic %x)", head)
}

// Close releases the file.
func (r *Reader) Close() error {
	var err error
	if r.gz != nil {
		err = r.gz.Close()
	}
	if r.mem != nil {
		err = unix.Munmap(r.mem)
		r.mem = nil
	}
	if r.file != nil {
		if e := r.file.Close(); err == nil {
			err = e
		}
	}
	return err
}

// Name is the file name given to Open or NewReader.
func (r *Reader) Name() string { return r.name }

// Format is "pcap" or "pcapng".
func (r *Reader) Format() string { return r.format }

// Gzip reports whether the stream was gzip-compressed.
func (r *Reader) Gzip() bool { return r.isGzip }

// LinkTypes lists the link types of the interfaces seen so far, in order
// (after the whole file is read: of all interfaces).
func (r *Reader) LinkTypes() []uint32 { return r.allLinks }

func (r *Reader) errf(off int64, err error, format string, args ...any) *Error {
	return &Error{File: r.name, Offset: off, Gzip: r.isGzip, Msg: fmt.Sprintf(format, args...), Err: err}
}

func (r *Reader) damage(off int64, err error, format string, args ...any) *Error {
	if err == nil {
		err = ErrDamaged
	} else {
		err = fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	r.done = true
	return r.errf(off, err, format, args...)
}

func isPcapMagic(b []byte) bool {
	le, be := binary.LittleEndian.Uint32(b), binary.BigEndian.Uint32(b)
	for _, m := range []uint32{magicMicro, magicNano, magicModified} {
		if le == m || be == m {
			return true
		}
	}
	return false
}

const (
	magicMicro    = 0xa1b2c3d4
	magicNano     = 0xa1b23c4d
	magicModified = 0xa1b2cd34
)

func (r *Reader) readPcapHeader() error {
	h, err := r.peek(24)
	if len(h) < 24 {
		return r.errf(int64(len(h)), err, "truncated pcap file header")
	}
	if binary.LittleEndian.Uint32(h) == magicMicro || binary.LittleEndian.Uint32(h) == magicNano || binary.LittleEndian.Uint32(h) == magicModified {
		r.order = binary.LittleEndian
	} else {
		r.order = binary.BigEndian
	}
	switch r.order.Uint32(h) {
	case magicNano:
		r.nano = true
	case magicModified:
		r.extraHdr = 8
	}
	snap := r.order.Uint32(h[16:])
	lt := r.order.Uint32(h[20:]) & 0xffff // upper bits carry FCS information
	r.ifaces = []iface{{linkType: lt, snaplen: snap, mul: 1, div: 1}}
	r.allLinks = []uint32{lt}
	r.discard(24)
	r.off = 24
	return nil
}

// Next reads the next packet into p. It returns io.EOF at the end of the file
// and an *Error wrapping ErrDamaged when the file is damaged.
func (r *Reader) Next(p *Packet) error {
	if r.done {
		return io.EOF
	}
	if r.pending > 0 {
		r.discard(r.pending) // already peeked: cannot fail
		r.pending = 0
	}
	if r.format == "pcap" {
		return r.nextPcap(p)
	}
	return r.nextNg(p)
}

// take returns the next n bytes and counts them as read. They stay valid until
// the next call to Next: without a copy when they fit the buffer.
func (r *Reader) take(n int) ([]byte, error) {
	if n <= bufSize || r.mem != nil {
		b, err := r.peek(n)
		if len(b) < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return b, err
		}
		r.pending = n
		r.off += int64(n)
		return b, nil
	}
	if cap(r.scratch) < n {
		r.scratch = make([]byte, n)
	}
	b := r.scratch[:n]
	got, err := io.ReadFull(r.br, b)
	r.off += int64(got)
	if err != nil {
		return b[:got], err
	}
	return b, nil
}

func (r *Reader) nextPcap(p *Packet) error {
	hl := 16 + r.extraHdr
	h, err := r.peek(hl)
	if len(h) == 0 && (err == nil || errors.Is(err, io.EOF)) {
		r.done = true
		return io.EOF
	}
	if len(h) < hl {
		return r.damage(r.off, err, "truncated record header")
	}
	sec := uint64(r.order.Uint32(h))
	frac := uint64(r.order.Uint32(h[4:]))
	incl := r.order.Uint32(h[8:])
	orig := r.order.Uint32(h[12:])
	if incl > maxRecord {
		return r.damage(r.off, nil, "record length %d is implausible", incl)
	}
	if !r.nano {
		frac *= 1000
	}
	start := r.off
	var data []byte
	if n := hl + int(incl); n <= bufSize || r.mem != nil {
		// Header and data in one peek: the common case, one buffer call.
		b, err := r.peek(n)
		if len(b) < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return r.damage(start, err, "truncated record (%d of %d bytes)", len(b)-hl, incl)
		}
		r.pending = n
		r.off += int64(n)
		data = b[hl:]
	} else {
		r.discard(hl)
		r.off += int64(hl)
		if data, err = r.take(int(incl)); err != nil {
			return r.damage(start, err, "truncated record (%d of %d bytes)", len(data), incl)
		}
	}
	if orig < incl {
		orig = incl
	}
	*p = Packet{
		TS:       int64(sec*1e9 + frac),
		LinkType: r.ifaces[0].linkType,
		Data:     data,
		OrigLen:  int(orig),
		Offset:   start,
	}
	return nil
}

// pcapng block types.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 1
	blockPB  = 2 // obsolete packet block
	blockSPB = 3
	blockEPB = 6
	blockDSB = 10
)

func (r *Reader) readFirstSHB() error {
	h, err := r.peek(12)
	if len(h) < 12 {
		return r.errf(int64(len(h)), err, "truncated pcapng section header")
	}
	switch binary.LittleEndian.Uint32(h[8:]) {
	case 0x1A2B3C4D:
		r.order = binary.LittleEndian
	case 0x4D3C2B1A:
		r.order = binary.BigEndian
	default:
		return r.errf(8, nil, "bad pcapng byte-order magic %x", h[8:12])
	}
	blen := r.order.Uint32(h[4:])
	if blen < 28 || blen%4 != 0 || blen > maxRecord {
		return r.errf(4, nil, "bad pcapng section header length %d", blen)
	}
	return nil
}

func (r *Reader) nextNg(p *Packet) error {
	for {
		if r.pending > 0 {
			r.discard(r.pending)
			r.pending = 0
		}
		start := r.off
		h, err := r.peek(12)
		if len(h) == 0 && (err == nil || errors.Is(err, io.EOF)) {
			r.done = true
			return io.EOF
		}
		if len(h) < 12 {
			return r.damage(start, err, "truncated block header")
		}
		btype := r.order.Uint32(h)
		if btype == blockSHB {
			// A new section may switch byte order.
			switch binary.LittleEndian.Uint32(h[8:]) {
			case 0x1A2B3C4D:
				r.order = binary.LittleEndian
			case 0x4D3C2B1A:
				r.order = binary.BigEndian
			default:
				return r.damage(start+8, nil, "bad pcapng byte-order magic")
			}
			r.ifaces = r.ifaces[:0]
		}
		blen := r.order.Uint32(h[4:])
		if blen < 12 || blen%4 != 0 || blen > maxRecord {
			return r.damage(start+4, nil, "bad block length %d", blen)
		}
		block, err := r.take(int(blen))
		if err != nil {
			return r.damage(start, err, "truncated block (%d of %d bytes)", len(block), blen)
		}
		if r.order.Uint32(block[blen-4:]) != blen {
			return r.damage(start+int64(blen)-4, nil, "block trailer length does not match header length %d", blen)
		}
		body := block[8 : blen-4]
		switch btype {
		case blockSHB:
			if len(body) < 16 {
				return r.damage(start, nil, "short section header block")
			}
		case blockIDB:
			if len(body) < 8 {
				return r.damage(start, nil, "short interface description block")
			}
			ifc := iface{linkType: uint32(r.order.Uint16(body)), snaplen: r.order.Uint32(body[4:]), mul: 1e3, div: 1}
			r.readIDBOptions(&ifc, body[8:])
			r.ifaces = append(r.ifaces, ifc)
			r.allLinks = append(r.allLinks, ifc.linkType)
		case blockEPB, blockPB:
			if len(body) < 20 {
				return r.damage(start, nil, "short packet block")
			}
			var id uint32
			if btype == blockEPB {
				id = r.order.Uint32(body)
			} else {
				id = uint32(r.order.Uint16(body))
			}
			if int(id) >= len(r.ifaces) {
				return r.damage(start, nil, "packet block for undeclared interface %d", id)
			}
			units := uint64(r.order.Uint32(body[4:]))<<32 | uint64(r.order.Uint32(body[8:]))
			capl := r.order.Uint32(body[12:])
			orig := r.order.Uint32(body[16:])
			if uint64(capl) > uint64(len(body)-20) {
				return r.damage(start, nil, "packet block captured length %d exceeds block", capl)
			}
			if orig < capl {
				orig = capl
			}
			ifc := &r.ifaces[id]
			*p = Packet{TS: ifc.ns(units), Iface: int(id), LinkType: ifc.linkType, Data: body[20 : 20+capl], OrigLen: int(orig), Offset: start}
			return nil
		case blockSPB:
			if len(body) < 4 || len(r.ifaces) == 0 {
				return r.damage(start, nil, "bad simple packet block")
			}
			orig := r.order.Uint32(body)
			capl := uint32(len(body) - 4)
			if orig < capl {
				capl = orig
			}
			if s := r.ifaces[0].snaplen; s > 0 && capl > s {
				capl = s
			}
			// A simple packet block has no timestamp; it gets time 0.
			*p = Packet{LinkType: r.ifaces[0].linkType, Data: body[4 : 4+capl], OrigLen: int(orig), Offset: start}
			return nil
		case blockDSB:
			if !r.secrets {
				continue
			}
			if len(body) < 8 {
				return r.damage(start, nil, "short decryption secrets block")
			}
			typ, n := r.order.Uint32(body), r.order.Uint32(body[4:])
			if uint64(n) > uint64(len(body)-8) {
				return r.damage(start, nil, "decryption secrets length %d exceeds block", n)
			}
			*p = Packet{Data: body[8 : 8+n], Offset: start, Secrets: typ}
			return ErrSecrets
		default:
			// Name resolution, statistics, custom and unknown blocks carry no packets.
		}
	}
}

func (r *Reader) readIDBOptions(ifc *iface, opts []byte) {
	for len(opts) >= 4 {
		code := r.order.Uint16(opts)
		l := int(r.order.Uint16(opts[2:]))
		if code == 0 || 4+l > len(opts) {
			return
		}
		v := opts[4 : 4+l]
		switch {
		case code == 9 && l >= 1: // if_tsresol
			res := v[0]
			if res&0x80 != 0 {
				sh := uint(res & 0x7f)
				if sh < 64 {
					ifc.shift, ifc.mul, ifc.div = sh, 0, 0
				}
			} else if e := int(res); e <= 9 {
				ifc.mul, ifc.div = pow10(9-e), 1
			} else if e <= 19 {
				ifc.mul, ifc.div = 1, pow10(e-9)
			}
		case code == 14 && l >= 8: // if_tsoffset, seconds
			ifc.offsetNS = int64(r.order.Uint64(v)) * 1e9
		}
		opts = opts[4+(l+3)&^3:]
	}
}

func pow10(e int) uint64 {
	v := uint64(1)
	for ; e > 0; e-- {
		v *= 10
	}
	return v
}

func (ifc *iface) ns(units uint64) int64 {
	if ifc.mul == 0 && ifc.div == 0 {
		if ifc.shift == 0 {
			return int64(units)*1e9 + ifc.offsetNS
		}
		hi, lo := bits.Mul64(units, 1e9)
		return int64(hi<<(64-ifc.shift)|lo>>ifc.shift) + ifc.offsetNS
	}
	return int64(units*ifc.mul/ifc.div) + ifc.offsetNS
}

// peek returns the next n bytes without consuming them (fewer, with the
// error, at the end of the input).
func (r *Reader) peek(n int) ([]byte, error) {
	if r.mem == nil {
		return r.br.Peek(n)
	}
	if rest := r.mem[r.pos:]; len(rest) < n {
		return rest, io.EOF
	}
	// Capped: an append must not write into the (read-only) mapping.
	return r.mem[r.pos : r.pos+n : r.pos+n], nil
}

// dropEvery is how much of a mapped file is read between handing its pages
// back: by the end the mapping would otherwise count the whole file as the
// process's memory.
const dropEvery = 16 << 20

// discard consumes n peeked bytes.
func (r *Reader) discard(n int) {
	if r.mem == nil {
		r.br.Discard(n)
		return
	}
	r.pos += n
	if r.pos-r.dropped >= dropEvery {
		end := r.pos &^ (os.Getpagesize() - 1)
		// The pages stay in the page cache; only this mapping lets go of them.
		_ = unix.Madvise(r.mem[r.dropped:end], unix.MADV_DONTNEED)
		r.dropped = end
	}
}
