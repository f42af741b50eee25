package dataset

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Span is a scenario step's time range as the analyzer uses it: packets from
// Start belong to the step until the next step starts; a packet after the last
// step's End (when set) belongs to "after", one before the first step to "before".
type Span struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
}

// Names of the pseudo-steps outside the scenario's steps (as the analyzer names them).
const (
	StepBefore = "before"
	StepAfter  = "after"
)

// StepFile is one per-step capture.
type StepFile struct {
	// Step is the step's name ("before"/"after" for packets outside the steps).
	Step string `json:"step"`
	// File is the file's name inside the steps directory.
	File    string `json:"file"`
	Packets int64  `json:"packets"`
}

// stepFileNames returns the file names for before, each step and after:
// NN-name.ext with NN the step's 1-based position (0 before, n+1 after), so
// they sort in time order and duplicate step names cannot collide.
func stepFileNames(spans []Span, ext string) []string {
	n := len(spans)
	width := len(fmt.Sprint(n + 1))
	if width < 2 {
		width = 2
	}
	names := make([]string, n+2)
	names[0] = fmt.Sprintf("%0*d-%s%s", width, 0, StepBefore, ext)
	for i, s := range spans {
		names[i+1] = fmt.Sprintf("%0*d-%s%s", width, i+1, slug(s.Name), ext)
	}
	names[n+1] = fmt.Sprintf("%0*d-%s%s", width, n+1, StepAfter, ext)
	return names
}

// slug makes a step name safe as a file name component.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-.")
	if out == "" {
		out = "step"
	}
	if len(out) > 60 {
		out = out[:60]
	}
	return out
}

// stepIndex maps a packet time to 0 (before), 1..n (steps) or n+1 (after),
// with the analyzer's rule: a time in a gap between steps belongs to the step
// that started last before it.
func stepIndex(spans []Span, ts time.Time) int {
	n := len(spans)
	i := sort.Search(n, func(i int) bool { return spans[i].Start.After(ts) }) - 1
	switch {
	case i < 0:
		return 0
	case i == n-1 && !spans[i].End.IsZero() && !ts.Before(spans[i].End):
		return n + 1
	}
	return i + 1
}

func checkSpans(spans []Span) error {
	for i, s := range spans {
		if s.Name == "" {
			return fmt.Errorf("step %d has no name", i+1)
		}
		if s.Name == StepBefore || s.Name == StepAfter {
			return fmt.Errorf("step name %q is reserved for packets outside the steps", s.Name)
		}
		if i > 0 && s.Start.Before(spans[i-1].Start) {
			return fmt.Errorf("step %q starts before step %q", s.Name, spans[i-1].Name)
		}
	}
	return nil
}

// splitCapture reads the capture src and writes one capture per step through
// open (called once per output, with the output's file name, in order).
// Every output gets the section headers, interface descriptions and other
// metadata blocks as they are in src; packet blocks (with their comments) go
// to the step their timestamp falls in. Interface statistics blocks describe
// the whole capture and are left out of the step files. The "before" and
// "after" outputs are reported only when they hold packets; the caller
// discards them otherwise (keep is false).
func splitCapture(src string, spans []Span, open func(name string) (io.Writer, error)) (files []StepFile, keep []bool, err error) {
	if err := checkSpans(spans); err != nil {
		return nil, nil, err
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	cr, err := newCapReader(f, src)
	if err != nil {
		return nil, nil, err
	}
	ext := ".pcapng"
	if !cr.pcapng {
		ext = ".pcap"
	}
	names := stepFileNames(spans, ext)
	outs := make([]*bufio.Writer, len(names))
	files = make([]StepFile, len(names))
	for i, name := range names {
		w, err := open(name)
		if err != nil {
			return nil, nil, err
		}
		outs[i] = bufio.NewWriterSize(w, 1<<16)
		step := StepBefore
		switch {
		case i == len(names)-1:
			step = StepAfter
		case i > 0:
			step = spans[i-1].Name
		}
		files[i] = StepFile{Step: step, File: name}
	}
	writeAll := func(b []byte) error {
		for _, o := range outs {
			if _, err := o.Write(b); err != nil {
				return err
			}
		}
		return nil
	}
	if !cr.pcapng {
		if err := writeAll(cr.header); err != nil {
			return nil, nil, err
		}
	}
	cur := 0
	for {
		b, err := cr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		p, err := cr.packetOf(b)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case p.ok:
			if p.hasTime {
				cur = stepIndex(spans, p.ts)
			}
			if _, err := outs[cur].Write(b.raw); err != nil {
				return nil, nil, err
			}
			files[cur].Packets++
		case b.typ == blockSHB:
			err = writeAll(withUnknownSectionLength(b))
		case b.typ == blockISB:
		default:
			err = writeAll(b.raw)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	for _, o := range outs {
		if err := o.Flush(); err != nil {
			return nil, nil, err
		}
	}
	keep = make([]bool, len(files))
	for i := range files {
		keep[i] = files[i].Packets > 0 || (i > 0 && i < len(files)-1)
	}
	return files, keep, nil
}
