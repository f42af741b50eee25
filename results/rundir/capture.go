package rundir

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"os"
	"time"
)

// Repair is what RepairCapture did to a capture file.
type Repair struct {
	// Packets is the number of packets the file holds after the repair.
	Packets uint64 `json:"packets"`
	// Last is the timestamp of the last packet; zero when there is none.
	Last time.Time `json:"last,omitzero"`
	// Truncated is how many bytes of a torn last block were cut off.
	Truncated int64 `json:"truncated,omitempty"`
	// Statistics says an Interface Statistics Block was appended.
	Statistics bool `json:"statistics,omitempty"`
}

// pcapng block types.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 1
	blockPB  = 2 // obsolete Packet Block
	blockSPB = 3
	blockISB = 5
	blockEPB = 6
)

// byteOrder is a section's byte order, for reading and writing.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// iface is what the walk learns about one interface of the last section.
type iface struct {
	tsresol  byte  // if_tsresol (default 6: microseconds)
	tsoffset int64 // if_tsoffset, seconds
	packets  uint64
	last     time.Time
	stats    bool // an ISB follows its last packet
}

// RepairCapture makes whole a pcapng file that a killed writer left: a torn
// last block (the writer died in the middle of it) is cut off, so that every
// reader gets to the last complete packet, and each interface of the last
// section without statistics after its last packet gets an Interface
// Statistics Block with what is still known: start (if not zero) and end of
// the capture, the packets delivered into the file, and comment. The
// kernel's receive and drop counters died with the writer and are not
// invented. A file that is already whole is left as it is. Damage that is not
// a torn end (a bad block followed by more data) is an error, and the file
// is not changed: cutting there would lose packets.
func RepairCapture(path string, start time.Time, comment string) (Repair, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return Repair{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Repair{}, err
	}
	size := fi.Size()
	var (
		r      Repair
		order  byteOrder = binary.LittleEndian
		ifaces []*iface
		off    int64
		hdr    [12]byte
	)
walk:
	for off < size {
		// A block that does not parse ends the walk: cut off when it is a
		// torn end, an error otherwise.
		torn := func() error {
			if err := cutTorn(f, path, off, size, &r); err != nil {
				return err
			}
			size = off
			return nil
		}
		n, _ := f.ReadAt(hdr[:], off)
		typ := order.Uint32(hdr[0:4])
		if n >= 4 && (binary.LittleEndian.Uint32(hdr[0:4]) == blockSHB) {
			typ = blockSHB
			if n < 12 {
				if err := torn(); err != nil {
					return r, err
				}
				break walk
			}
			switch binary.LittleEndian.Uint32(hdr[8:12]) {
			case 0x1A2B3C4D:
				order = binary.LittleEndian
			case 0x4D3C2B1A:
				order = binary.BigEndian
			default:
				return r, fmt.Errorf("capture %s: section header at offset %d has no byte-order magic: not a pcapng file, left as it is", path, off)
			}
			ifaces = nil // interfaces are numbered per section
		}
		length := int64(order.Uint32(hdr[4:8]))
		if n < 8 || length < 12 || length%4 != 0 || off+length > size {
			if err := torn(); err != nil {
				return r, err
			}
			break walk
		}
		body := make([]byte, length-8)
		if _, err := f.ReadAt(body, off+8); err != nil {
			return r, fmt.Errorf("capture %s: %w", path, err)
		}
		if int64(order.Uint32(body[len(body)-4:])) != length {
			if err := torn(); err != nil {
				return r, err
			}
			break walk
		}
		body = body[:len(body)-4]
		switch typ {
		case blockIDB:
			ifaces = append(ifaces, readIDB(body, order))
		case blockEPB, blockPB:
			if len(body) >= 12 {
				id := order.Uint32(body[0:4])
				if typ == blockPB {
					id = uint32(order.Uint16(body[0:2]))
				}
				if int(id) < len(ifaces) {
					in := ifaces[id]
					in.packets++
					in.stats = false
					in.last = in.time(uint64(order.Uint32(body[4:8]))<<32 | uint64(order.Uint32(body[8:12])))
				}
			}
			r.Packets++
		case blockSPB:
			if len(ifaces) > 0 {
				ifaces[0].packets++
				ifaces[0].stats = false
			}
			r.Packets++
		case blockISB:
			if len(body) >= 4 {
				if id := order.Uint32(body[0:4]); int(id) < len(ifaces) {
					ifaces[id].stats = true
				}
			}
		}
		off += length
	}
	for _, in := range ifaces {
		if in.last.After(r.Last) {
			r.Last = in.last
		}
	}
	var add []byte
	for id, in := range ifaces {
		if !in.stats {
			add = append(add, isb(order, uint32(id), in, start, comment)...)
		}
	}
	if len(add) == 0 {
		return r, nil
	}
	if _, err := f.WriteAt(add, size); err != nil {
		return r, fmt.Errorf("capture %s: appending interface statistics: %w", path, err)
	}
	r.Statistics = true
	return r, f.Sync()
}

