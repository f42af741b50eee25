package analyzer

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/firstboot/firstboot/analyzer/decode"
	"github.com/firstboot/firstboot/analyzer/dhcp"
	"github.com/firstboot/firstboot/analyzer/dns"
	"github.com/firstboot/firstboot/analyzer/fingerprint"
	"github.com/firstboot/firstboot/analyzer/ntp"
	"github.com/firstboot/firstboot/analyzer/quic"
	"github.com/firstboot/firstboot/analyzer/tlshello"
	"github.com/firstboot/firstboot/results/schema"
)

// maxQUICDatagrams bounds the client datagrams tried for a ClientHello.
const maxQUICDatagrams = 8

func (e *engine) udpPayload(f *flow, di int, p *decode.Packet, ts int64) {
	op, rp := f.ports()
	b := p.Payload
	switch {
	case isDNSPort(op) || isDNSPort(rp):
		// The message and its usual sections live on the stack (the records
		// keep only its strings); names and addresses come from e.strs.
		var qs [1]dns.Question
		var as [8]dns.RR
		msg, err := dns.Decode(b, qs[:0], as[:0], e.strs)
		if err != nil {
			e.parserError("dns")
			if len(msg.Questions) == 0 {
				return // a message cut before its question tells nothing
			}
		}
		f.service = "dns"
		e.dnsMessage(f, di, &msg, ts, "udp")
		if op != 53 && rp != 53 {
			e.mdnsLAN(f, p, b, ts, dnsKind(op, rp))
		}
	case op == 123 || rp == 123:
		pk, err := ntp.Parse(b)
		if err != nil {
			e.parserError("ntp")
			return
		}
		f.service = "ntp"
		e.ntpPacket(f, di, pk, ts)
	case (op == 67 || op == 68) && (rp == 67 || rp == 68):
		m, err := dhcp.Parse(b)
		if err != nil {
			e.parserError("dhcp")
			if !errors.Is(err, dhcp.ErrOptions) || m == nil {
				return
			}
			// A cut option: the fixed fields and the options before it still count.
		}
		f.service = "dhcp"
		e.dhcpMessage(f, di, p, m, ts)
	case di == 0 && (rp == 443 || looksLikeQUICInitial(b)):
		e.quicDatagram(f, b)
	case (lanPort(op) || lanPort(rp)) && e.udpLAN(f, di, p, ts):
	case di == 0 && looksLikeDTLSHello(b):
		e.dtlsDatagram(f, b)
	}
	e.quicDecrypt(f, di, b) // decrypt.go: QUIC flows started after secrets came
}

func isDNSPort(p uint16) bool { return p == 53 || p == 5353 || p == 5355 }

// looksLikeQUICInitial recognises a QUIC v1/v2 long-header Initial on any port:
// long header and fixed bits set, a known version, and the 1200-byte minimum
// size of a client Initial datagram.
func looksLikeQUICInitial(b []byte) bool {
	if len(b) < 1200 || b[0]&0xc0 != 0xc0 {
		return false
	}
	switch binary.BigEndian.Uint32(b[1:5]) {
	case 1:
		return b[0]&0x30 == 0x00
	case 0x6b3343cf:
		return b[0]&0x30 == 0x10
	}
	return false
}

func (e *engine) quicDatagram(f *flow, b []byte) {
	if f.quic == nil {
		f.quic = &quicState{}
	}
	q := f.quic
	if q.done || q.tries >= maxQUICDatagrams {
		return
	}
	q.tries++
	// Later client Initials may address the server's chosen connection ID;
	// their keys still come from the first Initial's DCID (RFC 9001 5.2).
	inits, err := quic.ParseInitialsWithDCID(b, q.odcid)
	if err != nil && q.odcid != nil && errors.Is(err, quic.ErrDecrypt) {
		inits, err = quic.ParseInitials(b) // a new connection on the same tuple
	}
	if err != nil {
		if !errors.Is(err, quic.ErrNotInitial) {
			e.parserError("quic")
		}
		return
	}
	f.service = "quic"
	if q.odcid == nil {
		q.odcid = append([]byte{}, inits[0].DCID...)
		if e.decrypting && f.dec == nil {
			e.startQUIC(f) // decrypt.go
		}
	}
	for _, in := range inits {
		for _, fr := range in.Frames {
			q.cs.Add(fr, e.streamBytes)
		}
	}
	s := q.cs.Bytes()
	if len(s) < 4 {
		return
	}
	need := 4 + (int(s[1])<<16 | int(s[2])<<8 | int(s[3]))
	if len(s) < need {
		return
	}
	q.done = true
	ch, err := tlshello.ParseClientHello(s[:need])
	if err != nil {
		e.parserError("tls")
		return
	}
	e.addClientHello(f, ch, "quic", 'q')
	f.quic = &quicState{done: true} // release the crypto stream
}

