package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

const mb = 1 << 20

func TestPercentFor(t *testing.T) {
	for _, c := range []struct {
		floor, live uint64
		want        int
	}{
		{64 * mb, 0, 1600},
		{64 * mb, 1 * mb, 1600}, // not more: the runtime's minimum goal scales with GOGC
		{64 * mb, 20 * mb, 220},
		{64 * mb, 32 * mb, 100}, // twice the live heap reaches the floor anyway
		{64 * mb, 200 * mb, 100},
	} {
		if got := percentFor(c.floor, c.live); got != c.want {
			t.Errorf("percentFor(%d MB, %d MB) = %d, want %d", c.floor/mb, c.live/mb, got, c.want)
		}
	}
}

// read returns one runtime metric.
func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// cycles allocates n bytes of short-lived garbage and returns how many
// collections ran meanwhile.
func cycles(n int) uint64 {
	before := read("/gc/cycles/total:gc-cycles")
	var keep []byte
	for range n / (64 << 10) {
		keep = make([]byte, 64<<10)
	}
	runtime.KeepAlive(keep)
	return read("/gc/cycles/total:gc-cycles") - before
}

// settle runs a cycle, waits for the tuner's finalizer to set GOGC for the
// live heap that cycle found, and returns that live heap and the new goal.
func settle(t *testing.T, floor uint64) (live, goal uint64) {
	t.Helper()
	runtime.GC()
	live = read("/gc/heap/live:bytes")
	want := uint64(percentFor(floor, live))
	deadline := time.Now().Add(5 * time.Second)
	for read("/gc/gogc:percent") != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d after a cycle, want %d", read("/gc/gogc:percent"), want)
		}
		time.Sleep(time.Millisecond)
	}
	return live, read("/gc/heap/goal:bytes")
}

func TestFloorDefersCollections(t *testing.T) {
	// The test must not depend on the caller's GOGC.
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const floor = 32 * mb
	// Without the floor, 16 MB of garbage over a small live heap collects
	// several times; the test would pass vacuously if it did not.
	runtime.GC()
	if n := cycles(16 * mb); n < 2 {
		t.Fatalf("without a floor 16 MB of garbage ran %d collections; the test needs at least 2", n)
	}

	stop := Start(floor)
	defer stop()
	if _, goal := settle(t, floor); goal < floor || goal > floor+8*mb {
		t.Errorf("small live heap: goal %.1f MB, want the %d MB floor", float64(goal)/mb, floor/mb)
	}
	if n := cycles(16 * mb); n != 0 {
		t.Errorf("with a %d MB floor, 16 MB of garbage ran %d collections, want 0", floor/mb, n)
	}

	// Above half the floor the collector works as with GOGC=100.
	held := make([][]byte, 24)
	for i := range held {
		held[i] = make([]byte, mb)
	}
	if live, goal := settle(t, floor); goal < 2*live || goal > 2*live+8*mb {
		t.Errorf("live heap %.1f MB: goal %.1f MB, want twice the live heap", float64(live)/mb, float64(goal)/mb)
	}
	runtime.KeepAlive(held)

	stop()
	if got := read("/gc/gogc:percent"); got != 100 {
		t.Errorf("after stop GOGC is %d, want 100", got)
	}
	runtime.GC() // the finalizer, still armed, must not tune again
	time.Sleep(10 * time.Millisecond)
	if got := read("/gc/gogc:percent"); got != 100 {
		t.Errorf("a cycle after stop set GOGC to %d, want 100", got)
	}
}

func TestLeavesUserGOGCAlone(t *testing.T) {
	t.Setenv("GOGC", "100")
	stop := Start(64 * mb)
	defer stop()
	if got := read("/gc/gogc:percent"); got != 100 {
		t.Errorf("with GOGC set by the user, Start changed it to %d", got)
	}
}
