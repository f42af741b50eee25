package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/scenarios"
)

// How often the live status is redrawn on a terminal, and logged elsewhere.
const (
	statusRedraw = 500 * time.Millisecond
	statusLogged = time.Minute
)

// statusLine is one line at the bottom of a terminal, rewritten in place,
// under the log lines that scroll above it: log output goes through Write,
// which takes the line away, writes the log and draws the line again.
type statusLine struct {
	mu    sync.Mutex
	out   *os.File
	text  string // what is drawn; "" when nothing is
	width func() int
}

// newStatusLine returns a status line on f when f is a terminal, else nil.
func newStatusLine(f *os.File) *statusLine {
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &statusLine{out: f, width: func() int {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return int(ws.Col)
		}
		return 80
	}}
}

// Write writes log output above the status line.
func (s *statusLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.text != "" {
		io.WriteString(s.out, "\r\x1b[K")
	}
	n, err := s.out.Write(p)
	if s.text != "" {
		io.WriteString(s.out, s.text)
	}
	return n, err
}

// draw replaces the status line with text, cut to the terminal's width (a
// wrapped line could not be rewritten in place).
func (s *statusLine) draw(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.width() - 1; utf8.RuneCountInString(text) > w {
		text = string([]rune(text)[:max(w-1, 0)]) + "…"
	}
	if text == s.text {
		return
	}
	io.WriteString(s.out, "\r\x1b[K"+text)
	s.text = text
}

// clear takes the status line away.
func (s *statusLine) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.text != "" {
		io.WriteString(s.out, "\r\x1b[K")
		s.text = ""
	}
}

// showProgress keeps showing p until ctx ends, every so often: redrawn in
// place on a terminal (line non-nil), else as a plain log line.
func showProgress(ctx context.Context, p *scenarios.Progress, line *statusLine, log *slog.Logger, every time.Duration) {
	if line != nil {
		defer line.clear()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := p.Snapshot()
		if line != nil {
			line.draw(statusText(s, time.Now()))
			continue
		}
		log.Info("progress", "status", statusText(s, time.Now()))
	}
}

// statusText says what a run is doing, in one line: the step and action,
// the time since the start, what the capture saw, the last new name and the
// time left in the capture window.
func statusText(s scenarios.ProgressSnapshot, now time.Time) string {
	var parts []string
	switch {
	case s.Step != "":
		parts = append(parts, fmt.Sprintf("step %d/%d %s", s.StepNum, s.Steps, s.Step))
		if s.Action != "" {
			parts = append(parts, s.Action)
		}
	case s.Phase != "":
		parts = append(parts, s.Phase)
	default:
		parts = append(parts, "starting")
	}
	if !s.Started.IsZero() {
		parts = append(parts, hms(now.Sub(s.Started))+" elapsed")
	}
	parts = append(parts, fmt.Sprintf("%d packets, %s", s.Packets, byteSize(s.Bytes)))
	if s.LastNew != "" {
		parts = append(parts, "new: "+s.LastNew)
	}
	if !s.WindowEnd.IsZero() {
		parts = append(parts, hms(max(s.WindowEnd.Sub(now), 0))+" left in the window")
	}
	return strings.Join(parts, " · ")
}

// hms formats a duration as m:ss, or h:mm:ss from an hour on.
func hms(d time.Duration) string {
	s := int(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// byteSize is a byte count for people: 812 B, 26.1 kB, 3.4 MB.
func byteSize(n uint64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}
