package campaign

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/results/diff"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// writeRun writes a run directory with a manifest and an analysis whose
// whole run and one step contacted names (third party, conns connections).
func writeRun(t *testing.T, dir, id, scenario string, conns int64, names ...string) {
	t.Helper()
	d := filepath.Join(dir, id)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	a := schema.Analysis{Steps: []schema.StepView{{Name: "boot"}}}
	for _, n := range names {
		dst := schema.Destination{Name: n, Party: "third", Connections: conns, BytesUp: 100 * conns, BytesDown: 1000}
		a.Destinations = append(a.Destinations, dst)
		a.Steps[0].Destinations = append(a.Steps[0].Destinations, dst)
	}
	data, _ := json.Marshal(a)
	if err := os.WriteFile(filepath.Join(d, "analysis.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := manifest.Write(d, &manifest.Manifest{RunID: id, Status: manifest.StatusComplete, Scenario: manifest.Scenario{Name: scenario}}); err != nil {
		t.Fatal(err)
	}
}

// TestBuildKOfNBaselineVerdict: k-of-n presence and spreads per scenario and
// step, a comparison with a baseline that finds a new destination, and
// fail_on conditions that hold or not.
func TestBuildKOfNBaselineVerdict(t *testing.T) {
	root := t.TempDir()
	exec := filepath.Join(root, "exec")
	runs := filepath.Join(exec, "runs")
	writeRun(t, runs, "r1", "s", 1, "a.example.com", "b.example.com")
	writeRun(t, runs, "r2", "s", 3, "a.example.com")
	writeRun(t, runs, "r3", "s", 2, "a.example.com", "b.example.com")
	st := &State{Name: "c", Instance: "i", Scenarios: []Scenario{{Name: "s", OS: "Some OS 1"}}}
	for i, id := range []string{"r1", "r2", "r3"} {
		st.Jobs = append(st.Jobs, Job{Key: "s/r" + string(rune('1'+i)), Scenario: "s", Repetition: i + 1, State: JobDone, Result: "ok", RunID: id, RunDir: "runs/" + id})
	}
	st.Jobs = append(st.Jobs, Job{Key: "s/r4", Scenario: "s", Repetition: 4, State: JobFailed, Errors: []string{"attempt 3: lab: gone"}})
	st.Count()
	base := filepath.Join(root, "base")
	writeRun(t, base, "b1", "s", 1, "a.example.com")
	writeRun(t, base, "b2", "s", 1, "a.example.com")
	baseline, err := diff.LoadSide([]string{base})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Build(st, exec, Options{Baseline: baseline, BaselineSource: base, FailOn: []string{"new-destination", FailExpectation, FailRun}})
	if err != nil {
		t.Fatal(err)
	}
	g := r.Groups[0]
	if g.N != 3 || len(g.Scopes) != 2 || g.Scopes[1].Step != "boot" {
		t.Fatalf("group: n %d, scopes %+v", g.N, g.Scopes)
	}
	whole := g.Scopes[0].Destinations
	if len(whole) != 2 || whole[0].Name != "a.example.com" || whole[0].Seen != 3 || whole[1].Seen != 2 {
		t.Fatalf("destinations: %+v", whole)
	}
	if whole[0].Conns != (Spread{1, 2, 3}) || whole[0].Bytes != (Spread{1100, 1200, 1300}) {
		t.Errorf("spread of a.example.com: conns %+v bytes %+v", whole[0].Conns, whole[0].Bytes)
	}
	if c := r.Baseline.Comparisons; len(c) != 1 || len(c[0].Changes) != 1 || c[0].Changes[0] != "new b.example.com" {
		t.Errorf("comparison: %+v", c)
	}
	held := map[string]int{}
	for _, h := range r.Verdict.Held {
		held[h.Condition] = h.Count
	}
	if !r.Verdict.Failed || held["new-destination"] != 1 || held[FailRun] != 1 || held[FailExpectation] != 0 {
		t.Errorf("verdict: %+v", r.Verdict)
	}
	md := string(Markdown(r))
	for _, want := range []string{
		"In all 3 runs: a.example.com. In some runs only: b.example.com 2/3.",
		"| a.example.com | third | 3/3 stable | 1 / 2 / 3 | 1100 / 1200 / 1300 |",
		"| b.example.com | third | 2/3 unstable |",
		"### Step boot (3 runs)",
		"- **s** (2 runs before, 3 now): new b.example.com",
		"FAIL: new-destination (1: s (1)); run-failed (1: s/r4)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	// Without a baseline the change kinds cannot be checked, and say so.
	r, err = Build(st, exec, Options{FailOn: []string{"new-destination"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict.Failed || len(r.Verdict.NotChecked) != 1 {
		t.Errorf("verdict without baseline: %+v", r.Verdict)
	}
}
