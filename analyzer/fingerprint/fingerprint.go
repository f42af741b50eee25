// Package fingerprint describes TCP SYN packets the way researchers quote them:
// tcpdump's flags/window/options line and a p0f v3 signature.
//
// Tcpdump is what `tcpdump -nn -v` (4.99) prints for the TCP header from
// "Flags" on, without the checksum, sequence and acknowledgement numbers, the
// timestamp values (`TS` instead of `TS val 1 ecr 0`) and the trailing
// ", length N", so the line is the same for every connection a stack opens:
//
//	Flags [SEW], win 65535, options [mss 1460,nop,wscale 6,nop,nop,TS,sackOK,eol]
//
// P0f is the raw_sig that p0f 3.09b logs for the packet (README section 5,
// fp_tcp.c dump_sig), including its window-size rewriting to mss*N / mtu*N and
// its quirk detection, reproduced bug for bug where p0f's output depends on it
// (see ackQuirk).
package fingerprint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Errors returned by Parse.
var (
	// ErrShort means the packet ends inside the IP or TCP header.
	ErrShort = errors.New("fingerprint: packet truncated")
	// ErrNotTCP means the packet is not an unfragmented TCP segment over IPv4 or IPv6.
	ErrNotTCP = errors.New("fingerprint: not a TCP segment")
	// ErrNotSYN means the TCP segment does not have SYN set.
	ErrNotSYN = errors.New("fingerprint: not a SYN")
)

// SYN is what a SYN (or SYN+ACK) reveals about the sender's stack.
type SYN struct {
	IPVersion  int
	TTL        uint8 // observed TTL / hop limit
	InitialTTL uint8 // guessed initial TTL: 32, 64, 128 or 255
	DF         bool
	ECN        bool // SYN with ECE+CWR set (ECN setup); for a SYN+ACK, ECE without CWR
	Window     uint16
	MSS        uint16 // 0 when absent
	WScale     int    // -1 when absent
	Tcpdump    string // "Flags [SEW], win 65535, options [mss 1460,nop,wscale 6,nop,nop,TS,sackOK,eol]": see package doc
	P0f        string // "4:64+0:0:1460:mss*44,7:mss,sok,ts,nop,ws:df,id+:0"
}

// TCP flag bits.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
	flagURG = 0x20
	flagECE = 0x40
	flagCWR = 0x80
)

const (
	protoTCP   = 6
	ipv4MinHdr = 20
	ipv6Hdr    = 40
	tcpMinHdr  = 20
	// p0f constants (config.h, tcp.h).
	p0fMaxDist    = 35
	p0fMaxTCPOpt  = 24
	p0fSpecialMSS = 1331
	minTCP4       = ipv4MinHdr + tcpMinHdr
	minTCP6       = ipv6Hdr + tcpMinHdr
)

// Parse reads an IP packet (IPv4 or IPv6 header first) carrying a TCP segment with
// SYN set, and returns its fingerprint. It returns an error for anything else.
//
// For a SYN+ACK, p0f also tries the MSS of the SYN it answers when rewriting
// the window; Parse does not know it: use ParseWithPeerMSS.
func Parse(ipPacket []byte) (*SYN, error) { return ParseWithPeerMSS(ipPacket, 0) }

