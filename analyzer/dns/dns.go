// Package dns parses DNS, mDNS and LLMNR messages from UDP payloads or
// TCP-framed streams. It only reads; it never allocates more than the message needs.
//
// Names and record data use the presentation form dig prints (RFC 1035
// section 5.1, RFC 4343): names lower-cased without the trailing dot, bytes
// outside printable ASCII as \DDD, '.' and '\' inside a label escaped; the
// tests compare with dig's answer section and with tshark.
package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// Errors returned by Parse. They are wrapped with the position of the fault.
var (
	// ErrShort means the message ends before a field it announces.
	ErrShort = errors.New("dns: message truncated")
	// ErrBadName means a name is malformed: a compression loop, a pointer out of
	// range, a reserved label type or a name longer than 255 bytes.
	ErrBadName = errors.New("dns: malformed name")
)

// Question is one entry of the question section.
type Question struct {
	Name  string // lower-cased, no trailing dot; "" for the root
	Type  uint16
	Class uint16 // with the mDNS unicast-response bit cleared
}

// RR is one resource record of the answer section.
type RR struct {
	Name string
	Type uint16
	TTL  uint32
	Data string // presentation form: "93.184.216.34", "2001:db8::1", "cname.example.com", …
	// Addr is the address of an A or AAAA record (the zero Addr for other
	// records and for address records of the wrong size), so that users of
	// the address need not parse Data back.
	Addr netip.Addr
}

// Message is a decoded DNS message.
type Message struct {
	ID        uint16
	Response  bool
	Opcode    uint8
	Rcode     uint8
	Truncated bool
	Questions []Question
	Answers   []RR
}

const (
	headerLen   = 12
	minQuestion = 5  // root name + type + class
	minRR       = 11 // root name + type + class + ttl + rdlength
	maxNameLen  = 255
	// maxPointers bounds the compression pointers followed for one name. The
	// "pointers only go backwards" rule already makes loops impossible; this is
	// a second, cheap guard.
	maxPointers = 127
)

// Parse decodes one DNS message (a UDP payload, or a TCP message without its
// 2-byte length prefix). Name compression loops and out-of-range pointers are errors.
//
// When the header decodes but a later record does not (a snaplen cut, garbage),
// Parse returns the message with the records decoded so far together with the
// error, so a caller may still use the question of a truncated capture.
// Only the question and answer sections are decoded; authority and additional
// records are not read.
func Parse(b []byte) (*Message, error) {
	if len(b) < headerLen {
		return nil, headerError(b)
	}
	// One allocation holds the message and the sections of a typical query
	// or response; larger sections get their own, bounded by the message size.
	// Sections the header announces no records for stay nil.
	var err error
	if binary.BigEndian.Uint16(b[6:]) == 0 {
		block := &struct {
			m Message
			q [1]Question
		}{}
		block.m, err = Decode(b, questionSpace(b, block.q[:0]), nil, nil)
		return &block.m, err
	}
	block := &struct {
		m Message
		q [1]Question
		a [4]RR
	}{}
	block.m, err = Decode(b, questionSpace(b, block.q[:0]), block.a[:0], nil)
	return &block.m, err
}

// questionSpace returns qs, or nil for a message without questions.
func questionSpace(b []byte, qs []Question) []Question {
	if binary.BigEndian.Uint16(b[4:]) == 0 {
		return nil
	}
	return qs
}

func headerError(b []byte) error {
	return fmt.Errorf("dns header: %d bytes, need %d: %w", len(b), headerLen, ErrShort)
}

// MaxShared bounds the strings Decode adds to its shared set.
const MaxShared = 1 << 16

