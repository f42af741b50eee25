package zeeklog

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
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
