package analyzer

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/firstboot/firstboot/analyzer/attribute"
	"github.com/firstboot/firstboot/analyzer/decode"
	"github.com/firstboot/firstboot/results/schema"
	"golang.org/x/net/publicsuffix"
)

// recordSink receives each record once it is final; records it is handed
// are not touched again, but may be reused by the caller once it returns.
type recordSink interface {
	conn(*schema.Conn)
	dns(*schema.DNS)
	tls(*schema.TLS)
	http(*schema.HTTP)
	ntp(*schema.NTP)
}

// memSink keeps every record in memory (Analyze's in-memory result).
type memSink struct {
	conns chunked[schema.Conn]
	dnss  chunked[schema.DNS]
	tlss  chunked[schema.TLS]
	https chunked[schema.HTTP]
	ntps  chunked[schema.NTP]
}

func (m *memSink) conn(c *schema.Conn) { m.conns.add(*c) }
func (m *memSink) dns(d *schema.DNS)   { m.dnss.add(*d) }
func (m *memSink) tls(t *schema.TLS)   { m.tlss.add(*t) }
func (m *memSink) http(h *schema.HTTP) { m.https.add(*h) }
func (m *memSink) ntp(n *schema.NTP)   { m.ntps.add(*n) }

// fill moves the records into a.
func (m *memSink) fill(a *schema.Analysis) {
	a.Conns, a.DNS, a.TLS, a.HTTP, a.NTP = m.conns.slice(), m.dnss.slice(), m.tlss.slice(), m.https.slice(), m.ntps.slice()
}

// stepAgg is what a step's summary needs from its finished conns.
type stepAgg struct {
	tcp, udp, icmp int64
	pairs          map[addrPair]struct{} // distinct (orig, resp) addresses
	lastPair       addrPair              // the last one added (addresses are never "")
	dests          map[string]*destAgg
}

type addrPair struct{ orig, resp string }

type origKey struct{ addr, mac string }

func nsTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func (f *flow) orig() (addr [16]byte, port uint16) {
	if f.origIsA {
		return f.key.a, f.key.ap
	}
	return f.key.b, f.key.bp
}

func (f *flow) resp() (addr [16]byte, port uint16) {
	if f.origIsA {
		return f.key.b, f.key.bp
	}
	return f.key.a, f.key.ap
}

// ports returns the originator and responder ports.
func (f *flow) ports() (op, rp uint16) {
	_, op = f.orig()
	_, rp = f.resp()
	return op, rp
}

// ids returns Zeek's id fields; for ICMP the ports are type and code.
func (e *engine) connID(f *flow, ts int64) schema.ConnID {
	oa, op := f.orig()
	ra, rp := f.resp()
	if f.key.proto == decode.ProtoICMP || f.key.proto == decode.ProtoICMPv6 {
		op, rp = uint16(f.icmpType), uint16(f.icmpCode)
	}
	if f.origH == "" {
		// Kept on the flow: a DNS flow asks for its ids once per record.
		f.origH, f.respH = e.addrString(f.key.v, oa), e.addrString(f.key.v, ra)
	}
	return schema.ConnID{TS: nsTime(ts), UID: f.uid, OrigH: f.origH, OrigP: op, RespH: f.respH, RespP: rp}
}

type addrKey struct {
	v uint8
	a [16]byte
}

// addrString formats an address once per distinct address: the same few
// addresses appear in most flows.
func (e *engine) addrString(v uint8, a [16]byte) string {
	k := addrKey{v, a}
	if s, ok := e.addrStrs[k]; ok {
		return s
	}
	s := addrOf(v, a).String()
	e.addrStrs[k] = s
	return s
}

func (e *engine) macString(d *dir) string {
	if !d.hasMAC {
		return ""
	}
	if s, ok := e.macStrs[d.mac]; ok {
		return s
	}
	s := net.HardwareAddr(d.mac[:]).String()
	e.macStrs[d.mac] = s
	return s
}

