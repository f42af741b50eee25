// Package record turns what a person did through firstboot's VNC display
// (a lab/vnc recording: key and pointer events, step boundaries and
// screenshots) into a scenario file that replays it unattended: text typed
// becomes type, other keys keys, clicks click_text on the text under them
// (coordinates when OCR finds none), and each burst of input waits first
// for text that identifies its screen (wait_screen on a reference crop when
// the screen has no text).
package record

import (
	"fmt"
	"image"
	"slices"
	"strings"
	"time"

	"github.com/firstboot/firstboot/lab/vnc"
)

// Gesture kinds: what a run of raw events means.
const (
	gChar   = "char"   // a printable character typed (Text)
	gKey    = "key"    // other keys, in Packer's syntax (Text)
	gClick  = "click"  // a click (Button, At, Double)
	gDrag   = "drag"   // a press, a move, a release (Button, At, To)
	gScroll = "scroll" // wheel steps (At, DX, DY)
	gMove   = "move"   // the pointer rested somewhere (At)
	gSkip   = "skip"   // a key with no key on a US keyboard (Text explains)
)

// gesture is one thing the person did.
type gesture struct {
	Kind   string
	Text   string
	Button string
	Double bool
	At, To image.Point
	DX, DY int
	// Time is when it began, Last when its last press happened (a burst
	// is measured between presses, as the recorder does).
	Time, Last time.Time
	// Screen is the screenshot the recorder took as it began ("" none).
	Screen string
	// Before, for pointer gestures, is the screenshot taken when the
	// pointer set off towards it, before the pointer (which screenshots
	// include) covered the target.
	Before string
}

// step is a recorded step: its gestures, and its span.
type step struct {
	Name       string
	Start, End time.Time
	Gestures   []gesture
}

// session is a whole recording cut into steps.
type session struct {
	Steps []step
	// EndedBy says why the session ended (vnc.EndedByPerson: the machine
	// was shut down afterwards); FinalScreen is the last screen.
	EndedBy     string
	FinalScreen string
}

// Timing thresholds for reading gestures out of raw events.
const (
	// clickSlop: a press and release this close (pixels) are a click.
	clickSlop = 4
	// doubleClickTime: two clicks this close in time are a double click.
	doubleClickTime = 500 * time.Millisecond
	// restTime: the pointer resting this long where nothing is clicked
	// may matter (a menu opened by hovering): it becomes a move.
	restTime = 800 * time.Millisecond
)

// X keysyms with a Packer name (scenarios/keys.go).
var specialKeysyms = map[uint32]string{
	0xff0d: "enter", 0xff8d: "enter", 0xff09: "tab", 0xff08: "bs", 0xff1b: "esc", 0xffff: "del",
	0xff50: "home", 0xff57: "end", 0xff55: "pageUp", 0xff56: "pageDown", 0xff63: "insert",
	0xff51: "left", 0xff52: "up", 0xff53: "right", 0xff54: "down", 0xff67: "menu", 0xffe5: "capsLock",
	0xffbe: "f1", 0xffbf: "f2", 0xffc0: "f3", 0xffc1: "f4", 0xffc2: "f5", 0xffc3: "f6",
	0xffc4: "f7", 0xffc5: "f8", 0xffc6: "f9", 0xffc7: "f10", 0xffc8: "f11", 0xffc9: "f12",
}

// modifierKeysyms are held keys, by their Packer names.
var modifierKeysyms = map[uint32]string{
	0xffe1: "leftShift", 0xffe2: "rightShift", 0xffe3: "leftCtrl", 0xffe4: "rightCtrl",
	0xffe9: "leftAlt", 0xffea: "rightAlt", 0xffe7: "leftSuper", 0xffe8: "rightSuper",
	0xffeb: "leftSuper", 0xffec: "rightSuper", 0xfe03: "rightAlt", // ISO_Level3_Shift (AltGr)
}

// buttonNames are the VNC button mask's first three bits.
var buttonNames = []string{"left", "middle", "right"}

