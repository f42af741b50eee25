package diff

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/results/dataset/testcapture"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestNormalize(t *testing.T) {
	rules := MustDefaultRules()
	cases := []struct{ in, want string }{
		{"gspe21-ssl.ls.apple.com", "gspe#-ssl.ls.apple.com"}, // the example
		{"gspe35-ssl.ls.apple.com", "gspe#-ssl.ls.apple.com"},
		{"e1234.a.akamaiedge.net", "e#.a.akamaiedge.net"},
		{"e6858.dscx.akamaiedge.net", "e#.dscx.akamaiedge.net"},
		{"a1234.g2.akamai.net", "a#.g.akamai.net"},
		{"d1a2b3c4d5e6f7.cloudfront.net", "d#.cloudfront.net"},
		{"r3---sn-abc123.googlevideo.com", "r#---sn-#.googlevideo.com"},
		{"clients4.google.com", "clients#.google.com"},
		{"p45-caldav.icloud.com", "p#-caldav.icloud.com"},
		{"7.tlu.dl.delivery.mp.microsoft.com", "#.tlu.dl.delivery.mp.microsoft.com"},
		{"web-1234567890.eu-west-1.elb.amazonaws.com", "web-#.eu-west-1.elb.amazonaws.com"},
		{"mesu.apple.com", "mesu.apple.com"},
		{"Example.ORG.", "example.org"},
		{"10.0.0.1", LocalNetwork},
		{"fe80::1", LocalNetwork},
		{"93.184.216.34", "93.184.216.34"},
		{"255.255.255.255", "255.255.255.255"},
		{"2001:db8::1", "2001:db8::1"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			if got := Normalize(rules, c.in); got != c.want {
				t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestParseRules(t *testing.T) {
	rs, err := ParseRules(strings.NewReader("# c\n\n^foo[0-9]+\\. foo#.\n"), "r.txt")
	if err != nil || len(rs) != 1 || rs[0].Line != 3 {
		t.Fatalf("rules %v, err %v", rs, err)
	}
	if got := Normalize(rs, "foo12.example.com"); got != "foo#.example.com" {
		t.Errorf("custom rule gave %q", got)
	}
	// A file replaces the defaults: gspe21 stays as it is under this rule list.
	if got := Normalize(rs, "gspe21-ssl.ls.apple.com"); got != "gspe21-ssl.ls.apple.com" {
		t.Errorf("custom rules still apply defaults: %q", got)
	}
	for _, bad := range []string{"(unclosed x\n", "onlyone\n", "a b c\n"} {
		_, err := ParseRules(strings.NewReader(bad), "r.txt")
		if err == nil || !strings.Contains(err.Error(), "r.txt:1:") {
			t.Errorf("%q: error %v, want one naming r.txt:1", bad, err)
		}
	}
}

// dest builds a destination record.
func dest(name, party string, conns, bytes int64, protos ...string) schema.Destination {
	return schema.Destination{Name: name, Party: party, Connections: conns, BytesUp: bytes / 2, BytesDown: bytes - bytes/2, Protocols: protos}
}

// run builds an analysis with whole-run destinations, one step "boot" with
// the same destinations, a SYN fingerprint and JA4s.
func run(id, syn string, ja4s []string, ds ...schema.Destination) Run {
	a := &schema.Analysis{Host: schema.Host{IP: "10.0.0.2"}, Destinations: ds,
		Steps: []schema.StepView{{Name: "boot", Destinations: ds}}}
	if syn != "" {
		f := schema.Fingerprint{Host: "10.0.0.2", Kind: "syn", Tcpdump: syn}
		a.Fingerprints = []schema.Fingerprint{f, {Host: "10.0.0.1", Kind: "syn-ack", Tcpdump: "S. other"}}
		a.Steps[0].Fingerprints = []schema.Fingerprint{f}
	}
	for _, j := range ja4s {
		a.TLS = append(a.TLS, schema.TLS{ConnID: schema.ConnID{OrigH: "10.0.0.2"}, JA4: j, Step: "boot"})
	}
	return Run{ID: id, Analysis: a}
}

func find(s Scope, name string) *Dest {
	for i := range s.Destinations {
		if s.Destinations[i].Name == name {
			return &s.Destinations[i]
		}
	}
	return nil
}

func TestCompare(t *testing.T) {
	syn := "S win 64240 [mss 1460,sackOK,TS,nop,wscale 7]"
	opts := Options{Rules: MustDefaultRules(), ThresholdConns: 3, ThresholdBytes: 10000}
	cases := []struct {
		name       string
		a, b       []Run
		k          int
		dest       string
		wantStatus string
		wantCats   []Category
		wantNote   string
	}{
		{"new third party", []Run{run("a", syn, nil, dest("apple.com", "first", 1, 100, "ssl"))},
			[]Run{run("b", syn, nil, dest("apple.com", "first", 1, 100, "ssl"), dest("tracker.net", "third", 1, 50, "ssl"))},
			0, "tracker.net", "new", []Category{NewDestination, NewThirdParty}, "third party"},
		{"new first party plain http", []Run{run("a", syn, nil)},
			[]Run{run("b", syn, nil, dest("ocsp.apple.com", "first", 1, 50, "http"))},
			0, "ocsp.apple.com", "new", []Category{NewDestination, NewPlainHTTP}, "plain HTTP"},
		{"gone", []Run{run("a", syn, nil, dest("old.example", "third", 1, 1, "dns"))}, []Run{run("b", syn, nil)},
			0, "old.example", "gone", []Category{GoneDestination}, ""},
		{"https to http", []Run{run("a", syn, nil, dest("x.apple.com", "first", 1, 100, "ssl"))},
			[]Run{run("b", syn, nil, dest("x.apple.com", "first", 1, 100, "http"))},
			0, "x.apple.com", "changed", []Category{ProtocolChange, NewPlainHTTP}, "HTTPS -> plain HTTP"},
		{"connections over threshold", []Run{run("a", syn, nil, dest("x.com", "third", 2, 100, "ssl"))},
			[]Run{run("b", syn, nil, dest("x.com", "third", 5, 100, "ssl"))},
			0, "x.com", "changed", []Category{VolumeChange}, "connections 2 -> 5"},
		{"connections under threshold", []Run{run("a", syn, nil, dest("x.com", "third", 2, 100, "ssl"))},
			[]Run{run("b", syn, nil, dest("x.com", "third", 4, 100, "ssl"))},
			0, "x.com", "same", nil, ""},
		{"bytes over threshold", []Run{run("a", syn, nil, dest("x.com", "third", 1, 1000, "ssl"))},
			[]Run{run("b", syn, nil, dest("x.com", "third", 1, 11000, "ssl"))},
			0, "x.com", "changed", []Category{VolumeChange}, "bytes 1000 -> 11000"},
		{"party change", []Run{run("a", syn, nil, dest("x.com", "third", 1, 1, "ssl"))},
			[]Run{run("b", syn, nil, dest("x.com", "first", 1, 1, "ssl"))},
			0, "x.com", "changed", []Category{PartyChange}, "party third -> first"},
		{"normalised CDN node", []Run{run("a", syn, nil, dest("gspe21-ssl.ls.apple.com", "first", 1, 1, "ssl"))},
			[]Run{run("b", syn, nil, dest("gspe35-ssl.ls.apple.com", "first", 1, 1, "ssl"))},
			0, "gspe#-ssl.ls.apple.com", "same", nil, ""},
		{"k of n: 1 of 3 is not present", []Run{run("a1", syn, nil, dest("t.net", "third", 1, 1, "ssl")), run("a2", syn, nil), run("a3", syn, nil)},
			[]Run{run("b1", syn, nil, dest("t.net", "third", 1, 1, "ssl")), run("b2", syn, nil, dest("t.net", "third", 1, 1, "ssl")), run("b3", syn, nil)},
			0, "t.net", "new", []Category{NewDestination, NewThirdParty}, ""},
		{"k=1: 1 of 3 is present", []Run{run("a1", syn, nil, dest("t.net", "third", 1, 1, "ssl")), run("a2", syn, nil), run("a3", syn, nil)},
			[]Run{run("b1", syn, nil, dest("t.net", "third", 1, 1, "ssl")), run("b2", syn, nil, dest("t.net", "third", 1, 1, "ssl")), run("b3", syn, nil)},
			1, "t.net", "same", nil, ""},
		{"unstable on both sides", []Run{run("a1", syn, nil, dest("t.net", "third", 1, 1, "ssl")), run("a2", syn, nil), run("a3", syn, nil)},
			[]Run{run("b1", syn, nil), run("b2", syn, nil), run("b3", syn, nil, dest("t.net", "third", 1, 1, "ssl"))},
			0, "t.net", "unstable", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := opts
			o.K = c.k
			r := Compare(c.a, c.b, o)
			for _, s := range []Scope{r.Whole, r.Steps[0]} {
				d := find(s, c.dest)
				if d == nil {
					t.Fatalf("scope %q: no destination %q in %+v", s.Name, c.dest, s.Destinations)
				}
				if d.Status != c.wantStatus || !sameCats(d.Categories, c.wantCats) {
					t.Errorf("scope %q: status %s cats %v, want %s %v (%+v)", s.Name, d.Status, d.Categories, c.wantStatus, c.wantCats, *d)
				}
				if c.wantNote != "" && !slices.Contains(d.Notes, c.wantNote) {
					t.Errorf("scope %q: notes %q lack %q", s.Name, d.Notes, c.wantNote)
				}
			}
		})
	}
}

func sameCats(a, b []Category) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestStabilityCounts(t *testing.T) {
	a := []Run{run("a1", "", nil, dest("x.net", "third", 2, 10)), run("a2", "", nil, dest("x.net", "third", 4, 30)), run("a3", "", nil)}
	b := []Run{run("b1", "", nil, dest("x.net", "third", 9, 90))}
	r := Compare(a, b, Options{})
	d := find(r.Whole, "x.net")
	if d.SeenA != 2 || d.SeenB != 1 || !d.PresentA || !d.PresentB || r.A.K != 2 || r.B.K != 1 || r.A.N != 3 {
		t.Fatalf("stability: %+v, A %+v B %+v", *d, r.A, r.B)
	}
	if d.ConnsA != 3 || d.BytesA != 20 { // medians of the runs that saw it
		t.Errorf("medians: conns %d bytes %d, want 3 and 20", d.ConnsA, d.BytesA)
	}
}

func TestFingerprintsAndFailOn(t *testing.T) {
	a := []Run{run("a", "S win 64240 [mss 1460]", []string{"t13d1516h2_8daaf6152771_e5627efa2ab1"}, dest("x.com", "first", 1, 1, "ssl"))}
	b := []Run{run("b", "S win 65535 [mss 1460,nop,wscale 6]", []string{"t13d1516h2_8daaf6152771_e5627efa2ab1"}, dest("x.com", "first", 1, 1, "ssl"))}
	r := Compare(a, b, Options{})
	var got []string
	for _, f := range r.Whole.Fingerprints {
		got = append(got, f.Kind+" "+f.Status)
	}
	if strings.Join(got, ",") != "syn gone,syn new,ja4 same" {
		t.Errorf("fingerprints %q", got)
	}
	if r.Counts[FingerprintChange] != 2 || r.StepCounts[FingerprintChange] != 2 {
		t.Errorf("counts %v steps %v", r.Counts, r.StepCounts)
	}
	failOn, err := ParseCategories([]string{"new-third-party,new-plain-http", "fingerprint-change"})
	if err != nil {
		t.Fatal(err)
	}
	if f := r.Fail(failOn); !slices.Equal(f, []Category{FingerprintChange}) {
		t.Errorf("failed on %v", f)
	}
	if f := r.Fail([]Category{NewThirdParty}); len(f) != 0 {
		t.Errorf("failed on %v, want nothing", f)
	}
	if _, err := ParseCategories([]string{"new-thing"}); err == nil || !strings.Contains(err.Error(), "new-thing") {
		t.Errorf("unknown category: %v", err)
	}
}

func TestStepOnlyOnOneSide(t *testing.T) {
	a := []Run{run("a", "", nil, dest("x.com", "first", 1, 1, "ssl"))}
	b := []Run{run("b", "", nil, dest("x.com", "first", 1, 1, "ssl"), dest("new.com", "third", 1, 1, "ssl"))}
	b[0].Analysis.Steps = append(b[0].Analysis.Steps, schema.StepView{Name: "update", Destinations: []schema.Destination{dest("upd.com", "third", 1, 1, "ssl")}})
	r := Compare(a, b, Options{})
	if len(r.Steps) != 2 || r.Steps[1].Name != "update" || r.Steps[1].Missing != "a" {
		t.Fatalf("steps %+v", r.Steps)
	}
	if r.StepCounts[NewDestination] != 1 { // only boot's new.com; the one-sided step adds nothing
		t.Errorf("step counts %v", r.StepCounts)
	}
}

// goldenReport is a report touching every section, with hostile names.
func goldenReport() *Report {
	syn := "S win 64240 [mss 1460,sackOK,TS,nop,wscale 7]"
	a := []Run{
		run("before-1", syn, []string{"t13d1516h2_8daaf6152771_e5627efa2ab1"}, dest("gspe21-ssl.ls.apple.com", "first", 2, 4000, "ssl"), dest("x.apple.com", "first", 1, 100, "ssl"), dest("old.example", "third", 1, 10, "dns")),
		run("before-2", syn, []string{"t13d1516h2_8daaf6152771_e5627efa2ab1"}, dest("gspe35-ssl.ls.apple.com", "first", 2, 4200, "ssl"), dest("x.apple.com", "first", 1, 100, "ssl"), dest("old.example", "third", 1, 10, "dns")),
	}
	b := []Run{
		run("after-1", syn, []string{"t13d1517h2_8daaf6152771_b0da82dd1658"}, dest("gspe7-ssl.ls.apple.com", "first", 9, 40000, "ssl"), dest("x.apple.com", "first", 1, 100, "http"), dest("<script>alert(1)</script>|`x`.evil", "third", 1, 10, "http")),
		run("after-2", syn, []string{"t13d1517h2_8daaf6152771_b0da82dd1658"}, dest("gspe8-ssl.ls.apple.com", "first", 8, 41000, "ssl"), dest("x.apple.com", "first", 1, 100, "http"), dest("<script>alert(1)</script>|`x`.evil", "third", 1, 10, "http")),
	}
	for i := range a {
		a[i].OS = "macOS 15.0 (24A335)"
		b[i].OS = "macOS 15.1 (24B83)"
	}
	r := Compare(a, b, Options{Rules: MustDefaultRules(), RulesSource: "default", ThresholdBytes: 10000, ThresholdConns: 3})
	r.Fail([]Category{NewThirdParty, NewPlainHTTP})
	return r
}

func TestGolden(t *testing.T) {
	r := goldenReport()
	for _, format := range []string{FormatMarkdown, FormatHTML, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Render(&buf, r, format); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "report."+format+".golden")
			if *update {
				os.MkdirAll("testdata", 0o755)
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s differs from %s (run with -update after checking the change)", format, path)
			}
			out := buf.String()
			switch format {
			case FormatHTML:
				if strings.Contains(out, "<script>") {
					t.Error("HTML contains an unescaped <script>")
				}
				if !strings.Contains(out, "&lt;script&gt;") {
					t.Error("HTML lacks the escaped name")
				}
			case FormatMarkdown:
				if !strings.Contains(out, "``<script>alert(1)</script>\\|`x`.evil``") {
					t.Errorf("Markdown does not fence the hostile name safely:\n%s", out)
				}
			}
			note := "HTTPS -> plain HTTP"
			if format == FormatHTML {
				note = "HTTPS -&gt; plain HTTP"
			}
			for _, want := range []string{"gspe#-ssl.ls.apple.com", "new-third-party", note} {
				if !strings.Contains(out, want) {
					t.Errorf("%s lacks %q", format, want)
				}
			}
		})
	}
}

