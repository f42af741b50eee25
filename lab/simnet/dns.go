package simnet

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// PTRName is the answer to every reverse lookup.
const PTRName = "lab.firstboot."

// dnsTTL is short so a guest re-asks (and is captured again) within a run.
const dnsTTL = 60

// typeName names the common types for the log; others print as TYPEnnn.
func typeName(t dnsmessage.Type) string {
	switch t {
	case dnsmessage.TypeA:
		return "A"
	case dnsmessage.TypeNS:
		return "NS"
	case dnsmessage.TypeCNAME:
		return "CNAME"
	case dnsmessage.TypeSOA:
		return "SOA"
	case dnsmessage.TypePTR:
		return "PTR"
	case dnsmessage.TypeMX:
		return "MX"
	case dnsmessage.TypeTXT:
		return "TXT"
	case dnsmessage.TypeAAAA:
		return "AAAA"
	case dnsmessage.TypeSRV:
		return "SRV"
	case dnsmessage.TypeOPT:
		return "OPT"
	case dnsmessage.TypeSVCB:
		return "SVCB"
	case dnsmessage.TypeHTTPS:
		return "HTTPS"
	case dnsmessage.TypeALL:
		return "ANY"
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// dnsAnswerer builds replies: every name exists; A is the lab address, AAAA
// the optional IPv6 address, PTR is PTRName, everything else is NOERROR with
// no answer (so HTTPS/SVCB lookups fall back to A cleanly).
type dnsAnswerer struct {
	a    netip.Addr // invalid when no A answer
	aaaa netip.Addr // invalid when no AAAA answer
	pool *namePool  // nil: every name answers a
}

// dnsQuestionInfo is what the log records about a query.
type dnsQuestionInfo struct {
	name, qtype, detail string
}

// answer returns the reply to query (nil: drop, the query was too broken
// to reply to) and what to log. maxSize limits UDP replies.
func (d *dnsAnswerer) answer(query []byte, maxSize int) ([]byte, dnsQuestionInfo) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, dnsQuestionInfo{detail: "unparseable query: " + err.Error()}
	}
	if h.Response {
		return nil, dnsQuestionInfo{detail: "ignored a response sent to the server"}
	}
	resp := dnsmessage.Header{
		ID: h.ID, Response: true, OpCode: h.OpCode, Authoritative: true,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true,
	}
	q, qerr := p.Question()
	info := dnsQuestionInfo{}
	if qerr == nil {
		info.name, info.qtype = q.Name.String(), typeName(q.Type)
	}
	var edns bool
	if qerr == nil {
		var size int
		if edns, size = findEDNS(&p); edns && size > maxSize && maxSize >= 512 {
			maxSize = min(size, 1232)
		}
	}
	switch {
	case h.OpCode != 0:
		resp.RCode = dnsmessage.RCodeNotImplemented
		info.detail = "opcode " + strconv.Itoa(int(h.OpCode)) + " not implemented"
		return build(resp, nil, nil, false), info
	case qerr != nil:
		resp.RCode = dnsmessage.RCodeFormatError
		info.detail = "no question: " + qerr.Error()
		return build(resp, nil, nil, false), info
	}
	var ans []dnsmessage.Resource
	rh := dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: q.Class, TTL: dnsTTL}
	switch q.Type {
	case dnsmessage.TypeA:
		switch {
		case d.pool != nil:
			ans = append(ans, dnsmessage.Resource{Header: rh, Body: &dnsmessage.AResource{A: d.pool.addr(q.Name.String()).As4()}})
		case d.a.IsValid():
			ans = append(ans, dnsmessage.Resource{Header: rh, Body: &dnsmessage.AResource{A: d.a.As4()}})
		}
	case dnsmessage.TypeAAAA:
		if d.aaaa.IsValid() {
			ans = append(ans, dnsmessage.Resource{Header: rh, Body: &dnsmessage.AAAAResource{AAAA: d.aaaa.As16()}})
		}
	case dnsmessage.TypePTR:
		ptr := dnsmessage.MustNewName(PTRName)
		if d.pool != nil {
			if name, ok := d.pool.reverse(q.Name.String()); ok {
				if n, err := dnsmessage.NewName(name); err == nil {
					ptr = n
				}
			}
		}
		ans = append(ans, dnsmessage.Resource{Header: rh, Body: &dnsmessage.PTRResource{PTR: ptr}})
	}
	out := build(resp, &q, ans, edns)
	if maxSize > 0 && len(out) > maxSize { // cannot happen with one answer, but be exact
		resp.Truncated = true
		out = build(resp, &q, nil, edns)
	}
	return out, info
}

