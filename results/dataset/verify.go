package dataset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/firstboot/firstboot/internal/fsutil"
)

// VerifyResult summarises a verification.
type VerifyResult struct {
	Files    int
	Bytes    int64
	Runs     int
	Analyses int // analysis outputs re-made and compared
	Steps    int // step captures re-made and compared
}

// Verify checks a bundle: every MANIFEST line against the file (size,
// sha256), no file missing or extra, and, for every run, the analysis outputs
// and step captures made again from the bundled full capture must equal the
// bundled ones byte for byte. All problems are reported, each naming its file.
func Verify(ctx context.Context, dir string) (*VerifyResult, error) {
	entries, err := ReadManifest(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var problems []error
	res := &VerifyResult{}
	listed := map[string]bool{}
	for _, e := range entries {
		listed[e.Path] = true
		sum, n, err := fsutil.FileSHA256(filepath.Join(dir, filepath.FromSlash(e.Path)))
		switch {
		case errors.Is(err, os.ErrNotExist):
			problems = append(problems, fmt.Errorf("%s: missing (listed in MANIFEST)", e.Path))
		case err != nil:
			problems = append(problems, fmt.Errorf("%s: %w", e.Path, err))
		case n != e.Size:
			problems = append(problems, fmt.Errorf("%s: size %d, MANIFEST says %d", e.Path, n, e.Size))
		case sum != e.SHA256:
			problems = append(problems, fmt.Errorf("%s: sha256 %s, MANIFEST says %s (the file changed)", e.Path, sum, e.SHA256))
		default:
			res.Files++
			res.Bytes += n
		}
	}
	files, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if !listed[f] {
			problems = append(problems, fmt.Errorf("%s: not listed in MANIFEST (extra file)", f))
		}
	}
	// Runs: every runs/<id>/analysis-options.json.
	var runs []string
	for _, e := range entries {
		if strings.HasPrefix(e.Path, RunsDir+"/") && path.Base(e.Path) == OptionsFile && strings.Count(e.Path, "/") == 2 {
			runs = append(runs, path.Dir(e.Path))
		}
	}
	sort.Strings(runs)
	for _, run := range runs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res.Runs++
		na, ns, errs := verifyRun(ctx, dir, run)
		res.Analyses += na
		res.Steps += ns
		problems = append(problems, errs...)
	}
	if len(problems) > 0 {
		return res, fmt.Errorf("dataset verify %s: %d problem(s):\n%w", dir, len(problems), errors.Join(problems...))
	}
	return res, nil
}

func verifyRun(ctx context.Context, dir, run string) (analyses, steps int, problems []error) {
	runDir := filepath.Join(dir, filepath.FromSlash(run))
	data, err := os.ReadFile(filepath.Join(runDir, OptionsFile))
	if err != nil {
		return 0, 0, []error{fmt.Errorf("%s/%s: %w", run, OptionsFile, err)}
	}
	var ao AnalysisOptions
	if err := json.Unmarshal(data, &ao); err != nil {
		return 0, 0, []error{fmt.Errorf("%s/%s: %w", run, OptionsFile, err)}
	}
	capture := filepath.Join(runDir, ao.Capture)
	if ao.Capture == "" || strings.ContainsAny(ao.Capture, `/\`) {
		return 0, 0, []error{fmt.Errorf("%s/%s: bad capture name %q", run, OptionsFile, ao.Capture)}
	}
	// Analysis outputs.
	tmp, err := os.MkdirTemp("", "firstboot-verify-")
	if err != nil {
		return 0, 0, []error{err}
	}
	defer os.RemoveAll(tmp)
	if _, err := analyze(ctx, capture, tmp, ao); err != nil {
		problems = append(problems, fmt.Errorf("%s/%s: re-analysis failed: %w", run, ao.Capture, err))
	} else {
		ents, _ := os.ReadDir(tmp)
		for _, e := range ents {
			fresh, err := os.ReadFile(filepath.Join(tmp, e.Name()))
			if err != nil {
				problems = append(problems, err)
				continue
			}
			rel := run + "/" + e.Name()
			bundled, err := os.ReadFile(filepath.Join(runDir, e.Name()))
			if err != nil {
				problems = append(problems, fmt.Errorf("%s: missing (a fresh analysis writes it)", rel))
				continue
			}
			analyses++
			if !bytes.Equal(fresh, bundled) {
				problems = append(problems, fmt.Errorf("%s: differs from a fresh analysis (%s); the bundle was made with firstboot %s", rel, firstDiff(bundled, fresh), ao.FirstbootVersion))
			}
		}
	}
	// Step captures.
	hashes := map[string]hash.Hash{}
	files, keep, err := splitCapture(capture, ao.Steps, func(name string) (io.Writer, error) {
		h := sha256.New()
		hashes[name] = h
		return h, nil
	})
	if err != nil {
		return analyses, 0, append(problems, fmt.Errorf("%s/%s: splitting by step: %w", run, ao.Capture, err))
	}
	want := map[string]bool{}
	for i, f := range files {
		if !keep[i] {
			continue
		}
		want[f.File] = true
		rel := run + "/" + StepsDir + "/" + f.File
		sum, _, err := fsutil.FileSHA256(filepath.Join(runDir, StepsDir, f.File))
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: missing (the capture has %d packet(s) for step %q)", rel, f.Packets, f.Step))
			continue
		}
		steps++
		if sum != hex.EncodeToString(hashes[f.File].Sum(nil)) {
			problems = append(problems, fmt.Errorf("%s: differs from the step's packets in %s", rel, ao.Capture))
		}
	}
	ents, _ := os.ReadDir(filepath.Join(runDir, StepsDir))
	for _, e := range ents {
		if !want[e.Name()] {
			problems = append(problems, fmt.Errorf("%s/%s/%s: not a step of %s", run, StepsDir, e.Name(), ao.Capture))
		}
	}
	return analyses, steps, problems
}

// firstDiff says where two byte slices first differ (byte offset and line).
func firstDiff(a, b []byte) string {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	line := bytes.Count(a[:i], []byte{'\n'}) + 1
	if i == n && len(a) != len(b) {
		return fmt.Sprintf("lengths %d and %d, first difference at byte %d, line %d", len(a), len(b), i, line)
	}
	return fmt.Sprintf("first difference at byte %d, line %d", i, line)
}
