package diff

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// Run is one analysed run.
type Run struct {
	// ID names the run in output: the manifest's run id, else the directory's name.
	ID       string
	Dir      string
	Analysis *schema.Analysis
	// OS is "product release (build)" from the manifest, "" without one.
	OS string
}

// ErrInput marks arguments that do not name analysed runs (a usage error).
var ErrInput = errors.New("diff input")

// LoadSide resolves arguments (run directories, dataset bundles, directories
// of runs, or glob patterns) into runs, sorted by ID. A directory holding
// analysis.json is a run; a dataset bundle contributes runs/*; any other
// directory contributes its subdirectories that are runs.
func LoadSide(args []string) ([]Run, error) {
	var dirs []string
	for _, a := range args {
		if strings.ContainsAny(a, "*?[") {
			m, err := filepath.Glob(a)
			if err != nil {
				return nil, fmt.Errorf("%w: pattern %q: %v", ErrInput, a, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("%w: %q matches nothing", ErrInput, a)
			}
			dirs = append(dirs, m...)
			continue
		}
		dirs = append(dirs, a)
	}
	var runs []Run
	seen := map[string]bool{}
	for _, d := range dirs {
		found, err := runsUnder(d)
		if err != nil {
			return nil, err
		}
		for _, r := range found {
			abs, _ := filepath.Abs(r)
			if seen[abs] {
				continue
			}
			seen[abs] = true
			run, err := loadRun(r)
			if err != nil {
				return nil, err
			}
			runs = append(runs, run)
		}
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("%w: no analysed runs in %s (run `firstboot analyze` or `firstboot report` on a run first)", ErrInput, strings.Join(args, " "))
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].ID < runs[j].ID })
	return runs, nil
}

func runsUnder(d string) ([]string, error) {
	st, err := os.Stat(d)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	if !st.IsDir() {
		if filepath.Base(d) == "analysis.json" {
			return []string{filepath.Dir(d)}, nil
		}
		return nil, fmt.Errorf("%w: %s is not a directory", ErrInput, d)
	}
	if isFile(filepath.Join(d, "analysis.json")) {
		return []string{d}, nil
	}
	base := d
	if isDir(filepath.Join(d, "runs")) && isFile(filepath.Join(d, "MANIFEST")) {
		base = filepath.Join(d, "runs")
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	var out []string
	for _, e := range ents {
		p := filepath.Join(base, e.Name())
		if e.IsDir() && isFile(filepath.Join(p, "analysis.json")) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		if isFile(filepath.Join(d, manifest.FileName)) {
			return nil, fmt.Errorf("%w: %s has no analysis.json yet; run `firstboot analyze %s` first", ErrInput, d, d)
		}
		return nil, fmt.Errorf("%w: %s holds no analysed run", ErrInput, d)
	}
	return out, nil
}

func isFile(p string) bool { st, err := os.Stat(p); return err == nil && st.Mode().IsRegular() }
func isDir(p string) bool  { st, err := os.Stat(p); return err == nil && st.IsDir() }

func loadRun(dir string) (Run, error) {
	data, err := os.ReadFile(filepath.Join(dir, "analysis.json"))
	if err != nil {
		return Run{}, fmt.Errorf("%w: %v", ErrInput, err)
	}
	var a schema.Analysis
	if err := json.Unmarshal(data, &a); err != nil {
		return Run{}, fmt.Errorf("%w: %s/analysis.json: %v", ErrInput, dir, err)
	}
	r := Run{ID: filepath.Base(filepath.Clean(dir)), Dir: dir, Analysis: &a}
	if m, err := manifest.Read(dir); err == nil {
		if m.RunID != "" {
			r.ID = m.RunID
		}
		o := m.Scenario.OS
		r.OS = strings.TrimSpace(strings.Join([]string{firstNonEmpty(o.Product, o.Family), o.Release}, " "))
		if o.Build != "" {
			r.OS += " (" + o.Build + ")"
		}
	} else if !errors.Is(err, fs.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
		return Run{}, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return r, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