// findEDNS skips the rest of the message to its OPT record and returns the
// client's UDP payload size. A broken tail only costs the EDNS echo.
func findEDNS(p *dnsmessage.Parser) (bool, int) {
	if p.SkipAllQuestions() != nil || p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return false, 0
	}
	for {
		rh, err := p.AdditionalHeader()
		if err != nil {
			return false, 0
		}
		if rh.Type == dnsmessage.TypeOPT {
			return true, int(rh.Class) // OPT's class field carries the payload size
		}
		if p.SkipAdditional() != nil {
			return false, 0
		}
	}
}

func build(h dnsmessage.Header, q *dnsmessage.Question, ans []dnsmessage.Resource, edns bool) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	// The builder only fails on misuse (wrong section order) or names it
	// cannot encode; names come from a parsed message, so fall back to a bare
	// header reply rather than panic.
	fail := func() []byte {
		hb := dnsmessage.NewBuilder(make([]byte, 0, 12), dnsmessage.Header{ID: h.ID, Response: true, RCode: dnsmessage.RCodeServerFailure})
		out, _ := hb.Finish()
		return out
	}
	if err := b.StartQuestions(); err != nil {
		return fail()
	}
	if q != nil {
		if err := b.Question(*q); err != nil {
			return fail()
		}
	}
	if err := b.StartAnswers(); err != nil {
		return fail()
	}
	for _, r := range ans {
		var err error
		switch body := r.Body.(type) {
		case *dnsmessage.AResource:
			err = b.AResource(r.Header, *body)
		case *dnsmessage.AAAAResource:
			err = b.AAAAResource(r.Header, *body)
		case *dnsmessage.PTRResource:
			err = b.PTRResource(r.Header, *body)
		}
		if err != nil {
			return fail()
		}
	}
	if edns {
		if err := b.StartAdditionals(); err != nil {
			return fail()
		}
		var opt dnsmessage.ResourceHeader
		if err := opt.SetEDNS0(1232, dnsmessage.RCodeSuccess, false); err != nil {
			return fail()
		}
		if err := b.OPTResource(opt, dnsmessage.OPTResource{}); err != nil {
			return fail()
		}
	}
	out, err := b.Finish()
	if err != nil {
		return fail()
	}
	return out
}

func (r *Responders) serveDNSUDP(c *net.UDPConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if r.closing() {
				return
			}
			r.log.log(Event{Service: "dns", Proto: "udp", Detail: "read: " + err.Error()})
			time.Sleep(10 * time.Millisecond) // do not spin on a persistent error
			continue
		}
		reply, info := r.dns.answer(buf[:n], 512)
		r.log.log(Event{Service: "dns", Proto: "udp", Client: from.String(), Dst: r.udpDst(c.LocalAddr(), from),
			Name: info.name, QType: info.qtype, Size: n, Detail: info.detail})
		if reply != nil {
			c.WriteToUDPAddrPort(reply, from)
		}
	}
}

func (r *Responders) serveDNSTCP(c net.Conn) {
	defer c.Close()
	client, dst := c.RemoteAddr().String(), originalDst(c)
	var lenBuf [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			if !errors.Is(err, io.EOF) && !r.closing() {
				r.log.log(Event{Service: "dns", Proto: "tcp", Client: client, Dst: dst, Detail: "read: " + err.Error()})
			}
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			r.log.log(Event{Service: "dns", Proto: "tcp", Client: client, Dst: dst, Detail: "read: " + err.Error()})
			return
		}
		reply, info := r.dns.answer(msg, 0)
		r.log.log(Event{Service: "dns", Proto: "tcp", Client: client, Dst: dst,
			Name: info.name, QType: info.qtype, Size: len(msg), Detail: info.detail})
		if reply == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reply)), uint16(len(reply)))
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(append(out, reply...)); err != nil {
			return
		}
	}
}