// intern returns a shared string for b (histories repeat a lot).
func (e *engine) intern(b []byte) string {
	if s, ok := e.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(e.strs) < 1<<16 {
		e.strs[s] = s
	}
	return s
}

func protoName(p uint8) string {
	switch p {
	case decode.ProtoTCP:
		return "tcp"
	case decode.ProtoUDP:
		return "udp"
	}
	return "icmp"
}

// cipherName returns the IANA name of a cipher suite, or "0x…" for an unknown one.
func (e *engine) cipherName(id uint16) string {
	if n, ok := e.ciphers[id]; ok {
		return n
	}
	n := tls.CipherSuiteName(id) // builds a list on every call: cached
	e.ciphers[id] = n
	return n
}

// hexList renders each value as "0x0304".
func hexList(vs []uint16) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = hex16(v)
	}
	return out
}

// Renderings of the values ClientHellos list as supported versions, so the
// common ones cost no allocation: GREASE (0x0a0a, 0x1a1a, … 0xfafa) and SSL 3.0
// to TLS 1.3 (0x0300 … 0x0304).
const (
	hexGREASE   = "0x0a0a0x1a1a0x2a2a0x3a3a0x4a4a0x5a5a0x6a6a0x7a7a0x8a8a0x9a9a0xaaaa0xbaba0xcaca0xdada0xeaea0xfafa"
	hexVersions = "0x03000x03010x03020x03030x0304"
)

