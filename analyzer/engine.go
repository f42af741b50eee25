package analyzer

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/netip"
	"slices"

	"github.com/firstboot/firstboot/analyzer/attribute"
	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/analyzer/decode"
	"github.com/firstboot/firstboot/analyzer/fingerprint"
	"github.com/firstboot/firstboot/analyzer/tlsdecrypt"
	"github.com/firstboot/firstboot/results/schema"
)

// Flow timeouts in packet time, Zeek's defaults.
const (
	tcpTimeout    = 300e9
	tcpCloseDelay = 5e9
	udpTimeout    = 60e9
	icmpTimeout   = 60e9
	sweepEvery    = 10e9
	clockJumpBck  = 3600e9 // a backwards jump larger than this resets the flow clock
)

// counters are the packet-level parts of a Summary, per step.
type counters struct {
	first, last   int64
	seen          bool
	packets       int64
	frameBytes    int64
	capturedBytes int64
	ipBytes       int64
	ipv6          int64
	dnsQueries    int64
	nonIP         map[string]int64 // frames without IP, by what they carry
}

func (c *counters) add(ts int64, frame, captured int) {
	if !c.seen || ts < c.first {
		c.first = ts
	}
	if !c.seen || ts > c.last {
		c.last = ts
	}
	c.seen = true
	c.packets++
	c.frameBytes += int64(frame)
	c.capturedBytes += int64(captured)
}

// flowKey identifies a flow regardless of direction: side a is the lower
// (address, port).
type flowKey struct {
	a, b   [16]byte
	ap, bp uint16
	proto  uint8
	v      uint8
}

type engine struct {
	opts        Options
	streamBytes int
	steps       *stepper

	flows     *flowTable
	sweepBuf  []*flow     // the live flows while a sweep looks at them
	conn      schema.Conn // the conn record finishFlow builds: the sinks copy it
	lastFlow  *flow       // the flow of the last packet, while it is in flows
	clock     int64       // flow clock: max packet time, reset on large backwards jumps
	lastTS    int64
	now       int64 // time of the packet being processed
	havePkt   bool
	nextSweep int64
	pktIndex  int64

	bufPool   [][]byte    // stream storage for reuse
	freeFlows []*flow     // finished flows for reuse
	flowBlock []flow      // new flows not yet handed out
	tcpBlock  [][2]tcpDir // TCP state for new TCP flows, not yet handed out
	ciphers   map[uint16]string
	addrStrs  map[addrKey]string
	macStrs   map[[6]byte]string
	strs      map[string]string
	uidHash   hash.Hash // reset for each uid: sha256.Sum256 allocates a digest per call
	uidSum    []byte

	dec    decode.Packet
	defrag *decode.Defragmenter
	attr   *attribute.Store

	all  counters
	cnt  []counters
	warn schema.Warnings

	// Finished records go to out as soon as they are final, so memory
	// follows the live flows, not the capture size; what the summary, host
	// and destinations need from them is aggregated here.
	out      recordSink
	dns      slab[schema.DNS] // DNS transactions awaiting their answer
	agg      []stepAgg        // per step
	destAll  map[string]*destAgg
	origs    map[origKey]int64 // conns per originator address and MAC
	dhcp     map[dhcpKey]*dhcpTx
	fps      map[fpKey]*fpAgg
	fpParser fingerprint.Parser

	tun tunnels // tunnels followed (tunnel.go)
	lan lanAgg  // local-network announcements (lan.go)
	// TLS decryption (decrypt.go): keys is nil without secrets.
	keys         *tlsdecrypt.Keys
	decrypting   bool
	secretBlocks int64
	decStats     []decryptStats
}

func newEngine(opts Options, steps *stepper, out recordSink) *engine {
	sb := opts.StreamBytes
	if sb <= 0 {
		sb = 16 << 10
	}
	e := &engine{
		opts:        opts,
		streamBytes: sb,
		steps:       steps,
		flows:       newFlowTable(1024),
		defrag:      decode.NewDefragmenter(),
		attr:        attribute.NewStore(),
		cnt:         make([]counters, steps.count()),
		out:         out,
		agg:         make([]stepAgg, steps.count()),
		destAll:     map[string]*destAgg{},
		origs:       map[origKey]int64{},
		warn: schema.Warnings{
			UnknownLinkTypes: map[string]int64{},
			DecodeErrors:     map[string]int64{},
			ParserErrors:     map[string]int64{},
		},
		dhcp:     map[dhcpKey]*dhcpTx{},
		ciphers:  map[uint16]string{},
		addrStrs: map[addrKey]string{},
		macStrs:  map[[6]byte]string{},
		strs:     map[string]string{},
		fps:      map[fpKey]*fpAgg{},
		uidHash:  sha256.New(),
	}
	if len(opts.TLSKeyLog) > 0 {
		e.keys = &tlsdecrypt.Keys{}
		e.keys.Add(opts.TLSKeyLog) // checked by the caller
		e.decrypting = e.keys.Len() > 0
	}
	return e
}

