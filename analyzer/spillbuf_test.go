package analyzer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/results/schema"
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

// TestStreamedLogHeader: a streamed log's #open time, known only at the
// end, is written over its placeholder. The logs must match those
// WriteOutputs writes in one go.
func TestStreamedLogHeader(t *testing.T) {
	for _, first := range []time.Time{
		time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		time.Date(1999, 1, 2, 3, 4, 5, 0, time.UTC),
	} {
		c := schema.Conn{
			ConnID: schema.ConnID{TS: first.Add(time.Second), UID: "CabcdefghijklmnopQ", OrigH: "10.0.0.2", OrigP: 5353, RespH: "10.0.0.1", RespP: 53},
			Proto:  "udp", ConnState: "SF", History: "Dd",
		}
		a := &schema.Analysis{SchemaVersion: schema.Version, Conns: []schema.Conn{c}}
		a.Summary.FirstTS, a.Summary.LastTS = first, first.Add(2*time.Second)

		streamed, whole := t.TempDir(), t.TempDir()
		s, err := newFileSink(streamed, false, spillMemory)
		if err != nil {
			t.Fatal(err)
		}
		s.conn(&a.Conns[0])
		if err := s.assemble(streamed, a); err != nil {
			t.Fatal(err)
		}
		s.remove()
		if err := WriteOutputs(whole, a, LogsTSV); err != nil {
			t.Fatal(err)
		}
		for _, log := range []string{"conn.log", "dns.log"} {
			got, err := os.ReadFile(filepath.Join(streamed, log))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(whole, log))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("first packet %v: streamed %s\n%s\nwant\n%s", first, log, got, want)
			}
		}
		if !strings.Contains(mustRead(t, filepath.Join(streamed, "conn.log")), "#open\t"+first.Format("2006-01-02-15-04-05")+"\n") {
			t.Errorf("first packet %v: conn.log lacks its #open time", first)
		}
		if left, _ := filepath.Glob(filepath.Join(streamed, ".analysis-spill-*")); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReplaceFile: a finished output takes the place of an earlier one, or
// of none.
func TestReplaceFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "conn.log")
	for _, content := range []string{"first run\n", "second run\n"} {
		tmp := filepath.Join(dir, ".conn.log.tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := replaceFile(tmp, path); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, path); got != content {
			t.Errorf("after replacing: %q, want %q", got, content)
		}
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", tmp, err)
		}
	}
}

// TestFileWriter: rows appended in place, written from elsewhere, larger
// than the buffer or crossing its end all reach the file in order.
func TestFileWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newFileWriter(f, 64)
	var want bytes.Buffer
	for i := range 200 {
		row := fmt.Sprintf("row %d %s\n", i, strings.Repeat("x", i%90))
		want.WriteString(row)
		var err error
		switch i % 3 {
		case 0: // in place when it fits, else a grown copy
			_, err = w.Write(append(w.AvailableBuffer(), row...))
		case 1:
			_, err = w.Write([]byte(row))
		case 2:
			_, err = fmt.Fprint(w, row)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, path); got != want.String() {
		t.Errorf("file holds %d bytes, want %d:\n%q", len(got), want.Len(), got)
	}
	f.Close()
	if _, err := w.Write(make([]byte, 100)); err == nil {
		t.Error("a write to a closed file reported no error")
	}
	if err := w.Flush(); err == nil {
		t.Error("the error did not stick")
	}
}
