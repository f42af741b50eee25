// Package dataset builds and verifies a dataset bundle: one or more run
// directories packaged the way a research data repository (Zenodo, a
// university archive) takes them, with per-step captures, fresh analyses, a
// checksum MANIFEST, RO-Crate 1.1 metadata carrying the DataCite required
// fields, and a README.
//
// Bundles are reproducible: the same runs and options give the same bytes
// (sorted listings, fixed modification times taken from the captures, no
// wall clock), and `Verify` re-derives every analysis and step capture from
// the bundled full captures and compares them byte for byte.
package dataset

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// File and directory names inside a bundle.
const (
	ManifestFile = "MANIFEST"
	ReadmeFile   = "README.md"
	CrateFile    = "ro-crate-metadata.json"
	RunsDir      = "runs"
	StepsDir     = "steps"
	// OptionsFile (per run) records how the bundled analysis was made, so
	// Verify (or anyone) can make it again.
	OptionsFile  = "analysis-options.json"
	analysisFile = "analysis.json"
	logFormat    = analyzer.LogsTSV
)

// Metadata describes the dataset for repositories (DataCite's required
// fields: creator, title, publisher, publicationYear, resourceType).
type Metadata struct {
	Title     string
	Creators  []string
	Publisher string
	// LabLocation is where the captures were made (free text).
	LabLocation string
	// License is a URL or SPDX identifier; empty leaves it unstated.
	License     string
	Description string
	// DatePublished is YYYY-MM-DD; empty means the date of the latest capture.
	DatePublished string
}

// Options tune Build.
type Options struct {
	Metadata
	// Anonymize replaces the lab's identifiers (see anonymizer).
	Anonymize bool
	// KeepTLSSecrets keeps the captures' Decryption Secrets Blocks and the
	// runs' tls-keys.log: they open every TLS session of the run, whose
	// requests can hold tokens and personal data, so they are left out
	// unless asked for.
	KeepTLSSecrets bool
	// FirstParty overrides the scenarios' first-party domains when set.
	FirstParty []string
	// Version is firstboot's version, recorded in the metadata.
	Version string
	// Report, when set, writes report.md/report.html into a bundled run
	// directory from its (fresh) analysis, manifest and screenshots. It is
	// called for runs that had reports. Without it reports are copied, or,
	// when anonymising, left out (they would name the lab).
	Report func(ctx context.Context, runDir string) error
}

// AnalysisOptions is the content of a run's analysis-options.json.
type AnalysisOptions struct {
	FirstbootVersion string     `json:"firstboot_version"`
	Capture          string     `json:"capture"`
	FirstParty       []string   `json:"first_party"`
	Steps            []Span     `json:"steps"`
	LogFormat        string     `json:"log_format"`
	StepFiles        []StepFile `json:"step_files"`
	Anonymized       bool       `json:"anonymized"`
}

// Result summarises a build.
type Result struct {
	Dir      string
	Runs     []RunResult
	Files    int
	Bytes    int64
	Warnings []string
}

// RunResult describes one bundled run.
type RunResult struct {
	ID       string
	Source   string
	Manifest *manifest.Manifest // as bundled (anonymised when asked)
	Analysis *schema.Analysis
	Options  AnalysisOptions
	// AnalysisChanged is true when the run's own analysis.json differs from the bundled one.
	AnalysisChanged bool
}

// ErrMetadata marks missing or bad metadata (a usage error for the CLI).
var ErrMetadata = errors.New("dataset metadata")

