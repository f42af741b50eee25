package report

import (
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/internal/browsertest"
	"github.com/firstboot/firstboot/results/schema"
)

func chromium(t *testing.T, args ...string) []byte { return browsertest.Run(t, args...) }

func tail(s string, n int) string { return browsertest.Tail(s, n) }

// TestBrowserRendersReport opens report.html in a real browser: the DOM must
// hold the steps, the SVG timeline with one band per step and no script; the
// page must load nothing from the network; the screenshot must show the
// timeline's colours.
func TestBrowserRendersReport(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	dir := t.TempDir()
	in := fixtureInput(t)
	a := in.Analysis
	// An attacker-chosen destination name must stay text in the real DOM.
	a.Destinations = append(a.Destinations, schema.Destination{Name: xssName, Party: "third", Protocols: []string{"http"}, Connections: 1, FirstSeen: at(50)})
	a.Conns = append(a.Conns, conn("CX", 50, "tcp", 80, "http", xssName, "http_host", "browse", 1, 100, 100))
	a.HTTP = append(a.HTTP, schema.HTTP{ConnID: schema.ConnID{TS: at(50), UID: "CX"}, Method: "GET", Host: xssName, URI: `/"><script>alert(2)</script>`, Step: "browse"})
	if err := Write(dir, in); err != nil {
		t.Fatal(err)
	}
	url := "file://" + filepath.Join(dir, HTMLFile)

	dom := string(chromium(t, "--dump-dom", url))
	if !strings.Contains(dom, `id="timeline-svg"`) {
		t.Fatalf("the DOM has no timeline SVG:\n%s", tail(dom, 3000))
	}
	bands := regexp.MustCompile(`<rect class="step-band[^"]*" data-step="([^"]*)"`).FindAllStringSubmatch(dom, -1)
	if len(bands) != len(a.Steps) {
		t.Errorf("%d step bands in the DOM, want %d", len(bands), len(a.Steps))
	}
	for i, v := range a.Steps {
		if i < len(bands) && bands[i][1] != v.Name {
			t.Errorf("band %d is step %q, want %q", i, bands[i][1], v.Name)
		}
		if !strings.Contains(dom, "<h2>Step: "+v.Name+"</h2>") {
			t.Errorf("the DOM has no section for step %q", v.Name)
		}
	}
	if n := strings.Count(dom, `<g class="conn `); n != len(a.Conns) {
		t.Errorf("%d connection marks in the DOM, want %d", n, len(a.Conns))
	}
	if strings.Contains(strings.ToLower(dom), "<script") {
		t.Error("the DOM contains a script element: traffic content became markup")
	}
	if !strings.Contains(dom, "&lt;script&gt;alert(1)&lt;/script&gt;.example") {
		t.Error("the attacker-chosen destination name is not shown as text")
	}
	// Nothing may be fetched: no http(s) or protocol-relative src/href/xlink:href,
	// no <link>, and every image is a data: URI.
	for _, m := range regexp.MustCompile(`(?i)\s(src|href|xlink:href|srcset|action|poster|data)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(dom, -1) {
		v := strings.ToLower(strings.TrimSpace(m[2]))
		if strings.HasPrefix(v, "http:") || strings.HasPrefix(v, "https:") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "ftp:") {
			t.Errorf("the page references the network: %s=%q", m[1], m[2])
		}
		if strings.EqualFold(m[1], "src") && !strings.HasPrefix(v, "data:image/png;base64,") {
			t.Errorf("an image is not embedded: src=%.80q", m[2])
		}
	}
	if regexp.MustCompile(`(?i)<link\b|@import|url\(`).MatchString(dom) {
		t.Error("the page loads a stylesheet or resource by URL")
	}
	if !strings.Contains(dom, `src="data:image/png;base64,`) {
		t.Error("the screenshot is not embedded")
	}

	shot := filepath.Join(dir, "out.png")
	chromium(t, "--screenshot="+shot, "--window-size=1200,2000", url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the browser's screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 2000 {
		t.Errorf("screenshot is %v, want 1200x2000", b)
	}
	colours := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), 255}]++
		}
	}
	if len(colours) < 50 {
		t.Errorf("screenshot has %d distinct colours: nothing rendered?", len(colours))
	}
	// The first step's band colour (#e7f0fa) and the third-party ink (#d9480f)
	// must both be on screen: the timeline was drawn.
	near := func(want color.RGBA, tol int) int {
		n := 0
		for c, k := range colours {
			if abs(int(c.R)-int(want.R)) <= tol && abs(int(c.G)-int(want.G)) <= tol && abs(int(c.B)-int(want.B)) <= tol {
				n += k
			}
		}
		return n
	}
	if n := near(color.RGBA{0xe7, 0xf0, 0xfa, 255}, 2); n < 500 {
		t.Errorf("only %d sampled pixels of the step band colour", n)
	}
	if n := near(color.RGBA{0xd9, 0x48, 0x0f, 255}, 6); n < 20 {
		t.Errorf("only %d sampled pixels of the third-party colour", n)
	}
	t.Logf("screenshot %s: %d distinct colours", shot, len(colours))
	if dst := os.Getenv("FIRSTBOOT_REPORT_SHOT"); dst != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(dst, data, 0o644)
		page, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
		os.WriteFile(strings.TrimSuffix(dst, ".png")+".html", page, 0o644)
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
