package analyzer

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// spillMemory is how many bytes of analysis.json records all of a sink's
// buffers keep in memory before they move to temporary files. Those of a
// 100 MB capture (~34 MB) stay in memory and are written once, into
// analysis.json; a 1 GB capture spills, and memory stays bounded (see make
// bench).
const spillMemory = 64 << 20

// spillChunk is the size of a buffer's first memory chunk (later ones are
// hugeChunk): chunks never copy what was written before, and waste at most
// one chunk per buffer.
const spillChunk = 1 << 20

// fileBuffer is the write buffer in front of a spill file or a log.
const fileBuffer = 256 << 10

// spillBudget is what is left of a sink's spillMemory, shared by its buffers.
type spillBudget struct{ left int64 }

// spillBuffer collects encoded records in memory while the budget lasts, then
// in a temporary file (path) from the first write that does not fit.
type spillBuffer struct {
	path   string
	budget *spillBudget
	chunks [][]byte
	f      *os.File
	w      *fileWriter
}

// AvailableBuffer returns an empty slice whose capacity is the free space
// after what was written, for bufio.Writer's idiom: a caller appends to it
// and passes the result to Write, which then finds the bytes in place and
// does not copy them (appendedInPlace). An append that outgrows it moves to
// the heap, and Write copies as usual.
func (b *spillBuffer) AvailableBuffer() []byte {
	if b.f != nil {
		return b.w.AvailableBuffer()
	}
	if len(b.chunks) == 0 {
		return nil
	}
	c := b.chunks[len(b.chunks)-1]
	return c[len(c):]
}

func (b *spillBuffer) Write(p []byte) (int, error) {
	if b.f != nil {
		return b.w.Write(p)
	}
	if int64(len(p)) > b.budget.left {
		// p may lie in a chunk's free space (AvailableBuffer), which spill unmaps.
		p = bytes.Clone(p)
		if err := b.spill(); err != nil {
			return 0, err
		}
		return b.w.Write(p)
	}
	b.budget.left -= int64(len(p))
	n := len(p)
	if last := len(b.chunks) - 1; last >= 0 && appendedInPlace(b.chunks[last], p) {
		b.chunks[last] = b.chunks[last][:len(b.chunks[last])+len(p)]
		return n, nil
	}
	for len(p) > 0 {
		last := len(b.chunks) - 1
		if last < 0 || len(b.chunks[last]) == cap(b.chunks[last]) {
			c, err := newChunk(last < 0)
			if err != nil {
				return n - len(p), err
			}
			b.chunks = append(b.chunks, c)
			last++
		}
		c := b.chunks[last]
		k := min(len(p), cap(c)-len(c))
		b.chunks[last] = append(c, p[:k]...)
		p = p[k:]
	}
	return n, nil
}

// spill moves what is in memory to the temporary file; later writes go there.
func (b *spillBuffer) spill() error {
	f, err := os.Create(b.path)
	if err != nil {
		return fmt.Errorf("creating spill file: %w", err)
	}
	b.f, b.w = f, newFileWriter(f, fileBuffer)
	for i, c := range b.chunks {
		if _, err := b.w.Write(c); err != nil {
			return err
		}
		b.budget.left += int64(len(c))
		freeChunk(c)
		b.chunks[i] = nil
	}
	b.chunks = nil
	return nil
}

