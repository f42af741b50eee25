// Package gcfloor lets a short-lived batch process's heap grow to a floor
// before the garbage collector runs.
//
// With the default GOGC=100 the collector runs whenever the heap doubles, from
// 4 MB: an analysis whose live heap is 20 MB collects three times, and each
// cycle also slows every pointer write while it marks (6 to 8% of one core on
// the bench capture). Below the floor those cycles buy nothing a researcher
// needs; above it the collector works exactly as with GOGC=100, so memory
// still follows the live heap (the 1 GB memory goal in make bench).
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// liveHeap is the runtime metric for the heap the last cycle marked live.
const liveHeap = "/gc/heap/live:bytes"

// Start sets the collector so the heap may reach floor bytes before a cycle
// runs, and after each cycle sets the next goal to the larger of floor and
// twice the live heap. It leaves the collector alone when the user set GOGC,
// so GOGC (and GOMEMLIMIT, which always applies) keep their meaning. stop
// restores GOGC=100 and ends the tuning.
func Start(floor uint64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set || floor == 0 {
		return func() {}
	}
	t := &tuner{floor: floor, samples: []metrics.Sample{{Name: liveHeap}}}
	// Until the first cycle the goal is heapMinimum × GOGC/100.
	debug.SetGCPercent(percentFor(floor, 0))
	runtime.SetFinalizer(&sentinel{t}, rearm)
	return t.stop
}

type tuner struct {
	floor   uint64
	mu      sync.Mutex // orders stop against a finalizer already running
	stopped bool
	samples []metrics.Sample
}

// sentinel is garbage from birth: its finalizer runs after every cycle.
type sentinel struct{ t *tuner }

func rearm(s *sentinel) {
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.samples)
	if t.samples[0].Value.Kind() == metrics.KindUint64 {
		debug.SetGCPercent(percentFor(t.floor, t.samples[0].Value.Uint64()))
	}
	runtime.SetFinalizer(s, rearm)
}

func (t *tuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		debug.SetGCPercent(100)
	}
}

// heapMinimum is the runtime's smallest heap goal at GOGC=100; it scales
// with GOGC, so a GOGC above floor/heapMinimum × 100 would lift the goal
// past the floor.
const heapMinimum = 4 << 20

// percentFor returns the GOGC that puts the next cycle at floor bytes for a
// live heap of live bytes, and never less than the default 100.
func percentFor(floor, live uint64) int {
	switch {
	case live >= floor/2:
		return 100
	case live < heapMinimum:
		return int(floor * 100 / heapMinimum) // the minimum goal becomes the floor
	}
	return int(floor*100/live) - 100
}