func (e *engine) packet(cp *capfile.Packet) {
	e.decoded(cp, &e.dec, decode.Decode(cp.LinkType, cp.Data, &e.dec))
}

// decoded processes a packet whose headers Decode read into p (kind is what
// Decode returned).
func (e *engine) decoded(cp *capfile.Packet, p *decode.Packet, kind decode.Kind) {
	e.pktIndex++
	ts := cp.TS
	if e.havePkt && ts < e.lastTS {
		e.warn.TimestampsBackwards++
	}
	e.lastTS = ts
	e.now = ts
	switch {
	case !e.havePkt || ts > e.clock:
		e.clock = ts
	case ts < e.clock-clockJumpBck:
		// A merged capture or a clock step: follow the new time line so flows
		// started there can time out; flows from the later time line stay live
		// until the end (they are never lost).
		e.clock = ts
		e.nextSweep = ts + sweepEvery
	}
	if !e.havePkt {
		e.nextSweep = ts + sweepEvery
	}
	e.havePkt = true
	si := e.steps.index(ts)
	e.all.add(ts, cp.OrigLen, len(cp.Data))
	c := &e.cnt[si]
	c.add(ts, cp.OrigLen, len(cp.Data))
	if len(cp.Data) < cp.OrigLen {
		e.warn.TruncatedPackets++
	}

	if kind != decode.OK {
		switch kind {
		case decode.KindUnknown:
			e.warn.UnknownLinkTypes[decode.LinkName(cp.LinkType)]++
		case decode.KindNonIP:
			e.nonIP(p, ts, si)
		default:
			e.warn.DecodeErrors[string(kind)]++
		}
		e.maybeSweep()
		return
	}
	e.all.ipBytes += int64(p.IPLen)
	c.ipBytes += int64(p.IPLen)
	if p.IPVersion == 6 {
		e.all.ipv6++
		c.ipv6++
	}
	e.ipPacket(p, ts, si)
	e.maybeSweep()
}

// ipPacket analyses a decoded IP packet: a captured one, or one a tunnel carried.
func (e *engine) ipPacket(p *decode.Packet, ts int64, si int) {
	if p.BadIPChecksum {
		e.warn.BadIPChecksums++
	}
	if p.Fragment {
		complete, dropped := e.defrag.Add(p, e.clock)
		e.warn.FragmentsDropped += int64(dropped)
		if !complete {
			return
		}
		e.warn.FragmentsReassembled++
	}
	switch {
	case p.BadL4Checksum && p.Proto == decode.ProtoTCP:
		e.warn.BadTCPChecksums++
	case p.BadL4Checksum && p.Proto == decode.ProtoUDP:
		e.warn.BadUDPChecksums++
	case p.OffloadL4Checksum && p.Proto == decode.ProtoTCP:
		e.warn.OffloadTCPChecksums++
	case p.OffloadL4Checksum && p.Proto == decode.ProtoUDP:
		e.warn.OffloadUDPChecksums++
	}
	switch p.Proto {
	case decode.ProtoTCP, decode.ProtoUDP, decode.ProtoICMP:
		e.flowPacket(p, ts, si)
	default:
		e.otherIP(p, ts, si)
	}
}

// otherIP analyses IP packets of protocols other than TCP, UDP and ICMP.
func (e *engine) otherIP(p *decode.Packet, ts int64, si int) {
	switch p.Proto {
	case decode.ProtoICMPv6:
		e.flowPacket(p, ts, si)
		e.icmpv6LAN(p, ts, si)
	case decode.ProtoIPIP, decode.ProtoIPv6, decode.ProtoGRE:
		e.ipTunnel(p, ts, si)
	case protoIGMP:
		e.igmp(p, ts, si)
	}
}

