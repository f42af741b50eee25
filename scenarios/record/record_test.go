package record

import (
	"context"
	"encoding/json"
	"flag"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/lab/screen"
	"github.com/firstboot/firstboot/lab/vnc"
	"github.com/firstboot/firstboot/scenarios"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func requireTesseract(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tesseract"); err != nil {
		testenv.Missing(t, "tesseract not installed (run scripts/provision.sh)")
	}
}

// writeGolden writes the scenario of testdata/<name>'s recording and
// compares it with testdata/<name>-recorded.golden.yaml (-update rewrites
// it); it returns the file, its text and the summary.
func writeGolden(t *testing.T, scenario, name string) (string, []byte, Summary) {
	t.Helper()
	requireTesseract(t)
	out := filepath.Join(t.TempDir(), name+"-recorded.yaml")
	rec := filepath.Join("testdata", name)
	sum, err := Write(context.Background(), Config{Scenario: scenario, Recording: rec, Out: out, Source: rec})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", name+"-recorded.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("written scenario differs from %s:\n%s", golden, got)
	}
	return out, got, sum
}

// TestWriteTestGuest writes the scenario of a real recorded session on the
// test guest (its VGA shows SeaBIOS's text: typing, a click on text, a
// click and a double click on the empty screen, two steps, ended by the
// person), with the real tesseract, and compares it with the golden file.
func TestWriteTestGuest(t *testing.T) {
	out, _, sum := writeGolden(t, "testdata/by-hand.yaml", "testguest")
	if sum.Steps != 2 || sum.TextClicks != 1 || sum.PointClicks != 1 || sum.Typed != 1 || sum.Keys != 1 {
		t.Errorf("summary %+v", sum)
	}
	s, err := scenarios.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "testguest-recorded" || s.Steps[0].Actions[0].Kind != "start" {
		t.Errorf("scenario %s, first action %s", s.Name, s.Steps[0].Actions[0].Kind)
	}
}

// TestWriteDesktop writes the scenario of a real session on the desktop
// machine (recorded by TestRecordReplayDesktop's person): log in at the
// greeter, open the web browser from the Applications menu, quit it from
// its menu. The clicks land on their labels without the icons OCR reads
// beside them, read on the screen before the pointer covered them; the
// menu button, an icon, keeps its coordinates; the password is typed after
// the person's pause (the greeter's text did not change: the user name the
// person typed is no anchor).
func TestWriteDesktop(t *testing.T) {
	_, got, _ := writeGolden(t, "testdata/desktop-by-hand.yaml", "desktop")
	for _, line := range []string{
		"- click_text: 'Log In'  # at 752, 447",
		"- click_text: 'Applications'  # at 59, 13",
		"- click_text: 'Web Browser'  # at 70, 143",
		"- keys: '<enter>'\n      - wait: 15s\n",
		"- click: [1256, 91]\n",
		"- click_text: 'Quit'  # at 1001, 733",
	} {
		if !strings.Contains(string(got), line) {
			t.Errorf("the scenario lacks %q", line)
		}
	}
}

