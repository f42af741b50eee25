package fingerprint

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// randomSYN makes a SYN from a few values per field, with odd options and
// headers mixed in. It also returns where the TS options are in its options.
func randomSYN(r *rand.Rand) (synSpec, []int) {
	pick := func(vs ...int) int { return vs[r.IntN(len(vs))] }
	s := synSpec{
		v6:    r.IntN(4) == 0,
		ttl:   uint8(pick(1, 30, 32, 50, 63, 64, 100, 128, 200, 255)),
		tos:   uint8(pick(0, 0, 0, 1, 2, 3)),
		flow:  uint32(pick(0, 0, 0, 0xabcde)),
		df:    r.IntN(3) != 0,
		mbz:   r.IntN(20) == 0,
		id:    uint16(pick(0, 1, 0x1234)),
		sport: uint16(r.Uint32()),
		dport: uint16(pick(80, 443)),
		seq:   uint32(pick(0, 1, int(r.Uint32()>>1))),
		ack:   uint32(pick(0, 1, 0x01000000, int(r.Uint32()>>1))),
		flags: uint8(pick(0x02, 0x02, 0x12, 0x12, 0xc2, 0x52, 0x22, 0x0a, 0x06, 0x03, 0x42)),
		nsBit: r.IntN(20) == 0,
		win:   uint16(pick(0, 1024, 5840, 8192, 14600, 29200, 64240, 65535, 1460*44, 1448*10, 1500*40, 1420*4, 1200*3, 1380*2, 536*10, 1472*4, 1488*5, 1476*3, int(r.Uint32()>>16))),
		urp:   uint16(pick(0, 0, 0, 7)),
	}
	if r.IntN(10) == 0 {
		s.ipOpts = []byte{1, 1, 1, 0}
	}
	if r.IntN(10) == 0 {
		s.payload = []byte("x")
	}
	var opts []byte
	var tsAt []int
	kinds := 9 // the options real SYNs carry
	if r.IntN(10) == 0 {
		kinds = 14 // and odd ones, which Parser renders uncached
	}
	for n := r.IntN(9); n > 0; n-- {
		switch r.IntN(kinds) {
		case 0, 1:
			opts = append(opts, 1)
		case 2, 3:
			opts = append(opts, 2, 4, 0, 0)
			mss := pick(0, 99, 100, 536, 1200, 1331, 1360, 1440, 1460, 8960)
			opts[len(opts)-2], opts[len(opts)-1] = byte(mss>>8), byte(mss)
		case 4:
			opts = append(opts, 3, 3, byte(pick(0, 2, 7, 8, 14, 15)))
		case 5:
			opts = append(opts, 4, 2)
		case 6, 7:
			tsAt = append(tsAt, len(opts))
			ts := oTS(uint32(pick(0, 1, int(r.Uint32()>>1))), uint32(pick(0, 0, 5, int(r.Uint32()>>1))))
			opts = append(opts, ts...)
		case 8:
			opts = append(opts, 0, byte(pick(0, 0, 0, 5)))
		case 9:
			opts = append(opts, 5, 10, 1, 2, 3, 4, 5, 6, 7, 8) // sack
		case 10:
			opts = append(opts, 34, 2) // tfo cookie request
		case 11:
			opts = append(opts, byte(pick(2, 3, 4, 8)), byte(pick(0, 1, 3, 5, 11))) // bad length
		case 12:
			opts = append(opts, 8, 10, 1, 2) // truncated timestamps
		case 13:
			opts = append(opts, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
		}
	}
	if len(opts) > 40 {
		opts = opts[:40]
	}
	s.opts = opts
	return s, tsAt
}

// vary changes what the fingerprint ignores: ports, the sequence number and
// the timestamp values (keeping which are zero).
func vary(r *rand.Rand, s synSpec, tsAt []int) []byte {
	s.sport = uint16(r.Uint32())
	if s.seq != 0 {
		s.seq = r.Uint32() | 1
	}
	s.opts = bytes.Clone(s.opts)
	for _, i := range tsAt {
		if i+10 > len(s.opts) {
			continue // cut off at 40 bytes
		}
		for _, v := range [][]byte{s.opts[i+2 : i+6], s.opts[i+6 : i+10]} {
			if string(v) != "\x00\x00\x00\x00" {
				binary.BigEndian.PutUint32(v, r.Uint32()|1)
			}
		}
	}
	return s.build()
}

// TestParserCache: Parser.Parse, cached or not, gives what ParseWithPeerMSS
// gives, over many varied SYNs and SYN+ACKs.
func TestParserCache(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	type base struct {
		s    synSpec
		tsAt []int
	}
	var p Parser
	var bases []base
	hits, checked := 0, 0
	for i := range 200000 {
		if i%50000 == 0 {
			p = Parser{} // fill the cache more than once
			bases = bases[:0]
			for range 100 {
				s, tsAt := randomSYN(r)
				bases = append(bases, base{s, tsAt})
			}
			// Neighbours, differing in one field, catch a key that
			// leaves out an input.
			for range 400 {
				b := bases[r.IntN(100)]
				o, oTSAt := randomSYN(r)
				s := b.s
				switch r.IntN(15) {
				case 0:
					s.v6 = o.v6
				case 1:
					s.ttl = o.ttl
				case 2:
					s.tos, s.flow = o.tos, o.flow
				case 3:
					s.df = o.df
				case 4:
					s.mbz = o.mbz
				case 5:
					s.id = o.id
				case 6:
					s.seq = o.seq
				case 7:
					s.ack = o.ack
				case 8:
					s.flags = o.flags
				case 9:
					s.nsBit = o.nsBit
				case 10:
					s.win = o.win
				case 11:
					s.urp = o.urp
				case 12:
					s.ipOpts = o.ipOpts
				case 13:
					s.payload = o.payload
				case 14:
					s.opts, b.tsAt = o.opts, oTSAt
				}
				bases = append(bases, base{s, b.tsAt})
			}
		}
		var ip []byte
		if r.IntN(20) == 0 {
			s, _ := randomSYN(r)
			ip = s.build()
		} else {
			b := bases[r.IntN(len(bases))]
			ip = vary(r, b.s, b.tsAt)
		}
		peerMSS := uint16([]int{0, 536, 1200, 1380, 1460}[r.IntN(5)])
		want, err := ParseWithPeerMSS(ip, peerMSS)
		hit := false
		var h pkt
		var k synKey
		if h.decode(ip) == nil && h.key(&k, peerMSS) {
			_, hit = p.rendered[k]
		}
		got, err2 := p.Parse(ip, peerMSS)
		if (err == nil) != (err2 == nil) || err == nil && got != *want {
			t.Fatalf("packet %d % x peer MSS %d: Parser.Parse = %+v, %v; ParseWithPeerMSS = %+v, %v", i, ip, peerMSS, got, err2, want, err)
		}
		if err == nil {
			checked++
			if hit {
				hits++
			}
		}
	}
	if hits < checked/2 {
		t.Errorf("%d cache hits in %d SYNs: the test does not exercise the cache", hits, checked)
	}
	t.Logf("%d cache hits in %d SYNs", hits, checked)
}

// FuzzSynKey: two packets with the same key render the same. The second
// packet is the first with one byte changed, which keeps the key when the
// byte is one the renderings ignore (a timestamp value, a port, ...).
func FuzzSynKey(f *testing.F) {
	for i, s := range craftedSYNs() {
		s.sport, s.dport = 1234, 80
		b := s.build()
		f.Add(b, uint16(i*7), byte(i), uint16(1460))
	}
	f.Fuzz(func(t *testing.T, b []byte, pos uint16, val byte, peerMSS uint16) {
		k1, ok1, s1 := keyAndRender(b, peerMSS)
		if !ok1 || len(b) == 0 {
			return
		}
		b2 := bytes.Clone(b)
		b2[int(pos)%len(b2)] = val
		k2, ok2, s2 := keyAndRender(b2, peerMSS)
		if ok2 && k1 == k2 && (s1.Tcpdump != s2.Tcpdump || s1.P0f != s2.P0f) {
			t.Fatalf("same key, different renderings:\n% x\n% x\n%q %q\n%q %q", b, b2, s1.Tcpdump, s1.P0f, s2.Tcpdump, s2.P0f)
		}
	})
}

// FuzzParser: Parser.Parse, sharing one cache over all inputs, gives what
// ParseWithPeerMSS gives.
func FuzzParser(f *testing.F) {
	for _, s := range craftedSYNs() {
		s.sport, s.dport = 1234, 80
		f.Add(s.build(), uint16(1460))
	}
	var p Parser
	f.Fuzz(func(t *testing.T, b []byte, peerMSS uint16) {
		want, err := ParseWithPeerMSS(b, peerMSS)
		got, err2 := p.Parse(b, peerMSS)
		if (err == nil) != (err2 == nil) || err == nil && got != *want {
			t.Fatalf("% x: Parser.Parse = %+v, %v; ParseWithPeerMSS = %+v, %v", b, got, err2, want, err)
		}
	})
}

// keyAndRender returns b's cache key (ok false when b has none) and its
// uncached renderings.
func keyAndRender(b []byte, peerMSS uint16) (synKey, bool, *SYN) {
	var h pkt
	var k synKey
	if h.decode(b) != nil || !h.key(&k, peerMSS) {
		return k, false, nil
	}
	s, err := ParseWithPeerMSS(b, peerMSS)
	if err != nil {
		panic(err) // decode succeeded
	}
	return k, true, s
}

func BenchmarkParser(b *testing.B) {
	var p Parser
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(linuxSYN, 1460); err != nil {
			b.Fatal(err)
		}
	}
}