// looksLikeDTLSHello recognises a datagram starting with a DTLS
// handshake record holding a ClientHello.
func looksLikeDTLSHello(b []byte) bool {
	return len(b) >= 25 && b[0] == 22 && b[1] == 0xfe && b[13] == tlshello.TypeClientHello
}

// dtlsDatagram reads a DTLS ClientHello: the flow's first, and the one
// with the cookie of the server's HelloVerifyRequest, which gets a record
// of its own as a ClientHello after a HelloRetryRequest does. Retransmitted
// hellos add nothing.
func (e *engine) dtlsDatagram(f *flow, b []byte) {
	if f.x != nil && f.x.helloRetry {
		return
	}
	ch, err := tlshello.ParseDTLSClientHello(b)
	if err != nil {
		if !errors.Is(err, tlshello.ErrIncomplete) {
			e.parserError("tls")
		}
		return
	}
	if f.tls != nil {
		if !ch.HasCookie {
			return
		}
		x := f.extra()
		x.helloRetry, x.retried, f.tls = true, f.tls, nil
		e.addClientHello(f, ch, "dtls", 'd')
		f.tls.HelloRetry = true
		return
	}
	e.addClientHello(f, ch, "dtls", 'd')
}

type dnsPending struct {
	id  uint16
	idx int
	ts  int64
}

func dnsKind(op, rp uint16) string {
	switch {
	case op == 5353 || rp == 5353:
		return "mdns"
	case op == 5355 || rp == 5355:
		return "llmnr"
	}
	return "dns"
}

func (e *engine) dnsMessage(f *flow, di int, m *dns.Message, ts int64, proto string) {
	op, rp := f.ports()
	kind := dnsKind(op, rp)
	qname := ""
	var q dns.Question
	if len(m.Questions) > 0 {
		q = m.Questions[0]
		qname = q.Name
	}
	if !m.Response {
		e.cnt[e.steps.index(ts)].dnsQueries++
		e.all.dnsQueries++
		rec := e.baseDNS(f, ts, proto, kind, m, q)
		f.dnsPend = append(f.dnsPend, dnsPending{id: m.ID, idx: e.dns.add(rec), ts: ts})
		if len(f.dnsPend) > 64 {
			// Too many unanswered: the oldest can no longer be matched, its record is final.
			e.emitDNS(f.dnsPend[0].idx)
			f.dnsPend = f.dnsPend[1:]
		}
		return
	}
	n := len(m.Answers)
	r := &dnsReply{rc: m.Rcode}
	idx := -1
	for i, pq := range f.dnsPend {
		if pq.id == m.ID {
			idx = pq.idx
			r.rtt = float64(ts-pq.ts) / 1e9
			e.dns.at(idx).RTT = &r.rtt
			f.dnsPend = append(f.dnsPend[:i], f.dnsPend[i+1:]...)
			break
		}
	}
	if idx < 0 {
		idx = e.dns.add(e.baseDNS(f, ts, proto, kind, m, q))
	}
	if kind == "dns" {
		// The sender answers DNS queries: a resolver (attribute's infrastructure rule).
		a, _ := f.resp()
		if di == 0 {
			a, _ = f.orig()
		}
		e.attr.AddResolver(addrOf(f.key.v, a))
	}
	rec := e.dns.at(idx)
	rec.Rcode, rec.RcodeName, rec.TC = &r.rc, dns.RcodeName(m.Rcode), m.Truncated
	if n > 0 {
		// The record owns its slices (the sink may read them after this
		// returns); the pending query's are empty.
		if n <= len(r.ans) {
			rec.Answers, rec.TTLs = r.ans[:n:n], r.ttl[:n:n]
		} else {
			rec.Answers, rec.TTLs = make([]string, n), make([]float64, n)
		}
		for i, rr := range m.Answers {
			rec.Answers[i], rec.TTLs[i] = rr.Data, float64(rr.TTL)
		}
	}
	e.emitDNS(idx) // answered: final
	e.learnAnswers(m, qname, ts)
}