// Decode is Parse without allocating the message: the returned message's
// sections reuse the capacity of qs and as (their contents are overwritten),
// so a caller that keeps them, or has them on its stack, parses without
// allocating anything but new strings. After a header error the message is
// empty; otherwise it holds what decoded, as with Parse.
//
// shared, if not nil, is a set of strings (each its own key) that Decode
// takes names and addresses from instead of allocating them again; it adds
// the new ones while the set holds fewer than MaxShared. A caller that
// decodes many messages, which repeat the same few names, passes the same
// set each time.
func Decode(b []byte, qs []Question, as []RR, shared map[string]string) (Message, error) {
	m := Message{Questions: qs[:0], Answers: as[:0]}
	if len(b) < headerLen {
		return m, headerError(b)
	}
	flags := binary.BigEndian.Uint16(b[2:])
	m.ID = binary.BigEndian.Uint16(b)
	m.Response = flags&0x8000 != 0
	m.Opcode = uint8(flags>>11) & 0xf
	m.Truncated = flags&0x0200 != 0
	m.Rcode = uint8(flags & 0xf)
	qd := int(binary.BigEndian.Uint16(b[4:]))
	an := int(binary.BigEndian.Uint16(b[6:]))
	p := parser{msg: b, shared: shared}
	off := headerLen
	// Counts come from the wire: bound each allocation by what the remaining
	// bytes could possibly hold.
	if qd > cap(m.Questions) {
		if n := min(qd, (len(b)-off)/minQuestion); n > cap(m.Questions) {
			m.Questions = make([]Question, 0, n)
		}
	}
	for i := 0; i < qd; i++ {
		name, n, err := p.name(off)
		if err != nil {
			return m, fmt.Errorf("question %d: %w", i, err)
		}
		off = n
		if off+4 > len(b) {
			return m, fmt.Errorf("question %d type/class at offset %d: %w", i, off, ErrShort)
		}
		m.Questions = append(m.Questions, Question{
			Name:  name,
			Type:  binary.BigEndian.Uint16(b[off:]),
			Class: binary.BigEndian.Uint16(b[off+2:]) & 0x7fff,
		})
		off += 4
	}
	if an > cap(m.Answers) {
		if n := min(an, (len(b)-off)/minRR); n > cap(m.Answers) {
			m.Answers = make([]RR, 0, n)
		}
	}
	for i := 0; i < an; i++ {
		name, n, err := p.name(off)
		if err != nil {
			return m, fmt.Errorf("answer %d: %w", i, err)
		}
		off = n
		if off+10 > len(b) {
			return m, fmt.Errorf("answer %d fixed fields at offset %d: %w", i, off, ErrShort)
		}
		rr := RR{
			Name: name,
			Type: binary.BigEndian.Uint16(b[off:]),
			TTL:  binary.BigEndian.Uint32(b[off+4:]),
		}
		rdlen := int(binary.BigEndian.Uint16(b[off+8:]))
		off += 10
		if off+rdlen > len(b) {
			return m, fmt.Errorf("answer %d rdata of %d bytes at offset %d: %w", i, rdlen, off, ErrShort)
		}
		switch d := b[off : off+rdlen]; {
		case rr.Type == TypeA && rdlen == 4:
			rr.Addr = netip.AddrFrom4([4]byte(d))
		case rr.Type == TypeAAAA && rdlen == 16:
			rr.Addr = netip.AddrFrom16([16]byte(d))
		}
		if rr.Addr.IsValid() {
			var buf [48]byte
			rr.Data = p.intern(rr.Addr.AppendTo(buf[:0]))
		} else {
			data, err := p.rdata(rr.Type, off, rdlen)
			if err != nil {
				return m, fmt.Errorf("answer %d (%s) rdata: %w", i, TypeName(rr.Type), err)
			}
			rr.Data = data
		}
		m.Answers = append(m.Answers, rr)
		off += rdlen
	}
	return m, nil
}

// Full is a message with every section: mDNS puts a probe's proposed
// records in the authority section and an announcement's extra records in
// the additional one.
type Full struct {
	Message
	Authority, Additional []RR
}

// ParseFull decodes a message with all four sections. As Parse, it returns
// what decoded before an error together with the error. It is for the few
// messages that need the authority and additional records (mDNS, LLMNR):
// Decode reads them as answers from a copy whose header counts them so.
func ParseFull(b []byte) (*Full, error) {
	f := &Full{}
	if len(b) < headerLen {
		return f, headerError(b)
	}
	an, ns, ar := int(binary.BigEndian.Uint16(b[6:])), int(binary.BigEndian.Uint16(b[8:])), int(binary.BigEndian.Uint16(b[10:]))
	c := append([]byte(nil), b...)
	binary.BigEndian.PutUint16(c[6:], uint16(min(an+ns+ar, 0xffff)))
	m, err := Decode(c, nil, nil, nil)
	rrs := m.Answers
	f.Message, f.Answers = m, rrs[:min(an, len(rrs))]
	if len(rrs) > an {
		f.Authority = rrs[an:min(an+ns, len(rrs))]
	}
	if len(rrs) > an+ns {
		f.Additional = rrs[an+ns:]
	}
	return f, err
}

