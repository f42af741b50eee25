package crosscheck

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/internal/trafficgen"
)

// BenchmarkAnalyzeFile analyses a capture of real traffic: the file named by
// BENCH_PCAP, or an 8 MB capture generated for the run (needs root).
// It reports MB/s (from SetBytes) and packets/s.
func BenchmarkAnalyzeFile(b *testing.B) {
	pcap := os.Getenv("BENCH_PCAP")
	if pcap == "" {
		testnet.Require(b, "tcpdump", "dnsmasq", "curl", "dig", "openssl", "chronyd", "busybox")
		pcap = filepath.Join(b.TempDir(), "bench.pcap")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if _, err := trafficgen.Generate(ctx, trafficgen.Config{Out: pcap, TargetBytes: 8 << 20}); err != nil {
			b.Fatalf("generating traffic: %v", err)
		}
	}
	fi, err := os.Stat(pcap)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	var packets int64
	b.ResetTimer()
	for b.Loop() {
		a, err := analyzer.AnalyzeFile(context.Background(), pcap, analyzer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		packets += a.Summary.Packets
	}
	b.ReportMetric(float64(packets)/b.Elapsed().Seconds(), "packets/s")
}