// dnsReply holds what a response adds to its record, in one allocation for
// the usual one or two answers; the record points into it.
type dnsReply struct {
	rtt float64
	rc  uint8
	ans [2]string
	ttl [2]float64
}

// learnAnswers feeds address records to the attribution store. Addresses
// reached through a CNAME chain from the query name are attributed to the
// query name (what the client asked for); others to their own owner name.
func (e *engine) learnAnswers(m *dns.Message, qname string, ts int64) {
	var buf [8]string
	chain := nameSet{small: buf[:0]}
	if qname != "" {
		chain = chain.add(qname)
	}
	for changed, i := true, 0; changed && i < 16; i++ {
		changed = false
		for _, rr := range m.Answers {
			if rr.Type == dns.TypeCNAME && chain.has(rr.Name) && !chain.has(rr.Data) {
				chain = chain.add(rr.Data)
				changed = true
			}
		}
	}
	for _, rr := range m.Answers {
		if !rr.Addr.IsValid() { // not an A or AAAA record
			continue
		}
		name := rr.Name
		if chain.has(name) {
			name = qname
		}
		e.attr.Add(rr.Addr, ts, name)
	}
}

// nameSet is a set of names from one message. Answers are few: a slice
// (on the caller's stack) serves until a hostile message's thousands of
// CNAMEs make a map worth it. Names from the dns package are lower-case
// already, so they compare with ==.
type nameSet struct {
	small []string
	big   map[string]bool
}

func (s nameSet) has(n string) bool {
	if s.big != nil {
		return s.big[n]
	}
	return slices.Contains(s.small, n)
}

// add returns the set with n added (a value, not a pointer receiver: that
// keeps the caller's array on its stack).
func (s nameSet) add(n string) nameSet {
	switch {
	case s.big != nil:
		s.big[n] = true
	case len(s.small) < 32:
		s.small = append(s.small, n)
	default:
		s.big = make(map[string]bool, 2*len(s.small))
		for _, x := range s.small {
			s.big[x] = true
		}
		s.big[n] = true
	}
	return s
}

func (e *engine) baseDNS(f *flow, ts int64, proto, kind string, m *dns.Message, q dns.Question) schema.DNS {
	return schema.DNS{ConnID: e.connID(f, ts),
		Proto: proto, Kind: kind, TransID: m.ID, Query: q.Name, Questions: questionNames(m.Questions), QClass: q.Class, QType: q.Type,
		QTypeName: dns.TypeName(q.Type), Answers: []string{}, TTLs: []float64{}, Step: e.steps.name(e.steps.index(ts))}
}

// questionNames lists the questions' names when there is more than one
// (mDNS asks several at once), else nil: the record's Query names the one.
func questionNames(qs []dns.Question) []string {
	if len(qs) < 2 {
		return nil
	}
	return allNames(qs)
}

func allNames(qs []dns.Question) []string {
	out := make([]string, len(qs))
	for i, q := range qs {
		out[i] = q.Name
	}
	return out
}

func (e *engine) ntpPacket(f *flow, di int, pk *ntp.Packet, ts int64) {
	id := e.connID(f, ts)
	sender := id.OrigH
	if di == 1 {
		sender = id.RespH
	}
	rec := schema.NTP{ConnID: id,
		Sender: sender, Version: pk.Version, Mode: pk.Mode, ModeName: ntp.ModeName(pk.Mode), Stratum: pk.Stratum,
		Poll: math.Ldexp(1, int(pk.Poll)), Precision: math.Ldexp(1, int(pk.Precision)), RefID: pk.RefID,
		Step: e.steps.name(e.steps.index(ts))}
	if !pk.XmitTime.IsZero() && pk.XmitTime.Year() > 1900 {
		t := pk.XmitTime.UTC()
		rec.XmtTime = &t
	}
	e.out.ntp(&rec)
}