// readSession cuts a recording's events into steps of gestures.
func readSession(events []vnc.Event) (session, error) {
	// In time order: an input's time is taken when it arrives, but it is
	// written after its screenshot, so a step boundary can come between.
	events = slices.Clone(events)
	slices.SortStableFunc(events, func(a, b vnc.Event) int { return a.Time.Compare(b.Time) })
	var s session
	var cur *step
	var keys keyReader
	var ptr pointerReader
	flush := func(end time.Time) {
		if cur == nil {
			return
		}
		cur.Gestures = append(cur.Gestures, ptr.finish()...)
		cur.End = end
		s.Steps = append(s.Steps, *cur)
		cur = nil
	}
	for _, ev := range events {
		if ev.Kind != "step" && cur == nil {
			if ev.Kind == "end" {
				return s, fmt.Errorf("the recording ended before any step began")
			}
			// Input while the machine was still paused: part of the first step.
			cur = &step{Start: ev.Time}
		}
		switch ev.Kind {
		case "step":
			if cur != nil && cur.Name == "" {
				cur.Name = ev.Name // the early input joins the first step
				continue
			}
			flush(ev.Time)
			cur = &step{Name: ev.Name, Start: ev.Time}
		case "key":
			if g, ok := keys.event(ev); ok {
				ptr.before = ""
				cur.Gestures = append(cur.Gestures, ptr.flush()...)
				cur.Gestures = append(cur.Gestures, g)
			}
		case "pointer":
			if ev.Buttons != 0 {
				keys.alone = "" // a modifier held over a click is no key press of its own
			}
			cur.Gestures = append(cur.Gestures, ptr.event(ev)...)
		case "end":
			s.EndedBy, s.FinalScreen = ev.Name, ev.Screen
			flush(ev.Time)
		default:
			return s, fmt.Errorf("unknown event kind %q at %s", ev.Kind, ev.Time.Format(time.RFC3339Nano))
		}
	}
	if cur != nil {
		// A recording cut short (the run was interrupted): keep what is there.
		end := cur.Start
		if n := len(events); n > 0 {
			end = events[n-1].Time
		}
		flush(end)
	}
	if len(s.Steps) == 0 {
		return s, fmt.Errorf("the recording has no steps")
	}
	return s, nil
}

// keyReader turns key events into characters and Packer key names,
// keeping track of held modifiers.
type keyReader struct {
	held []string // modifiers down, in the order pressed
	// alone is a modifier pressed with nothing else yet (Super alone opens
	// a menu); its screen and time are kept for the gesture.
	alone       string
	aloneAt     time.Time
	aloneScreen string
}

func (k *keyReader) event(ev vnc.Event) (gesture, bool) {
	if mod, ok := modifierKeysyms[ev.Keysym]; ok {
		if ev.Down {
			if !contains(k.held, mod) {
				k.held = append(k.held, mod)
			}
			k.alone, k.aloneAt, k.aloneScreen = mod, ev.Time, ev.Screen
			return gesture{}, false
		}
		k.held = remove(k.held, mod)
		if k.alone == mod {
			k.alone = ""
			if mod != "leftShift" && mod != "rightShift" {
				return gesture{Kind: gKey, Text: "<" + mod + ">", Time: k.aloneAt, Last: k.aloneAt, Screen: k.aloneScreen}, true
			}
		}
		return gesture{}, false
	}
	if !ev.Down {
		return gesture{}, false
	}
	screen := ev.Screen
	t := ev.Time
	if k.alone != "" {
		// The first press after a lone modifier is where the burst began.
		if screen == "" {
			screen = k.aloneScreen
		}
		t = k.aloneAt
	}
	k.alone = ""
	g := gesture{Time: t, Last: ev.Time, Screen: screen}
	// Shift is in the keysym already ('A', '!'); other modifiers make a chord.
	var chord []string
	for _, m := range k.held {
		if m != "leftShift" && m != "rightShift" {
			chord = append(chord, m)
		}
	}
	name, special := specialKeysyms[ev.Keysym]
	shifted := contains(k.held, "leftShift") || contains(k.held, "rightShift")
	if shifted && (special || len(chord) > 0) {
		// Shift+Tab, Ctrl+Shift+T: here shift is part of the chord.
		chord = append([]string{"leftShift"}, chord...)
	}
	switch {
	case !special && ev.Keysym >= 0x20 && ev.Keysym <= 0x7e && len(chord) == 0:
		g.Kind, g.Text = gChar, string(rune(ev.Keysym))
		return g, true
	case !special && ev.Keysym >= 0x20 && ev.Keysym <= 0x7e:
		name = strings.ToLower(string(rune(ev.Keysym)))
		if name == "<" || name == ">" {
			// Packer's syntax has no escape for these inside a chord.
			g.Kind, g.Text = gSkip, fmt.Sprintf("%s+%s has no spelling in keys: press it by hand", strings.Join(chord, "+"), name)
			return g, true
		}
	case !special:
		g.Kind, g.Text = gSkip, fmt.Sprintf("keysym 0x%x has no key on a US keyboard", ev.Keysym)
		return g, true
	default:
		name = "<" + name + ">"
	}
	var b strings.Builder
	for _, m := range chord {
		b.WriteString("<" + m + "On>")
	}
	b.WriteString(name)
	for i := len(chord) - 1; i >= 0; i-- {
		b.WriteString("<" + chord[i] + "Off>")
	}
	g.Kind, g.Text = gKey, b.String()
	return g, true
}