// ParseWithPeerMSS is Parse for a SYN+ACK whose SYN carried MSS peerMSS (0 if
// unknown), which p0f uses as a last window multiplier candidate.
func ParseWithPeerMSS(ipPacket []byte, peerMSS uint16) (*SYN, error) {
	s, err := parse(ipPacket, peerMSS, nil)
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// Parser is ParseWithPeerMSS for many packets: it hands out one string per
// distinct rendering, as a capture has thousands of SYNs but a few
// fingerprints, and renders a SYN only when no earlier one had the same
// rendering inputs (see synKey). The zero value is ready to use.
type Parser struct {
	seen     map[string]string
	rendered map[synKey]renderings
}

// renderings are a SYN's two descriptions.
type renderings struct{ tcpdump, p0f string }

// maxRendered bounds the Parser's cache of renderings: past it, SYNs are
// rendered each time (and still share strings through seen).
const maxRendered = 4096

// Parse is ParseWithPeerMSS.
func (p *Parser) Parse(ipPacket []byte, peerMSS uint16) (SYN, error) {
	return parse(ipPacket, peerMSS, p)
}

// intern returns b as a string, shared when p is not nil. (A method, not a
// func value, so the caller's buffer stays on its stack.)
func (p *Parser) intern(b []byte) string {
	if p == nil {
		return string(b)
	}
	if s, ok := p.seen[string(b)]; ok {
		return s
	}
	if p.seen == nil {
		p.seen = map[string]string{}
	}
	s := string(b)
	p.seen[s] = s
	return s
}

func parse(ipPacket []byte, peerMSS uint16, p *Parser) (SYN, error) {
	var h pkt
	if err := h.decode(ipPacket); err != nil {
		return SYN{}, err
	}
	s := SYN{
		IPVersion: h.ver,
		TTL:       h.ttl,
		DF:        h.df,
		Window:    h.win,
		MSS:       h.mss,
		WScale:    h.wscale,
	}
	s.InitialTTL = h.ttl + guessDist(h.ttl)
	switch h.flags & (flagSYN | flagACK) {
	case flagSYN:
		s.ECN = h.flags&(flagECE|flagCWR) == flagECE|flagCWR
	default:
		s.ECN = h.flags&(flagECE|flagCWR) == flagECE
	}
	var k synKey
	cacheable := p != nil && h.key(&k, peerMSS)
	if cacheable {
		if r, ok := p.rendered[k]; ok {
			s.Tcpdump, s.P0f = r.tcpdump, r.p0f
			return s, nil
		}
	}
	var buf [320]byte
	s.Tcpdump = p.intern(h.tcpdump(buf[:0]))
	s.P0f = p.intern(h.p0f(buf[:0], peerMSS))
	if cacheable && len(p.rendered) < maxRendered {
		if p.rendered == nil {
			p.rendered = map[synKey]renderings{}
		}
		p.rendered[k] = renderings{s.Tcpdump, s.P0f}
	}
	return s, nil
}

// synKey holds every input of pkt.tcpdump and pkt.p0f, so two SYNs with the
// same key render the same: the TCP options verbatim except the timestamp
// values (neither rendering prints them; p0f only looks at whether TS1 is
// zero and TS2 non-zero, which ts1 and the quirks carry), and the header
// fields the renderings read. Layout: see pkt.key.
type synKey [64]byte

// optLens are the lengths of the options pkt.key accepts (besides eol, nop).
var optLens = [9]uint8{2: 4, 3: 3, 4: 2, 8: 10}

// key fills k for h and peerMSS. It reports false, leaving the SYN to be
// rendered uncached, unless every option before an eol is nop, mss, wscale,
// sackOK or TS with its standard length: then p0f's and tcpdump's option
// walks step through the same options, and the bytes blanked in the key are
// exactly the timestamp values.
func (h *pkt) key(k *synKey, peerMSS uint16) bool {
	opts := h.tcp[tcpMinHdr:] // at most 40 bytes: the data offset is 4 bits
	for i := 0; i < len(opts); {
		kind := opts[i]
		if kind == 0 {
			break
		}
		if kind == 1 {
			i++
			continue
		}
		if int(kind) >= len(optLens) || optLens[kind] == 0 {
			return false
		}
		n := int(optLens[kind])
		if i+n > len(opts) || opts[i+1] != uint8(n) {
			return false
		}
		i += n
	}
	copy(k[:40], opts)
	for i := 0; i < len(opts); { // blank the timestamp values
		switch kind := opts[i]; kind {
		case 0:
			i = len(opts)
		case 1:
			i++
		case 8:
			clear(k[i+2 : i+10])
			i += 10
		default:
			i += int(optLens[kind])
		}
	}
	k[40] = uint8(len(opts))
	k[41] = uint8(h.ver)
	k[42] = h.ttl
	k[43] = uint8(h.ipOptLen) // at most 40
	k[44] = h.flags
	binary.LittleEndian.PutUint16(k[45:], h.win)
	binary.LittleEndian.PutUint16(k[47:], h.urp)
	binary.LittleEndian.PutUint16(k[49:], uint16(h.totHdr)) // at most 120
	binary.LittleEndian.PutUint32(k[51:], h.quirks)
	if h.payLen > 0 {
		k[55] = 1
	}
	if h.ts1 != 0 {
		k[56] = 1
	}
	binary.LittleEndian.PutUint16(k[57:], peerMSS)
	return true
}

// pkt holds the decoded header fields both renderings need.
type pkt struct {
	ver       int
	ttl       uint8
	df        bool
	ipOptLen  int
	totHdr    int // IP header + TCP header with options
	quirks    uint32
	tcp       []byte // TCP header including options
	flags     uint8
	win       uint16
	urp       uint16
	payLen    int
	mss       uint16
	wscale    int
	p0fMSS    uint16 // MSS as p0f sees it (the value even if the option is odd)
	p0fWScale uint8
	ts1       uint32
	optLayout [p0fMaxTCPOpt]uint8
	optCnt    int
	eolPad    int
}

// p0f quirk bits, in the order dump_sig prints them.
const (
	qDF = 1 << iota
	qNZID
	qZeroID
	qECN
	qNZMBZ
	qFlow
	qZeroSeq
	qNZAck
	qZeroAck
	qNZURG
	qURG
	qPush
	qZeroTS1
	qNZTS2
	qOptEOLNZ
	qOptEXWS
	qOptBad
)

var quirkNames = [...]string{"df", "id+", "id-", "ecn", "0+", "flow", "seq-", "ack+", "ack-", "uptr+", "urgf+", "pushf+", "ts1-", "ts2+", "opt+", "exws", "bad"}

func (h *pkt) decode(b []byte) error {
	if len(b) < 1 {
		return fmt.Errorf("empty packet: %w", ErrShort)
	}
	var l4 []byte
	ipLen := 0 // bytes the IP header says the packet has
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4MinHdr {
			return fmt.Errorf("IPv4 header: %w", ErrShort)
		}
		hl := int(b[0]&0xf) * 4
		if hl < ipv4MinHdr || hl > len(b) {
			return fmt.Errorf("IPv4 header length %d of %d bytes: %w", hl, len(b), ErrShort)
		}
		if b[9] != protoTCP {
			return fmt.Errorf("IPv4 protocol %d: %w", b[9], ErrNotTCP)
		}
		flagsOff := binary.BigEndian.Uint16(b[6:])
		if flagsOff&0x3fff != 0 {
			return fmt.Errorf("IPv4 fragment: %w", ErrNotTCP)
		}
		h.ver = 4
		h.ttl = b[8]
		h.ipOptLen = hl - ipv4MinHdr
		h.totHdr = hl
		ipLen = int(binary.BigEndian.Uint16(b[2:]))
		if b[1]&0x03 != 0 {
			h.quirks |= qECN
		}
		if flagsOff&0x8000 != 0 {
			h.quirks |= qNZMBZ
		}
		id := binary.BigEndian.Uint16(b[4:])
		if flagsOff&0x4000 != 0 {
			h.df = true
			h.quirks |= qDF
			if id != 0 {
				h.quirks |= qNZID
			}
		} else if id == 0 {
			h.quirks |= qZeroID
		}
		l4 = b[hl:]
		ipLen -= hl
	case 6:
		if len(b) < ipv6Hdr {
			return fmt.Errorf("IPv6 header: %w", ErrShort)
		}
		verTC := binary.BigEndian.Uint32(b)
		h.ver = 6
		h.ttl = b[7]
		h.totHdr = ipv6Hdr
		if verTC&0xfffff != 0 {
			h.quirks |= qFlow
		}
		if (verTC>>20)&0x03 != 0 {
			h.quirks |= qECN
		}
		ipLen = int(binary.BigEndian.Uint16(b[4:]))
		var err error
		l4, ipLen, err = skipIPv6Ext(b[6], b[ipv6Hdr:], ipLen)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("IP version %d: %w", b[0]>>4, ErrNotTCP)
	}
	if len(l4) < tcpMinHdr {
		return fmt.Errorf("TCP header: %w", ErrShort)
	}
	doff := int(l4[12]>>4) * 4
	if doff < tcpMinHdr {
		return fmt.Errorf("TCP data offset %d: %w", doff, ErrNotTCP)
	}
	if doff > len(l4) {
		return fmt.Errorf("TCP header of %d bytes in %d: %w", doff, len(l4), ErrShort)
	}
	h.tcp = l4[:doff]
	h.flags = l4[13]
	if h.flags&flagSYN == 0 {
		return fmt.Errorf("TCP flags 0x%02x: %w", h.flags, ErrNotSYN)
	}
	h.totHdr += doff
	h.win = binary.BigEndian.Uint16(l4[14:])
	h.urp = binary.BigEndian.Uint16(l4[18:])
	// The payload size is what the IP header announces, so a snaplen cut does
	// not change the payload class; a bogus length falls back to what we have.
	if ipLen >= doff {
		h.payLen = ipLen - doff
	} else {
		h.payLen = len(l4) - doff
	}
	h.tcpQuirks(l4)
	h.options()
	return nil
}

