package analyzer

import (
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestHistoryRepeats checks Zeek's repeat rules for conn history letters
// (Zeek's conn.log documentation: "f, h, r and s can be recorded multiple
// times for either direction if the associated sequence number differs from
// the last-seen packet of the same flag type"; "c, g, t and w are recorded in
// a logarithmic fashion: the second instance represents that the event was
// seen (at least) 10 times; the third instance, 100 times").
func TestHistoryRepeats(t *testing.T) {
	o := func(flags string, seq uint32, payload string) ipPkt {
		return ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 80, flags: flags, seq: seq, ack: 1, payload: []byte(payload)}
	}
	r := func(flags string, seq uint32) ipPkt {
		return ipPkt{src: ipWeb, dst: ipGuest, sport: 80, dport: 50000, flags: flags, seq: seq, ack: 101}
	}
	rep := func(n int, p ipPkt) []ipPkt {
		out := make([]ipPkt, n)
		for i := range out {
			out[i] = p
		}
		return out
	}
	cat := func(ps ...[]ipPkt) []ipPkt {
		var out []ipPkt
		for _, p := range ps {
			out = append(out, p...)
		}
		return out
	}
	hs := []ipPkt{o("S", 100, ""), r("SA", 1000), o("A", 101, "")}
	bad := o("PA", 101, "x")
	bad.badSum = true
	for _, c := range []struct {
		name string
		pkts []ipPkt
		want string
	}{
		{"retransmitted SYN", []ipPkt{o("S", 100, ""), o("S", 100, "")}, "S"},
		{"SYN with a new number", []ipPkt{o("S", 100, ""), o("S", 900, "")}, "SS"},
		{"SYN+ACK twice", []ipPkt{o("S", 100, ""), r("SA", 1000), r("SA", 1000), r("SA", 5000)}, "Shh"},
		{"RSTs", cat(hs, []ipPkt{r("R", 1001), r("R", 1001), r("R", 1501)}), "ShArr"},
		// A FIN carrying data has a new number (seq + len): F again, then its D.
		{"FINs", cat(hs, []ipPkt{o("FA", 101, ""), o("FA", 101, ""), o("FA", 101, "ab")}), "ShAFFD"},
		{"retransmissions 1 and 10", cat(hs, []ipPkt{o("PA", 101, "data")}, rep(10, o("PA", 101, "data"))), "ShADTT"},
		{"retransmissions 9", cat(hs, []ipPkt{o("PA", 101, "data")}, rep(9, o("PA", 101, "data"))), "ShADT"},
		// C first (checksum, then flags, then data); T at the first resend, C again at the 10th.
		{"bad checksums 10", cat(hs, rep(10, bad)), "ShACDTC"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Unix(1800000000, 0)
			var pkts []capPkt
			for i, p := range c.pkts {
				src, dst := macGuest, macRouter
				if p.src.Equal(ipWeb) {
					src, dst = macRouter, macGuest
				}
				pkts = append(pkts, capPkt{ts: t0.Add(time.Duration(i) * time.Millisecond), data: ether(src, dst, buildIP(t, p))})
			}
			path := tempFile(t, "h.pcap")
			writePcap(t, path, layers.LinkTypeEthernet, pkts)
			a := analyze(t, path, Options{})
			if len(a.Conns) != 1 {
				t.Fatalf("%d conns", len(a.Conns))
			}
			if h := a.Conns[0].History; h != c.want {
				t.Errorf("history %q, want %q", h, c.want)
			}
		})
	}
}
