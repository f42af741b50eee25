package analyzer

import (
	"sort"

	"github.com/firstboot/firstboot/analyzer/decode"
	"github.com/firstboot/firstboot/analyzer/quic"
	"github.com/firstboot/firstboot/results/schema"
)

// TCP endpoint states, after Zeek's TCP_ENDPOINT_* (used for conn_state).
const (
	tcpInactive uint8 = iota
	tcpSynSent
	tcpSynAckSent
	tcpPartial
	tcpEstablished
	tcpClosed
	tcpReset
)

// Bounds on out-of-order TCP data kept per direction.
const (
	maxOOOSegs  = 32
	maxOOOBytes = 64 << 10
)

type oooSeg struct {
	rel  int64
	n    int64
	data []byte // nil when the stream is not being parsed
}

// dir is one direction of a flow: 0 orig → resp, 1 resp → orig.
type dir struct {
	// Every packet updates these: they share a cache line.
	pkts    int64
	ipBytes int64
	payload int64 // UDP/ICMP payload; TCP uses hi
	mac     [6]byte
	hasMAC  bool
	histSet uint32 // letters already in history, bit per letter
	// C, T, W repeat in the history on a log scale (1, 10, 100 …).
	scaled [3]struct{ n, next uint32 }

	// A TCP flow's state, nil in other flows: two thirds of the flows in
	// the bench capture are UDP, and need none of it.
	*tcpDir
}

// tcpDir is one direction of a TCP connection.
type tcpDir struct {
	state   uint8
	seqInit bool
	base    uint32 // sequence number of relative offset 0
	next    int64  // next expected relative offset
	hi      int64  // highest relative end seen: Zeek's endpoint size
	missed  int64
	ooo     []oooSeg
	// Zeek repeats S/H, F and R when the sequence number differs from the
	// last packet with that flag.
	lastSYN, lastFIN, lastRST uint32
	synMSS                    uint16 // MSS option of this direction's SYN
	stream                    stream
}

type flow struct {
	// What every packet reads comes first: with the start of each
	// direction's counters, a packet touches two or three cache lines of
	// a flow, not five.
	key      flowKey
	origIsA  bool
	icmpType uint8
	icmpCode uint8
	app      uint8 // application protocol state
	first    int64
	last     int64
	step     int
	d        [2]dir
	dnsPend  []dnsPending

	uid     string
	origH   string // address strings, once connID has made them
	respH   string
	history []byte // in histBuf while it fits: most flows' histories are short
	histBuf [16]byte
	service string

	// application state
	tls      *schema.TLS // the ssl.log record, written when the flow ends
	sni      string
	httpHost string
	http     []schema.HTTP // http.log records, written when the flow ends
	httpReqs []int         // indexes in http of requests waiting for a response
	httpN    int
	quic     *quicState
	x        *flowExtra // what few flows need: tunnels, proxies, STARTTLS, a retried hello
	dec      *decFlow   // TLS or QUIC decryption, with secrets only
}

type quicState struct {
	cs    quic.CryptoStream
	odcid []byte // DCID of the first client Initial: the Initial keys' source
	tries int
	done  bool
}

func (f *flow) timeout() int64 {
	switch f.key.proto {
	case decode.ProtoTCP:
		o, r := f.d[0].state, f.d[1].state
		if o == tcpReset || r == tcpReset || (o == tcpClosed && r == tcpClosed) {
			return tcpCloseDelay // Zeek's tcp_close_delay and tcp_reset_delay
		}
		return tcpTimeout
	case decode.ProtoUDP:
		return udpTimeout
	}
	return icmpTimeout
}

// hist adds a history letter (upper case for orig, lower case for resp) the
// first time it happens in that direction.
func (f *flow) hist(d int, c byte) {
	var bit uint32
	switch {
	case c == '^':
		bit = 1 << 31
	case c >= 'A' && c <= 'Z':
		bit = 1 << (c - 'A')
	default:
		return
	}
	if f.d[d].histSet&bit != 0 {
		return
	}
	f.d[d].histSet |= bit
	if d == 1 && c != '^' {
		c += 'a' - 'A'
	}
	f.history = append(f.history, c)
}

// histSeq adds a S, H, F or R letter: once, then again whenever seq differs
// from the last packet with the same flag in that direction (Zeek's rule).
func (f *flow) histSeq(d int, c byte, seq uint32) {
	dd := &f.d[d]
	last := &dd.lastSYN
	switch c {
	case 'F':
		last = &dd.lastFIN
	case 'R':
		last = &dd.lastRST
	}
	bit := uint32(1) << (c - 'A')
	if dd.histSet&bit != 0 && seq != *last {
		dd.histSet &^= bit // let hist add it again
	}
	*last = seq
	f.hist(d, c)
}