// Build bundles the run directories into out, which must not exist or be empty.
func Build(ctx context.Context, runDirs []string, out string, opts Options) (res *Result, err error) {
	if len(opts.Creators) == 0 || opts.Publisher == "" {
		return nil, fmt.Errorf("%w: --creator and --publisher are required (DataCite needs both)", ErrMetadata)
	}
	if opts.DatePublished != "" {
		if _, err := time.Parse(time.DateOnly, opts.DatePublished); err != nil {
			return nil, fmt.Errorf("%w: date published %q: want YYYY-MM-DD", ErrMetadata, opts.DatePublished)
		}
	}
	if len(runDirs) == 0 {
		return nil, fmt.Errorf("%w: no run directories given", ErrMetadata)
	}
	if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("dataset: %s exists and is not empty; choose a new directory", out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(out) // was empty or absent: nothing of the user's is lost
		}
	}()
	type src struct {
		dir string
		m   *manifest.Manifest
		id  string
	}
	var srcs []src
	seen := map[string]string{}
	for _, d := range runDirs {
		m, err := manifest.Read(d)
		if err != nil {
			return nil, fmt.Errorf("dataset: %s is not a run directory: %w", d, err)
		}
		id := m.RunID
		if id == "" {
			id = filepath.Base(filepath.Clean(d))
		}
		id = safeName(id)
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("dataset: %s and %s have the same run id %q", prev, d, id)
		}
		seen[id] = d
		srcs = append(srcs, src{d, m, id})
	}
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].id < srcs[j].id })
	res = &Result{Dir: out}
	for _, s := range srcs {
		rr, warns, err := buildRun(ctx, s.dir, s.m, filepath.Join(out, RunsDir, s.id), opts)
		if err != nil {
			return nil, fmt.Errorf("dataset: run %s: %w", s.dir, err)
		}
		rr.ID = s.id
		res.Runs = append(res.Runs, *rr)
		for _, w := range warns {
			res.Warnings = append(res.Warnings, s.id+": "+w)
		}
	}
	stamp := bundleTime(res.Runs)
	if opts.DatePublished == "" {
		opts.DatePublished = stamp.Format(time.DateOnly)
	}
	if opts.Title == "" {
		opts.Title = defaultTitle(res.Runs)
	}
	files, err := listFiles(out)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(out, ReadmeFile), readme(opts, res.Runs, files)); err != nil {
		return nil, err
	}
	crate, err := roCrate(opts, res.Runs, out, files)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(out, CrateFile), crate); err != nil {
		return nil, err
	}
	entries, err := hashTree(out)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(out, ManifestFile), formatManifest(entries)); err != nil {
		return nil, err
	}
	for _, e := range entries {
		res.Files++
		res.Bytes += e.Size
	}
	if err := stampTimes(out, stamp); err != nil {
		return nil, err
	}
	return res, nil
}

// contiguousSpans turns the manifest's steps into the analyzer's steps: each
// step runs until the next one starts (as `firstboot run` analyses them).
func contiguousSpans(m *manifest.Manifest) []Span {
	ms := m.Steps()
	out := make([]Span, len(ms))
	for i, s := range ms {
		out[i] = Span{Name: s.Name, Start: s.Start.UTC(), End: s.End.UTC()}
		if i+1 < len(ms) {
			out[i].End = ms[i+1].Start.UTC()
		}
		if s.End.IsZero() && i+1 == len(ms) {
			out[i].End = time.Time{}
		}
	}
	return out
}

func analyzerSteps(spans []Span) []analyzer.Step {
	out := make([]analyzer.Step, len(spans))
	for i, s := range spans {
		out[i] = analyzer.Step{Name: s.Name, Start: s.Start, End: s.End}
	}
	return out
}

// analyze runs the analysis of a bundled capture and writes its outputs to dir.
func analyze(ctx context.Context, capture, dir string, o AnalysisOptions) (*schema.Analysis, error) {
	a, err := analyzer.AnalyzeFile(ctx, capture, analyzer.Options{FirstParty: o.FirstParty, Steps: analyzerSteps(o.Steps)})
	if err != nil {
		return nil, fmt.Errorf("analysing %s: %w", capture, err)
	}
	if err := analyzer.WriteOutputs(dir, a, o.LogFormat); err != nil {
		return nil, err
	}
	return a, nil
}

// Text and image files that anonymisation can handle.
var (
	textExts  = map[string]bool{".log": true, ".jsonl": true, ".json": true, ".yaml": true, ".yml": true, ".txt": true, ".md": true, ".csv": true, ".xml": true, ".html": true}
	imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".ppm": true}
)

