package scenarios

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/draw"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/lab"
)

// screenMachine shows a sequence of real screenshots of the debian-12-desktop
// machine (lab/screen/testdata, taken by QEMU's screendump): each
// Screenshot call shows the next, the last one stays. Pointer events are
// recorded. Everything else is the embedded fakeMachine's.
type screenMachine struct {
	fakeMachine
	shots  []string
	shown  int
	events []lab.PointerEvent
}

func (m *screenMachine) Screenshot(_ context.Context, path string) error {
	i := min(m.shown, len(m.shots)-1)
	m.shown++
	data, err := os.ReadFile(m.shots[i])
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func (m *screenMachine) Pointer(_ context.Context, evs []lab.PointerEvent) error {
	m.events = append(m.events, evs...)
	return nil
}

func realScreens(t *testing.T, names ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("tesseract"); err != nil {
		testenv.Missing(t, "tesseract not installed (scripts/provision.sh installs tesseract-ocr)")
	}
	var out []string
	for _, n := range names {
		out = append(out, filepath.Join("..", "lab", "screen", "testdata", n))
	}
	return out
}

// runOnScreens runs a scenario on a screenMachine showing the named
// screenshots, in dir.
func runOnScreens(t *testing.T, dir, scenario string, shots ...string) (*screenMachine, *Env, error) {
	t.Helper()
	m := &screenMachine{fakeMachine: fakeMachine{stopped: make(chan struct{})}, shots: realScreens(t, shots...)}
	s, err := Parse("gui.yaml", []byte(scenario))
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Machine: m, Start: func(context.Context) error { return nil }, Dir: dir, Timeline: &Timeline{}}
	return m, env, RunSteps(context.Background(), s, env)
}

// clicksAt returns where the recorded events pressed the left button.
func clicksAt(evs []lab.PointerEvent) []image.Point {
	var at image.Point
	var out []image.Point
	for _, e := range evs {
		switch e.Kind {
		case lab.PointerMove:
			at = image.Pt(e.X, e.Y)
		case lab.PointerDown:
			out = append(out, at)
		}
	}
	return out
}

// TestScreenTextActions runs wait_text and click_text with the real
// tesseract on real screenshots: the login screen, then the desktop.
func TestScreenTextActions(t *testing.T) {
	m, _, err := runOnScreens(t, t.TempDir(), `name: gui
image: {builtin: debian-12-desktop}
steps:
  - name: login
    actions:
      - start
      - click_text: "^Log In$"
      - wait_text: { text: "Applications", region: [0, 0, 400, 30], timeout: 1m }
      - click_text: { text: "Applications", double: true }
      - drag: { from: [10, 20], to: [300, 400] }
`, "greeter.png", "greeter.png", "greeter.png", "desktop.png")
	if err != nil {
		t.Fatal(err)
	}
	// The greeter's "Log In" button spans about 716–788 × 430–463 on the
	// screenshot; "Applications" in the panel about 20–100 × 4–20.
	clicks := clicksAt(m.events)
	if len(clicks) != 4 {
		t.Fatalf("clicks %v, want Log In, Applications twice, and the drag's press", clicks)
	}
	if !clicks[0].In(image.Rect(716, 430, 788, 463)) {
		t.Errorf("Log In clicked at %v", clicks[0])
	}
	if !clicks[1].In(image.Rect(20, 4, 100, 20)) || clicks[2] != clicks[1] {
		t.Errorf("Applications double-clicked at %v and %v", clicks[1], clicks[2])
	}
	if clicks[3] != image.Pt(10, 20) || m.events[len(m.events)-3] != (lab.PointerEvent{Kind: lab.PointerMove, X: 300, Y: 400}) {
		t.Errorf("drag: %+v", m.events)
	}
	// click_text reads twice (the text must stay in place), wait_text read
	// the greeter (no panel) before the desktop, click_text twice again.
	if m.shown != 6 {
		t.Errorf("%d screenshots read, want 6 (greeter three times, desktop three times)", m.shown)
	}
}

