package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// browserVendor are the name suffixes of Firefox's vendor that its first
// run showed in the analysis: what the desktop scenario's expectations
// allow only from the browser step on.
var browserVendor = []string{"mozilla.org", "mozilla.com", "mozilla.net", "firefox.com"}

// TestRunDesktop is the GUI path end to end, as a new user would run it:
// `firstboot image build debian-12-desktop` (from scratch in CI; 4.5
// minutes here with the base packages cached), then `firstboot run
// scenarios/debian-12-desktop.yaml` under TCG (7 minutes on a quiet machine
// here, 12–17 busy): the machine boots to LightDM's graphical login, the
// steps log in by typing and clicking on "Log In" (OCR of the real screen),
// wait for Xfce's panel, open the web browser from the Applications menu by
// clicking on its text, and let Firefox ESR make its first-run requests. The run must pass its
// expectations (exit 0), and the report's browser step must list what
// Firefox contacted, while the steps before it contacted no browser vendor.
//
// The image goes to FIRSTBOOT_TEST_IMAGE_CACHE when set (or the user's
// image cache, like `firstboot image build`).
func TestRunDesktop(t *testing.T) {
	requireLab(t)
	bin := buildFirstboot(t)
	state := t.TempDir()
	cache := os.Getenv("FIRSTBOOT_TEST_IMAGE_CACHE")
	if cache == "" {
		home, _ := os.UserCacheDir()
		cache = filepath.Join(home, "firstboot", "images")
	}
	run := func(args ...string) (string, int) {
		return runBinary(t, bin, "", append(args, "--state-dir", state, "--image-cache", cache, "--accel", "tcg")...)
	}
	t0 := time.Now()
	if out, code := run("image", "build", "debian-12-desktop"); code != 0 {
		t.Fatalf("image build debian-12-desktop: exit %d\n%s", code, out)
	}
	t.Logf("image build debian-12-desktop: %s", time.Since(t0).Round(time.Second))

	scenario, err := filepath.Abs("../../scenarios/debian-12-desktop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	runs := t.TempDir()
	t0 = time.Now()
	out, code := run("run", scenario, "--runs-dir", runs)
	t.Logf("run debian-12-desktop: %s, exit %d", time.Since(t0).Round(time.Second), code)
	dirs, _ := filepath.Glob(filepath.Join(runs, "*-debian-12-desktop-*"))
	if len(dirs) != 1 {
		t.Fatalf("want one run directory, found %v\n%s", dirs, out)
	}
	dir := dirs[0]
	if code != 0 {
		for _, f := range []string{"firstboot.log", "report.md"} {
			if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
				t.Logf("%s:\n%s", f, b)
			}
		}
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	m, err := manifest.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != manifest.StatusComplete {
		t.Fatalf("status %s: %s", m.Status, m.Reason)
	}
	for _, e := range m.Timeline {
		if e.Kind == manifest.KindStep {
			t.Logf("step %-14s %s", e.Name, e.End.Sub(e.Start).Round(time.Second))
		}
	}
	for _, shot := range []string{"login-screen", "desktop", "browser-started", "browser"} {
		if fi, err := os.Stat(filepath.Join(dir, "screenshots", shot+".png")); err != nil || fi.Size() == 0 {
			t.Errorf("screenshot %s: %v", shot, err)
		}
	}

	data, err := os.ReadFile(filepath.Join(dir, "analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	var a schema.Analysis
	if err := json.Unmarshal(data, &a); err != nil {
		t.Fatal(err)
	}
	vendor := map[string][]string{}
	for _, st := range a.Steps {
		for _, d := range st.Destinations {
			for _, v := range browserVendor {
				if d.Name == v || strings.HasSuffix(d.Name, "."+v) {
					vendor[st.Name] = append(vendor[st.Name], d.Name)
				}
			}
		}
	}
	t.Logf("browser vendor names per step: %v", vendor)
	if len(vendor["browser"]) == 0 {
		t.Error("the browser step contacted no Firefox vendor name")
	}
	for _, st := range []string{"boot", "login", "idle"} {
		if len(vendor[st]) > 0 {
			t.Errorf("step %s contacted the browser's vendor before the browser ran: %v", st, vendor[st])
		}
	}
	report, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(report)
	if i := strings.Index(section, "## Step: browser"); i >= 0 {
		section = section[i:]
		if j := strings.Index(section[1:], "\n## "); j >= 0 {
			section = section[:j+1]
		}
	} else {
		t.Fatalf("report.md has no browser step:\n%s", report)
	}
	for _, name := range vendor["browser"] {
		if !strings.Contains(section, name) {
			t.Errorf("the report's browser step does not list %s", name)
		}
	}
}
