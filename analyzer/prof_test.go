package analyzer

import (
	"context"
	"os"
	"syscall"
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
	path := profileCapture(b)
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
	path := profileCapture(b)
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

// BenchmarkFileSink is the cost of the record output path alone: every
// record of FIRSTBOOT_PROFILE_PCAP (analysed once, beforehand) encoded by a
// fileSink into its analysis.json element and its log row. Skipped without
// the capture.
func BenchmarkFileSink(b *testing.B) {
	path := profileCapture(b)
	a, err := AnalyzeFile(context.Background(), path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	n := len(a.Conns) + len(a.DNS) + len(a.TLS) + len(a.HTTP) + len(a.NTP)
	for _, logs := range []string{LogsTSV, LogsJSON} {
		b.Run(logs, func(b *testing.B) {
			dir := b.TempDir()
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				s, err := newFileSink(dir, logs == LogsJSON, spillMemory)
				if err != nil {
					b.Fatal(err)
				}
				for i := range a.Conns {
					s.conn(&a.Conns[i])
				}
				for i := range a.DNS {
					s.dns(&a.DNS[i])
				}
				for i := range a.TLS {
					s.tls(&a.TLS[i])
				}
				for i := range a.HTTP {
					s.http(&a.HTTP[i])
				}
				for i := range a.NTP {
					s.ntp(&a.NTP[i])
				}
				for _, l := range s.logs {
					l.Flush()
				}
				if s.err != nil {
					b.Fatal(s.err)
				}
				s.remove()
			}
			// CPU time, besides wall time: on a shared machine it varies less.
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*n), "cpu-ns/record")
		})
	}
}

// cpuTime is the process's user and system CPU time so far, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// profileCapture is the capture the profiling benchmarks read,
// FIRSTBOOT_PROFILE_PCAP; without it they are skipped.
func profileCapture(b *testing.B) string {
	path := os.Getenv("FIRSTBOOT_PROFILE_PCAP")
	if path == "" {
		b.Skip("set FIRSTBOOT_PROFILE_PCAP=/path/to/capture")
	}
	return path
}
