package main

import (
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/vnctest"
	"github.com/firstboot/firstboot/lab/screen"
	"github.com/firstboot/firstboot/lab/vnc"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/scenarios"
)

// viewer is the person of the record test: a VNC viewer that reads its
// screen the way a person does (here with OCR) and clicks on what it reads.
type viewer struct {
	t *testing.T
	c *vnctest.Client
	r *liveRun // the run it watches, whose output explains a lost display
}

// find waits until the screen shows re (in region, when not empty) and
// returns the first match.
func (v viewer) find(re string, region image.Rectangle, timeout time.Duration) screen.Match {
	v.t.Helper()
	rx := regexp.MustCompile(re)
	var last screen.Text
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		img, err := v.c.Screen()
		if err != nil {
			v.t.Fatalf("viewer: %v; the run said:\n%s", err, v.r.said())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		text, err := screen.OCRImage(ctx, img, screen.Options{})
		cancel()
		if err != nil {
			v.t.Fatalf("viewer: %v", err)
		}
		if ms := text.Find(rx, region); len(ms) > 0 {
			return ms[0]
		}
		last = text
	}
	v.t.Fatalf("the person never saw /%s/ in %s; the screen said:\n%s", re, timeout, last)
	return screen.Match{}
}

func (v viewer) click(m screen.Match) {
	v.t.Helper()
	p := m.Center()
	if err := v.c.Click(p.X, p.Y); err != nil {
		v.t.Fatalf("viewer: click: %v", err)
	}
}

func (v viewer) typeText(s string) {
	v.t.Helper()
	if err := v.c.Type(s, 80*time.Millisecond); err != nil {
		v.t.Fatalf("viewer: type: %v", err)
	}
}

