package fingerprint

import (
	"strings"
	"testing"
)

func FuzzFingerprint(f *testing.F) {
	for _, s := range craftedSYNs() {
		s.sport, s.dport = 1234, 80
		f.Add(s.build())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s.Tcpdump, "Flags [") || strings.Count(s.P0f, ":") < 7 {
			t.Fatalf("malformed output: %q %q", s.Tcpdump, s.P0f)
		}
		switch s.InitialTTL {
		case 32, 64, 128, 255:
		default:
			t.Fatalf("InitialTTL %d", s.InitialTTL)
		}
	})
}

// linuxSYN is a typical SYN from a Linux client on Ethernet.
var linuxSYN = synSpec{ttl: 64, df: true, id: 0x1234, sport: 40000, dport: 443, seq: 1, flags: 0x02, win: 64240,
	opts: cat(oMSS1460, oSOK, oTS(12345, 0), oNOP, oWS8)}.build()

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(linuxSYN)))
	for b.Loop() {
		if _, err := Parse(linuxSYN); err != nil {
			b.Fatal(err)
		}
	}
}