// emitDNS writes the DNS record at idx and frees its slot.
func (e *engine) emitDNS(idx int) {
	e.out.dns(e.dns.at(idx))
	e.dns.release(idx)
}

type dhcpKey struct {
	mac string
	xid uint32
}

type dhcpTx struct {
	rec   schema.DHCP
	first int64
	last  int64
	uids  map[string]bool
	seq   int
	// client is true when a client message was seen (the studied machine candidate).
	client bool
}

func (e *engine) dhcpMessage(f *flow, di int, p *decode.Packet, m *dhcp.Message, ts int64) {
	k := dhcpKey{mac: m.ClientMAC.String(), xid: m.XID}
	tx := e.dhcpTransaction(k, f, ts)
	tx.rec.MAC = k.mac
	r := &tx.rec
	if m.MessageType != 0 {
		r.MsgTypes = append(r.MsgTypes, dhcp.MessageTypeName(m.MessageType))
	}
	if m.Op == 1 { // client → server
		tx.client = true
		if m.Hostname != "" {
			r.HostName = m.Hostname
		}
		if m.VendorClass != "" {
			r.VendorClass = m.VendorClass
		}
		if len(m.ParamList) > 0 {
			ps := make([]string, len(m.ParamList))
			for i, v := range m.ParamList {
				ps[i] = strconv.Itoa(int(v))
			}
			r.ParamList = strings.Join(ps, ",")
		}
		if m.RequestedIP.IsValid() && !m.RequestedIP.IsUnspecified() {
			r.RequestedAddr = m.RequestedIP.String()
		}
		if m.ClientIP.IsValid() && !m.ClientIP.IsUnspecified() {
			r.ClientAddr = m.ClientIP.String()
		}
		e.dhcpLAN(f, p, ts, dhcp.MessageTypeName(m.MessageType), m.Hostname, m.VendorClass, r.ParamList, m.ClientID)
		return
	}
	if m.ServerID.IsValid() {
		r.ServerAddr = m.ServerID.String()
	} else {
		r.ServerAddr = addrOf(p.IPVersion, p.Src).String()
	}
	if m.Domain != "" {
		r.Domain = m.Domain
	}
	if m.LeaseTime > 0 {
		r.LeaseTime = float64(m.LeaseTime)
	}
	if m.YourIP.IsValid() && !m.YourIP.IsUnspecified() && (m.MessageType == 5 || r.AssignedAddr == "") {
		r.AssignedAddr = m.YourIP.String()
	}
}

// dhcpTransaction returns the transaction k (made on first sight) with
// flow f's message at ts added.
func (e *engine) dhcpTransaction(k dhcpKey, f *flow, ts int64) *dhcpTx {
	tx := e.dhcp[k]
	if tx == nil {
		tx = &dhcpTx{first: ts, last: ts, uids: map[string]bool{}, seq: len(e.dhcp)}
		tx.rec = schema.DHCP{MsgTypes: []string{}, Step: e.steps.name(e.steps.index(ts))}
		e.dhcp[k] = tx
	}
	tx.first, tx.last = min(tx.first, ts), max(tx.last, ts)
	tx.uids[f.uid] = true
	return tx
}

type fpKey struct {
	step    int
	host    string
	kind    string
	tcpdump string
	p0f     string
}

type fpAgg struct {
	first int64
	count int64
	syn   fingerprint.SYN
}

func (e *engine) fingerprint(f *flow, di int, p *decode.Packet, ts int64) {
	kind := "syn"
	var peerMSS uint16
	if p.Flags&decode.ACK != 0 {
		// p0f also tries the answered SYN's MSS as the window multiplier.
		kind, peerMSS = "syn-ack", f.d[1-di].synMSS
	}
	fp, err := e.fpParser.Parse(p.IP, peerMSS)
	if err != nil {
		e.parserError("fingerprint")
		return
	}
	if kind == "syn" {
		f.d[di].synMSS = fp.MSS
	}
	k := fpKey{step: e.steps.index(ts), host: e.addrString(p.IPVersion, p.Src), kind: kind, tcpdump: fp.Tcpdump, p0f: fp.P0f}
	a := e.fps[k]
	if a == nil {
		a = &fpAgg{first: ts, syn: fp}
		e.fps[k] = a
	}
	if ts < a.first {
		a.first = ts
	}
	a.count++
}
