package analyzer

import (
	"context"
	"os"
	"syscall"
	"testing"
)

// BenchmarkFileSink is the cost of the record output path alone: every
// record of FIRSTBOOT_PROFILE_PCAP (analysed once, beforehand) encoded by a
// fileSink into its analysis.json element and its log row. Skipped without
// the capture.
func BenchmarkFileSink(b *testing.B) {
	path := os.Getenv("FIRSTBOOT_PROFILE_PCAP")
	if path == "" {
		b.Skip("set FIRSTBOOT_PROFILE_PCAP=/path/to/capture")
	}
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