// skipIPv6Ext walks IPv6 extension headers to TCP. p0f itself only fingerprints
// packets whose next header is TCP; a SYN behind extension headers is rare and
// still described here (olen stays 0, as p0f documents for IPv6).
func skipIPv6Ext(next uint8, b []byte, plen int) ([]byte, int, error) {
	for i := 0; i < 8; i++ {
		switch next {
		case protoTCP:
			return b, plen, nil
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 8 {
				return nil, 0, fmt.Errorf("IPv6 extension header: %w", ErrShort)
			}
			n := (int(b[1]) + 1) * 8
			if n > len(b) {
				return nil, 0, fmt.Errorf("IPv6 extension header of %d bytes: %w", n, ErrShort)
			}
			next, b, plen = b[0], b[n:], plen-n
		default: // fragments (44), ESP, no next header, other protocols
			return nil, 0, fmt.Errorf("IPv6 next header %d: %w", next, ErrNotTCP)
		}
	}
	return nil, 0, fmt.Errorf("too many IPv6 extension headers: %w", ErrNotTCP)
}

func (h *pkt) tcpQuirks(l4 []byte) {
	if h.flags&(flagECE|flagCWR) != 0 || l4[12]&0x01 != 0 {
		h.quirks |= qECN
	}
	if binary.BigEndian.Uint32(l4[4:]) == 0 {
		h.quirks |= qZeroSeq
	}
	if h.flags&flagACK != 0 {
		if binary.BigEndian.Uint32(l4[8:]) == 0 {
			h.quirks |= qZeroAck
		}
	} else if ackQuirk(l4[8:12], h.flags) {
		h.quirks |= qNZAck
	}
	if h.flags&flagURG != 0 {
		h.quirks |= qURG
	} else if h.urp != 0 {
		h.quirks |= qNZURG
	}
	if h.flags&flagPSH != 0 {
		h.quirks |= qPush
	}
}

