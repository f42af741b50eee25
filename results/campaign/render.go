package campaign

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"strings"

	"github.com/firstboot/firstboot/internal/fsutil"
)

// Write writes report.md and report.html into dir.
func Write(dir string, r *Report) error {
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, MarkdownFile), Markdown(r), 0o644); err != nil {
		return fmt.Errorf("campaign report: %w", err)
	}
	var h bytes.Buffer
	if err := HTML(&h, r); err != nil {
		return fmt.Errorf("campaign report: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, HTMLFile), h.Bytes(), 0o644); err != nil {
		return fmt.Errorf("campaign report: %w", err)
	}
	return nil
}

// Title is the report's first line.
func (r *Report) Title() string { return fmt.Sprintf("Campaign %s, execution %s", r.Name, r.Instance) }

// Summary says in one line what ran and how it ended.
func (r *Report) Summary() string {
	st := r.State
	var parts []string
	for _, s := range []string{JobDone, JobFailed, JobCancelled, JobRunning, JobRetrying, JobWaiting} {
		if n := st.Counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	hosts := ""
	if len(st.Hosts) > 0 {
		hosts = fmt.Sprintf(" on %d host labels", len(st.Hosts))
	}
	return fmt.Sprintf("%d scenarios%s, %d jobs: %s", len(st.Scenarios), hosts, len(st.Jobs), strings.Join(parts, ", "))
}

// VerdictLine says PASS or FAIL and why.
func (r *Report) VerdictLine() string {
	v := r.Verdict
	if len(v.Checked) == 0 {
		return "no fail_on conditions"
	}
	var b strings.Builder
	if v.Failed {
		b.WriteString("FAIL: ")
		var held []string
		for _, h := range v.Held {
			held = append(held, fmt.Sprintf("%s (%d: %s)", h.Condition, h.Count, h.Detail))
		}
		b.WriteString(strings.Join(held, "; "))
	} else {
		b.WriteString("PASS: none of " + strings.Join(v.Checked, ", "))
	}
	if len(v.NotChecked) > 0 {
		b.WriteString("; not checked without a baseline: " + strings.Join(v.NotChecked, ", "))
	}
	return b.String()
}

// Name names a group: scenario, and @label when it has one.
func (g *Group) Name() string { return groupName(g.Scenario, g.Label) }

// Stability says "k/n", and "stable" when that is every run.
func (d Dest) Stability(n int) string {
	s := fmt.Sprintf("%d/%d", d.Seen, n)
	switch {
	case d.Seen < n:
		s += " unstable"
	case n > 1:
		s += " stable"
	}
	return s
}

// Stable says which destinations of the whole run every run contacted and
// which only some did ("name k/n").
func (g *Group) Stable() (all, some []string) {
	if len(g.Scopes) == 0 {
		return nil, nil
	}
	s := g.Scopes[0]
	for _, d := range s.Destinations {
		if d.Seen == s.N {
			all = append(all, d.Name)
		} else {
			some = append(some, fmt.Sprintf("%s %d/%d", d.Name, d.Seen, s.N))
		}
	}
	return all, some
}

// StableLine says it in a sentence.
func (g *Group) StableLine() string {
	if g.N == 0 {
		return "No analysed run."
	}
	all, some := g.Stable()
	line := fmt.Sprintf("In all %d runs: %s.", g.N, orNone(strings.Join(all, ", ")))
	if g.N == 1 {
		line = fmt.Sprintf("In its only run: %s.", orNone(strings.Join(all, ", ")))
	}
	if len(some) > 0 {
		line += " In some runs only: " + strings.Join(some, ", ") + "."
	}
	return line
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (s Spread) String() string {
	if s.Min == s.Max {
		return fmt.Sprint(s.Min)
	}
	return fmt.Sprintf("%d / %d / %d", s.Min, s.Median, s.Max)
}

// StepTitle names a scope.
func (s Scope) Title() string {
	if s.Step == "" {
		return "Whole run"
	}
	return "Step " + s.Step
}

// Attempts says how many runs a job took.
func (j Job) AttemptsText() string {
	if len(j.Runs) <= 1 {
		return fmt.Sprint(max(len(j.Runs), j.Attempt))
	}
	var inc []string
	for _, r := range j.Runs {
		if r.ID != j.RunID {
			inc = append(inc, r.ID+" "+r.Status)
		}
	}
	return fmt.Sprintf("%d (%s)", len(j.Runs), strings.Join(inc, "; "))
}

// Markdown renders the report as Markdown.
func Markdown(r *Report) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n\n", r.Title())
	fmt.Fprintf(&b, "Campaign file `%s` (sha256 %s). %s.\n\n", r.State.File, short(r.State.SHA256), r.Summary())
	fmt.Fprintf(&b, "**Verdict**: %s.\n\n", r.VerdictLine())
	fmt.Fprintf(&b, "Destinations are seen in k of n runs (n: the runs of the scenario that were analysed); "+
		"connections and bytes (IP layer, up + down) give min / median / max over the runs that saw the destination. "+
		"Names are normalised as `firstboot diff` does (volatile CDN node names folded; the local network as one).\n\n")
	b.WriteString("## Jobs\n\n| job | state | result | run | attempts | worker | expectations |\n|---|---|---|---|---|---|---|\n")
	for _, j := range r.State.Jobs {
		exp := "-"
		if j.RunID != "" && (j.Met+j.Failed) > 0 {
			exp = fmt.Sprintf("%d met, %d not met", j.Met, j.Failed)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", j.Key, j.State, dash(j.Result), dash(j.RunID), j.AttemptsText(), dash(j.Worker), exp)
	}
	for _, g := range r.Groups {
		fmt.Fprintf(&b, "\n## %s", g.Name())
		if g.OS != "" {
			fmt.Fprintf(&b, " (%s)", g.OS)
		}
		fmt.Fprintf(&b, ": %d of %d runs analysed\n\n%s\n", g.N, len(g.Jobs), g.StableLine())
		for _, s := range g.Scopes {
			fmt.Fprintf(&b, "\n### %s (%d runs)\n\n", s.Title(), s.N)
			if len(s.Destinations) == 0 {
				b.WriteString("No destinations.\n")
				continue
			}
			b.WriteString("| destination | party | seen in | connections | bytes | protocols |\n|---|---|---|---|---|---|\n")
			for _, d := range s.Destinations {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", d.Name, d.Party, d.Stability(s.N), d.Conns, d.Bytes, strings.Join(d.Protocols, ", "))
			}
		}
	}
	if bl := r.Baseline; bl != nil {
		fmt.Fprintf(&b, "\n## Compared with %s\n\n", bl.Source)
		for _, c := range bl.Comparisons {
			fmt.Fprintf(&b, "- **%s** (%d runs before, %d now): ", groupName(c.Scenario, c.Label), c.Diff.A.N, c.Diff.B.N)
			if len(c.Changes) == 0 {
				b.WriteString("no change in the whole run\n")
			} else {
				b.WriteString(strings.Join(c.Changes, ", ") + "\n")
			}
		}
		for _, m := range bl.Missing {
			fmt.Fprintf(&b, "- **%s**: nothing to compare (no analysed runs on one side)\n", m)
		}
	}
	return b.Bytes()
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

//go:embed report.html.tmpl
var htmlTemplate string

var tmpl = template.Must(template.New("campaign").Funcs(template.FuncMap{
	"join":  strings.Join,
	"dash":  dash,
	"short": short,
	"pct": func(seen, n int) int {
		if n == 0 {
			return 0
		}
		return seen * 100 / n
	},
}).Parse(htmlTemplate))

// HTML renders the report as one self-contained page.
func HTML(w io.Writer, r *Report) error { return tmpl.Execute(w, r) }
