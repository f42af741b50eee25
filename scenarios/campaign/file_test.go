package campaign

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestParseMistakes: every mistake is reported at its file:line:column with
// what was expected, all at once.
func TestParseMistakes(t *testing.T) {
	dir := t.TempDir()
	scen, _ := filepath.Abs("../testguest.yaml")
	tests := []struct {
		name, text string
		want       []string
	}{
		{"typo in a key", "name: x\nscenarios:\n  - path: " + scen + "\nrepetitons: 3\n",
			[]string{`c.yaml:4:1: unknown key "repetitons" in the top level (did you mean "repetitions"?)`}},
		{"bad schedule and fail_on", "name: x\nscenarios:\n  - path: " + scen + "\nschedule: \"every day\"\nfail_on: [new-destinaton]\n",
			[]string{`c.yaml:4:11: schedule "every day"`, `c.yaml:5:11: fail_on: unknown condition "new-destinaton" (did you mean "new-destination"?)`}},
		{"missing scenario file", "name: x\nscenarios:\n  - path: nowhere.yaml\n",
			[]string{`c.yaml:3:11: scenario nowhere.yaml: file not found`}},
		{"scenario twice", "name: x\nscenarios:\n  - path: " + scen + "\n  - path: " + scen + "\n",
			[]string{`c.yaml:4:5: scenario name "testguest" is used twice`}},
		{"bad variant", "name: x\nscenarios:\n  - path: " + scen + "\n    variants:\n      - name: v1\n        machine: { memroy: 1GiB }\n",
			[]string{`c.yaml:6:20: unknown key "memroy" in scenarios[0].variants[0].machine (did you mean "memory"?)`}},
		{"variant scenario invalid", "name: x\nscenarios:\n  - path: " + scen + "\n    variants:\n      - name: Bad_Name\n",
			[]string{`c.yaml:5:9: variant "Bad_Name" of ` + scen + `: the scenario it makes is not valid`}},
		{"labels, retries", "name: x\nscenarios:\n  - path: " + scen + "\nhosts: [EU_1]\nlimits: { retries: 99 }\n",
			[]string{`c.yaml:4:9: hosts: label "EU_1"`, `c.yaml:5:20: limits.retries: 99; want 0 to 20`}},
		{"accel", "name: x\nscenarios:\n  - path: " + scen + "\nlimits: { accel: kwm }\n",
			[]string{`c.yaml:4:18: limits.accel: "kwm" is not one of: any, kvm (did you mean "kvm"?)`}},
		{"bad baseline", "name: x\nscenarios:\n  - path: " + scen + "\nbaseline: old-runs\n",
			[]string{`c.yaml:4:11: baseline "old-runs": file not found`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "c.yaml"), []byte(tc.text))
			if err == nil {
				t.Fatal("no error")
			}
			msg := strings.ReplaceAll(err.Error(), dir+"/", "")
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

// TestVariantsAndMatrix: a variant substitutes keys of its scenario (its
// other keys kept, relative paths from the campaign file), per-entry
// repetitions count, and the matrix orders repetitions first.
func TestVariantsAndMatrix(t *testing.T) {
	dir := t.TempDir()
	scen, _ := filepath.Abs("../testguest.yaml")
	text := "name: m\nscenarios:\n  - path: " + scen + "\n  - path: " + scen + `
    repetitions: 1
    variants:
      - name: tg-disk
        os: { release: "9" }
        image: { kind: disk, path: images/x.qcow2 }
        capture: { window: 1m }
repetitions: 2
hosts: [eu-1]
limits: { accel: kvm }
schedule: "@every 1h"
`
	c, err := Parse(filepath.Join(dir, "m.yaml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	v := c.ScenarioNamed("tg-disk")
	if v == nil || v.OS.Release != "9" || v.OS.Product != "firstboot test guest" || v.Image.Builtin != "" {
		t.Fatalf("variant: %+v", v)
	}
	if got := v.ResolvePath(v.Image.Path); got != filepath.Join(dir, "images/x.qcow2") {
		t.Errorf("variant image path resolves to %s", got)
	}
	if len(v.Steps) != 4 || v.Capture.Window.D() != time.Minute {
		t.Errorf("variant lost its steps or window: %d steps, window %s", len(v.Steps), v.Capture.Window)
	}
	var keys []string
	for _, j := range c.Matrix() {
		keys = append(keys, j.Key)
		if j.Label != "eu-1" || !j.KVM {
			t.Errorf("%s: label %q kvm %v", j.Key, j.Label, j.KVM)
		}
	}
	if got := strings.Join(keys, " "); got != "testguest@eu-1/r1 tg-disk@eu-1/r1 testguest@eu-1/r2" {
		t.Errorf("matrix: %s", got)
	}
	if RunQueue("eu-1", true) != "runs_eu-1_kvm" {
		t.Errorf("queue name %s", RunQueue("eu-1", true))
	}
	if next := c.Next(time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC), 2); len(next) != 2 || next[1].Sub(next[0]) != time.Hour {
		t.Errorf("schedule: %v", next)
	}
}

// TestExampleCampaigns: the campaigns the README uses load.
func TestExampleCampaigns(t *testing.T) {
	files, _ := filepath.Glob("../../campaigns/*.yaml")
	if len(files) < 2 {
		t.Fatalf("campaigns/: %v", files)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat("../../campaigns/testguest.yaml"); err != nil {
		t.Error(err)
	}
}