// ackQuirk reproduces p0f 3.09b's test for "ack+": it computes
// `RD32(tcp->ack) & !(flags & RST)`, a bitwise AND with 0 or 1 of the raw,
// unswapped 32-bit load. On the little-endian hosts p0f runs on, that is the
// low bit of the first ACK byte on the wire, so p0f reports ack+ only when
// that byte is odd. We do the same so the signature matches p0f's.
func ackQuirk(ack []byte, flags uint8) bool {
	return flags&flagRST == 0 && ack[0]&1 != 0
}

// options walks the TCP options as p0f does (process.c), recording layout,
// MSS, window scale, TS1 and option quirks; it also records MSS and WScale for
// the SYN struct.
func (h *pkt) options() {
	h.wscale = -1
	opts := h.tcp[tcpMinHdr:]
	isSYN := h.flags&(flagSYN|flagACK|flagFIN|flagRST) == flagSYN
	i := 0
	for i < len(opts) && h.optCnt < p0fMaxTCPOpt {
		kind := opts[i]
		h.optLayout[h.optCnt] = kind
		h.optCnt++
		i++
		rest := opts[i:]
		switch kind {
		case 0: // EOL: the rest is padding; non-zero padding is a quirk.
			h.eolPad = len(rest)
			for _, c := range rest {
				if c != 0 {
					h.quirks |= qOptEOLNZ
					break
				}
			}
			i = len(opts)
		case 1: // NOP
		case 2: // MSS
			if len(rest) < 3 {
				h.quirks |= qOptBad
				return
			}
			if rest[0] != 4 {
				h.quirks |= qOptBad
			}
			h.p0fMSS = binary.BigEndian.Uint16(rest[1:])
			h.mss = h.p0fMSS
			i += 3
		case 3: // window scale
			if len(rest) < 2 {
				h.quirks |= qOptBad
				return
			}
			if rest[0] != 3 {
				h.quirks |= qOptBad
			}
			h.p0fWScale = rest[1]
			h.wscale = int(rest[1])
			if rest[1] > 14 {
				h.quirks |= qOptEXWS
			}
			i += 2
		case 4: // SACK permitted
			if len(rest) < 1 {
				h.quirks |= qOptBad
				return
			}
			if rest[0] != 2 {
				h.quirks |= qOptBad
			}
			i++
		case 5: // SACK
			if len(rest) < 1 || rest[0] < 10 || rest[0] > 34 || int(rest[0])-1 > len(rest) {
				h.quirks |= qOptBad
				return
			}
			i += int(rest[0]) - 1
		case 8: // timestamps
			if len(rest) < 9 {
				h.quirks |= qOptBad
				return
			}
			if rest[0] != 10 {
				h.quirks |= qOptBad
			}
			h.ts1 = binary.BigEndian.Uint32(rest[1:])
			if h.ts1 == 0 {
				h.quirks |= qZeroTS1
			}
			if isSYN && binary.BigEndian.Uint32(rest[5:]) != 0 {
				h.quirks |= qNZTS2
			}
			i += 9
		default:
			if len(rest) < 1 || rest[0] < 2 || rest[0] > 40 || int(rest[0])-1 > len(rest) {
				h.quirks |= qOptBad
				return
			}
			i += int(rest[0]) - 1
		}
	}
	if i != len(opts) {
		h.quirks |= qOptBad
	}
}

