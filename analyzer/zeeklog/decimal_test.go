package zeeklog

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

func TestAppendInt(t *testing.T) {
	vals := []int64{0, 1, 9, 10, 11, 99, 100, 101, math.MaxInt64, math.MinInt64, math.MinInt64 + 1, -1, -9, -10}
	// Every digit-count boundary, where decimalLen's estimate changes.
	for p := int64(10); p > 0 && p <= math.MaxInt64/10; p *= 10 {
		vals = append(vals, p-1, p, p+1, -p+1, -p, -p-1)
	}
	for i := range 64 {
		vals = append(vals, int64(1)<<i-1, int64(1)<<i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vals = append(vals, r.Int64()>>r.IntN(64), -r.Int64()>>r.IntN(64))
	}
	prefix := []byte("x\t")
	for _, v := range vals {
		got := AppendInt(prefix[:len(prefix):len(prefix)], v)
		if want := strconv.AppendInt([]byte("x\t"), v, 10); string(got) != string(want) {
			t.Fatalf("AppendInt(%d) = %q, want %q", v, got, want)
		}
		// With room to spare it appends in place.
		buf := make([]byte, 2, 64)
		copy(buf, "x\t")
		if got := AppendInt(buf, v); string(got) != "x\t"+strconv.FormatInt(v, 10) || &got[0] != &buf[0] {
			t.Fatalf("AppendInt(%d) into a roomy buffer = %q (moved: %v)", v, got, &got[0] != &buf[0])
		}
	}
}

func BenchmarkAppendInt(b *testing.B) {
	buf := make([]byte, 0, 64)
	for i := range b.N {
		buf = AppendInt(buf[:0], int64(i)*7919)
	}
}

func BenchmarkStrconvAppendInt(b *testing.B) {
	buf := make([]byte, 0, 64)
	for i := range b.N {
		buf = strconv.AppendInt(buf[:0], int64(i)*7919, 10)
	}
}

// floatCases are the floats the seconds formatters see (durations and round
// trips from nanoseconds, as time.Duration.Seconds makes them) and the ones
// they must refuse or get right: ties, range edges, odd values.
func floatCases() []float64 {
	fs := []float64{0, 1e-6, math.Nextafter(1e-6, 0), 1e6, math.Nextafter(1e6, 0), 0.5, 1.5, 2.5e-6, 1.0 / 3,
		0.0000005, 0.0000015, 0.1234565, 999999.9999995, 123456.789, 1e-7, -1, -0.5, 1e300, math.NaN(), math.Inf(1)}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		ns := r.Int64N(1e15) >> r.IntN(50)
		fs = append(fs, time.Duration(ns).Seconds(), float64(ns)/1e9)
		us := r.Int64N(1e12) >> r.IntN(40)
		fs = append(fs, (float64(us)+0.5)/1e6, math.Nextafter((float64(us)+0.5)/1e6, 0), float64(us)/1e6)
		fs = append(fs, r.Float64()*math.Pow(10, float64(r.IntN(14)-7)))
	}
	return fs
}

// TestSecondsFastPaths: each fast path gives strconv's bytes for every
// value it takes, appends nothing for a value it refuses, and takes the
// durations.
func TestSecondsFastPaths(t *testing.T) {
	for _, c := range []struct {
		name string
		fast func([]byte, float64) ([]byte, bool)
		prec int // strconv's precision
	}{
		{"AppendShortSeconds", AppendShortSeconds, -1},
		{"appendFixed6Fast", appendFixed6Fast, 6},
	} {
		fast := 0
		for _, f := range floatCases() {
			got, ok := c.fast([]byte("x"), f)
			if !ok {
				if string(got) != "x" {
					t.Fatalf("%s(%v) refused but appended %q", c.name, f, got)
				}
				continue
			}
			fast++
			if want := strconv.AppendFloat([]byte("x"), f, 'f', c.prec, 64); string(got) != string(want) {
				t.Fatalf("%s(%v) = %q, want %q", c.name, f, got, want)
			}
		}
		if fast < 20000 {
			t.Errorf("%s: only %d values took the fast path; durations should", c.name, fast)
		}
	}
}