// hex16 is fmt.Sprintf("0x%04x", v), without the formatting for the common
// values.
func hex16(v uint16) string {
	switch {
	case v&0x0f0f == 0x0a0a && v>>8 == v&0xff: // GREASE
		i := int(v>>12) * 6
		return hexGREASE[i : i+6]
	case v >= 0x0300 && v <= 0x0304:
		i := int(v-0x0300) * 6
		return hexVersions[i : i+6]
	}
	return fmt.Sprintf("0x%04x", v)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// finishFlow writes a flow's conn record and the records it still holds;
// they are final now. Attribution uses what the capture told so far: DNS
// answers before the connection started, resolvers seen up to now.
func (e *engine) finishFlow(f *flow) {
	o, r := &f.d[0], &f.d[1]
	ob, rb, missed := o.payload, r.payload, int64(0)
	if f.key.proto == decode.ProtoTCP {
		e.closeGaps(f, 0)
		e.closeGaps(f, 1)
		ob, rb, missed = o.hi, r.hi, o.missed+r.missed
	}
	ra, _ := f.resp()
	c := &e.conn // reused: the sinks copy what they keep
	*c = schema.Conn{
		ConnID: e.connID(f, f.first),
		Proto:  protoName(f.key.proto), Service: f.service, Duration: float64(f.last-f.first) / 1e9,
		OrigBytes: ob, RespBytes: rb, ConnState: f.connState(), MissedBytes: missed,
		History: e.intern(f.history), OrigPkts: o.pkts, OrigIPBytes: o.ipBytes, RespPkts: r.pkts, RespIPBytes: r.ipBytes,
		OrigL2Addr: e.macString(o), RespL2Addr: e.macString(r), Step: e.steps.name(f.step),
		TunnelParents: f.tunnelParents(),
	}
	host, resp := f.httpHost, addrOf(f.key.v, ra)
	if x := f.x; x != nil {
		host, resp = e.extraConn(c, f, host, resp)
	}
	c.Name, c.NameSource = e.attr.Name(f.sni, host, resp, f.first, c.Service)
	e.aggregate(c, f)
	e.out.conn(c)
	if x := f.x; x != nil && x.retried != nil {
		e.out.tls(x.retried)
	}
	if f.tls != nil {
		e.out.tls(f.tls)
		f.tls = nil
	}
	e.finishDecrypt(f) // decrypt.go; its http records are final then
	for i := range f.http {
		e.out.http(&f.http[i])
	}
	for _, pq := range f.dnsPend {
		e.emitDNS(pq.idx) // never answered
	}
}

// extraConn fills what a tunnel, proxy or protocol upgrade adds to a conn
// record, and returns the HTTP host and responder address to name it by:
// through a proxy, the destination asked for, not the proxy.
func (e *engine) extraConn(c *schema.Conn, f *flow, host string, resp netip.Addr) (string, netip.Addr) {
	x := f.x
	if x.firstService != "" && x.firstService != c.Service {
		// Zeek lists the protocols before and after the upgrade.
		c.Service = e.intern([]byte(x.firstService + "," + c.Service))
	}
	if x.proxy != "" {
		c.Proxy, c.ProxiedTo = x.proxy, x.proxiedTo
		host = x.proxiedHost
		if x.proxiedAddr.IsValid() {
			resp = x.proxiedAddr
		}
	}
	return host, resp
}

// aggregate adds a finished conn to the summaries, host detection and destinations.
func (e *engine) aggregate(c *schema.Conn, f *flow) {
	g := &e.agg[f.step]
	switch f.key.proto {
	case decode.ProtoTCP:
		g.tcp++
	case decode.ProtoUDP:
		g.udp++
	default:
		g.icmp++
	}
	if g.pairs == nil {
		g.pairs, g.dests = map[addrPair]struct{}{}, map[string]*destAgg{}
	}
	if pair := (addrPair{c.OrigH, c.RespH}); pair != g.lastPair {
		g.pairs[pair], g.lastPair = struct{}{}, pair
	}
	e.origs[origKey{c.OrigH, c.OrigL2Addr}]++
	end := nsTime(f.last)
	// An ICMP error answers another flow's packet, sent or not depending on
	// that flow's timing (a late datagram to a closed port): not a protocol
	// spoken with the destination.
	proto := !decode.ICMPError(f.key.proto, f.icmpType)
	addDest(g.dests, c, end, f.step, proto)
	addDest(e.destAll, c, end, f.step, proto)
}

// finish flushes every live flow and builds the analysis, without the
// records (they went to the sink).
func (e *engine) finish() *schema.Analysis {
	rest := e.flows.flows(make([]*flow, 0, e.flows.n))
	e.flows.reset()
	e.finishFlows(rest)
	e.warn.FragmentsDropped += int64(e.defrag.Pending())

	a := &schema.Analysis{SchemaVersion: schema.Version}
	a.DHCP = e.dhcpRecords()
	a.Host = e.host(a)

	hostIPs := map[string]bool{}
	if a.Host.IP != "" {
		hostIPs[a.Host.IP] = true
		for _, ip := range a.Host.OtherIPs {
			hostIPs[ip] = true
		}
	}
	w := e.warn
	w.LANRecordsDropped = e.lan.dropped
	a.Summary = e.summary(&e.all, -1, hostIPs)
	isHost := hostMatcher(&a.Host)
	a.LANAnnouncements = e.lanIdentifiers(-1, isHost)
	a.LAN, a.Tunnels = e.lan.recs, e.tunnelRecords()
	a.Summary.Warnings = &w
	a.Destinations = e.destinations(e.destAll, -1)
	a.Fingerprints = e.fingerprints(-1)
	a.Steps = []schema.StepView{}
	if len(e.steps.names) > 0 {
		for i := 0; i < e.steps.count(); i++ {
			// Every scenario step is shown, also one that sent nothing (that
			// is a finding too); "before" and "after" only when they hold traffic.
			outside := i == 0 || i == e.steps.count()-1
			if outside && !e.cnt[i].seen && !e.hasRecords(i) {
				continue
			}
			v := schema.StepView{Name: e.steps.name(i)}
			v.Start, v.End = e.stepBounds(i)
			v.Summary = e.summary(&e.cnt[i], i, hostIPs)
			v.Destinations = e.destinations(e.agg[i].dests, i)
			v.Fingerprints = e.fingerprints(i)
			v.LANAnnouncements = e.lanIdentifiers(i, isHost)
			a.Steps = append(a.Steps, v)
		}
	}
	return a
}

func (e *engine) hasRecords(si int) bool {
	g := &e.agg[si]
	return g.tcp+g.udp+g.icmp > 0
}

// stepBounds gives a step's [start, end): "before" starts at the capture's
// first packet, "after" and an open last step end at its last.
func (e *engine) stepBounds(i int) (time.Time, time.Time) {
	s := e.steps
	n := len(s.names)
	capFirst, capLast := nsTime(e.all.first), nsTime(e.all.last)
	switch {
	case i == 0:
		return capFirst, nsTime(s.start[0])
	case i > n:
		return nsTime(s.end[n-1]), capLast
	}
	end := capLast
	if !(i == n && s.openEnd) {
		end = nsTime(s.end[i-1])
	}
	return nsTime(s.start[i-1]), end
}

func (e *engine) dhcpRecords() []schema.DHCP {
	txs := make([]*dhcpTx, 0, len(e.dhcp))
	for _, tx := range e.dhcp {
		txs = append(txs, tx)
	}
	slices.SortFunc(txs, func(a, b *dhcpTx) int { return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.seq, b.seq)) })
	out := make([]schema.DHCP, 0, len(txs))
	for _, tx := range txs {
		r := tx.rec
		r.TS = nsTime(tx.first)
		r.Duration = float64(tx.last-tx.first) / 1e9
		r.UIDs = make([]string, 0, len(tx.uids))
		for u := range tx.uids {
			r.UIDs = append(r.UIDs, u)
		}
		sort.Strings(r.UIDs)
		out = append(out, r)
	}
	return out
}

