package publish

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress hears about transfers. Bytes gives the bytes of the current
// attempt so far (it starts again from 0 when an attempt is retried).
type Progress interface {
	Start(path string, size int64)
	Bytes(n int64)
	Done(path, verified string)
	Skipped(path string, size int64)
	Failed(path string)
}

type nopProgress struct{}

func (nopProgress) Start(string, int64)   {}
func (nopProgress) Bytes(int64)           {}
func (nopProgress) Done(string, string)   {}
func (nopProgress) Skipped(string, int64) {}
func (nopProgress) Failed(string)         {}

// Lines prints one plain line per file (for logs and pipes).
func Lines(w io.Writer) Progress { return &lines{w: w} }

type lines struct {
	w    io.Writer
	size int64
}

func (l *lines) Start(path string, size int64) { l.size = size }
func (l *lines) Bytes(int64)                   {}
func (l *lines) Done(path, verified string) {
	fmt.Fprintf(l.w, "uploaded %s (%s, verified: %s)\n", path, human(l.size), verified)
}
func (l *lines) Skipped(path string, size int64) {
	fmt.Fprintf(l.w, "skipped  %s (%s, already there with the same sha256)\n", path, human(size))
}
func (l *lines) Failed(path string) { fmt.Fprintf(l.w, "FAILED   %s\n", path) }

// Bar draws a progress bar on a terminal, redrawn at most ten times a second.
func Bar(w io.Writer) Progress { return &bar{w: w} }

type bar struct {
	mu    sync.Mutex
	w     io.Writer
	path  string
	size  int64
	last  time.Time
	drawn bool
}

func (b *bar) Start(path string, size int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.path, b.size = path, size
	b.draw(0, true)
}

func (b *bar) Bytes(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw(n, n == b.size)
}

func (b *bar) draw(n int64, force bool) {
	if !force && time.Since(b.last) < 100*time.Millisecond {
		return
	}
	b.last = time.Now()
	const width = 30
	frac := 1.0
	if b.size > 0 {
		frac = float64(n) / float64(b.size)
	}
	fill := int(frac * width)
	fill = min(max(fill, 0), width)
	name := b.path
	if len(name) > 40 {
		name = "…" + name[len(name)-39:]
	}
	fmt.Fprintf(b.w, "\r\x1b[K[%s%s] %3.0f%% %s/%s %s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, human(n), human(b.size), name)
	b.drawn = true
}

func (b *bar) end(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.drawn = false
	}
	fmt.Fprintln(b.w, line)
}

func (b *bar) Done(path, verified string) {
	b.end(fmt.Sprintf("uploaded %s (%s, verified: %s)", path, human(b.size), verified))
}
func (b *bar) Skipped(path string, size int64) {
	b.end(fmt.Sprintf("skipped  %s (%s, already there)", path, human(size)))
}
func (b *bar) Failed(path string) { b.end("FAILED   " + path) }

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
