// Package report turns a run's analysis into a report a researcher can publish:
// report.md (plain Markdown tables, pasteable into a blog post) and
// report.html (one self-contained file: inline CSS, an SVG timeline drawn
// here, screenshots embedded as data: URIs, nothing fetched from anywhere).
//
// Reports are deterministic: the same inputs give the same bytes. Times come
// from the capture (offsets from the first event: the first step's start or
// the first packet), never from the wall clock.
// Names, URIs and user agents come from untrusted traffic: the HTML goes
// through html/template, the Markdown puts them in code spans.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/firstboot/firstboot/internal/fsutil"
	"github.com/firstboot/firstboot/results/expect"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// File names inside a run directory.
const (
	AnalysisFile = "analysis.json"
	MarkdownFile = "report.md"
	HTMLFile     = "report.html"
	ShotsDir     = "screenshots"
)

// Embedding limits: a report must stay a file one can mail and open. A
// screenshot over a limit is linked (relative path) instead of embedded.
const (
	MaxShotBytes  = 4 << 20
	MaxShotsBytes = 24 << 20
)

// Input is everything a report shows.
type Input struct {
	// Analysis is required.
	Analysis *schema.Analysis
	// Manifest describes the run; nil when the report is for a bare capture.
	Manifest *manifest.Manifest
	// Expectations are the scenario's checks, already evaluated; nil when the
	// scenario has none (or is unknown). HasScenario says whether checks were looked for.
	Expectations []expect.Result
	HasScenario  bool
	// Screenshots are shown with their step, in order.
	Screenshots []Screenshot
	// Interceptions are the TLS interceptor's records (routed runs with
	// intercept_tls), from the run's intercept.jsonl.
	Interceptions []Interception
}

// Interception is one connection the TLS interceptor handled (the fields
// of lab/intercept's log lines the report shows).
type Interception struct {
	TS       time.Time `json:"ts"`
	Dst      string    `json:"dst"`
	SNI      string    `json:"sni"`
	Outcome  string    `json:"outcome"` // intercepted, refused, upstream_failed
	Detail   string    `json:"detail"`
	Upstream *struct {
		Version string `json:"version"`
		ALPN    string `json:"alpn"`
		Chain   []struct {
			Subject string `json:"subject"`
			Issuer  string `json:"issuer"`
		} `json:"chain"`
	} `json:"upstream"`
}

// Screenshot is one PNG of the machine's screen.
type Screenshot struct {
	// Name is the screenshot's name (file name without .png).
	Name string
	// Path is the file's path relative to the run directory (for the Markdown link).
	Path string
	// Step is the scenario step it was taken in; "" when unknown.
	Step string
	// Data is the PNG file's content; nil when it was not read (too large).
	Data []byte
	// Size is the file's size in bytes.
	Size int64
	// Text is what OCR read on it (the .txt beside the PNG that a failed
	// wait_text or click_text leaves), cut at MaxShotText; "" when none.
	Text string
}

// MaxShotText is how much of a screenshot's OCR text a report quotes.
const MaxShotText = 16 << 10

// Load reads a run directory's analysis.json, manifest.json (optional) and
// screenshots. Screenshots are placed in the step the manifest's timeline
// took them in; PNGs over the embedding limits are listed but not read.
func Load(dir string) (*Input, error) {
	data, err := os.ReadFile(filepath.Join(dir, AnalysisFile))
	if err != nil {
		return nil, fmt.Errorf("report: reading the analysis: %w (run `firstboot analyze %s` first)", err, dir)
	}
	var a schema.Analysis
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("report: %s is not a firstboot analysis: %w", filepath.Join(dir, AnalysisFile), err)
	}
	in := &Input{Analysis: &a}
	if m, err := manifest.Read(dir); err == nil {
		in.Manifest = m
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("report: %w", err)
	}
	shots, err := loadShots(dir, in.Manifest)
	if err != nil {
		return nil, err
	}
	in.Screenshots = shots
	if in.Interceptions, err = loadInterceptions(filepath.Join(dir, manifest.InterceptFile)); err != nil {
		return nil, err
	}
	return in, nil
}

// loadInterceptions reads the interceptor's log; none when there is none.
func loadInterceptions(path string) ([]Interception, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var out []Interception
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var r Interception
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("report: %s line %d: %w", path, i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// loadShots lists dir/screenshots/*.png: first those the timeline names (a
// "screenshot NAME" action or a step's artifacts), in timeline order, then the
// rest by name. Hidden files (work files of wait_screen) are skipped.
func loadShots(dir string, m *manifest.Manifest) ([]Screenshot, error) {
	entries, err := os.ReadDir(filepath.Join(dir, ShotsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("report: listing screenshots: %w", err)
	}
	files := map[string]bool{}
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasSuffix(n, ".png") && !strings.HasPrefix(n, ".") {
			files[ShotsDir+"/"+n] = true
		}
	}
	var order []Screenshot
	placed := map[string]bool{}
	place := func(rel, step string) {
		rel = filepath.ToSlash(rel)
		if files[rel] && !placed[rel] {
			placed[rel] = true
			order = append(order, Screenshot{Path: rel, Step: step})
		}
	}
	if m != nil {
		for _, e := range m.Timeline {
			if e.Kind == manifest.KindAction && strings.HasPrefix(e.Name, "screenshot ") {
				place(ShotsDir+"/"+strings.TrimPrefix(e.Name, "screenshot ")+".png", e.Step)
			}
			step := e.Step
			if e.Kind == manifest.KindStep {
				step = e.Name
			}
			for _, art := range e.Artifacts {
				place(art, step)
			}
		}
	}
	var rest []string
	for f := range files {
		if !placed[f] {
			rest = append(rest, f)
		}
	}
	sort.Strings(rest)
	for _, f := range rest {
		order = append(order, Screenshot{Path: f})
	}
	var total int64
	for i := range order {
		s := &order[i]
		s.Name = strings.TrimSuffix(filepath.Base(s.Path), ".png")
		p := filepath.Join(dir, filepath.FromSlash(s.Path))
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		s.Size = st.Size()
		if txt, err := os.ReadFile(strings.TrimSuffix(p, ".png") + ".txt"); err == nil {
			if len(txt) > MaxShotText {
				txt = append(txt[:MaxShotText:MaxShotText], "\n…"...)
			}
			s.Text = strings.ToValidUTF8(string(txt), "\uFFFD")
		}
		if s.Size > MaxShotBytes || total+s.Size > MaxShotsBytes {
			continue
		}
		if s.Data, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("report: reading screenshot: %w", err)
		}
		total += s.Size
	}
	return order, nil
}

// Write renders both reports into dir (report.md, report.html), each written
// to a temporary file first and renamed, so a failure leaves no half report.
func Write(dir string, in *Input) error {
	md, err := Markdown(in)
	if err != nil {
		return err
	}
	page, err := HTML(in)
	if err != nil {
		return err
	}
	if err := writeAtomic(dir, MarkdownFile, md); err != nil {
		return err
	}
	return writeAtomic(dir, HTMLFile, page)
}

func writeAtomic(dir, name string, data []byte) error {
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, name), data, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// isPNG reports whether data starts like a PNG file; only those are embedded.
func isPNG(data []byte) bool { return bytes.HasPrefix(data, pngMagic) }
