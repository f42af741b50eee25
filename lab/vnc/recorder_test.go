package vnc

import (
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRecorder: every event is written with its time; the screen is
// photographed before the first press of a burst, under every click, and
// when the pointer starts to move after a pause, not for further motion,
// key releases or presses inside a burst; steps
// start a new burst; the end keeps the last screen unless the machine is
// off.
func TestRecorder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "recording")
	shots := 0
	shoot := func(ctx context.Context, path string) error {
		shots++
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return png.Encode(f, image.NewGray(image.Rect(0, 0, 4, 4)))
	}
	r, err := NewRecorder(dir, shoot, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	r.Step("boot", at(0))
	r.Input(Input{Time: at(1 * time.Second), Kind: Pointer, X: 5, Y: 5})                     // motion after a pause: shot 1
	r.Input(Input{Time: at(1100 * time.Millisecond), Kind: Pointer, X: 6, Y: 5})             // more motion: none
	r.Input(Input{Time: at(2 * time.Second), Kind: Key, Down: true, Keysym: 'a'})            // burst: shot 2
	r.Input(Input{Time: at(2100 * time.Millisecond), Kind: Key, Keysym: 'a'})                // release
	r.Input(Input{Time: at(2200 * time.Millisecond), Kind: Key, Down: true, Keysym: 'b'})    // same burst
	r.Input(Input{Time: at(2300 * time.Millisecond), Kind: Pointer, Buttons: 1, X: 9, Y: 9}) // click: shot 3
	r.Input(Input{Time: at(2400 * time.Millisecond), Kind: Pointer, X: 9, Y: 9})             // release
	r.Input(Input{Time: at(2500 * time.Millisecond), Kind: Pointer, Buttons: 8, X: 9, Y: 9}) // wheel, in the burst
	r.Step("next", at(2600*time.Millisecond))
	r.Input(Input{Time: at(2700 * time.Millisecond), Kind: Key, Down: true, Keysym: 'c'}) // first of a step: shot 4
	r.Input(Input{Time: at(9 * time.Second), Kind: Key, Down: true, Keysym: 'd'})         // after a pause: shot 5
	r.End(at(10*time.Second), EndedByPerson)                                              // final
	r.End(at(11*time.Second), EndedByMachine)                                             // no screen to take
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err := ReadEvents(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ kind, screen string }{
		{"step", ""}, {"pointer", "screen-0001.png"}, {"pointer", ""}, {"key", "screen-0002.png"}, {"key", ""}, {"key", ""},
		{"pointer", "screen-0003.png"}, {"pointer", ""}, {"pointer", ""}, {"step", ""},
		{"key", "screen-0004.png"}, {"key", "screen-0005.png"}, {"end", FinalScreen}, {"end", ""},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, w := range want {
		if evs[i].Kind != w.kind || evs[i].Screen != w.screen {
			t.Errorf("event %d: %s screen %q, want %s %q", i, evs[i].Kind, evs[i].Screen, w.kind, w.screen)
		}
		if w.screen != "" {
			if _, err := os.Stat(filepath.Join(dir, w.screen)); err != nil {
				t.Errorf("event %d: %v", i, err)
			}
		}
	}
	if shots != 6 || !evs[3].Time.Equal(at(2*time.Second)) || evs[6].X != 9 || evs[6].Buttons != 1 || evs[12].Name != EndedByPerson {
		t.Errorf("%d shots; events %+v", shots, evs)
	}
}
