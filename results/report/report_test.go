package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/results/expect"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs from the golden file at line %d:\n got: %.300q\nwant: %.300q\n(go test -update rewrites it after review)", name, i+1, g, w)
			}
		}
	}
}

func TestGolden(t *testing.T) {
	in := fixtureInput(t)
	md, err := Markdown(in)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "fixture.md.golden", md)
	page, err := HTML(in)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "fixture.html.golden", page)

	// The same input gives the same bytes (map order, no clock).
	for i := 0; i < 3; i++ {
		md2, _ := Markdown(fixtureInput(t))
		page2, _ := HTML(fixtureInput(t))
		if !bytes.Equal(md, md2) || !bytes.Equal(page, page2) {
			t.Fatal("rendering the same input twice gave different bytes")
		}
	}
}

// TestContent checks facts of the fixture that the golden files hold, derived
// from the fixture's definition rather than from the renderer.
func TestContent(t *testing.T) {
	in := fixtureInput(t)
	md, err := Markdown(in)
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	for _, want := range []string{
		// Times count from the first step's start (power-on), 4.25 s before the first packet.
		"Times are seconds from the start of step first-boot (2026-11-23 09:29:55.750 UTC; the first packet came at +4.250 s)",
		// 2,300+3,900 up and 48,800+14,800 down to news.example.com, first at 31 s + 4.25 s.
		"| `news.example.com` | third | quic, ssl | tcp/443, udp/443 | 2 | 6,200 | 63,600 | +35.250 s |",
		// The plain-HTTP request in full.
		"| +6.850 s | `GET` | `connectivity.firstboot.test` | `/check?v=1&os=fbguest` | `fbguest/1 (connectivity)` | `204 No Content` |",
		"| +35.750 s | `POST` (OCSP) | `ocsp.ca.example` | `/` | `fbguest/1` | `200 OK` |",
		"| `ocsp.ca.example` | `10.77.0.1` | 1 request |",
		"| `pool.ntp.example` | `10.77.0.1` | 1 packet sent, 1 reply; NTPv4 client |",
		"| `" + ja4Cur + "` | `e7d705a3286e19ea42f587b344ee6865` | tcp | 1 | `news.example.com` |",
		"| `10.77.0.10` | `" + synTD + "` | `" + synP0f + "` | 64 (initial 64, DF) | 4 | +6.750 s |",
		// A clean capture: no warning, what is normal is a note.
		"| Capture warnings | none |",
		"| Capture notes | 400 checksums left to the sender's NIC (offload; TCP 240, UDP 160): captured before the NIC fills them in, no damage; 2 non-IP frames (arp 2), counted by what they carry |",
		"| DHCP hostname | fbguest |",
		"| DHCP hostname | (no DHCP in this step) |",
		"**4 of 5 met, 1 not met.**",
		"- ❌ **NOT MET** — #3 `at most 0 plain-HTTP hosts` (step update)",
		"  - `plain HTTP: updates.firstboot.test (1 request)`",
		"> **This step failed:** action 2 (console\\_expect, line 33): timed out",
		"![login](screenshots/login.png)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// The responders' SYN-ACK is the lab, not the machine.
	if strings.Contains(s, "S., win 65160") {
		t.Error("report.md shows the responder's SYN-ACK as the machine's fingerprint")
	}
	// No HTML in the Markdown.
	if regexp.MustCompile(`<[a-zA-Z/]`).MatchString(s) {
		t.Error("report.md contains HTML")
	}
	// Sections in study order: whole run, then the steps in order.
	last := -1
	for _, h := range []string{"## Run", "## Expectations", "## Whole run", "## Step: first-boot", "## Step: browse", "## Step: update", "## Step: shutdown"} {
		i := strings.Index(s, h+"\n")
		if i <= last {
			t.Errorf("heading %q at %d, want after %d", h, i, last)
		}
		last = i
	}
}

// TestTimelineGeometry checks the SVG layout against the fixture's times.
func TestTimelineGeometry(t *testing.T) {
	a := fixtureAnalysis()
	zero, _ := origin(a)
	tl := buildTimeline(a, zero)
	if len(tl.Bands) != len(a.Steps) {
		t.Fatalf("%d bands for %d steps", len(tl.Bands), len(a.Steps))
	}
	if len(tl.Marks) != len(a.Conns) {
		t.Fatalf("%d marks for %d connections", len(tl.Marks), len(a.Conns))
	}
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Power-on (4.25 s before the first packet) to the last packet spans
	// 79.25 s over a plot 1160-270-16 = 874 px wide starting at x=270, less
	// 10 px inside each edge: step browse starts at 34.25 s →
	// 280 + 854*34.25/79.25 = 649.1 and is 30 s = 323.3 px wide.
	if b := tl.Bands[1]; b.Step != "browse" || b.X != "649.1" || b.W != "323.3" {
		t.Errorf("browse band at x=%s w=%s, want 649.1, 323.3", b.X, b.W)
	}
	// The biggest connection (C5: 51,100 bytes) gets the largest radius, the
	// smallest (C2: 174 bytes) nearly the smallest.
	var maxR, minR float64 = 0, 100
	var maxUID string
	for i, m := range tl.Marks {
		r := num(m.R)
		if r > maxR {
			maxR, maxUID = r, a.Conns[i].UID
		}
		minR = min(minR, r)
	}
	if maxUID != "C5" || maxR != tlMaxRadius || minR < tlMinRadius || minR > tlMinRadius+0.6 {
		t.Errorf("radii: max %v (%s), min %v", maxR, maxUID, minR)
	}
	// Rows in order of first contact: the DHCP broadcast first, the update server last.
	if tl.Rows[0].Name != "255.255.255.255" || tl.Rows[len(tl.Rows)-1].Name != "updates.firstboot.test" {
		t.Errorf("rows %q … %q", tl.Rows[0].Name, tl.Rows[len(tl.Rows)-1].Name)
	}
	// 79.25 s → ticks every 10 s from the first event: 0 … 70, none negative.
	if len(tl.Ticks) != 8 || tl.Ticks[0].Label != "0 s" || tl.Ticks[0].X != "280.0" || tl.Ticks[7].Label != "70 s" {
		t.Errorf("ticks %+v", tl.Ticks)
	}
	// The legend names the parties of the rows, in the tables' words.
	var legend []string
	for _, l := range tl.Legend {
		legend = append(legend, l.Label)
	}
	if got := strings.Join(legend, " "); got != "first third local" {
		t.Errorf("legend %q, want the rows' parties first third local", got)
	}
	for _, r := range tl.Rows {
		if r.Name == "10.77.0.1" && r.Party != "local" {
			t.Errorf("row %s has party %q, the table says local", r.Name, r.Party)
		}
	}
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct {
		span  float64
		n     int
		label string // of the last tick
	}{
		{0.5, 6, "0.5 s"}, {9, 10, "9 s"}, {75, 8, "70 s"}, {600, 11, "10:00"}, {3 * 3600, 7, "3:00:00"},
	} {
		ts := ticks(tc.span)
		if len(ts) != tc.n || tickLabel(ts[len(ts)-1]) != tc.label {
			t.Errorf("span %v: %d ticks, last %q; want %d, %q", tc.span, len(ts), tickLabel(ts[len(ts)-1]), tc.n, tc.label)
		}
	}
}

const xssName = "<script>alert(1)</script>.example"

// TestUntrustedTrafficIsEscaped puts markup in every field that comes from
// the traffic and checks neither report lets it through.
func TestUntrustedTrafficIsEscaped(t *testing.T) {
	in := fixtureInput(t)
	a := in.Analysis
	a.Destinations = append(a.Destinations, schema.Destination{Name: xssName, Party: "third", Protocols: []string{"http"}, Connections: 1, FirstSeen: at(50)})
	a.Steps[1].Destinations = append(a.Steps[1].Destinations, a.Destinations[len(a.Destinations)-1])
	a.Conns = append(a.Conns, conn("CX", 50, "tcp", 80, "http", xssName, "http_host", "browse", 1, 100, 100))
	a.HTTP = append(a.HTTP, schema.HTTP{ConnID: schema.ConnID{TS: at(50), UID: "CX"}, Method: "GET\"><img src=x onerror=alert(2)>", Host: xssName,
		URI: "/a|b`c`</td><script>alert(3)</script>\u202egnp.exe", UserAgent: "Mozilla\r\n<iframe src=//evil>", Step: "browse"})
	a.TLS = append(a.TLS, schema.TLS{ConnID: schema.ConnID{OrigH: me}, ServerName: "x\"><svg onload=alert(4)>", JA4: "t13d_<b>", Step: "browse"})
	a.Host.DHCPHostname = "<marquee>host</marquee>"
	in.Expectations = expect.Evaluate([]expect.Expect{{Absent: []string{"*.example"}}}, a)

	page, err := HTML(in)
	if err != nil {
		t.Fatal(err)
	}
	h := string(page)
	for _, bad := range []string{"<script", "<img src=x", "<iframe", "<svg onload", "<b>", "<marquee", "\u202e", "\r\n<"} {
		if strings.Contains(h, bad) {
			t.Errorf("report.html contains %q unescaped", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;.example", `\u202egnp.exe`, `Mozilla\x0d\x0a&lt;iframe`} {
		if !strings.Contains(h, want) {
			t.Errorf("report.html lacks the escaped %q", want)
		}
	}

	md, err := Markdown(in)
	if err != nil {
		t.Fatal(err)
	}
	m := string(md)
	if !strings.Contains(m, "`"+xssName+"`") {
		t.Errorf("report.md does not show the name in a code span")
	}
	// A pipe must not split the table row, backticks must not end the code span,
	// a newline must not end the row.
	if !strings.Contains(m, "``/a\\|b`c`</td><script>alert(3)</script>\\u202egnp.exe``") {
		t.Errorf("report.md URI not fenced safely:\n%s", grepLines(m, "alert(3)"))
	}
	if !strings.Contains(m, "`Mozilla\\x0d\\x0a<iframe src=//evil>`") {
		t.Errorf("report.md user agent not cleaned:\n%s", grepLines(m, "Mozilla"))
	}
	for _, l := range strings.Split(m, "\n") {
		// Outside code spans no markup may remain: strip spans and look.
		rest := regexp.MustCompile("(`+)[^`].*?[^`]?(`+)").ReplaceAllString(l, "")
		if regexp.MustCompile(`(^|[^\\])<[a-zA-Z/]`).MatchString(rest) {
			t.Errorf("markup outside a code span: %q", l)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestMarkdownEscaping(t *testing.T) {
	for _, tc := range []struct{ in, code, cell, text string }{
		{"plain", "`plain`", "`plain`", "plain"},
		{"", "—", "—", ""},
		{"a|b", "`a|b`", "`a\\|b`", "a\\|b"},
		{`a\|b`, "`a\\|b`", "`a\\x5c\\|b`", "a\\\\\\|b"},
		{"x`y", "``x`y``", "``x`y``", "x\\`y"},
		{"`edge`", "`` `edge` ``", "`` `edge` ``", "\\`edge\\`"},
		{"<b>*em*</b>", "`<b>*em*</b>`", "`<b>*em*</b>`", "\\<b\\>\\*em\\*\\</b\\>"},
		{"line\nbreak", "`line\\x0abreak`", "`line\\x0abreak`", "line\\\\x0abreak"},
		{"bad\xffutf8", "`bad\\xffutf8`", "`bad\\xffutf8`", "bad\\\\xffutf8"},
	} {
		if got := mdCode(tc.in); got != tc.code {
			t.Errorf("mdCode(%q) = %q, want %q", tc.in, got, tc.code)
		}
		if got := mdCell(tc.in); got != tc.cell {
			t.Errorf("mdCell(%q) = %q, want %q", tc.in, got, tc.cell)
		}
		if got := mdText(tc.in); got != tc.text {
			t.Errorf("mdText(%q) = %q, want %q", tc.in, got, tc.text)
		}
	}
}

func TestCommas(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -45000: "-45,000"} {
		if got := commas(in); got != want {
			t.Errorf("commas(%d) = %q, want %q", in, got, want)
		}
	}
}

// TestLoadAndWrite builds a run directory on disk and checks what Load finds
// and that Write produces both files.
func TestLoadAndWrite(t *testing.T) {
	dir := t.TempDir()
	a := fixtureAnalysis()
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, AnalysisFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := manifest.Write(dir, fixtureManifest()); err != nil {
		t.Fatal(err)
	}
	shots := filepath.Join(dir, ShotsDir)
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	small := testPNG(t, 32, 24)
	for name, content := range map[string][]byte{
		"login.png": small, "failed-update.png": small, "zz-extra.png": small, ".wait_screen.png": small,
		"notes.txt": []byte("not a screenshot"),
		// What OCR read on the failed step's screen (a failed wait_text).
		"failed-update.txt": []byte("# screen 32x24\n1 2 3 4 90: Install <now>\n"),
		// Too large to embed: linked instead.
		"huge.png": append(append([]byte{}, pngMagic...), make([]byte, MaxShotBytes)...),
	} {
		if err := os.WriteFile(filepath.Join(shots, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range in.Screenshots {
		got = append(got, s.Path+"@"+s.Step+":"+strconv.FormatBool(s.Data != nil))
	}
	want := "screenshots/login.png@first-boot:true screenshots/failed-update.png@update:true screenshots/huge.png@:false screenshots/zz-extra.png@:true"
	if strings.Join(got, " ") != want {
		t.Errorf("screenshots:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if in.Manifest == nil || in.Manifest.RunID != "20261123T093000Z-testguest" || len(in.Analysis.Steps) != 4 {
		t.Fatalf("loaded %+v", in)
	}
	if err := Write(dir, in); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page), `src="data:image/png;base64,`); n != 3 {
		t.Errorf("%d embedded screenshots, want 3", n)
	}
	if !strings.Contains(string(page), `<a href="screenshots/huge.png">`) {
		t.Error("the screenshot too large to embed is not linked")
	}
	if !strings.Contains(string(page), "<summary>Text read on failed-update (OCR)</summary><pre># screen 32x24\n1 2 3 4 90: Install &lt;now&gt;\n</pre>") {
		t.Error("the OCR text of the failed step's screen is not shown (escaped) under its screenshot")
	}
	md, err := os.ReadFile(filepath.Join(dir, MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "Text read on failed-update (OCR):\n\n    # screen 32x24\n    1 2 3 4 90: Install <now>\n") {
		t.Errorf("the Markdown report lacks the OCR text as a code block:\n%s", md)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".report") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}

	// Without analysis.json the error says what to do.
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "firstboot analyze") {
		t.Errorf("Load of an empty directory: %v", err)
	}
}

// TestSparseInputs renders analyses with little or nothing in them: no
// packets, no steps, no manifest, no scenario.
func TestSparseInputs(t *testing.T) {
	noSteps := fixtureAnalysis()
	noSteps.Steps = nil
	for _, tc := range []struct {
		name string
		in   *Input
		want []string
	}{
		{"empty capture", &Input{Analysis: &schema.Analysis{}}, []string{"The capture holds no packets.", "No scenario file was found"}},
		{"no steps", &Input{Analysis: noSteps, HasScenario: true}, []string{"The scenario states no expectations.", `id="timeline-svg"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page, err := HTML(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			md, err := Markdown(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(page), w) {
					t.Errorf("report.html lacks %q", w)
				}
			}
			if strings.Contains(string(page), `class="step-band`) || strings.Contains(string(md), "## Step:") {
				t.Error("a step appears in a report without steps")
			}
			if !strings.Contains(string(md), "## Whole run") {
				t.Error("report.md has no whole-run section")
			}
		})
	}
	if _, err := HTML(&Input{}); err == nil {
		t.Error("HTML without an analysis did not fail")
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"", "a", "\xff\xfe", "\u202egnp.exe", "x\x00y", "`|<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := clean(s)
		for _, r := range c {
			if !displayable(r) {
				t.Fatalf("clean(%q) = %q keeps %U", s, c, r)
			}
		}
		// Code spans hold any cleaned string without breaking the table row.
		cell := mdCell(s)
		if strings.ContainsAny(cell, "\n\r") {
			t.Fatalf("mdCell(%q) = %q has a line break", s, cell)
		}
		// GFM's table scanner reads "\\x" as a pair; any other pipe ends the cell.
		for i := 0; i < len(cell); i++ {
			switch cell[i] {
			case '\\':
				i++
			case '|':
				t.Fatalf("mdCell(%q) = %q has an unescaped pipe at %d", s, cell, i)
			}
		}
	})
}
