package quic

// CryptoStream assembles CRYPTO frames of one connection (several Initials, in any
// order) into the contiguous crypto stream from offset 0.
//
// The zero value is ready to use. Memory stays below twice max: frames
// are copied, and data at or beyond max is dropped.
type CryptoStream struct {
	buf     []byte        // contiguous bytes from offset 0
	pending []CryptoFrame // frames that start beyond len(buf), copied and clipped to max
	held    int           // bytes in pending, kept at most max
}

// Add adds a frame; data beyond max bytes from offset 0 is ignored.
func (s *CryptoStream) Add(f CryptoFrame, max int) {
	if max <= 0 || f.Offset >= uint64(max) || len(f.Data) == 0 {
		return
	}
	off := int(f.Offset)
	data := f.Data
	if len(data) > max-off {
		data = data[:max-off]
	}
	if off > len(s.buf) {
		// A gap before it: keep a copy until the gap fills, unless the
		// bytes are already held.
		for _, p := range s.pending {
			if p.Offset <= f.Offset && int(p.Offset)+len(p.Data) >= off+len(data) {
				return
			}
		}
		if s.held+len(data) > max {
			return // a flood of overlapping frames; real hellos fit in max
		}
		s.held += len(data)
		s.pending = append(s.pending, CryptoFrame{Offset: f.Offset, Data: append([]byte(nil), data...)})
		return
	}
	s.extend(off, data)
	// Frames held back may now connect; repeat until none does.
	for progress := true; progress; {
		progress = false
		kept := s.pending[:0]
		for _, p := range s.pending {
			po := int(p.Offset)
			switch {
			case po <= len(s.buf):
				s.extend(po, p.Data)
				s.held -= len(p.Data)
				progress = true
			default:
				kept = append(kept, p)
			}
		}
		clear(s.pending[len(kept):])
		s.pending = kept
	}
}

// extend appends the part of data (at offset off <= len(s.buf)) that lies
// beyond the current end; overlapping bytes already held win (RFC 9000 2.2
// lets a receiver assume retransmitted bytes are identical).
func (s *CryptoStream) extend(off int, data []byte) {
	if end := off + len(data); end > len(s.buf) {
		s.buf = append(s.buf, data[len(s.buf)-off:]...)
	}
}

// Bytes returns the contiguous bytes from offset 0 (a ClientHello handshake message
// starts there: type 1, 3-byte length, body).
func (s *CryptoStream) Bytes() []byte { return s.buf }

// Reset empties the stream, keeping its memory for reuse.
func (s *CryptoStream) Reset() {
	s.buf = s.buf[:0]
	clear(s.pending)
	s.pending = s.pending[:0]
	s.held = 0
}