// TestWriteBlankScreen: a screen without text (a booting machine's black
// screen) gets a wait_screen on a reference crop around the click, saved
// beside the scenario; the crop is the screen's pixels there, and the click
// stays at its coordinates.
func TestWriteBlankScreen(t *testing.T) {
	requireTesseract(t)
	rec := t.TempDir()
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			img.Set(x, y, color.RGBA{uint8(x / 3), uint8(y / 2), 40, 255})
		}
	}
	f, err := os.Create(filepath.Join(rec, "screen-0001.png"))
	if err != nil {
		t.Fatal(err)
	}
	png.Encode(f, img)
	f.Close()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var lines []string
	for _, ev := range []vnc.Event{
		{Time: t0, Kind: "step", Name: "boot"},
		{Time: t0.Add(90 * time.Second), Kind: "pointer", Buttons: 1, X: 620, Y: 20, Screen: "screen-0001.png"},
		{Time: t0.Add(90*time.Second + 80*time.Millisecond), Kind: "pointer", X: 620, Y: 20},
		{Time: t0.Add(100 * time.Second), Kind: "end", Name: vnc.EndedByMachine},
	} {
		b, _ := json.Marshal(ev)
		lines = append(lines, string(b))
	}
	if err := os.WriteFile(filepath.Join(rec, vnc.EventsFile), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "blank.yaml")
	sum, err := Write(context.Background(), Config{Scenario: "testdata/by-hand.yaml", Recording: rec, Out: out, Source: rec})
	if err != nil {
		t.Fatal(err)
	}
	if sum.ScreenWaits != 1 || sum.PointClicks != 1 || sum.TextWaits != 0 {
		t.Errorf("summary %+v", sum)
	}
	s, err := scenarios.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	acts := s.Steps[0].Actions
	var kinds []string
	for _, a := range acts {
		kinds = append(kinds, a.Kind)
	}
	// No shutdown: the machine powered off by itself.
	if strings.Join(kinds, " ") != "start wait_screen click wait" {
		t.Fatalf("actions %v", kinds)
	}
	ws := acts[1].WaitScreen
	// The crop slides inside the screen: 240x120 at the top right corner.
	if want := []int{400, 0, 240, 120}; len(ws.Region) != 4 || ws.Region[0] != want[0] || ws.Region[1] != want[1] || ws.Region[2] != want[2] || ws.Region[3] != want[3] {
		t.Errorf("region %v, want %v", ws.Region, want)
	}
	if ws.Timeout.D() != 5*time.Minute {
		t.Errorf("timeout %s: want three times the 90 s the person waited, in minutes", ws.Timeout)
	}
	rf, err := os.Open(ws.Reference)
	if err != nil {
		t.Fatalf("reference crop: %v", err)
	}
	ref, err := png.Decode(rf)
	rf.Close()
	if err != nil {
		t.Fatal(err)
	}
	if d, err := screen.RegionDiff(img, ref, ws.Region); err != nil || d != 0 {
		t.Errorf("the crop differs from the screen in its region: %v %v", d, err)
	}
	if p := acts[2].Point; p.X != 620 || p.Y != 20 {
		t.Errorf("click at %d,%d", p.X, p.Y)
	}
}

// TestHeader keeps the recorded scenario's text and comments, takes the new
// name, and drops an empty steps list.
func TestHeader(t *testing.T) {
	got, err := header([]byte("# my machine\nname: old\nimage: {builtin: testguest}  # the guest\nsteps: []\n"), "new-one")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# my machine\nname: new-one\nimage: {builtin: testguest}  # the guest\n"; string(got) != want {
		t.Errorf("header %q, want %q", got, want)
	}
	if _, err := header([]byte("name: x\nsteps:\n  - name: a\n    actions: [start]\n"), "y"); err == nil {
		t.Error("a scenario with steps was taken")
	}
}

// TestClickUnderThePointer: screenshots include the pointer, and a label it
// covers reads badly (here "Web Browser" as "web Byowser"): no anchor is
// made of it, so the click keeps its coordinates, while a label beside it
// still anchors.
func TestClickUnderThePointer(t *testing.T) {
	requireTesseract(t)
	data, err := os.ReadFile("testdata/cursor-on-web-browser.png")
	if err != nil {
		t.Fatal(err)
	}
	text, err := screen.OCR(context.Background(), data, screen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if phrase, _, ok := clickAnchor(text, image.Pt(70, 144)); ok {
		t.Errorf("anchored the click under the pointer to %q", phrase)
	}
	if phrase, index, ok := clickAnchor(text, image.Pt(60, 94)); !ok || phrase != "File Manager" || index != 0 {
		t.Errorf("click on File Manager: %q %d %v", phrase, index, ok)
	}
}