func buildRun(ctx context.Context, dir string, m *manifest.Manifest, out string, opts Options) (*RunResult, []string, error) {
	var warns []string
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, nil, err
	}
	capName := m.Capture.File
	if capName == "" {
		capName = "capture.pcapng"
	}
	srcCapture := filepath.Join(dir, capName)
	capBase := filepath.Base(capName)
	stripSecrets := false
	if !opts.KeepTLSSecrets {
		var err error
		if stripSecrets, err = hasSecrets(srcCapture); err != nil {
			return nil, nil, fmt.Errorf("reading the capture: %w", err)
		}
	}
	if opts.Anonymize || stripSecrets {
		capBase = strings.TrimSuffix(capBase, ".gz") // the rewritten copy is uncompressed
	}
	dstCapture := filepath.Join(out, capBase)
	ao := AnalysisOptions{
		FirstbootVersion: opts.Version,
		Capture:          capBase,
		FirstParty:       opts.FirstParty,
		Steps:            contiguousSpans(m),
		LogFormat:        logFormat,
		Anonymized:       opts.Anonymize,
	}
	if len(ao.FirstParty) == 0 {
		ao.FirstParty = m.Scenario.FirstParty
	}
	if ao.FirstParty == nil {
		ao.FirstParty = []string{}
	}
	bm := m
	var an *anonymizer
	var orig identifiers
	if opts.Anonymize {
		var err error
		orig, err = runIdentifiers(ctx, dir, srcCapture, m)
		if err != nil {
			return nil, nil, err
		}
		if an, err = newAnonymizer(orig); err != nil {
			return nil, nil, err
		}
		an.keepSecrets = opts.KeepTLSSecrets
		dropped, err := an.anonymizeCapture(srcCapture, dstCapture)
		if err != nil {
			return nil, nil, fmt.Errorf("anonymising the capture: %w", err)
		}
		if dropped > 0 {
			warns = append(warns, fmt.Sprintf("%d name-resolution or unknown pcapng block(s) left out of the anonymised capture", dropped))
		}
	} else if err := copyCapture(srcCapture, dstCapture, stripSecrets); err != nil {
		return nil, nil, err
	}

	stepDir := filepath.Join(out, StepsDir)
	if err := os.MkdirAll(stepDir, 0o755); err != nil {
		return nil, nil, err
	}
	files, err := splitToDir(dstCapture, ao.Steps, stepDir)
	if err != nil {
		return nil, nil, fmt.Errorf("splitting the capture by step: %w", err)
	}
	ao.StepFiles = files
	a, err := analyze(ctx, dstCapture, out, ao)
	if err != nil {
		return nil, nil, err
	}
	rr := &RunResult{Source: dir, Analysis: a, Options: ao}
	if old, err := os.ReadFile(filepath.Join(dir, analysisFile)); err == nil && !opts.Anonymize {
		fresh, _ := os.ReadFile(filepath.Join(out, analysisFile))
		rr.AnalysisChanged = !bytes.Equal(old, fresh)
		if rr.AnalysisChanged {
			warns = append(warns, "the run's analysis.json differs from a fresh analysis; the bundle has the fresh one")
		}
	}
	body, err := json.MarshalIndent(ao, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	if err := writeFile(filepath.Join(out, OptionsFile), append(body, '\n')); err != nil {
		return nil, nil, err
	}

	// The manifest.
	if an != nil {
		cp := *m
		cp.Timeline = append([]manifest.Entry(nil), m.Timeline...)
		for i := range cp.Timeline {
			cp.Timeline[i].Artifacts = append([]string(nil), m.Timeline[i].Artifacts...)
		}
		cp.Files = append([]string(nil), m.Files...)
		cp.Scenario.FirstParty = append([]string(nil), m.Scenario.FirstParty...)
		cp.Image.Files = append([]string(nil), m.Image.Files...)
		cp.Image.SHA256 = append([]string(nil), m.Image.SHA256...)
		replaceStrings(reflect.ValueOf(&cp), an.text)
		if an.subnet.IsValid() {
			cp.Network.Subnet = an.pseudoNet.String()
		}
		bm = &cp
		body, err := json.MarshalIndent(bm, "", "  ")
		if err != nil {
			return nil, nil, err
		}
		if err := writeFile(filepath.Join(out, manifest.FileName), append(body, '\n')); err != nil {
			return nil, nil, err
		}
	} else if err := copyFile(filepath.Join(dir, manifest.FileName), filepath.Join(out, manifest.FileName)); err != nil {
		return nil, nil, err
	}
	rr.Manifest = bm

	// Everything else in the run directory.
	hadReports := false
	shotWarned := false
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := d.Name()
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(name, ".") || (d.IsDir() && rel == StepsDir) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		if rel == manifest.TLSKeysFile && !opts.KeepTLSSecrets {
			return nil
		}
		if rel == "report.md" || rel == "report.html" {
			hadReports = true
			if opts.Report != nil || an != nil {
				return nil
			}
		}
		dst := filepath.Join(out, rel)
		if _, err := os.Lstat(dst); err == nil {
			return nil // made here: capture, steps, analysis outputs, manifest
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		ext := strings.ToLower(filepath.Ext(name))
		switch {
		case an == nil:
			return copyFile(p, dst)
		case textExts[ext]:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return writeFile(dst, []byte(an.text(string(data))))
		case imageExts[ext]:
			if !shotWarned {
				warns = append(warns, "screenshots are copied as they are: pixels are not anonymised")
				shotWarned = true
			}
			return copyFile(p, dst)
		default:
			warns = append(warns, fmt.Sprintf("%s left out: cannot anonymise this kind of file", rel))
			return nil
		}
	})
	if err != nil {
		return nil, nil, err
	}
	if hadReports {
		switch {
		case opts.Report != nil:
			if err := opts.Report(ctx, out); err != nil {
				return nil, nil, fmt.Errorf("writing the reports: %w", err)
			}
		case an != nil:
			warns = append(warns, "reports left out: they name the lab and no report writer was given")
		}
	}
	if an != nil {
		if err := leakCheck(out, orig); err != nil {
			return nil, nil, err
		}
		if rev := reverseName(orig.MachineIP); rev != "" {
			if data, err := os.ReadFile(filepath.Join(out, analysisFile)); err == nil && bytes.Contains(bytes.ToLower(data), []byte(rev)) {
				warns = append(warns, "the machine looked up its own address in reverse DNS ("+rev+"): PTR names are not anonymised")
			}
		}
	}
	return rr, warns, nil
}