// pointerReader turns pointer events into clicks, drags, wheel turns and
// rests. Clicks and wheel turns are held back a little (a second click may
// make a double click, more wheel steps one scroll); flush lets them go.
type pointerReader struct {
	buttons uint8
	press   *gesture // the button press not yet released
	pos     image.Point
	movedAt time.Time // when the pointer arrived at pos
	moved   bool      // pos is a rest candidate (nothing was done there)
	last    time.Time // the last pointer event
	pending []gesture // a click or a scroll held back
	before  string    // the screenshot taken as the pointer set off
}

func (p *pointerReader) event(ev vnc.Event) []gesture {
	var out []gesture
	at := image.Pt(ev.X, ev.Y)
	// A rest: the pointer stayed put a while before moving on.
	if p.moved && at != p.pos && ev.Time.Sub(p.last) >= restTime && p.press == nil {
		out = append(out, p.flush()...)
		out = append(out, gesture{Kind: gMove, At: p.pos, Time: p.movedAt, Last: p.movedAt})
		p.moved = false
	}
	if at != p.pos {
		p.pos, p.movedAt, p.moved = at, ev.Time, true
	}
	pressed, released := ev.Buttons&^p.buttons, p.buttons&^ev.Buttons
	p.buttons = ev.Buttons
	p.last = ev.Time
	if pressed == 0 && ev.Screen != "" {
		p.before = ev.Screen
	}
	for b := 0; b < 3; b++ {
		bit := uint8(1) << b
		switch {
		case pressed&bit != 0 && p.press == nil:
			// A click held back stays: this press may make it a double.
			p.press = &gesture{Kind: gClick, Button: buttonNames[b], At: at, Time: ev.Time, Last: ev.Time, Screen: ev.Screen, Before: p.before}
			p.moved, p.before = false, ""
		case released&bit != 0 && p.press != nil && p.press.Button == buttonNames[b]:
			g := *p.press
			p.press = nil
			if dist(g.At, at) > clickSlop {
				g.Kind, g.To = gDrag, at
				out = append(out, p.flush()...)
				out = append(out, g)
			} else {
				out = append(out, p.click(g)...)
			}
			p.moved = false
		}
	}
	// Wheel: bit 3 up, 4 down, 5 left, 6 right; each press is one step.
	var dx, dy int
	for b, d := range [4][2]int{{0, -1}, {0, 1}, {-1, 0}, {1, 0}} {
		if pressed&(1<<(b+3)) != 0 {
			dx, dy = dx+d[0], dy+d[1]
		}
	}
	if dx != 0 || dy != 0 {
		out = append(out, p.scroll(gesture{Kind: gScroll, At: at, DX: dx, DY: dy, Time: ev.Time, Last: ev.Time, Screen: ev.Screen, Before: p.before})...)
		p.moved, p.before = false, ""
	}
	return out
}

// click holds a click back until it is clear whether it is the first of
// a double click.
func (p *pointerReader) click(g gesture) []gesture {
	if n := len(p.pending); n > 0 {
		prev := &p.pending[n-1]
		if prev.Kind == gClick && prev.Button == g.Button && !prev.Double && g.Time.Sub(prev.Last) <= doubleClickTime && dist(prev.At, g.At) <= clickSlop {
			prev.Double, prev.Last = true, g.Last
			return nil
		}
	}
	out := p.flush()
	p.pending = append(p.pending, g)
	return out
}

// scroll adds wheel steps to a scroll held back at the same place, or
// holds back a new one.
func (p *pointerReader) scroll(g gesture) []gesture {
	if n := len(p.pending); n > 0 {
		prev := &p.pending[n-1]
		if prev.Kind == gScroll && dist(prev.At, g.At) <= clickSlop {
			prev.DX, prev.DY, prev.Last = prev.DX+g.DX, prev.DY+g.DY, g.Last
			return nil
		}
	}
	out := p.flush()
	p.pending = append(p.pending, g)
	return out
}

// flush lets held-back gestures go.
func (p *pointerReader) flush() []gesture {
	out := p.pending
	p.pending = nil
	return out
}

// finish returns everything held at a step's end.
func (p *pointerReader) finish() []gesture {
	out := p.flush()
	if p.press != nil {
		// A press never released: a click where it was.
		out = append(out, *p.press)
		p.press = nil
	}
	return out
}

func dist(a, b image.Point) int {
	dx, dy := a.X-b.X, a.Y-b.Y
	return max(dx, -dx, dy, -dy)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func remove(list []string, s string) []string {
	out := list[:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
