package campaign

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkSchedulingOverhead measures what the queue costs per job: an
// execution of 50 jobs on the SQLite queue whose runs take no time (they
// write a run directory and return), two at once as on a 2-core host, from
// queueing the execution to its report. Real runs take tens of seconds
// (the test guest) to minutes; make bench prints the figure.
func BenchmarkSchedulingOverhead(b *testing.B) {
	scen, _ := filepath.Abs("../testguest.yaml")
	dir := b.TempDir()
	file := filepath.Join(dir, "bench.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf("name: bench\nscenarios:\n  - path: %s\nrepetitions: 50\n", scen)), 0o644)
	c, err := Load(file)
	if err != nil {
		b.Fatal(err)
	}
	f := &fakeRunner{attempts: map[string]int{}, dests: func(string, int) []string { return []string{"a.example.com"} }}
	ctx := context.Background()
	home := filepath.Join(dir, "bench")
	rw := NewRunWorker("bench", dir, Capacity{CPUs: 2, MemoryMiB: 8192}, f.run, quiet())
	coord := &Coordinator{Poll: 100 * time.Millisecond, Logger: quiet()}
	q, err := OpenQueue(ctx, QueueConfig{URL: filepath.Join(home, "queue.sqlite"), ID: "bench", Runs: []string{RunQueue("", false)},
		RunWorkers: 2, Campaigns: []string{c.Name}, Work: NewWorkers(rw, coord), Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	coord.Queue = q
	if err := q.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer q.Stop(ctx, true)
	jobs := len(c.Matrix())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		id, err := q.Enqueue(ctx, CampaignArgs{Name: c.Name, Instance: fmt.Sprintf("b%06d", i), File: file, Source: c.Source, Home: home})
		if err != nil {
			b.Fatal(err)
		}
		for {
			row, err := q.Job(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			if row.FinalizedAt != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(jobs), "ms/job")
	}
}