// parser holds the whole message (compression pointers are message offsets)
// and the last names produced, so a name repeated in the answers costs no
// new allocation and no look-up in the shared set.
type parser struct {
	msg    []byte
	shared map[string]string // Decode's shared set, or nil
	last   [4]string
	next   int
}

// name decodes the name at off and returns it with the offset just after it
// in its original (uncompressed) position.
func (p *parser) name(off int) (string, int, error) {
	var buf [maxNameLen + 8]byte
	n, end, err := p.appendName(buf[:0], off)
	if err != nil {
		return "", 0, err
	}
	return p.intern(n), end, nil
}

// intern returns a string equal to b, reusing a recent or shared one when possible.
func (p *parser) intern(b []byte) string {
	for _, s := range p.last {
		if s == string(b) { // the compiler does not allocate for this comparison
			return s
		}
	}
	s, ok := p.shared[string(b)] // nor for this look-up
	if !ok {
		s = string(b)
		if p.shared != nil && len(p.shared) < MaxShared {
			p.shared[s] = s
		}
	}
	p.last[p.next] = s
	p.next = (p.next + 1) % len(p.last)
	return s
}

// appendName appends the presentation form of the name at off to dst. Every
// pointer must point strictly before the start of the label run that holds
// it, which makes loops impossible.
func (p *parser) appendName(dst []byte, off int) ([]byte, int, error) {
	b := p.msg
	start := len(dst)
	end := -1
	ptrs := 0
	limit := off
	for {
		if off >= len(b) {
			return nil, 0, fmt.Errorf("name at offset %d: %w", off, ErrShort)
		}
		l := int(b[off])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				if end < 0 {
					end = off + 1
				}
				return dst, end, nil
			}
			if off+1+l > len(b) {
				return nil, 0, fmt.Errorf("label of %d bytes at offset %d: %w", l, off, ErrShort)
			}
			if len(dst) > start {
				dst = append(dst, '.')
			}
			dst = appendLabel(dst, b[off+1:off+1+l])
			if len(dst)-start > maxNameLen {
				return nil, 0, fmt.Errorf("name longer than %d bytes: %w", maxNameLen, ErrBadName)
			}
			off += 1 + l
		case 0xc0:
			if off+2 > len(b) {
				return nil, 0, fmt.Errorf("pointer at offset %d: %w", off, ErrShort)
			}
			target := int(binary.BigEndian.Uint16(b[off:]) & 0x3fff)
			if end < 0 {
				end = off + 2
			}
			if target >= limit {
				return nil, 0, fmt.Errorf("pointer at offset %d to %d does not point backwards: %w", off, target, ErrBadName)
			}
			ptrs++
			if ptrs > maxPointers {
				return nil, 0, fmt.Errorf("more than %d pointers: %w", maxPointers, ErrBadName)
			}
			limit = target
			off = target
		default:
			return nil, 0, fmt.Errorf("reserved label type 0x%02x at offset %d: %w", l&0xc0, off, ErrBadName)
		}
	}
}

// appendLabel appends the presentation form of one label. Most labels need
// at most lower-casing: they are copied at once and lower-cased in place.
func appendLabel(dst, label []byte) []byte {
	n := len(dst)
	dst = append(dst, label...)
	for i, c := range dst[n:] {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			// The usual bytes, tested first.
		case c >= 'A' && c <= 'Z':
			dst[n+i] = c + ('a' - 'A')
		case c == '.' || c == '\\' || c <= 0x20 || c >= 0x7f:
			// Escapes needed: redo the label byte by byte.
			dst = dst[:n]
			for _, c := range label {
				dst = appendLabelByte(dst, c)
			}
			return dst
		}
	}
	return dst
}

// appendLabelByte lower-cases ASCII letters and escapes what would make the
// presentation form ambiguous (RFC 4343 section 2.1).
func appendLabelByte(dst []byte, c byte) []byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return append(dst, c+('a'-'A'))
	case c == '.' || c == '\\':
		return append(dst, '\\', c)
	case c <= 0x20 || c >= 0x7f:
		return append(dst, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
	default:
		return append(dst, c)
	}
}