// TestWaitTextTimeout: a wait_text that never sees its text fails the step
// and leaves the screen it judged and the text OCR read on it.
func TestWaitTextTimeout(t *testing.T) {
	dir := t.TempDir()
	m, env, err := runOnScreens(t, dir, `name: gui
image: {builtin: debian-12-desktop}
steps:
  - name: desktop
    actions:
      - start
      - wait_text: { text: "Applications", timeout: 15s }
`, "greeter.png")
	var se *StepError
	if !errors.As(err, &se) || se.Step != "desktop" || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never showed /Applications/") {
		t.Fatalf("err = %v", err)
	}
	png, err := os.ReadFile(filepath.Join(dir, "screenshots", "failed-desktop.png"))
	want, _ := os.ReadFile(m.shots[0])
	if err != nil || string(png) != string(want) {
		t.Errorf("failed-desktop.png is not the screen wait_text read (%v)", err)
	}
	txt, err := os.ReadFile(filepath.Join(dir, "screenshots", "failed-desktop.txt"))
	if err != nil || !strings.Contains(string(txt), ": Log In\n") {
		t.Errorf("failed-desktop.txt: %q, %v", txt, err)
	}
	entries := env.Timeline.Entries()
	last := entries[len(entries)-1]
	if !strings.Contains(strings.Join(last.Artifacts, " "), "screenshots/failed-desktop.txt") {
		t.Errorf("the step's artifacts do not list the OCR text: %+v", last)
	}
}

// TestClickTextWaitsForStillText: text that moved between two readings
// (a window still opening) is clicked where it stays, not where it was.
func TestClickTextWaitsForStillText(t *testing.T) {
	dir := t.TempDir()
	shots := realScreens(t, "greeter.png")
	// The same real screen, 40 pixels further right.
	f, err := os.Open(shots[0])
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	moved := image.NewRGBA(img.Bounds())
	draw.Draw(moved, img.Bounds().Add(image.Pt(40, 0)), img, img.Bounds().Min, draw.Src)
	var buf bytes.Buffer
	if err := png.Encode(&buf, moved); err != nil {
		t.Fatal(err)
	}
	movedPath := filepath.Join(dir, "moved.png")
	if err := os.WriteFile(movedPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &screenMachine{fakeMachine: fakeMachine{stopped: make(chan struct{})}, shots: []string{shots[0], movedPath}}
	s, err := Parse("gui.yaml", []byte("name: gui\nimage: {builtin: debian-12-desktop}\nsteps:\n  - name: s\n    actions:\n      - start\n      - click_text: \"^Log In$\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Machine: m, Start: func(context.Context) error { return nil }, Dir: dir, Timeline: &Timeline{}}
	if err := RunSteps(context.Background(), s, env); err != nil {
		t.Fatal(err)
	}
	clicks := clicksAt(m.events)
	if len(clicks) != 1 || !clicks[0].In(image.Rect(716+40, 430, 788+40, 463)) || m.shown != 3 {
		t.Errorf("clicked %v after %d readings; want one click on the moved button after 3", clicks, m.shown)
	}
}

// TestClickTextIndex picks among several matches in reading order and
// gives up with a clear error when there are fewer than asked for.
func TestClickTextIndex(t *testing.T) {
	start := time.Now()
	m, _, err := runOnScreens(t, t.TempDir(), `name: gui
image: {builtin: debian-12-desktop}
steps:
  - name: s
    actions:
      - start
      - click_text: { text: "Cancel|Log In", index: -1 }
      - click_text: { text: "Cancel|Log In", index: 0, button: right }
      - click_text: { text: "Cancel|Log In", index: 2, timeout: 5s }
`, "greeter.png")
	if err == nil || !strings.Contains(err.Error(), "showed /Cancel|Log In/ 2 times, never match 2") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > time.Minute {
		t.Errorf("took %s", time.Since(start))
	}
	var downs []lab.PointerEvent
	for _, e := range m.events {
		if e.Kind == lab.PointerDown {
			downs = append(downs, e)
		}
	}
	clicks := clicksAt(m.events)
	// Reading order: Cancel (left) then Log In (right), on one row.
	if len(clicks) != 2 || clicks[0].X < 700 || clicks[1].X > 600 || downs[1].Button != "right" {
		t.Errorf("clicks %v %+v", clicks, downs)
	}
}
