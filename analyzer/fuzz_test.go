package analyzer

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/firstboot/firstboot/analyzer/capfile"
)

// FuzzAnalyze feeds arbitrary bytes as a capture file: the analysis must not
// panic or hang, whatever the file holds. Seeds are the scenario capture in
// both formats and the LAN, tunnel and proxy capture (scripts/lan-seed.sh;
// and their first 200 bytes, small inputs fuzz faster), so mutations reach
// the protocol parsers. New large inputs are minimized slowly: run it for
// minutes, not seconds, to explore.
func FuzzAnalyze(f *testing.F) {
	for _, n := range []string{"seed.pcap", "seed.pcapng", "seed-lan.pcap"} {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:200])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := capfile.NewReader(bytes.NewReader(b), "fuzz.pcap")
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a, err := Analyze(ctx, r, "fuzz.pcap", Options{Steps: []Step{{Name: "s", Start: time.Unix(1795428000, 2e8)}}})
		if err != nil {
			return
		}
		if _, err := MarshalAnalysis(a); err != nil {
			t.Fatal(err)
		}
		checkMadeFields(t, a)
		if err := WriteOutputs(t.TempDir(), a, LogsJSON); err != nil {
			t.Fatal(err)
		}
	})
}