// cutTorn handles a block at off that does not parse: when it is the file's
// end (it runs past the end, or only zeros follow, as a crash can leave),
// the file is cut there; otherwise the damage is inside the file, which is
// left alone.
func cutTorn(f *os.File, path string, off, size int64, r *Repair) error {
	if !tornTail(f, off, size) {
		return fmt.Errorf("capture %s: damaged block at offset %d with data after it (not a torn end): left as it is", path, off)
	}
	if off == 0 {
		return fmt.Errorf("capture %s: not even the section header is complete (%d bytes): nothing to keep", path, size)
	}
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("capture %s: cutting the torn last block: %w", path, err)
	}
	r.Truncated = size - off
	return nil
}

// tornTail reports whether the bytes from off to the end are a block that
// was being written: one whose declared length runs past the end of the
// file, a header too short to say, or nothing but zeros.
func tornTail(f *os.File, off, size int64) bool {
	rest := size - off
	if rest < 12 {
		return true
	}
	var hdr [12]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return false
	}
	le, be := int64(binary.LittleEndian.Uint32(hdr[4:8])), int64(binary.BigEndian.Uint32(hdr[4:8]))
	if le > rest && be > rest {
		return true
	}
	buf := make([]byte, 64<<10)
	for p := off; p < size; {
		n, err := f.ReadAt(buf, p)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		p += int64(n)
		if err == io.EOF || n == 0 {
			break
		}
	}
	return true
}

// readIDB reads the timestamp options of an Interface Description Block.
func readIDB(body []byte, order byteOrder) *iface {
	in := &iface{tsresol: 6}
	if len(body) < 8 {
		return in
	}
	for opts := body[8:]; len(opts) >= 4; {
		code, n := order.Uint16(opts[0:2]), int(order.Uint16(opts[2:4]))
		if code == 0 || 4+n > len(opts) {
			break
		}
		v := opts[4 : 4+n]
		switch {
		case code == 9 && n == 1: // if_tsresol
			in.tsresol = v[0]
		case code == 14 && n == 8: // if_tsoffset
			in.tsoffset = int64(order.Uint64(v))
		}
		opts = opts[4+(n+3)/4*4:]
	}
	return in
}

// unitsPerSecond is the interface's timestamp resolution.
func (in *iface) unitsPerSecond() *big.Int {
	if in.tsresol&0x80 != 0 {
		return new(big.Int).Lsh(big.NewInt(1), uint(in.tsresol&0x7f))
	}
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(in.tsresol)), nil)
}

// time converts a timestamp in the interface's units.
func (in *iface) time(units uint64) time.Time {
	ns := new(big.Int).Mul(new(big.Int).SetUint64(units), big.NewInt(1e9))
	ns.Quo(ns, in.unitsPerSecond())
	return time.Unix(in.tsoffset, ns.Int64()).UTC()
}

// units converts a time into the interface's timestamp units.
func (in *iface) units(t time.Time) uint64 {
	u := new(big.Int).Mul(big.NewInt(t.Add(-time.Duration(in.tsoffset)*time.Second).UnixNano()), in.unitsPerSecond())
	return u.Quo(u, big.NewInt(1e9)).Uint64()
}

// isb encodes an Interface Statistics Block for interface id.
func isb(order byteOrder, id uint32, in *iface, start time.Time, comment string) []byte {
	var opts []byte
	opt := func(code uint16, v []byte) {
		opts = order.AppendUint16(opts, code)
		opts = order.AppendUint16(opts, uint16(len(v)))
		opts = append(opts, v...)
		for len(opts)%4 != 0 {
			opts = append(opts, 0)
		}
	}
	ts := func(t time.Time) []byte {
		u := in.units(t)
		return order.AppendUint32(order.AppendUint32(nil, uint32(u>>32)), uint32(u))
	}
	if len(comment) > 0xffff {
		comment = comment[:0xffff]
	}
	if comment != "" {
		opt(1, []byte(comment)) // opt_comment
	}
	if !start.IsZero() {
		opt(2, ts(start)) // isb_starttime
	}
	end := in.last
	if end.IsZero() {
		end = start
	}
	if !end.IsZero() {
		opt(3, ts(end)) // isb_endtime
	}
	opt(8, order.AppendUint64(nil, in.packets)) // isb_usrdeliv: packets delivered into this file
	opt(0, nil)                                 // opt_endofopt

	total := uint32(4 + 4 + 4 + 8 + len(opts) + 4)
	b := order.AppendUint32(nil, blockISB)
	b = order.AppendUint32(b, total)
	b = order.AppendUint32(b, id)
	b = append(b, ts(end)...)
	b = append(b, opts...)
	return order.AppendUint32(b, total)
}