// runIdentifiers collects the lab's identifiers from the manifest and the
// run's analysis (made fresh when the run has none).
func runIdentifiers(ctx context.Context, dir, capture string, m *manifest.Manifest) (identifiers, error) {
	id := identifiers{MachineMAC: m.Machine.MAC, MachineIP: m.Machine.IP, Gateway: m.Network.Gateway, Subnet: m.Network.Subnet}
	var a *schema.Analysis
	if data, err := os.ReadFile(filepath.Join(dir, analysisFile)); err == nil {
		var x schema.Analysis
		if json.Unmarshal(data, &x) == nil {
			a = &x
		}
	}
	if a == nil {
		x, err := analyzer.AnalyzeFile(ctx, capture, analyzer.Options{})
		if err != nil {
			return id, fmt.Errorf("analysing the original capture to find the machine: %w", err)
		}
		a = x
	}
	if id.MachineMAC == "" {
		id.MachineMAC = a.Host.MAC
	}
	if id.MachineIP == "" {
		id.MachineIP = a.Host.IP
	}
	id.OtherIPs = a.Host.OtherIPs
	if a.Host.IP != "" && a.Host.IP != id.MachineIP {
		id.OtherIPs = append(append([]string(nil), id.OtherIPs...), a.Host.IP)
	}
	id.Hostname = a.Host.DHCPHostname
	if id.MachineMAC == "" && id.MachineIP == "" {
		return id, errors.New("anonymize: neither the manifest nor the capture names the machine (no MAC, no IP)")
	}
	return id, nil
}

// leakCheck searches the bundled run for the original identifiers: the MAC
// (as bytes in captures, as text elsewhere), the machine IP and the hostname
// (as text tokens). Anonymisation that missed one is an error, not a warning.
func leakCheck(dir string, id identifiers) error {
	var macBytes []byte
	var macText []string
	if hw, err := net.ParseMAC(id.MachineMAC); err == nil && len(hw) == 6 {
		macBytes = hw
		s := hw.String()
		macText = []string{s, strings.ToUpper(s), strings.ReplaceAll(s, ":", "-"), strings.ToUpper(strings.ReplaceAll(s, ":", "-"))}
	}
	check := &anonymizer{host: []byte(asciiLower(id.Hostname)), pseudo: []byte("\x00")}
	var leaks []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		ext := strings.ToLower(filepath.Ext(p))
		if imageExts[ext] {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if macBytes != nil && bytes.Contains(data, macBytes) {
			leaks = append(leaks, rel+": the machine's MAC (bytes)")
		}
		s := string(data)
		for _, t := range macText {
			if strings.Contains(s, t) {
				leaks = append(leaks, rel+": the machine's MAC ("+t+")")
				break
			}
		}
		if id.MachineIP != "" && containsIPv4(s, id.MachineIP) {
			leaks = append(leaks, rel+": the machine's IP "+id.MachineIP)
		}
		if len(check.host) > 0 && check.hostText(s) != s {
			leaks = append(leaks, rel+": the hostname "+id.Hostname)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(leaks) > 0 {
		return fmt.Errorf("anonymize: identifiers remain after anonymisation (please report this): %s", strings.Join(leaks, "; "))
	}
	return nil
}

// safeName keeps a run id as it is, except characters unsafe in a path.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '+') {
			b[i] = '-'
		}
	}
	out := strings.Trim(string(b), ".")
	if out == "" {
		out = "run"
	}
	return out
}

