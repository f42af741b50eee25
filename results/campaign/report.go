package campaign

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/firstboot/firstboot/results/diff"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// Report file names in an execution's directory.
const (
	MarkdownFile = "report.md"
	HTMLFile     = "report.html"
)

// Conditions fail_on takes besides diff's change kinds (the campaign file's
// loader accepts the same names).
const (
	FailExpectation = "expectation-failed"
	FailRun         = "run-failed"
)

// Report is the campaign report's model.
type Report struct {
	Name, Instance string
	State          *State
	// Groups are the matrix's scenarios (on each host label), in matrix order.
	Groups   []*Group
	Baseline *Baseline
	Verdict  Verdict
}

// Group is one scenario on one host label: its repetitions.
type Group struct {
	Scenario, Label, OS string
	Jobs                []Job
	// N counts the repetitions with an analysed run; the k-of-n figures are out of N.
	N int
	// Scopes: the whole run first, then each step in the scenario's order.
	Scopes []Scope
	runs   []diff.Run
}

// Scope is the whole run ("") or one step.
type Scope struct {
	Step string
	// N counts the runs that have this step.
	N            int
	Destinations []Dest
}

// Dest is one destination (names normalised as diff does) across the runs.
type Dest struct {
	Name      string
	Party     string
	Seen      int // runs that contacted it, of Scope.N
	Protocols []string
	Conns     Spread
	Bytes     Spread // IP layer, up + down
}

// Spread summarises a count over the runs that saw the destination.
type Spread struct{ Min, Median, Max int64 }

// Baseline is the comparison with what the campaign is compared with.
type Baseline struct {
	Source      string
	Comparisons []Comparison
	// Missing lists groups the baseline has no runs of.
	Missing []string
}

// Comparison is one group against the baseline's runs of its scenario.
type Comparison struct {
	Scenario, Label string
	Diff            *diff.Report
	// Changes lists the whole run's changed destinations: "new x", "gone y".
	Changes []string
}

// Verdict is the outcome of the campaign's fail_on conditions.
type Verdict struct {
	Failed bool `json:"failed"`
	// Held lists the conditions that held, with what made them hold.
	Held []Held `json:"held,omitempty"`
	// Checked lists every condition; NotChecked those that could not be
	// (a change kind without a baseline).
	Checked    []string `json:"checked,omitempty"`
	NotChecked []string `json:"not_checked,omitempty"`
	Baseline   string   `json:"baseline,omitempty"`
}

// Held is one condition that held.
type Held struct {
	Condition string `json:"condition"`
	Count     int    `json:"count"`
	Detail    string `json:"detail"`
}

// Options say what to compare with and what fails.
type Options struct {
	// Baseline are the runs compared with (nil: no comparison);
	// BaselineSource names them.
	Baseline       []diff.Run
	BaselineSource string
	FailOn         []string
	Diff           diff.Options
}

// Build reads the execution's runs (dir holds campaign.json's run
// directories) and makes the report. Runs are read as analysed; a job whose
// run has no analysis.json counts as not analysed.
func Build(st *State, dir string, opts Options) (*Report, error) {
	if opts.Diff.Rules == nil {
		opts.Diff.Rules, opts.Diff.RulesSource = diff.MustDefaultRules(), "default"
	}
	r := &Report{Name: st.Name, Instance: st.Instance, State: st}
	groups := map[string]*Group{}
	for _, j := range st.Jobs {
		k := j.Scenario + "@" + j.Label
		g := groups[k]
		if g == nil {
			g = &Group{Scenario: j.Scenario, Label: j.Label}
			for _, s := range st.Scenarios {
				if s.Name == j.Scenario {
					g.OS = s.OS
				}
			}
			groups[k] = g
			r.Groups = append(r.Groups, g)
		}
		g.Jobs = append(g.Jobs, j)
		if j.State != JobDone || j.RunDir == "" {
			continue
		}
		run, err := loadRun(filepath.Join(dir, j.RunDir))
		if err != nil {
			return nil, err
		}
		if run != nil {
			g.runs = append(g.runs, *run)
		}
	}
	for _, g := range r.Groups {
		g.N = len(g.runs)
		g.Scopes = scopes(g.runs, opts.Diff.Rules)
	}
	if opts.Baseline != nil {
		r.Baseline = compare(r.Groups, opts)
	}
	r.Verdict = verdict(r, opts)
	return r, nil
}