// Resource record types this package formats itself.
const (
	TypeA     uint16 = 1
	TypeNS    uint16 = 2
	TypeCNAME uint16 = 5
	TypeSOA   uint16 = 6
	TypePTR   uint16 = 12
	TypeHINFO uint16 = 13
	TypeMX    uint16 = 15
	TypeTXT   uint16 = 16
	TypeAAAA  uint16 = 28
	TypeSRV   uint16 = 33
	TypeDNAME uint16 = 39
	TypeOPT   uint16 = 41
	TypeSVCB  uint16 = 64
	TypeHTTPS uint16 = 65
)

// rdata renders record data other than addresses (Decode formats those)
// in its presentation form: names (root as "."), "pref name" for MX, "prio
// weight port target" for SRV, quoted strings for TXT, the SOA fields, a
// minimal SVCB/HTTPS form. Anything else, and known types whose rdata has the
// wrong size, use the RFC 3597 generic form `\# <len> <hex>`.
func (p *parser) rdata(t uint16, off, n int) (string, error) {
	d := p.msg[off : off+n]
	switch t {
	case TypeCNAME, TypeNS, TypePTR, TypeDNAME:
		var buf [maxNameLen + 8]byte
		out, end, err := p.appendName(buf[:0], off)
		if err != nil {
			return "", err
		}
		if end > off+n {
			return "", fmt.Errorf("name runs past rdata: %w", ErrShort)
		}
		if len(out) == 0 {
			return ".", nil
		}
		return p.intern(out), nil
	case TypeMX:
		if n >= 3 {
			var buf [maxNameLen + 16]byte
			out := strconv.AppendUint(buf[:0], uint64(binary.BigEndian.Uint16(d)), 10)
			out = append(out, ' ')
			return p.finishName(out, off+2, off+n)
		}
	case TypeSRV:
		if n >= 7 {
			var buf [maxNameLen + 32]byte
			out := buf[:0]
			for i := 0; i < 3; i++ {
				out = strconv.AppendUint(out, uint64(binary.BigEndian.Uint16(d[2*i:])), 10)
				out = append(out, ' ')
			}
			return p.finishName(out, off+6, off+n)
		}
	case TypeSOA:
		return p.soa(off, n)
	case TypeTXT, TypeHINFO:
		return txt(d) // HINFO is two character-strings: "cpu" "os"
	case TypeSVCB, TypeHTTPS:
		if n >= 3 {
			return p.svcb(off, n)
		}
	}
	return generic(d), nil
}

// appendRootName appends the name at off, writing the root as ".".
func (p *parser) appendRootName(out []byte, off int) ([]byte, int, error) {
	mark := len(out)
	out, end, err := p.appendName(out, off)
	if err != nil {
		return nil, 0, err
	}
	if len(out) == mark {
		out = append(out, '.')
	}
	return out, end, nil
}

// finishName appends the name at off and checks it stays inside the rdata.
func (p *parser) finishName(out []byte, off, limit int) (string, error) {
	out, end, err := p.appendRootName(out, off)
	if err != nil {
		return "", err
	}
	if end > limit {
		return "", fmt.Errorf("name runs past rdata: %w", ErrShort)
	}
	return p.intern(out), nil
}

// soa renders "mname rname serial refresh retry expire minimum".
func (p *parser) soa(off, n int) (string, error) {
	var buf [2*maxNameLen + 80]byte
	out, end, err := p.appendRootName(buf[:0], off)
	if err != nil {
		return "", err
	}
	out = append(out, ' ')
	out, end, err = p.appendRootName(out, end)
	if err != nil {
		return "", err
	}
	if end+20 != off+n {
		return "", fmt.Errorf("SOA rdata of %d bytes does not match its names: %w", n, ErrShort)
	}
	for i := 0; i < 5; i++ {
		out = append(out, ' ')
		out = strconv.AppendUint(out, uint64(binary.BigEndian.Uint32(p.msg[end+4*i:])), 10)
	}
	return string(out), nil
}