// histScaled adds a C, T or W letter the 1st, 10th, 100th … time it happens
// in a direction (Zeek's logarithmic history entries).
func (f *flow) histScaled(d int, c byte) {
	i := 0
	switch c {
	case 'T':
		i = 1
	case 'W':
		i = 2
	}
	sc := &f.d[d].scaled[i]
	sc.n++
	if sc.next == 0 {
		sc.next = 1
	}
	if sc.n != sc.next {
		return
	}
	if sc.next < 1e9 {
		sc.next *= 10
	}
	if d == 1 {
		c += 'a' - 'A'
	}
	f.history = append(f.history, c)
}

// isNewConnection reports whether p starts a new connection on a tuple whose
// previous connection has ended (port reuse).
func (f *flow) isNewConnection(p *decode.Packet) bool {
	if f.key.proto != decode.ProtoTCP || p.Flags&(decode.SYN|decode.ACK) != decode.SYN {
		return false
	}
	o, r := &f.d[0], &f.d[1]
	ended := (o.state == tcpClosed || o.state == tcpReset) || (r.state == tcpClosed || r.state == tcpReset)
	return ended && p.Seq+1 != o.base
}

// rel converts a sequence number to an offset relative to the direction's
// start, unwrapping around the highest offset seen so long streams work.
func (d *dir) rel(seq uint32) int64 {
	return d.hi + int64(int32(seq-(d.base+uint32(d.hi))))
}

func (e *engine) tcpPacket(f *flow, di int, p *decode.Packet, ts int64) {
	d, o := &f.d[di], &f.d[1-di]
	fl := p.Flags
	if fl&decode.SYN != 0 && fl&decode.RST != 0 {
		f.hist(di, 'I')
	}
	if fl&decode.SYN != 0 && fl&decode.FIN != 0 {
		f.hist(di, 'Q')
	}
	if fl&decode.SYN != 0 {
		e.fingerprint(f, di, p, ts)
		if fl&decode.ACK != 0 {
			f.histSeq(di, 'H', p.Seq)
			if d.state == tcpInactive || d.state == tcpSynSent {
				d.state = tcpSynAckSent
			}
		} else {
			f.histSeq(di, 'S', p.Seq)
			if d.state == tcpInactive {
				d.state = tcpSynSent
			}
		}
		if !d.seqInit || d.hi == 0 {
			d.base, d.seqInit, d.next, d.hi = p.Seq+1, true, 0, 0
		}
	} else if !d.seqInit {
		d.base, d.seqInit = p.Seq, true
		if d.state == tcpInactive {
			d.state = tcpPartial
		}
	}
	if fl&decode.ACK != 0 && fl&decode.SYN == 0 {
		if d.state == tcpSynSent || d.state == tcpSynAckSent {
			d.state = tcpEstablished
		}
		if o.state == tcpSynAckSent || (o.state == tcpSynSent && d.state == tcpEstablished) {
			o.state = tcpEstablished
		}
		if d.state == tcpInactive {
			d.state = tcpPartial
		}
	}
	if fl&decode.RST != 0 {
		f.histSeq(di, 'R', p.Seq)
		d.state = tcpReset
	}
	if fl&decode.FIN != 0 {
		f.histSeq(di, 'F', p.Seq+uint32(p.PayloadLen)) // a FIN's number follows its data
		if d.state != tcpReset {
			d.state = tcpClosed
		}
	}
	if p.PayloadLen == 0 {
		if fl&decode.ACK != 0 && fl&(decode.SYN|decode.FIN|decode.RST) == 0 {
			f.hist(di, 'A')
		}
		if p.Window == 0 && fl&(decode.SYN|decode.RST) == 0 {
			f.histScaled(di, 'W')
		}
		return
	}
	f.hist(di, 'D')
	seq := p.Seq
	if fl&decode.SYN != 0 {
		seq++ // data on a SYN (TCP Fast Open) follows the SYN's sequence number
	}
	rel := d.rel(seq)
	n := int64(p.PayloadLen)
	end := rel + n
	if end > d.hi {
		d.hi = end
	}
	data := p.Payload
	if int64(len(data)) > n {
		data = data[:n]
	}
	switch {
	case end <= d.next:
		f.histScaled(di, 'T')
	case rel > d.next:
		e.storeOOO(f, di, rel, n, data)
	default:
		e.deliverSeg(f, di, rel, n, data)
		e.drainOOO(f, di)
	}
}

// deliverSeg hands the in-order (possibly overlapping) segment to the stream
// and advances next. Bytes the capture cut off count as missed.
func (e *engine) deliverSeg(f *flow, di int, rel, n int64, data []byte) {
	d := &f.d[di]
	skip := d.next - rel
	if skip > 0 {
		if skip < int64(len(data)) {
			data = data[skip:]
		} else {
			data = nil
		}
	}
	want := rel + n - d.next
	d.next = rel + n
	if int64(len(data)) < want {
		d.missed += want - int64(len(data))
		e.streamData(f, di, &f.d[di].stream, data, false)
		e.streamGap(f, di)
		return
	}
	e.streamData(f, di, &f.d[di].stream, data, false)
}