// loadRun reads a run's analysis; nil when it was not analysed.
func loadRun(dir string) (*diff.Run, error) {
	data, err := os.ReadFile(filepath.Join(dir, "analysis.json"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a schema.Analysis
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%s/analysis.json: %w", dir, err)
	}
	run := &diff.Run{ID: filepath.Base(dir), Dir: dir, Analysis: &a}
	if m, err := manifest.Read(dir); err == nil {
		run.ID = m.RunID
	}
	return run, nil
}

// scopes aggregates the runs' destinations for the whole run and each step.
func scopes(runs []diff.Run, rules []diff.Rule) []Scope {
	out := []Scope{aggregate("", runs, rules)}
	var steps []string
	for _, run := range runs {
		for _, s := range run.Analysis.Steps {
			if !slices.Contains(steps, s.Name) {
				steps = append(steps, s.Name)
			}
		}
	}
	for _, s := range steps {
		out = append(out, aggregate(s, runs, rules))
	}
	return out
}

func aggregate(step string, runs []diff.Run, rules []diff.Rule) Scope {
	type agg struct {
		party        string
		conns, bytes []int64
		proto        map[string]bool
	}
	sc := Scope{Step: step}
	all := map[string]*agg{}
	for _, run := range runs {
		dests := run.Analysis.Destinations
		if step != "" {
			found := false
			for _, s := range run.Analysis.Steps {
				if s.Name == step {
					dests, found = s.Destinations, true
				}
			}
			if !found {
				continue
			}
		}
		sc.N++
		// One run's names may fold into one normalised name: sum them first.
		type one struct {
			party        string
			conns, bytes int64
			proto        []string
		}
		mine := map[string]*one{}
		for _, d := range dests {
			name := diff.Normalize(rules, d.Name)
			if d.Party == "local" {
				name = diff.LocalNetwork
			}
			o := mine[name]
			if o == nil {
				o = &one{party: d.Party}
				mine[name] = o
			}
			if d.Party == "third" {
				o.party = "third"
			}
			o.conns += d.Connections
			o.bytes += d.BytesUp + d.BytesDown
			o.proto = append(o.proto, d.Protocols...)
		}
		for name, o := range mine {
			a := all[name]
			if a == nil {
				a = &agg{party: o.party, proto: map[string]bool{}}
				all[name] = a
			}
			if o.party == "third" {
				a.party = "third"
			}
			a.conns = append(a.conns, o.conns)
			a.bytes = append(a.bytes, o.bytes)
			for _, p := range o.proto {
				a.proto[p] = true
			}
		}
	}
	for name, a := range all {
		d := Dest{Name: name, Party: a.party, Seen: len(a.conns), Conns: spread(a.conns), Bytes: spread(a.bytes)}
		for p := range a.proto {
			d.Protocols = append(d.Protocols, p)
		}
		sort.Strings(d.Protocols)
		sc.Destinations = append(sc.Destinations, d)
	}
	// Most stable first, then by name: what a study reports comes first.
	sort.Slice(sc.Destinations, func(i, j int) bool {
		a, b := sc.Destinations[i], sc.Destinations[j]
		if a.Seen != b.Seen {
			return a.Seen > b.Seen
		}
		return a.Name < b.Name
	})
	return sc
}

func spread(v []int64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Min: s[0], Median: m, Max: s[len(s)-1]}
}

// compare compares each group with the baseline's runs of its scenario (and
// label, when the baseline's runs carry one).
func compare(groups []*Group, opts Options) *Baseline {
	b := &Baseline{Source: opts.BaselineSource}
	type side struct{ scenario, label string }
	base := map[side][]diff.Run{}
	for _, run := range opts.Baseline {
		m, err := manifest.Read(run.Dir)
		if err != nil {
			continue
		}
		label := ""
		if m.Campaign != nil {
			label = m.Campaign.Label
		}
		base[side{m.Scenario.Name, label}] = append(base[side{m.Scenario.Name, label}], run)
		if label != "" {
			base[side{m.Scenario.Name, "*"}] = append(base[side{m.Scenario.Name, "*"}], run)
		}
	}
	for _, g := range groups {
		old := base[side{g.Scenario, g.Label}]
		if len(old) == 0 && g.Label == "" {
			old = base[side{g.Scenario, "*"}]
		}
		name := groupName(g.Scenario, g.Label)
		if len(old) == 0 || len(g.runs) == 0 {
			b.Missing = append(b.Missing, name)
			continue
		}
		d := diff.Compare(old, g.runs, opts.Diff)
		c := Comparison{Scenario: g.Scenario, Label: g.Label, Diff: d}
		for _, dst := range d.Whole.Destinations {
			if len(dst.Categories) > 0 {
				c.Changes = append(c.Changes, dst.Status+" "+dst.Name)
			}
		}
		b.Comparisons = append(b.Comparisons, c)
	}
	return b
}

func groupName(scenario, label string) string {
	if label == "" {
		return scenario
	}
	return scenario + "@" + label
}

func verdict(r *Report, opts Options) Verdict {
	v := Verdict{Checked: opts.FailOn, Baseline: opts.BaselineSource}
	for _, cond := range opts.FailOn {
		var n int
		var what []string
		switch cond {
		case FailExpectation:
			for _, j := range r.State.Jobs {
				if j.Result == FailExpectation {
					n++
					what = append(what, j.Key)
				}
			}
		case FailRun:
			for _, j := range r.State.Jobs {
				if j.State == JobFailed || j.State == JobCancelled || j.Result == "step-failed" {
					n++
					what = append(what, j.Key)
				}
			}
		default:
			if r.Baseline == nil {
				v.NotChecked = append(v.NotChecked, cond)
				continue
			}
			for _, c := range r.Baseline.Comparisons {
				if k := c.Diff.Counts[diff.Category(cond)]; k > 0 {
					n += k
					what = append(what, fmt.Sprintf("%s (%d)", groupName(c.Scenario, c.Label), k))
				}
			}
		}
		if n > 0 {
			v.Failed = true
			v.Held = append(v.Held, Held{Condition: cond, Count: n, Detail: strings.Join(what, ", ")})
		}
	}
	return v
}