// newChunk maps a chunk outside the Go heap: the collector would otherwise
// let the heap grow by twice what the buffers hold before it ran (GOGC), and
// scan memory that holds no pointers. A buffer's first chunk is spillChunk
// bytes of small pages, mapped at once (MAP_POPULATE: one fault per page
// cost about 250 ns per record). Later chunks are huge pages where the
// kernel has them: mapping small pages one by one (locks, memory-cgroup
// charges) was most of the 5% of an analysis these chunks cost.
func newChunk(first bool) ([]byte, error) {
	if first {
		p, err := unix.MmapPtr(-1, 0, nil, spillChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("allocating %d bytes for records: %w", spillChunk, err)
		}
		return unsafe.Slice((*byte)(p), spillChunk)[:0], nil
	}
	// Map one huge page more than needed and cut the mapping down to a
	// huge-page-aligned chunk.
	p, err := unix.MmapPtr(-1, 0, nil, 2*hugeChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("allocating %d bytes for records: %w", hugeChunk, err)
	}
	head := (hugeChunk - uintptr(p)%hugeChunk) % hugeChunk
	c := unsafe.Add(p, head)
	if head > 0 {
		_ = unix.MunmapPtr(p, head)
	}
	_ = unix.MunmapPtr(unsafe.Add(c, hugeChunk), hugeChunk-head)
	chunk := unsafe.Slice((*byte)(c), hugeChunk)
	// Both may fail (no transparent huge pages, a kernel before 5.14): the
	// chunk then faults its pages in as it fills.
	_ = unix.Madvise(chunk, unix.MADV_HUGEPAGE)
	_ = unix.Madvise(chunk, unix.MADV_POPULATE_WRITE)
	return chunk[:0], nil
}

// hugeChunk is the size of chunks after a buffer's first: an x86-64 huge page.
const hugeChunk = 2 << 20

func freeChunk(c []byte) { _ = unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(c)), uintptr(cap(c))) }

// WriteTo writes everything written so far to w.
func (b *spillBuffer) WriteTo(w io.Writer) (int64, error) {
	if b.f == nil {
		var n int64
		for _, c := range b.chunks {
			k, err := w.Write(c)
			n += int64(k)
			if err != nil {
				return n, err
			}
		}
		return n, nil
	}
	if err := b.w.Flush(); err != nil {
		return 0, err
	}
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	// File to file: io.Copy lets the kernel copy (copy_file_range) where it can.
	return io.Copy(w, b.f)
}

// close releases the memory and closes the file (the sink removes its directory).
func (b *spillBuffer) close() {
	for _, c := range b.chunks {
		freeChunk(c)
	}
	b.chunks = nil
	if b.f != nil {
		b.f.Close()
	}
}

func newSpillBuffer(dir, name string, budget *spillBudget) *spillBuffer {
	return &spillBuffer{path: filepath.Join(dir, name), budget: budget}
}

// appendedInPlace reports whether p was appended to buf's free space
// (AvailableBuffer), so that writing it only extends buf over it.
func appendedInPlace(buf, p []byte) bool {
	free := buf[len(buf):cap(buf)]
	return len(p) > 0 && len(p) <= len(free) && &free[0] == &p[0]
}

// fileWriter buffers writes to a file, as bufio.Writer does, for a writer
// that appends to AvailableBuffer (records, zeeklog rows): a Write of bytes
// appended in place only counts them, where bufio.Writer copies them onto
// themselves.
type fileWriter struct {
	f   *os.File
	buf []byte
	err error
}

func newFileWriter(f *os.File, size int) *fileWriter {
	return &fileWriter{f: f, buf: make([]byte, 0, size)}
}

// AvailableBuffer returns an empty slice over the buffer's free space.
func (w *fileWriter) AvailableBuffer() []byte { return w.buf[len(w.buf):] }

func (w *fileWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	switch {
	case appendedInPlace(w.buf, p):
		w.buf = w.buf[:len(w.buf)+len(p)]
	case len(p) <= cap(w.buf)-len(w.buf):
		w.buf = append(w.buf, p...)
	default:
		if err := w.Flush(); err != nil {
			return 0, err
		}
		if len(p) >= cap(w.buf) {
			if _, w.err = w.f.Write(p); w.err != nil {
				return 0, w.err
			}
			return len(p), nil
		}
		w.buf = append(w.buf, p...)
	}
	return len(p), nil
}

// Flush writes what is buffered to the file.
func (w *fileWriter) Flush() error {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.f.Write(w.buf)
		w.buf = w.buf[:0]
	}
	return w.err
}