// host picks the studied machine: the first DHCP client, else the address that
// originated the most connections.
func (e *engine) host(a *schema.Analysis) schema.Host {
	h := schema.Host{OtherIPs: []string{}, Method: "none"}
	for _, d := range a.DHCP {
		if d.DHCPv6 || !e.dhcpClient(d) {
			continue
		}
		h.Method, h.MAC = "dhcp", d.MAC
		break
	}
	if h.Method == "dhcp" {
		for _, d := range a.DHCP {
			if d.MAC != h.MAC || d.DHCPv6 {
				continue
			}
			if h.DHCPHostname == "" {
				h.DHCPHostname = d.HostName
			}
			if h.DHCPVendorClass == "" {
				h.DHCPVendorClass = d.VendorClass
			}
			if h.DHCPParamList == "" {
				h.DHCPParamList = d.ParamList
			}
			if h.IP == "" {
				h.IP = d.AssignedAddr
			}
		}
		if h.IP == "" {
			for _, d := range a.DHCP {
				if d.MAC == h.MAC && h.IP == "" && !d.DHCPv6 {
					h.IP = cmp.Or(d.RequestedAddr, d.ClientAddr)
				}
			}
		}
		if h.IP == "" {
			h.IP = e.mostCommonOrig(func(mac string) bool { return mac == h.MAC })
		}
	} else {
		h.IP = e.mostCommonOrig(func(string) bool { return true })
		if h.IP != "" {
			h.Method = "most_connections"
			macs := map[string]int64{}
			for k, n := range e.origs {
				if k.addr == h.IP && k.mac != "" {
					macs[k.mac] += n
				}
			}
			h.MAC = topKey(macs)
		}
	}
	if h.MAC != "" {
		others := map[string]bool{}
		for k := range e.origs {
			if k.mac == h.MAC && k.addr != h.IP {
				if ad, err := netip.ParseAddr(k.addr); err == nil && !ad.IsUnspecified() {
					others[k.addr] = true
				}
			}
		}
		for ip := range others {
			h.OtherIPs = append(h.OtherIPs, ip)
		}
		sort.Strings(h.OtherIPs)
	}
	return h
}

func (e *engine) dhcpClient(d schema.DHCP) bool {
	for _, tx := range e.dhcp {
		if tx.rec.MAC == d.MAC && tx.client && !tx.rec.DHCPv6 {
			return true
		}
	}
	return false
}