func (e *engine) storeOOO(f *flow, di int, rel, n int64, data []byte) {
	d := &f.d[di]
	var kept []byte
	if (d.stream.wants() || f.dec.decrypting()) && int64(len(data)) == n {
		kept = append([]byte(nil), data...)
	}
	d.ooo = append(d.ooo, oooSeg{rel: rel, n: n, data: kept})
	total := int64(0)
	for _, s := range d.ooo {
		total += int64(len(s.data))
	}
	for len(d.ooo) > maxOOOSegs || total > maxOOOBytes {
		// Too much waiting: give up on the hole before the earliest segment.
		sort.SliceStable(d.ooo, func(i, j int) bool { return d.ooo[i].rel < d.ooo[j].rel })
		s := d.ooo[0]
		d.missed += s.rel - d.next
		d.next = s.rel
		e.streamGap(f, di)
		e.drainOOO(f, di)
		total = 0
		for _, s := range d.ooo {
			total += int64(len(s.data))
		}
	}
}

// drainOOO delivers waiting segments that became in order.
func (e *engine) drainOOO(f *flow, di int) {
	d := &f.d[di]
	for progress := true; progress && len(d.ooo) > 0; {
		progress = false
		for i := 0; i < len(d.ooo); i++ {
			s := d.ooo[i]
			if s.rel > d.next {
				continue
			}
			d.ooo = append(d.ooo[:i], d.ooo[i+1:]...)
			if s.rel+s.n > d.next {
				if s.data == nil {
					// Not kept: the stream loses these bytes.
					d.next = s.rel + s.n
					e.streamGap(f, di)
				} else {
					e.deliverSeg(f, di, s.rel, s.n, s.data)
				}
			}
			progress = true
			break
		}
	}
}

// closeGaps accounts the holes left at the end of the flow.
func (e *engine) closeGaps(f *flow, di int) {
	d := &f.d[di]
	for len(d.ooo) > 0 {
		sort.SliceStable(d.ooo, func(i, j int) bool { return d.ooo[i].rel < d.ooo[j].rel })
		s := d.ooo[0]
		if s.rel > d.next {
			d.missed += s.rel - d.next
			d.next = s.rel
		}
		d.ooo = d.ooo[1:]
		if s.rel+s.n > d.next {
			d.next = s.rel + s.n
		}
	}
	d.ooo = nil
}

// connState computes Zeek's conn_state.
func (f *flow) connState() string {
	switch f.key.proto {
	case decode.ProtoTCP:
	case decode.ProtoUDP:
		oa, ra := f.d[0].pkts > 0, f.d[1].pkts > 0
		switch {
		case oa && ra:
			return "SF"
		case oa:
			return "S0"
		case ra:
			return "SHR"
		}
		return "OTH"
	default:
		return "OTH"
	}
	os, rs := f.d[0].state, f.d[1].state
	oInactive := os == tcpInactive || os == tcpPartial
	rInactive := rs == tcpInactive || rs == tcpPartial
	switch {
	case rs == tcpReset:
		if os == tcpSynSent || os == tcpSynAckSent || (os == tcpReset && f.d[0].hi == 0 && f.d[1].hi == 0) {
			return "REJ"
		}
		if oInactive {
			return "RSTRH"
		}
		return "RSTR"
	case os == tcpReset:
		if rInactive {
			if f.synThenReset() {
				return "RSTOS0"
			}
			return "OTH"
		}
		return "RSTO"
	case rs == tcpClosed && os == tcpClosed:
		return "SF"
	case os == tcpClosed:
		if rInactive {
			return "SH"
		}
		return "S2"
	case rs == tcpClosed:
		if oInactive {
			return "SHR"
		}
		return "S3"
	case os == tcpSynSent && rs == tcpInactive:
		return "S0"
	case os == tcpEstablished && rs == tcpEstablished:
		return "S1"
	}
	return "OTH"
}

// synThenReset matches Zeek's RSTOS0 history pattern: an originator SYN then RST
// with no SYN-ACK, ack, data or fin in between.
func (f *flow) synThenReset() bool {
	h := f.history
	if len(h) > 0 && h[0] == '^' {
		h = h[1:]
	}
	if len(h) == 0 || h[0] != 'S' {
		return false
	}
	for _, c := range h[1:] {
		switch c {
		case 'R':
			return true
		case 'H', 'A', 'F', 'G', 'I', 'Q':
			return false
		}
	}
	return false
}