// TestRecordReplayDesktop is record and replay on the real desktop: a
// person (a scripted VNC viewer that reads the screen by OCR) records a
// session with firstboot record — log in at LightDM's greeter by typing
// and clicking "Log In", open the web browser from Xfce's Applications
// menu, let Firefox ESR make its first-run requests, quit it from its menu
// (a click on the ≡ icon, which has no text, then on "Quit") — making the
// steps with Enter in the terminal. The written scenario
// validates, anchors the clicks to their text, and, replayed unattended on
// a fresh run, reaches the same final screen and has the browser's
// destinations in the same step as the recorded run.
func TestRecordReplayDesktop(t *testing.T) {
	requireLab(t)
	bin := buildFirstboot(t)
	state, dir := t.TempDir(), t.TempDir()
	cache := os.Getenv("FIRSTBOOT_TEST_IMAGE_CACHE")
	if cache == "" {
		home, _ := os.UserCacheDir()
		cache = filepath.Join(home, "firstboot", "images")
	}
	common := []string{"--state-dir", state, "--image-cache", cache, "--accel", "tcg"}
	run := func(args ...string) (string, int) { return runBinary(t, bin, "", append(args, common...)...) }
	if out, code := run("image", "build", "debian-12-desktop"); code != 0 {
		t.Fatalf("image build debian-12-desktop: exit %d\n%s", code, out)
	}
	manual := filepath.Join(dir, "desktop-by-hand.yaml")
	write(t, manual, `# The desktop machine, for a person to drive.
image: {builtin: debian-12-desktop}
machine: {cpus: 2, memory: 2GiB}
capture: {window: 30m}
first_party: [debian.org, debian.net]
`)
	out := filepath.Join(dir, "desktop-recorded.yaml")
	recRuns, playRuns := filepath.Join(dir, "recorded"), filepath.Join(dir, "replayed")

	t0 := time.Now()
	r := startLive(t, bin, append([]string{"record", manual, "--out", out, "--display", "127.0.0.1:0", "--runs-dir", recRuns}, common...)...)
	c, err := vnctest.Dial(r.Display)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := viewer{t, c, r}
	p.find(`^Log In$`, image.Rectangle{}, 15*time.Minute)
	t.Logf("greeter after %s", time.Since(t0).Round(time.Second))
	r.say("login")
	r.expect(`step "login" has begun`, time.Minute)
	p.typeText("firstboot")
	c.Press(vnctest.KeyReturn)
	// The greeter empties the password field when PAM's prompt arrives,
	// which nothing on the screen shows: a person gives it a moment.
	time.Sleep(15 * time.Second)
	p.typeText("firstboot")
	p.click(p.find(`^Log In$`, image.Rectangle{}, time.Minute))
	panel := image.Rect(0, 0, 400, 30)
	p.find(`Applications`, panel, 10*time.Minute)
	t.Logf("desktop after %s", time.Since(t0).Round(time.Second))
	time.Sleep(5 * time.Second)
	r.say("browser")
	r.expect(`step "browser" has begun`, time.Minute)
	p.click(p.find(`Applications`, panel, time.Minute))
	p.click(p.find(`Web Browser`, image.Rectangle{}, 2*time.Minute))
	p.find(`(?i)firefox|mozilla`, image.Rectangle{}, 10*time.Minute)
	t.Logf("browser after %s", time.Since(t0).Round(time.Second))
	time.Sleep(45 * time.Second) // the browser's first-run requests
	r.say("close")
	r.expect(`step "close" has begun`, time.Minute)
	// Firefox's menu button (≡, no text: the recording keeps its
	// coordinates), then Quit. Ctrl+Q would depend on the new window
	// having the keyboard focus, which it does not always have.
	if err := c.Click(1256, 91); err != nil {
		t.Fatal(err)
	}
	p.click(p.find(`^Quit`, image.Rectangle{}, 2*time.Minute))
	p.find(`^Home$`, image.Rectangle{}, 2*time.Minute)
	time.Sleep(5 * time.Second)
	r.stdin.Close() // Ctrl-D: the end
	said, code := r.wait(10 * time.Minute)
	t.Logf("recording session: %s", time.Since(t0).Round(time.Second))
	if code != 0 || !strings.Contains(said, "recorded scenario: "+out) {
		t.Fatalf("record: exit %d\n%s", code, said)
	}
	recorded, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s:\n%s", out, recorded)
	for _, want := range []string{"type: 'firstboot'", "keys: '<enter>'", "click_text: 'Log In'", "click_text: 'Applications'", "click_text: 'Web Browser'",
		"click: [1256, 91]", "click_text: 'Quit'", "- name: 'browser'", "wait_text:", "shutdown:"} {
		if !strings.Contains(string(recorded), want) {
			t.Errorf("the recorded scenario lacks %q", want)
		}
	}
	if o, code := run("scenario", "validate", out); code != 0 {
		t.Fatalf("scenario validate: exit %d\n%s", code, o)
	}

	t0 = time.Now()
	o, code := run("run", out, "--runs-dir", playRuns)
	t.Logf("replay: %s, exit %d", time.Since(t0).Round(time.Second), code)
	recDir, playDir := onlyRun(t, recRuns), onlyRun(t, playRuns)
	if code != 0 {
		if b, err := os.ReadFile(filepath.Join(playDir, "firstboot.log")); err == nil {
			t.Logf("firstboot.log:\n%s", b)
		}
		t.Fatalf("replay: exit %d\n%s", code, o)
	}
	m, err := manifest.Read(playDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(timelineSteps(t, m), " "); got != "boot login browser close" {
		t.Errorf("replayed steps %q", got)
	}

	// The same final screen: the replay's last wait_text passed; beyond
	// that, both screens say mostly the same words.
	a, b := screenWords(t, filepath.Join(recDir, scenarios.RecordingDir, vnc.FinalScreen)), screenWords(t, filepath.Join(playDir, "screenshots", "final.png"))
	if common := overlap(a, b); common < 0.6 {
		t.Errorf("final screens differ: %.0f%% of words in common\nrecorded: %v\nreplayed: %v", common*100, a, b)
	}

	// The browser's destinations are in the browser step in both runs,
	// and in no step before it.
	recVendor, playVendor := vendorNames(t, recDir), vendorNames(t, playDir)
	t.Logf("browser vendor names per step: recorded %v, replayed %v", recVendor, playVendor)
	if len(playVendor["browser"]) == 0 || len(recVendor["browser"]) == 0 {
		t.Error("a browser step contacted no browser vendor name")
	}
	if overlap(recVendor["browser"], playVendor["browser"]) == 0 {
		t.Error("the two browser steps share no destination")
	}
	for _, st := range []string{"boot", "login"} {
		if len(playVendor[st]) > 0 || len(recVendor[st]) > 0 {
			t.Errorf("step %s contacted the browser's vendor before the browser ran", st)
		}
	}
}

func onlyRun(t *testing.T, runs string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(runs, "*"))
	if len(dirs) != 1 {
		t.Fatalf("want one run in %s, found %v", runs, dirs)
	}
	return dirs[0]
}

// screenWords are the words of four letters or more OCR reads confidently
// on a screenshot, without digits (the clock differs).
func screenWords(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	text, err := screen.OCRImage(context.Background(), img, screen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range text.Lines {
		for _, w := range l.Words {
			if len(w.Text) >= 4 && w.Conf >= 70 && !strings.ContainsAny(w.Text, "0123456789") {
				out = append(out, w.Text)
			}
		}
	}
	sort.Strings(out)
	return out
}

// overlap is the share of the smaller set found in the other.
func overlap(a, b []string) float64 {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	n := 0
	for _, x := range a {
		if in[x] {
			n++
		}
	}
	return float64(n) / float64(min(len(a), len(b)))
}

// vendorNames are the Firefox vendor destinations of each step.
func vendorNames(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, st := range readAnalysis(t, dir).Steps {
		for _, d := range st.Destinations {
			for _, v := range browserVendor {
				if d.Name == v || strings.HasSuffix(d.Name, "."+v) {
					out[st.Name] = append(out[st.Name], d.Name)
				}
			}
		}
	}
	return out
}