// mostCommonOrig returns the address that originated the most conns from
// MACs keep accepts.
func (e *engine) mostCommonOrig(keep func(mac string) bool) string {
	n := map[string]int64{}
	for k, c := range e.origs {
		if !keep(k.mac) {
			continue
		}
		if ad, err := netip.ParseAddr(k.addr); err != nil || ad.IsUnspecified() || ad.IsMulticast() {
			continue
		}
		n[k.addr] += c
	}
	return topKey(n)
}

// topKey returns the key with the highest count, the smallest key on ties.
func topKey(m map[string]int64) string {
	best, bn := "", int64(-1)
	for k, v := range m {
		if v > bn || (v == bn && k < best) {
			best, bn = k, v
		}
	}
	return best
}

func unicast(s string) bool {
	ad, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	if ad.Is4() && ad.As4() == [4]byte{255, 255, 255, 255} {
		return false
	}
	return !ad.IsMulticast() && !ad.IsUnspecified()
}

// summary builds a Summary from packet counters and the conns of step si (-1: all).
func (e *engine) summary(c *counters, si int, hostIPs map[string]bool) schema.Summary {
	s := schema.Summary{
		Packets: c.packets, FrameBytes: c.frameBytes, CapturedBytes: c.capturedBytes, IPBytes: c.ipBytes,
		IPv6Packets: c.ipv6, IPv6Seen: c.ipv6 > 0, DNSQueries: c.dnsQueries, NonIPFrames: c.nonIP,
	}
	if c.seen {
		s.FirstTS, s.LastTS = nsTime(c.first), nsTime(c.last)
		s.Duration = float64(c.last-c.first) / 1e9
	}
	remote := map[string]bool{}
	for i := range e.agg {
		if si >= 0 && i != si {
			continue
		}
		g := &e.agg[i]
		s.TCPConnections += g.tcp
		s.UDPFlows += g.udp
		s.ICMPFlows += g.icmp
		for p := range g.pairs {
			switch {
			case len(hostIPs) == 0:
				if unicast(p.resp) {
					remote[p.resp] = true
				}
			case hostIPs[p.orig]:
				if unicast(p.resp) && !hostIPs[p.resp] {
					remote[p.resp] = true
				}
			case hostIPs[p.resp]:
				if unicast(p.orig) {
					remote[p.orig] = true
				}
			}
		}
	}
	s.DistinctRemoteHosts = int64(len(remote))
	s.TLSDecryption = e.decryptionSummary(si)
	return s
}

type portKey struct {
	proto string
	port  uint16
}

type destAgg struct {
	d       schema.Destination
	sources map[string]bool
	addrs   map[string]bool
	ports   map[portKey]bool
	protos  map[string]bool
	steps   map[int]bool
	// What the last conn added: a name's conns mostly repeat it, and
	// comparing costs less than writing a map (several per conn).
	lastSource, lastAddr, lastProto string
	lastPort                        portKey
	lastStep                        int
}

// addDest adds a finished conn (ending at end, in step si) to its
// destination's aggregate in m, keyed by attributed name; with proto, its
// service or transport joins the destination's protocols.
func addDest(m map[string]*destAgg, c *schema.Conn, end time.Time, si int, proto bool) {
	port, p := portKey{c.Proto, c.RespP}, cmp.Or(c.Service, c.Proto)
	a := m[c.Name]
	switch {
	case a == nil:
		a = &destAgg{d: schema.Destination{Name: c.Name, FirstSeen: c.TS, LastSeen: end},
			sources: map[string]bool{c.NameSource: true}, addrs: map[string]bool{c.RespH: true},
			ports: map[portKey]bool{port: true}, protos: map[string]bool{}, steps: map[int]bool{si: true},
			lastSource: c.NameSource, lastAddr: c.RespH, lastPort: port, lastStep: si}
		m[c.Name] = a
	default:
		if c.NameSource != a.lastSource {
			a.sources[c.NameSource], a.lastSource = true, c.NameSource
		}
		if c.RespH != a.lastAddr {
			a.addrs[c.RespH], a.lastAddr = true, c.RespH
		}
		if port != a.lastPort {
			a.ports[port], a.lastPort = true, port
		}
		if si != a.lastStep {
			a.steps[si], a.lastStep = true, si
		}
	}
	if proto && p != a.lastProto { // p is never "": the first one is always added
		a.protos[p], a.lastProto = true, p
	}
	d := &a.d
	d.Connections++
	d.BytesUp += c.OrigIPBytes
	d.BytesDown += c.RespIPBytes
	d.PayloadUp += c.OrigBytes
	d.PayloadDown += c.RespBytes
	d.PacketsUp += c.OrigPkts
	d.PacketsDown += c.RespPkts
	if c.TS.Before(d.FirstSeen) {
		d.FirstSeen = c.TS
	}
	if end.After(d.LastSeen) {
		d.LastSeen = end
	}
}