// txt renders character-strings as quoted, space-separated strings.
func txt(d []byte) (string, error) {
	out := make([]byte, 0, len(d)+8)
	for i := 0; i < len(d); {
		l := int(d[i])
		i++
		if i+l > len(d) {
			return "", fmt.Errorf("TXT string of %d bytes: %w", l, ErrShort)
		}
		if len(out) > 0 {
			out = append(out, ' ')
		}
		out = append(out, '"')
		for _, c := range d[i : i+l] {
			switch {
			case c == '"' || c == '\\':
				out = append(out, '\\', c)
			case c < 0x20 || c >= 0x7f:
				out = append(out, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
			default:
				out = append(out, c)
			}
		}
		out = append(out, '"')
		i += l
	}
	return string(out), nil
}

// Strings returns the character-strings of TXT or HINFO record data in the
// presentation form Data holds ("a=1" "b=2"), unquoted and unescaped.
func Strings(data string) []string {
	var out []string
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		var cur []byte
		for i++; i < len(data) && data[i] != '"'; i++ {
			c := data[i]
			if c == '\\' && i+1 < len(data) {
				i++
				c = data[i]
				if c >= '0' && c <= '9' && i+2 < len(data) {
					c = (c-'0')*100 + (data[i+1]-'0')*10 + (data[i+2] - '0')
					i += 2
				}
			}
			cur = append(cur, c)
		}
		out = append(out, string(cur))
	}
	return out
}

// svcb renders SVCB/HTTPS minimally, the way dig prints them: priority,
// target and the parameters, with the values of alpn (quoted), port, ipv4hint
// and ipv6hint (RFC 9460 presentation names); other keys by name only.
func (p *parser) svcb(off, n int) (string, error) {
	d := p.msg[off : off+n]
	out := make([]byte, 0, 64)
	out = strconv.AppendUint(out, uint64(binary.BigEndian.Uint16(d)), 10)
	out = append(out, ' ')
	out, end, err := p.appendRootName(out, off+2)
	if err != nil {
		return "", err
	}
	if end > off+n {
		return "", fmt.Errorf("SVCB target runs past rdata: %w", ErrShort)
	}
	params := p.msg[end : off+n]
	for len(params) > 0 {
		if len(params) < 4 {
			return "", fmt.Errorf("SVCB parameter header: %w", ErrShort)
		}
		key := binary.BigEndian.Uint16(params)
		l := int(binary.BigEndian.Uint16(params[2:]))
		if 4+l > len(params) {
			return "", fmt.Errorf("SVCB parameter %d of %d bytes: %w", key, l, ErrShort)
		}
		v := params[4 : 4+l]
		params = params[4+l:]
		out = append(out, ' ')
		switch key {
		case 1:
			out = append(out, `alpn="`...)
			for i := 0; i < len(v); {
				sl := int(v[i])
				if i+1+sl > len(v) {
					return "", fmt.Errorf("SVCB alpn: %w", ErrShort)
				}
				if i > 0 {
					out = append(out, ',')
				}
				for _, c := range v[i+1 : i+1+sl] {
					switch {
					case c == '"' || c == '\\' || c == ',':
						out = append(out, '\\', c)
					case c < 0x20 || c >= 0x7f:
						out = append(out, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
					default:
						out = append(out, c)
					}
				}
				i += 1 + sl
			}
			out = append(out, '"')
		case 3:
			out = append(out, "port="...)
			if len(v) == 2 {
				out = strconv.AppendUint(out, uint64(binary.BigEndian.Uint16(v)), 10)
			}
		case 4:
			out = append(out, "ipv4hint="...)
			for i := 0; i+4 <= len(v); i += 4 {
				if i > 0 {
					out = append(out, ',')
				}
				out = netip.AddrFrom4([4]byte(v[i:])).AppendTo(out)
			}
		case 6:
			out = append(out, "ipv6hint="...)
			for i := 0; i+16 <= len(v); i += 16 {
				if i > 0 {
					out = append(out, ',')
				}
				out = netip.AddrFrom16([16]byte(v[i:])).AppendTo(out)
			}
		default:
			out = append(out, svcKeyName(key)...)
		}
	}
	return string(out), nil
}

func svcKeyName(k uint16) string {
	switch k {
	case 0:
		return "mandatory"
	case 2:
		return "no-default-alpn"
	case 5:
		return "ech"
	case 7:
		return "dohpath"
	case 8:
		return "ohttp"
	}
	return "key" + strconv.Itoa(int(k))
}

// generic renders rdata in RFC 3597 form.
func generic(d []byte) string {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 0, 8+2*len(d))
	out = append(out, `\# `...)
	out = strconv.AppendInt(out, int64(len(d)), 10)
	if len(d) > 0 {
		out = append(out, ' ')
	}
	for _, c := range d {
		out = append(out, hexdigits[c>>4], hexdigits[c&0xf])
	}
	return string(out)
}
