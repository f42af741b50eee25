package analyzer

import (
	"context"
	"os"
	"testing"
)

// BenchmarkCaptureWithOutputs is what `firstboot analyze FILE --out DIR`
// does (analysis, streaming analysis.json and the logs) on FIRSTBOOT_PROFILE_PCAP,
// e.g. the real-traffic bench capture of scripts/bench.sh; skipped without
// it. Profile with:
//
//	FIRSTBOOT_PROFILE_PCAP=~/.cache/firstboot-bench/trafficgen-100MB.pcap \
//	  go test -run x -bench CaptureWithOutputs -benchtime 1x -cpuprofile cpu.prof ./analyzer
func BenchmarkCaptureWithOutputs(b *testing.B) {
	path := os.Getenv("FIRSTBOOT_PROFILE_PCAP")
	if path == "" {
		b.Skip("set FIRSTBOOT_PROFILE_PCAP=/path/to/capture")
	}
	dir := b.TempDir()
	var pkts int64
	for i := 0; i < b.N; i++ {
		a, err := AnalyzeFileTo(context.Background(), path, Options{}, dir, LogsTSV)
		if err != nil {
			b.Fatal(err)
		}
		pkts += a.Summary.Packets
	}
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkt/s")
}
