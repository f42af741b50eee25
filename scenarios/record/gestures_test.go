package record

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/lab/vnc"
)

// script builds a recording the way a viewer's events arrive: each call
// advances the clock by its gap first.
type script struct {
	t      time.Time
	events []vnc.Event
}

func newScript() *script { return &script{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)} }

func (s *script) at(gap time.Duration, ev vnc.Event) *script {
	s.t = s.t.Add(gap)
	ev.Time = s.t
	s.events = append(s.events, ev)
	return s
}

func (s *script) step(gap time.Duration, name string) *script {
	return s.at(gap, vnc.Event{Kind: "step", Name: name})
}

func (s *script) key(gap time.Duration, sym uint32, down bool) *script {
	return s.at(gap, vnc.Event{Kind: "key", Keysym: sym, Down: down})
}

// press is a key down and up.
func (s *script) press(gap time.Duration, sym uint32) *script {
	return s.key(gap, sym, true).key(30*time.Millisecond, sym, false)
}

func (s *script) typ(gap time.Duration, text string) *script {
	for i, r := range text {
		g := 80 * time.Millisecond
		if i == 0 {
			g = gap
		}
		s.press(g, uint32(r))
	}
	return s
}

func (s *script) ptr(gap time.Duration, buttons uint8, x, y int) *script {
	return s.at(gap, vnc.Event{Kind: "pointer", Buttons: buttons, X: x, Y: y})
}

func (s *script) click(gap time.Duration, x, y int) *script {
	return s.ptr(gap, 0, x, y).ptr(50*time.Millisecond, 1, x, y).ptr(60*time.Millisecond, 0, x, y)
}

func describe(g gesture) string {
	switch g.Kind {
	case gChar, gKey, gSkip:
		return g.Kind + " " + g.Text
	case gClick:
		d := ""
		if g.Double {
			d = " double"
		}
		return fmt.Sprintf("click %s%s %d,%d", g.Button, d, g.At.X, g.At.Y)
	case gDrag:
		return fmt.Sprintf("drag %s %d,%d-%d,%d", g.Button, g.At.X, g.At.Y, g.To.X, g.To.Y)
	case gScroll:
		return fmt.Sprintf("scroll %d,%d dx%d dy%d", g.At.X, g.At.Y, g.DX, g.DY)
	case gMove:
		return fmt.Sprintf("move %d,%d", g.At.X, g.At.Y)
	}
	return g.Kind
}

// TestReadSession reads what a person did out of raw viewer events: text
// with its shifts, special keys and chords, a lone Super, clicks, a double
// click, a drag, wheel steps coalesced, a rest of the pointer, and the
// steps with the input before the first step in it.
func TestReadSession(t *testing.T) {
	const ms = time.Millisecond
	s := newScript().
		press(0, 'x'). // before the first step: the machine was still paused
		step(10*ms, "boot").
		// "Hi!" with shift held for H and !, then Enter.
		key(2*time.Second, 0xffe1, true).press(20*ms, 'H').key(20*ms, 0xffe1, false).
		typ(80*ms, "i").key(20*ms, 0xffe1, true).press(20*ms, '!').key(20*ms, 0xffe1, false).
		press(100*ms, 0xff0d).
		// Shift+Tab, Ctrl+Q, Ctrl+Shift+T, a lone Super, é (no US key).
		key(time.Second, 0xffe1, true).press(20*ms, 0xff09).key(20*ms, 0xffe1, false).
		key(time.Second, 0xffe3, true).press(20*ms, 'q').key(20*ms, 0xffe3, false).
		key(time.Second, 0xffe3, true).key(10*ms, 0xffe1, true).press(20*ms, 'T').key(10*ms, 0xffe1, false).key(10*ms, 0xffe3, false).
		press(time.Second, 0xffeb).
		press(time.Second, 0xe9).
		step(2*time.Second, "mouse").
		click(time.Second, 100, 200).
		click(150*ms, 101, 200). // a double click
		click(time.Second, 300, 40).
		// A drag with the right button.
		ptr(time.Second, 4, 10, 10).ptr(50*ms, 4, 60, 70).ptr(50*ms, 0, 80, 90).
		// Three wheel steps down and one up at one place: one scroll.
		ptr(time.Second, 16, 500, 500).ptr(20*ms, 0, 500, 500).ptr(20*ms, 16, 500, 500).ptr(20*ms, 0, 500, 500).
		ptr(20*ms, 16, 500, 500).ptr(20*ms, 0, 500, 500).ptr(20*ms, 8, 500, 500).ptr(20*ms, 0, 500, 500).
		// The pointer rests over a menu, then goes on to click elsewhere.
		ptr(time.Second, 0, 700, 100).ptr(2*time.Second, 0, 710, 300).click(100*ms, 710, 300).
		at(3*time.Second, vnc.Event{Kind: "end", Name: vnc.EndedByPerson, Screen: vnc.FinalScreen})
	sess, err := readSession(s.events)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range sess.Steps {
		got = append(got, "step "+st.Name)
		for _, g := range st.Gestures {
			got = append(got, describe(g))
		}
	}
	want := []string{
		"step boot",
		"char x",
		"char H", "char i", "char !", "key <enter>",
		"key <leftShiftOn><tab><leftShiftOff>",
		"key <leftCtrlOn>q<leftCtrlOff>",
		"key <leftShiftOn><leftCtrlOn>t<leftCtrlOff><leftShiftOff>",
		"key <leftSuper>",
		"skip keysym 0xe9 has no key on a US keyboard",
		"step mouse",
		"click left double 100,200",
		"click left 300,40",
		"drag right 10,10-80,90",
		"scroll 500,500 dx0 dy2",
		"move 700,100",
		"click left 710,300",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("gestures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if sess.EndedBy != vnc.EndedByPerson || sess.FinalScreen != vnc.FinalScreen {
		t.Errorf("end: %q %q", sess.EndedBy, sess.FinalScreen)
	}
	if !sess.Steps[1].End.Equal(s.t) {
		t.Errorf("the last step ends at %s, want the end event's %s", sess.Steps[1].End, s.t)
	}
	// Bursts split where the person paused (2 s before "Hi!"; the
	// one-second pauses after it stay within a burst), as the recorder's
	// screenshots do.
	if n := len(bursts(sess.Steps[0].Gestures)); n != 2 {
		t.Errorf("boot step: %d bursts, want 2", n)
	}
}

func TestReadSessionErrors(t *testing.T) {
	for name, events := range map[string][]vnc.Event{
		"empty":        nil,
		"end only":     {{Kind: "end"}},
		"unknown kind": {{Kind: "step", Name: "a"}, {Kind: "touch"}},
	} {
		if _, err := readSession(events); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
