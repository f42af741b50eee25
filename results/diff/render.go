package diff

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
)

// Output formats.
const (
	FormatMarkdown = "md"
	FormatHTML     = "html"
	FormatJSON     = "json"
)

// Render writes the report in a format.
func Render(w io.Writer, r *Report, format string) error {
	switch format {
	case FormatMarkdown, "markdown", "":
		_, err := w.Write(Markdown(r))
		return err
	case FormatHTML:
		return HTML(w, r)
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return fmt.Errorf("format %q: want md, html or json", format)
}

func scopeTitle(s Scope) string {
	if s.Name == "" {
		return "Whole run"
	}
	return "Step " + code(s.Name)
}

func sideLine(label string, s Side) string {
	var ids []string
	oses := map[string]bool{}
	var osl []string
	for _, r := range s.Runs {
		ids = append(ids, code(r.ID))
		if r.OS != "" && !oses[r.OS] {
			oses[r.OS] = true
			osl = append(osl, r.OS)
		}
	}
	line := fmt.Sprintf("**%s**: %d run(s) %s; present = seen in at least %d of %d", label, s.N, strings.Join(ids, ", "), s.K, s.N)
	if len(osl) > 0 {
		line += "; OS: " + mdText(strings.Join(osl, ", "))
	}
	return line
}

// Markdown renders the report as Markdown. Names come from traffic: they are
// put in code spans (with a fence longer than any backtick run inside) and
// table pipes are escaped.
func Markdown(r *Report) []byte {
	var b bytes.Buffer
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("# firstboot diff\n\n")
	p("%s  \n%s  \n", sideLine("A", r.A), sideLine("B", r.B))
	p("Thresholds: bytes >= %d, connections >= %d (0 = off). Names normalised by %d rule(s) (%s).\n\n",
		r.Thresholds.Bytes, r.Thresholds.Conns, r.Rules, mdText(r.RulesSource))
	p("## Summary\n\n| Change | Whole run | Steps |\n|---|---|---|\n")
	for _, c := range Categories {
		p("| %s | %d | %d |\n", c, r.Counts[c], r.StepCounts[c])
	}
	p("\n")
	if len(r.FailOn) > 0 {
		if len(r.FailedOn) > 0 {
			p("**FAILED** on: %s (whole run).\n\n", joinCats(r.FailedOn))
		} else {
			p("Passed: none of %s in the whole run.\n\n", joinCats(r.FailOn))
		}
	}
	for _, s := range append([]Scope{r.Whole}, r.Steps...) {
		p("## %s\n\n", scopeTitle(s))
		p("Runs with this scope: A %d, B %d.\n\n", s.RunsA, s.RunsB)
		if s.Missing != "" {
			p("Only in %s: not compared.\n\n", strings.ToUpper(map[string]string{"a": "b", "b": "a"}[s.Missing]))
		}
		var news, gones, changed []Dest
		for _, d := range s.Destinations {
			switch d.Status {
			case "new":
				news = append(news, d)
			case "gone":
				gones = append(gones, d)
			case "changed":
				changed = append(changed, d)
			}
		}
		if len(news) > 0 {
			p("### New destinations\n\n| Destination | Party | Seen A | Seen B | Connections | Bytes | Protocols | Notes |\n|---|---|---|---|---|---|---|---|\n")
			for _, d := range news {
				p("| %s | %s | %d/%d | %d/%d | %d | %d | %s | %s |\n", destCell(d), d.PartyB, d.SeenA, s.RunsA, d.SeenB, s.RunsB, d.ConnsB, d.BytesB, mdText(strings.Join(d.ProtocolsB, " ")), mdText(strings.Join(d.Notes, "; ")))
			}
			p("\n")
		}
		if len(gones) > 0 {
			p("### Gone destinations\n\n| Destination | Party | Seen A | Seen B | Connections | Bytes | Protocols |\n|---|---|---|---|---|---|---|\n")
			for _, d := range gones {
				p("| %s | %s | %d/%d | %d/%d | %d | %d | %s |\n", destCell(d), d.PartyA, d.SeenA, s.RunsA, d.SeenB, s.RunsB, d.ConnsA, d.BytesA, mdText(strings.Join(d.ProtocolsA, " ")))
			}
			p("\n")
		}
		if len(changed) > 0 {
			p("### Changed destinations\n\n| Destination | Seen A | Seen B | Connections A -> B | Bytes A -> B | Protocols A -> B | Notes |\n|---|---|---|---|---|---|---|\n")
			for _, d := range changed {
				p("| %s | %d/%d | %d/%d | %d -> %d | %d -> %d | %s -> %s | %s |\n", destCell(d), d.SeenA, s.RunsA, d.SeenB, s.RunsB, d.ConnsA, d.ConnsB, d.BytesA, d.BytesB,
					mdText(strings.Join(d.ProtocolsA, " ")), mdText(strings.Join(d.ProtocolsB, " ")), mdText(strings.Join(d.Notes, "; ")))
			}
			p("\n")
		}
		if len(news)+len(gones)+len(changed) == 0 && s.Missing == "" {
			p("No destination changes.\n\n")
		}
		var fch []Fingerprint
		for _, f := range s.Fingerprints {
			if f.Status != "same" {
				fch = append(fch, f)
			}
		}
		if len(fch) > 0 {
			p("### Fingerprints\n\n| Kind | Fingerprint | Seen A | Seen B | Status |\n|---|---|---|---|---|\n")
			for _, f := range fch {
				p("| %s | %s | %d/%d | %d/%d | %s |\n", f.Kind, code(f.Value), f.SeenA, s.RunsA, f.SeenB, s.RunsB, f.Status)
			}
			p("\n")
		}
		if len(s.Destinations) > 0 {
			p("<details><summary>Stability of all %d destinations</summary>\n\n| Destination | Seen A | Seen B | Status |\n|---|---|---|---|\n", len(s.Destinations))
			for _, d := range s.Destinations {
				p("| %s | %d/%d | %d/%d | %s |\n", destCell(d), d.SeenA, s.RunsA, d.SeenB, s.RunsB, d.Status)
			}
			p("\n</details>\n\n")
		}
	}
	return b.Bytes()
}

func joinCats(cs []Category) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

func destCell(d Dest) string {
	s := code(d.Name)
	if len(d.Variants) > 0 {
		v := make([]string, len(d.Variants))
		for i, x := range d.Variants {
			v[i] = code(x)
		}
		s += " (" + strings.Join(v, ", ") + ")"
	}
	return s
}

// code puts untrusted text in a Markdown code span inside a table cell.
func code(s string) string {
	s = strings.NewReplacer("\n", " ", "\r", " ", "|", `\|`).Replace(s)
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

func mdText(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ", "|", `\|`, "<", "&lt;", "`", "'", "*", `\*`, "_", `\_`, "[", `\[`).Replace(s)
}

//go:embed diff.html.tmpl
var htmlTemplate string

var htmlTmpl = template.Must(template.New("diff").Funcs(template.FuncMap{
	"title": func(s Scope) string {
		if s.Name == "" {
			return "Whole run"
		}
		return "Step " + s.Name
	},
	"join":  func(xs []string) string { return strings.Join(xs, " ") },
	"notes": func(xs []string) string { return strings.Join(xs, "; ") },
	"byStatus": func(ds []Dest, st string) []Dest {
		var out []Dest
		for _, d := range ds {
			if d.Status == st {
				out = append(out, d)
			}
		}
		return out
	},
	"changedFP": func(fs []Fingerprint) []Fingerprint {
		var out []Fingerprint
		for _, f := range fs {
			if f.Status != "same" {
				out = append(out, f)
			}
		}
		return out
	},
	"count": func(m map[Category]int, c Category) int { return m[c] },
	"cats":  joinCats,
	"other": func(s string) string { return strings.ToUpper(map[string]string{"a": "b", "b": "a"}[s]) },
}).Parse(htmlTemplate))

// HTML writes one self-contained page (inline CSS, no scripts, nothing
// fetched); every name from traffic goes through html/template's escaping.
func HTML(w io.Writer, r *Report) error {
	return htmlTmpl.Execute(w, struct {
		*Report
		Scopes     []Scope
		Categories []Category
	}{r, append([]Scope{r.Whole}, r.Steps...), Categories})
}