func (e *engine) maybeSweep() {
	if e.clock < e.nextSweep {
		return
	}
	e.nextSweep = e.clock + sweepEvery
	var done []*flow
	oldest := e.clock // the earliest start of a live flow
	e.sweepBuf = e.flows.flows(e.sweepBuf[:0])
	for _, f := range e.sweepBuf {
		if e.clock-f.last > f.timeout() {
			done = append(done, f)
			e.flows.remove(f)
		} else if f.first < oldest {
			oldest = f.first
		}
	}
	e.finishFlows(done)
	// Connections are named by the DNS answer before their start: live flows
	// started at oldest or later, and a new flow starts no earlier than an
	// hour back (a larger jump resets the clock), so older answers can go.
	e.attr.Prune(oldest - clockJumpBck)
}

// finishFlows finishes flows that end together in a fixed order (start time,
// then uid), not the map's, so records come out in the same order every run.
func (e *engine) finishFlows(fs []*flow) {
	// At the end of a capture this sorts every live flow. The keys are sorted
	// beside the flows, not through them (each comparison would miss the
	// cache twice), and hold no pointers: moving those while the collector
	// runs costs write barriers. Equal start times, which are rare, look up
	// the uids.
	order := make([]flowOrder, len(fs))
	for i, f := range fs {
		order[i] = flowOrder{f.first, i}
	}
	slices.SortFunc(order, func(x, y flowOrder) int {
		if c := cmp.Compare(x.first, y.first); c != 0 {
			return c
		}
		return cmp.Compare(fs[x.i].uid, fs[y.i].uid)
	})
	for _, o := range order {
		e.finishFlow(fs[o.i])
		e.recycleFlow(fs[o.i])
	}
}

// Finished flows are kept for reuse up to this many; new flows are
// allocated this many at a time.
const (
	maxFreeFlows = 4096
	flowBlock    = 64
)

// allocFlow returns a zeroed flow (but for its lists' storage), reused or
// from a block: a capture of many short flows would otherwise allocate one for each.
func (e *engine) allocFlow() *flow {
	if n := len(e.freeFlows); n > 0 {
		f := e.freeFlows[n-1]
		e.freeFlows = e.freeFlows[:n-1]
		return f
	}
	if len(e.flowBlock) == 0 {
		e.flowBlock = make([]flow, flowBlock)
	}
	f := &e.flowBlock[0]
	e.flowBlock = e.flowBlock[1:]
	f.history = f.histBuf[:0]
	return f
}

// recycleFlow takes back a finished flow, out of flows: its records went to
// the sink as copies or strings, nothing refers to it any more. Its history,
// record lists and stream buffers are kept for reuse.
func (e *engine) recycleFlow(f *flow) {
	if f == e.lastFlow {
		e.lastFlow = nil
	}
	t0, t1 := f.d[0].tcpDir, f.d[1].tcpDir
	if t0 != nil {
		e.putBuf(&t0.stream)
		e.putBuf(&t1.stream)
		*t0, *t1 = tcpDir{}, tcpDir{}
	}
	clear(f.http) // the records' strings, for the collector
	*f = flow{history: f.history[:0], http: f.http[:0], httpReqs: f.httpReqs[:0], dnsPend: f.dnsPend[:0]}
	f.d[0].tcpDir, f.d[1].tcpDir = t0, t1 // for the next TCP flow
	if len(e.freeFlows) < maxFreeFlows {
		e.freeFlows = append(e.freeFlows, f)
	}
}

type flowOrder struct {
	first int64
	i     int // in the flows being finished
}

