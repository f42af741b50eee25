package decode

import (
	"bytes"
	"sort"
)

// Defragmenter reassembles IPv4 and IPv6 fragments, within fixed bounds so a
// capture full of fragments cannot exhaust memory: at most MaxDatagrams
// incomplete datagrams, each at most 65535 payload bytes, dropped after
// Timeout nanoseconds of packet time.
type Defragmenter struct {
	MaxDatagrams int
	Timeout      int64
	m            map[fragKey]*fragBuf
}

type fragKey struct {
	version  uint8
	proto    uint8
	src, dst [16]byte
	id       uint32
}

type fragPart struct {
	off  int
	data []byte
}

type fragBuf struct {
	first  int64
	hdrLen int
	total  int // -1 until the last fragment is seen
	size   int
	parts  []fragPart
}

// NewDefragmenter returns a defragmenter with the default bounds (1024
// datagrams, 30 s).
func NewDefragmenter() *Defragmenter {
	return &Defragmenter{MaxDatagrams: 1024, Timeout: 30e9, m: make(map[fragKey]*fragBuf)}
}

const maxDatagram = 65535

// Add stores the fragment in p (p.Fragment must be set) seen at packet time
// now. When the datagram is complete it decodes the transport layer into p
// (clearing p.Fragment) and returns true. dropped counts fragments discarded.
func (d *Defragmenter) Add(p *Packet, now int64) (complete bool, dropped int) {
	dropped = d.expire(now)
	k := fragKey{version: p.IPVersion, proto: p.Proto, src: p.Src, dst: p.Dst, id: p.FragID}
	fb := d.m[k]
	if fb == nil {
		if len(d.m) >= d.MaxDatagrams {
			dropped += d.evictOldest()
		}
		fb = &fragBuf{first: now, total: -1, hdrLen: len(p.IP) - len(p.FragData)}
		d.m[k] = fb
	}
	end := p.FragOff + len(p.FragData)
	if end > maxDatagram || fb.size+len(p.FragData) > maxDatagram*2 {
		delete(d.m, k)
		return false, dropped + len(fb.parts) + 1
	}
	fb.parts = append(fb.parts, fragPart{off: p.FragOff, data: bytes.Clone(p.FragData)})
	fb.size += len(p.FragData)
	if p.FragOff == 0 {
		fb.hdrLen = len(p.IP) - len(p.FragData)
	}
	if !p.FragMore {
		fb.total = p.FragOff + p.FragTotal
	}
	if fb.total < 0 {
		return false, dropped
	}
	sort.SliceStable(fb.parts, func(i, j int) bool { return fb.parts[i].off < fb.parts[j].off })
	cur := 0
	for _, pt := range fb.parts {
		if pt.off > cur {
			return false, dropped
		}
		if e := pt.off + len(pt.data); e > cur {
			cur = e
		}
	}
	if cur < fb.total {
		return false, dropped
	}
	buf := make([]byte, fb.total)
	// Copy in reverse arrival order so the first copy of overlapping data wins.
	for i := len(fb.parts) - 1; i >= 0; i-- {
		pt := fb.parts[i]
		if pt.off < len(buf) {
			copy(buf[pt.off:], pt.data)
		}
	}
	delete(d.m, k)
	p.Fragment = false
	p.FragData = nil
	p.IPLen = fb.hdrLen + fb.total
	p.Truncated = false
	if kind := decodeL4(buf, len(buf), p); kind != OK {
		return false, dropped
	}
	return true, dropped
}

// Pending returns the number of incomplete datagrams' fragments and forgets them (end of input).
func (d *Defragmenter) Pending() int {
	n := 0
	for k, fb := range d.m {
		n += len(fb.parts)
		delete(d.m, k)
	}
	return n
}

func (d *Defragmenter) expire(now int64) int {
	n := 0
	for k, fb := range d.m {
		if now-fb.first > d.Timeout {
			n += len(fb.parts)
			delete(d.m, k)
		}
	}
	return n
}

func (d *Defragmenter) evictOldest() int {
	var oldest fragKey
	var ob *fragBuf
	for k, fb := range d.m {
		if ob == nil || fb.first < ob.first || (fb.first == ob.first && keyLess(k, oldest)) {
			oldest, ob = k, fb
		}
	}
	if ob == nil {
		return 0
	}
	delete(d.m, oldest)
	return len(ob.parts)
}

func keyLess(a, b fragKey) bool {
	if c := bytes.Compare(a.src[:], b.src[:]); c != 0 {
		return c < 0
	}
	if c := bytes.Compare(a.dst[:], b.dst[:]); c != 0 {
		return c < 0
	}
	return a.id < b.id
}