// reverseName is an IPv4 address's in-addr.arpa name ("" for others).
func reverseName(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return ""
	}
	b := a.As4()
	return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", b[3], b[2], b[1], b[0])
}

func containsIPv4(s, ip string) bool {
	isAddrByte := func(c byte) bool { return c == '.' || c >= '0' && c <= '9' }
	for i := 0; ; {
		j := strings.Index(s[i:], ip)
		if j < 0 {
			return false
		}
		at, end := i+j, i+j+len(ip)
		if (at == 0 || !isAddrByte(s[at-1])) && (end == len(s) || s[end] != '.' && (s[end] < '0' || s[end] > '9') ||
			s[end] == '.' && (end+1 == len(s) || s[end+1] < '0' || s[end+1] > '9')) {
			return true
		}
		i = at + 1
	}
}

// splitToDir writes the step captures into dir and returns the kept ones.
func splitToDir(capture string, spans []Span, dir string) ([]StepFile, error) {
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	files, keep, err := splitCapture(capture, spans, func(name string) (io.Writer, error) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		opened = append(opened, f)
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	var out []StepFile
	for i, f := range files {
		if err := opened[i].Close(); err != nil {
			return nil, err
		}
		if !keep[i] {
			if err := os.Remove(filepath.Join(dir, f.File)); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, f)
	}
	opened = nil
	return out, nil
}

func bundleTime(runs []RunResult) time.Time {
	var t time.Time
	upd := func(x time.Time) {
		if x.After(t) {
			t = x
		}
	}
	for _, r := range runs {
		upd(r.Manifest.Capture.Start)
		upd(r.Manifest.Capture.End)
		for _, e := range r.Manifest.Timeline {
			upd(e.Start)
			upd(e.End)
		}
		if r.Analysis != nil {
			upd(r.Analysis.Summary.LastTS)
		}
	}
	if t.IsZero() {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return t.UTC().Truncate(time.Second)
}

func defaultTitle(runs []RunResult) string {
	var oses []string
	seen := map[string]bool{}
	for _, r := range runs {
		o := osLabel(r.Manifest)
		if !seen[o] {
			seen[o] = true
			oses = append(oses, o)
		}
	}
	sort.Strings(oses)
	return "firstboot network captures: " + strings.Join(oses, ", ")
}

func osLabel(m *manifest.Manifest) string {
	o := m.Scenario.OS
	var parts []string
	for _, s := range []string{o.Product, o.Release} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 && o.Family != "" {
		parts = append(parts, o.Family)
	}
	if o.Build != "" {
		parts = append(parts, "("+o.Build+")")
	}
	if len(parts) == 0 {
		return m.Scenario.Name
	}
	return strings.Join(parts, " ")
}

func writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	return nil
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("dataset: %w", cerr)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("dataset: copying %s: %w", src, err)
	}
	return nil
}

// stampTimes gives every file and directory the same modification time and
// mode, so archives made from the bundle are reproducible too.
func stampTimes(dir string, t time.Time) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return os.Chmod(p, 0o755)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			return err
		}
		return os.Chtimes(p, t, t)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- { // children first: a file's change touches its parent
		if err := os.Chtimes(dirs[i], t, t); err != nil {
			return err
		}
	}
	return nil
}

// copyCapture copies a run's capture into the bundle, with strip without
// its Decryption Secrets Blocks (and uncompressed).
func copyCapture(src, dst string, strip bool) error {
	if !strip {
		return copyFile(src, dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	cr, err := newCapReader(in, src)
	if err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(out, 1<<16)
	for {
		b, err := cr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
		if b.typ == blockDSB {
			continue
		}
		if _, err := w.Write(b.raw); err != nil {
			out.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// hasSecrets reports whether a pcapng capture has a Decryption Secrets Block.
func hasSecrets(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	cr, err := newCapReader(f, path)
	if err != nil || !cr.pcapng {
		return false, err
	}
	for {
		b, err := cr.next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if b.typ == blockDSB {
			return true, nil
		}
	}
}