// TestRealAnalyses diffs analyses the analyzer made from two generated captures.
func TestRealAnalyses(t *testing.T) {
	root := t.TempDir()
	mk := func(id string, names []string) string {
		dir := filepath.Join(root, id)
		m, _, err := testcapture.Write(dir, testcapture.Config{RunID: id, Names: names})
		if err != nil {
			t.Fatal(err)
		}
		var steps []analyzer.Step
		for _, s := range m.Steps() {
			steps = append(steps, analyzer.Step{Name: s.Name, Start: s.Start, End: s.End})
		}
		a, err := analyzer.AnalyzeFile(context.Background(), filepath.Join(dir, "capture.pcapng"), analyzer.Options{FirstParty: m.Scenario.FirstParty, Steps: steps})
		if err != nil {
			t.Fatal(err)
		}
		if err := analyzer.WriteOutputs(dir, a, "tsv"); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	a := mk("a", []string{"example.org"})
	b := mk("b", []string{"example.org", "tracker.example.net"})
	ra, err := LoadSide([]string{a})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := LoadSide([]string{filepath.Join(root, "b*")}) // a glob
	if err != nil {
		t.Fatal(err)
	}
	if len(rb) != 1 || rb[0].ID != "b" || rb[0].Dir != b || rb[0].OS != "firstboot testguest 1.0 (tg-1)" {
		t.Fatalf("loaded %+v", rb)
	}
	r := Compare(ra, rb, Options{Rules: MustDefaultRules()})
	d := find(r.Whole, "tracker.example.net")
	if d == nil || d.Status != "new" || d.PartyB != "third" || !slices.Contains(d.ProtocolsB, "http") {
		t.Fatalf("tracker: %+v", d)
	}
	if !sameCats(d.Categories, []Category{NewDestination, NewThirdParty, NewPlainHTTP}) {
		t.Errorf("categories %v", d.Categories)
	}
	// example.org is on both sides. (Its protocols may differ: in the simulated lab every
	// name resolves to the gateway, so DNS-attributed flows such as NTP follow the latest lookup.)
	if e := find(r.Whole, "example.org"); e == nil || !e.PresentA || !e.PresentB || e.PartyA != "first" || slices.Contains(e.Categories, NewDestination) {
		t.Errorf("example.org: %+v", e)
	}
	var browse *Scope
	for i := range r.Steps {
		if r.Steps[i].Name == "browse" {
			browse = &r.Steps[i]
		}
	}
	if browse == nil || find(*browse, "tracker.example.net") == nil || find(*browse, "tracker.example.net").Status != "new" {
		t.Errorf("browse step: %+v", browse)
	}
	// A run directory without analysis.json is a clear input error.
	bare := filepath.Join(root, "bare")
	os.MkdirAll(bare, 0o755)
	manifest.Write(bare, &manifest.Manifest{RunID: "bare", Capture: manifest.Capture{Start: time.Unix(0, 0)}})
	if _, err := LoadSide([]string{bare}); err == nil || !strings.Contains(err.Error(), "firstboot analyze") {
		t.Errorf("bare run: %v", err)
	}
}