// guessDist is p0f's distance guess: up to the next of 32, 64, 128, 255.
func guessDist(ttl uint8) uint8 {
	switch {
	case ttl <= 32:
		return 32 - ttl
	case ttl <= 64:
		return 64 - ttl
	case ttl <= 128:
		return 128 - ttl
	}
	return 255 - ttl
}

// p0f renders the raw_sig `ver:ittl:olen:mss:wsize,scale:olayout:quirks:pclass`.
func (h *pkt) p0f(out []byte, peerMSS uint16) []byte {
	out = strconv.AppendInt(out, int64(h.ver), 10)
	out = append(out, ':')
	out = strconv.AppendUint(out, uint64(h.ttl), 10)
	out = append(out, '+')
	if d := guessDist(h.ttl); d > p0fMaxDist {
		out = append(out, '?')
	} else {
		out = strconv.AppendUint(out, uint64(d), 10)
	}
	out = append(out, ':')
	out = strconv.AppendInt(out, int64(h.ipOptLen), 10)
	out = append(out, ':')
	if h.p0fMSS == p0fSpecialMSS && h.flags&(flagSYN|flagACK|flagFIN|flagRST) == flagSYN|flagACK {
		out = append(out, '*')
	} else {
		out = strconv.AppendUint(out, uint64(h.p0fMSS), 10)
	}
	out = append(out, ':')
	if m, mtu := h.winMulti(peerMSS); m > 0 {
		if mtu {
			out = append(out, "mtu*"...)
		} else {
			out = append(out, "mss*"...)
		}
		out = strconv.AppendInt(out, int64(m), 10)
	} else {
		out = strconv.AppendUint(out, uint64(h.win), 10)
	}
	out = append(out, ',')
	out = strconv.AppendUint(out, uint64(h.p0fWScale), 10)
	out = append(out, ':')
	for i, k := range h.optLayout[:h.optCnt] {
		if i > 0 {
			out = append(out, ',')
		}
		switch k {
		case 0:
			out = append(out, "eol+"...)
			out = strconv.AppendInt(out, int64(h.eolPad), 10)
		case 1:
			out = append(out, "nop"...)
		case 2:
			out = append(out, "mss"...)
		case 3:
			out = append(out, "ws"...)
		case 4:
			out = append(out, "sok"...)
		case 5:
			out = append(out, "sack"...)
		case 8:
			out = append(out, "ts"...)
		default:
			out = append(out, '?')
			out = strconv.AppendUint(out, uint64(k), 10)
		}
	}
	out = append(out, ':')
	first := true
	for i, name := range quirkNames {
		if h.quirks&(1<<i) == 0 {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, name...)
	}
	if h.payLen > 0 {
		return append(out, ":+"...)
	}
	return append(out, ":0"...)
}