func addrOf(v uint8, b [16]byte) netip.Addr {
	if v == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

func (e *engine) flowPacket(p *decode.Packet, ts int64, si int) {
	sp, dp := p.SrcPort, p.DstPort
	if p.Proto == decode.ProtoICMP || p.Proto == decode.ProtoICMPv6 {
		sp, dp = 0, 0
	}
	k := flowKey{proto: p.Proto, v: p.IPVersion}
	fromA := true
	if c := compare16(p.Src, p.Dst); c < 0 || (c == 0 && sp <= dp) {
		k.a, k.b, k.ap, k.bp = p.Src, p.Dst, sp, dp
	} else {
		k.a, k.b, k.ap, k.bp = p.Dst, p.Src, dp, sp
		fromA = false
	}
	// Packets come in runs of one flow: the last one is checked before the map.
	f := e.lastFlow
	if f == nil || !f.key.same(&k) {
		f = e.flows.get(&k)
	}
	if f != nil && f.isNewConnection(p) {
		e.finishFlow(f)
		e.flows.remove(f)
		e.recycleFlow(f)
		f = nil
	}
	if f == nil {
		f = e.newFlow(k, p, ts, fromA, si)
		e.flows.add(f)
	}
	e.lastFlow = f
	dir := 0
	if fromA != f.origIsA {
		dir = 1
	}
	if ts < f.first {
		f.first = ts
	}
	if ts > f.last {
		f.last = ts
	}
	d := &f.d[dir]
	d.pkts++
	d.ipBytes += int64(p.IPLen)
	if p.HasMAC && !d.hasMAC {
		d.mac, d.hasMAC = p.SrcMAC, true
	}
	if p.BadL4Checksum {
		f.histScaled(dir, 'C')
	}
	switch p.Proto {
	case decode.ProtoTCP:
		e.tcpPacket(f, dir, p, ts)
	case decode.ProtoUDP:
		d.payload += int64(p.PayloadLen)
		if p.PayloadLen > 0 {
			f.hist(dir, 'D')
			e.udpPayload(f, dir, p, ts)
		}
	default:
		d.payload += int64(p.PayloadLen)
	}
}

func compare16(a, b [16]byte) int {
	x, y := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])
	if x == y {
		x, y = binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:])
	}
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// servicePort reports ports Zeek's orientation heuristic treats as servers.
func servicePort(p uint16) bool {
	if p < 1024 {
		return true
	}
	switch p {
	case 1900, 3128, 3478, 4500, 5060, 5222, 5228, 5353, 5355, 8080, 8443, 8883, 9000, 11371:
		return true
	}
	return false
}

func (e *engine) newFlow(k flowKey, p *decode.Packet, ts int64, fromA bool, si int) *flow {
	f := e.allocFlow()
	f.key, f.first, f.last, f.step = k, ts, ts, si
	if k.proto == decode.ProtoTCP && f.d[0].tcpDir == nil {
		if len(e.tcpBlock) == 0 {
			e.tcpBlock = make([][2]tcpDir, flowBlock)
		}
		t := &e.tcpBlock[0]
		e.tcpBlock = e.tcpBlock[1:]
		f.d[0].tcpDir, f.d[1].tcpDir = &t[0], &t[1]
	}
	// Orientation: the sender of the first packet is the originator unless the
	// packet says otherwise.
	senderOrig := true
	switch p.Proto {
	case decode.ProtoTCP:
		switch {
		case p.Flags&decode.SYN != 0:
			senderOrig = p.Flags&decode.ACK == 0
		default:
			senderOrig = !(servicePort(p.SrcPort) && !servicePort(p.DstPort))
		}
	case decode.ProtoUDP:
		senderOrig = !(servicePort(p.SrcPort) && !servicePort(p.DstPort))
	case decode.ProtoICMP:
		senderOrig = p.ICMPType != 0 // echo reply
	case decode.ProtoICMPv6:
		senderOrig = p.ICMPType != 129
	}
	f.origIsA = fromA == senderOrig
	if !senderOrig {
		f.hist(0, '^')
	}
	if p.Proto == decode.ProtoICMP || p.Proto == decode.ProtoICMPv6 {
		f.icmpType, f.icmpCode = p.ICMPType, p.ICMPCode
	}
	// uid: a hash of the 5-tuple, first timestamp and packet ordinal, so it is
	// the same on every run and unique within the capture.
	var buf [16 + 16 + 2 + 2 + 1 + 8 + 8]byte
	copy(buf[0:], k.a[:])
	copy(buf[16:], k.b[:])
	binary.BigEndian.PutUint16(buf[32:], k.ap)
	binary.BigEndian.PutUint16(buf[34:], k.bp)
	buf[36] = k.proto
	binary.BigEndian.PutUint64(buf[37:], uint64(ts))
	binary.BigEndian.PutUint64(buf[45:], uint64(e.pktIndex))
	f.uid = e.uid(buf[:])
	return f
}

// uid returns Zeek-style uid ("C" and 17 letters) made from a hash of key.
func (e *engine) uid(key []byte) string {
	e.uidHash.Reset()
	e.uidHash.Write(key)
	sum := e.uidHash.Sum(e.uidSum[:0])
	e.uidSum = sum
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var uid [18]byte
	uid[0] = 'C'
	for i := 1; i < len(uid); i++ {
		uid[i] = alphabet[int(sum[i])%62]
	}
	return string(uid[:])
}
