package analyzer

import (
	"context"
	"os"
	"testing"

	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/results/schema"
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

// nopSink drops every record: what is left is the cost of the analysis alone.
type nopSink struct{}

func (nopSink) conn(*schema.Conn) {}
func (nopSink) dns(*schema.DNS)   {}
func (nopSink) tls(*schema.TLS)   {}
func (nopSink) http(*schema.HTTP) {}
func (nopSink) ntp(*schema.NTP)   {}

// BenchmarkCaptureNoOutputs is BenchmarkCaptureWithOutputs without encoding
// or writing the records: the split between analysing and writing.
func BenchmarkCaptureNoOutputs(b *testing.B) {
	path := os.Getenv("FIRSTBOOT_PROFILE_PCAP")
	if path == "" {
		b.Skip("set FIRSTBOOT_PROFILE_PCAP=/path/to/capture")
	}
	var pkts int64
	for i := 0; i < b.N; i++ {
		r, err := capfile.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		a, err := run(context.Background(), r, path, Options{}, nopSink{}, multiCore())
		r.Close()
		if err != nil {
			b.Fatal(err)
		}
		pkts += a.Summary.Packets
	}
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkt/s")
}