// winMulti is p0f's detect_win_multi: the window as a multiple of the MSS,
// MSS-12 (with timestamps), common Ethernet MSS values, the MTU, or the peer's
// MSS, tried in p0f's order. It returns 0 when none divides the window.
func (h *pkt) winMulti(peerMSS uint16) (int, bool) {
	win := int(h.win)
	mss := int(h.p0fMSS)
	if win == 0 || mss < 100 {
		return 0, false
	}
	type cand struct {
		div int
		mtu bool
		ok  bool
	}
	cands := [...]cand{
		{mss, false, true},
		{mss - 12, false, h.ts1 != 0},
		{1500 - minTCP4, false, true},
		{1500 - minTCP4 - 12, false, true},
		{1500 - minTCP6, false, h.ver == 6},
		{1500 - minTCP6 - 12, false, h.ver == 6},
		{mss + minTCP4, true, true},
		{mss + h.totHdr, true, true},
		{mss + minTCP6, true, h.ver == 6},
		{1500, true, true},
		{int(peerMSS), false, peerMSS != 0},
		{int(peerMSS) - 12, false, peerMSS != 0},
	}
	for _, c := range cands {
		if c.ok && c.div > 0 && win%c.div == 0 {
			return win / c.div, c.mtu
		}
	}
	return 0, false
}

var flagChars = [8]byte{'F', 'S', 'R', 'P', '.', 'U', 'E', 'W'}

// tcpdump renders the TCP part of `tcpdump -nn -v` as described in the package doc.
func (h *pkt) tcpdump(out []byte) []byte {
	out = append(out, "Flags ["...)
	if h.flags == 0 {
		out = append(out, "none"...)
	}
	for i, c := range flagChars {
		if h.flags&(1<<i) != 0 {
			out = append(out, c)
		}
	}
	out = append(out, "], win "...)
	out = strconv.AppendUint(out, uint64(h.win), 10)
	if h.flags&flagURG != 0 {
		out = append(out, ", urg "...)
		out = strconv.AppendUint(out, uint64(h.urp), 10)
	}
	if len(h.tcp) > tcpMinHdr {
		out = append(out, ", options ["...)
		out = appendTcpdumpOptions(out, h.tcp[tcpMinHdr:])
	}
	return out
}

var tcpdumpOptNames = [256]string{
	0: "eol", 1: "nop", 2: "mss", 3: "wscale", 4: "sackOK", 5: "sack", 6: "echo",
	7: "echoreply", 8: "TS", 11: "cc", 12: "ccnew", 13: "", 19: "md5", 20: "scps",
	28: "uto", 29: "tcp-ao", 30: "mptcp", 34: "tfo", 254: "exp",
}

const hexDigits = "0123456789abcdef"

