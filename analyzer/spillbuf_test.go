package analyzer

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

// TestSpillBuffer: writes stay in memory while the shared budget lasts, move
// to the file at the first write that does not fit (returning their memory to
// the budget), and read back in order either way.
func TestSpillBuffer(t *testing.T) {
	dir := t.TempDir()
	budget := &spillBudget{left: 3 * spillChunk / 2}
	a := newSpillBuffer(dir, "a", budget)
	b := newSpillBuffer(dir, "b", budget)
	t.Cleanup(a.close)
	t.Cleanup(b.close)
	var wantA, wantB bytes.Buffer
	line := func(i int) []byte {
		return []byte(fmt.Sprintf("record %07d %s\n", i, bytes.Repeat([]byte{'x'}, i%300)))
	}
	for i := 0; a.f == nil && b.f == nil; i++ {
		p := line(i)
		if i%2 == 0 {
			a.Write(p)
			wantA.Write(p)
		} else {
			b.Write(p)
			wantB.Write(p)
		}
		if i > 1e6 {
			t.Fatal("the budget never ran out")
		}
	}
	spilled, kept, spilledLen := a, b, wantA.Len()
	if b.f != nil {
		spilled, kept, spilledLen = b, a, wantB.Len()
	}
	if kept.f != nil {
		t.Fatal("both spilled at once")
	}
	if _, err := os.Stat(spilled.path); err != nil {
		t.Fatalf("%s spilled, but its file: %v", spilled.path, err)
	}
	if budget.left < int64(spilledLen)-int64(len(line(0))+300) {
		t.Errorf("budget left %d after %d bytes spilled: the memory was not returned", budget.left, spilledLen)
	}
	if kept.chunks == nil || spilled.chunks != nil {
		t.Error("the buffer that did not spill must keep its memory, the one that did must drop it")
	}
	for i := 0; i < 1000; i++ { // more after the spill, in both
		a.Write(line(i))
		wantA.Write(line(i))
		b.Write(line(i))
		wantB.Write(line(i))
	}
	for _, c := range []struct {
		buf  *spillBuffer
		want []byte
	}{{a, wantA.Bytes()}, {b, wantB.Bytes()}} {
		var got bytes.Buffer
		if _, err := c.buf.WriteTo(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), c.want) {
			t.Errorf("%s: read back %d bytes, wrote %d (or they differ)", c.buf.path, got.Len(), len(c.want))
		}
	}
}

// TestSpillBufferAppend: records appended to AvailableBuffer are taken in
// place (no new memory), across chunk boundaries, and survive the spill that
// unmaps the chunk they were appended in.
func TestSpillBufferAppend(t *testing.T) {
	budget := &spillBudget{left: 2*spillChunk + 1000}
	b := newSpillBuffer(t.TempDir(), "a", budget)
	t.Cleanup(b.close)
	var want bytes.Buffer
	inPlace := 0
	for i := 0; b.f == nil || i < 20000; i++ {
		p := b.AvailableBuffer()
		free := cap(p)
		p = fmt.Appendf(p, "record %07d %s\n", i, bytes.Repeat([]byte{'x'}, i%300))
		if len(p) <= free {
			inPlace++
		}
		want.Write(p) // before Write: p may lie in memory the spill unmaps
		if _, err := b.Write(p); err != nil {
			t.Fatal(err)
		}
		if i > 1e6 {
			t.Fatal("the budget never ran out")
		}
	}
	if inPlace < 10000 {
		t.Errorf("%d records appended in place", inPlace)
	}
	var got bytes.Buffer
	if _, err := b.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("read back %d bytes, wrote %d (or they differ)", got.Len(), want.Len())
	}
}