// destinations lists the aggregates m of step si (-1: the whole capture).
func (e *engine) destinations(m map[string]*destAgg, si int) []schema.Destination {
	out := make([]schema.Destination, 0, len(m))
	for _, a := range m {
		d := a.d
		d.NameSources = sortedKeys(a.sources)
		d.Addresses = sortedKeys(a.addrs)
		ports := make(map[string]bool, len(a.ports))
		for k := range a.ports {
			ports[k.proto+"/"+strconv.Itoa(int(k.port))] = true
		}
		d.Ports = sortedKeys(ports)
		d.Protocols = sortedKeys(a.protos)
		if d.NameSources[0] != attribute.SourceIP || len(d.NameSources) > 1 {
			if org, err := publicsuffix.EffectiveTLDPlusOne(d.Name); err == nil {
				d.Org = org
			} else {
				d.Org = d.Name
			}
		}
		switch {
		case attribute.IsLocal(d.Name):
			d.Party = "local"
		case len(e.opts.FirstParty) == 0:
			d.Party = "unknown"
		case attribute.IsFirstParty(d.Name, e.opts.FirstParty):
			d.Party = "first"
		default:
			d.Party = "third"
		}
		if si < 0 && len(e.steps.names) > 0 {
			idx := make([]int, 0, len(a.steps))
			for s := range a.steps {
				idx = append(idx, s)
			}
			sort.Ints(idx)
			for _, s := range idx {
				d.Steps = append(d.Steps, e.steps.name(s))
			}
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(x, y schema.Destination) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// fingerprints lists the distinct fingerprints of step si (-1: merged over all steps).
func (e *engine) fingerprints(si int) []schema.Fingerprint {
	type key struct{ host, kind, tcpdump, p0f string }
	m := map[key]*schema.Fingerprint{}
	for k, a := range e.fps {
		if si >= 0 && k.step != si {
			continue
		}
		kk := key{k.host, k.kind, k.tcpdump, k.p0f}
		fp := m[kk]
		if fp == nil {
			fp = &schema.Fingerprint{Host: k.host, Kind: k.kind, Tcpdump: k.tcpdump, P0f: k.p0f,
				TTL: a.syn.TTL, ITTL: a.syn.InitialTTL, DF: a.syn.DF, ECN: a.syn.ECN, FirstTS: nsTime(a.first), Step: e.steps.name(k.step)}
			m[kk] = fp
		}
		fp.Count += a.count
		if t := nsTime(a.first); t.Before(fp.FirstTS) {
			fp.FirstTS, fp.TTL, fp.Step = t, a.syn.TTL, e.steps.name(k.step)
		}
	}
	out := make([]schema.Fingerprint, 0, len(m))
	for _, fp := range m {
		out = append(out, *fp)
	}
	slices.SortFunc(out, func(x, y schema.Fingerprint) int {
		return cmp.Or(cmp.Compare(x.Host, y.Host), cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Tcpdump, y.Tcpdump), cmp.Compare(x.P0f, y.P0f))
	})
	return out
}