func appendHex(out, b []byte) []byte {
	for _, c := range b {
		out = append(out, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return out
}

// appendTcpdumpOptions follows print-tcp.c: each option's name and value,
// "[len N]" when the length byte disagrees with the option's size, "[bad opt]"
// (and no closing bracket before the first option) when an option does not
// fit, and nothing after eol.
func appendTcpdumpOptions(out, opts []byte) []byte {
	hlen := len(opts)
	cp := 0
	sep := false
	bad := func(out []byte) []byte {
		out = append(out, "[bad opt]"...)
		if sep {
			out = append(out, ']')
		}
		return out
	}
	for hlen > 0 {
		if sep {
			out = append(out, ',')
		}
		opt := opts[cp]
		cp++
		length := 1
		if opt > 1 {
			if cp >= len(opts) {
				return bad(out)
			}
			length = int(opts[cp])
			cp++
			if length < 2 || length > hlen {
				return bad(out)
			}
			hlen--
		}
		hlen--
		if name := tcpdumpOptNames[opt]; name != "" || opt == 13 {
			out = append(out, name...)
		} else {
			out = append(out, "unknown-"...)
			out = strconv.AppendUint(out, uint64(opt), 10)
		}
		datalen := 0
		need := func(n int) bool { return n <= hlen }
		switch opt {
		case 2:
			datalen = 2
			if !need(datalen) {
				return bad(out)
			}
			out = append(out, ' ')
			out = strconv.AppendUint(out, uint64(binary.BigEndian.Uint16(opts[cp:])), 10)
		case 3:
			datalen = 1
			if !need(datalen) {
				return bad(out)
			}
			out = append(out, ' ')
			out = strconv.AppendUint(out, uint64(opts[cp]), 10)
		case 5:
			datalen = length - 2
			if datalen%8 != 0 {
				out = append(out, " invalid sack"...)
			} else {
				// Block edges are printed relative to the connection's
				// sequence numbers: omitted, like the TS values.
				out = append(out, ' ')
				out = strconv.AppendInt(out, int64(datalen/8), 10)
				out = append(out, ' ')
				if !need(datalen) {
					return bad(out)
				}
			}
		case 6, 7, 11, 12, 13:
			datalen = 4
			if !need(datalen) {
				return bad(out)
			}
			out = append(out, ' ')
			out = strconv.AppendUint(out, uint64(binary.BigEndian.Uint32(opts[cp:])), 10)
		case 8:
			datalen = 8
			if !need(datalen) {
				return bad(out)
			}
		case 19:
			datalen = 16
			if !need(datalen) {
				return bad(out)
			}
			out = append(out, " shared secret not supplied with -M, can't check - "...)
			out = appendHex(out, opts[cp:cp+16])
		case 20:
			datalen = 2
			if !need(datalen) {
				return bad(out)
			}
			out = append(out, " cap "...)
			out = appendHex(out, opts[cp:cp+1])
			out = append(out, " id "...)
			out = strconv.AppendUint(out, uint64(opts[cp+1]), 10)
		case 28:
			datalen = 2
			if !need(datalen) {
				return bad(out)
			}
			v := binary.BigEndian.Uint16(opts[cp:])
			out = append(out, " 0x"...)
			out = strconv.AppendUint(out, uint64(v), 16)
			if v&1 != 0 {
				v = (v >> 1) * 60
			} else {
				v >>= 1
			}
			out = append(out, ' ')
			out = strconv.AppendUint(out, uint64(v), 10)
		case 34:
			datalen = length - 2
			if !need(datalen) {
				return bad(out)
			}
			out = append(out, ' ')
			out = appendFastOpen(out, opts[cp:cp+datalen])
		case 254:
			datalen = length - 2
			if !need(datalen) || datalen < 2 {
				return bad(out)
			}
			out = append(out, '-')
			if magic := binary.BigEndian.Uint16(opts[cp:]); magic == 0xf989 {
				out = append(out, "tfo"...)
				out = appendFastOpen(out, opts[cp+2:cp+datalen])
			} else {
				out = appendHex(out, opts[cp:cp+2])
			}
		case 0, 1, 4:
		default:
			// Includes mptcp (30) and tcp-ao (29), whose detailed decoding
			// tcpdump does in separate printers: printed here as raw hex.
			datalen = length - 2
			if datalen > 0 {
				if !need(datalen) {
					return bad(out)
				}
				out = append(out, " 0x"...)
				out = appendHex(out, opts[cp:cp+datalen])
			}
		}
		cp += datalen
		hlen -= datalen
		datalen++
		if opt > 1 {
			datalen++
		}
		if datalen != length {
			out = append(out, "[len "...)
			out = strconv.AppendInt(out, int64(length), 10)
			out = append(out, ']')
		}
		sep = true
		if opt == 0 {
			break
		}
	}
	return append(out, ']')
}

func appendFastOpen(out, d []byte) []byte {
	if len(d) == 0 {
		return append(out, " cookiereq"...)
	}
	if len(d)%2 != 0 || len(d) < 4 || len(d) > 16 {
		return append(out, " (invalid)"...)
	}
	out = append(out, " cookie "...)
	return appendHex(out, d)
}
