package lab

import (
	"fmt"
	"image"
	"time"
)

// PointerKind says what a pointer event does.
type PointerKind int

const (
	// PointerMove moves the pointer to X, Y.
	PointerMove PointerKind = iota
	// PointerDown presses Button; PointerUp releases it.
	PointerDown
	PointerUp
	// PointerWheel turns the wheel DY steps (negative: up, away from the
	// user) and DX steps (negative: left).
	PointerWheel
	// PointerPause waits Wait before the next event.
	PointerPause
)

// Mouse buttons, as QEMU names them.
const (
	ButtonLeft   = "left"
	ButtonMiddle = "middle"
	ButtonRight  = "right"
)

// Buttons lists the buttons a pointer event may press.
var Buttons = []string{ButtonLeft, ButtonMiddle, ButtonRight}

// PointerEvent is one step of pointer input. Coordinates are absolute, in
// screen pixels (0, 0 is the top left corner of the screenshot).
type PointerEvent struct {
	Kind   PointerKind
	X, Y   int
	Button string
	DX, DY int
	Wait   time.Duration
}

// Press and release timing: each button change reaches the guest as its own
// input report (a down and an up in one report would merge into nothing),
// and a double click must fit in the guest's double-click time (GTK: 400 ms).
const (
	ClickHold      = 60 * time.Millisecond
	DoubleClickGap = 100 * time.Millisecond
	// dragStepPause lets the guest see the pointer pass through the path: a
	// toolkit starts a drag only after the pointer moved while pressed.
	dragStepPause = 40 * time.Millisecond
	dragSteps     = 8
)

// Move is the events that move the pointer to p.
func Move(p image.Point) []PointerEvent {
	return []PointerEvent{{Kind: PointerMove, X: p.X, Y: p.Y}}
}

// Click is the events of a click (or a double click) with button at p.
func Click(p image.Point, button string, double bool) []PointerEvent {
	evs := []PointerEvent{
		{Kind: PointerMove, X: p.X, Y: p.Y},
		{Kind: PointerPause, Wait: ClickHold},
		{Kind: PointerDown, Button: button},
		{Kind: PointerPause, Wait: ClickHold},
		{Kind: PointerUp, Button: button},
	}
	if double {
		evs = append(evs,
			PointerEvent{Kind: PointerPause, Wait: DoubleClickGap},
			PointerEvent{Kind: PointerDown, Button: button},
			PointerEvent{Kind: PointerPause, Wait: ClickHold},
			PointerEvent{Kind: PointerUp, Button: button})
	}
	return evs
}

// Drag is the events that press button at from, move in steps to to, and
// release it there.
func Drag(from, to image.Point, button string) []PointerEvent {
	evs := []PointerEvent{
		{Kind: PointerMove, X: from.X, Y: from.Y},
		{Kind: PointerPause, Wait: ClickHold},
		{Kind: PointerDown, Button: button},
		{Kind: PointerPause, Wait: ClickHold},
	}
	for i := 1; i <= dragSteps; i++ {
		p := from.Add(to.Sub(from).Mul(i).Div(dragSteps))
		evs = append(evs, PointerEvent{Kind: PointerMove, X: p.X, Y: p.Y}, PointerEvent{Kind: PointerPause, Wait: dragStepPause})
	}
	return append(evs, PointerEvent{Kind: PointerUp, Button: button})
}

// Scroll is the events that move the pointer to p and turn the wheel.
func Scroll(p image.Point, dx, dy int) []PointerEvent {
	return []PointerEvent{
		{Kind: PointerMove, X: p.X, Y: p.Y},
		{Kind: PointerPause, Wait: ClickHold},
		{Kind: PointerWheel, DX: dx, DY: dy},
	}
}

// CheckButton returns an error naming the buttons when b is not one.
func CheckButton(b string) error {
	for _, x := range Buttons {
		if b == x {
			return nil
		}
	}
	return fmt.Errorf("button %q: want one of left, middle, right", b)
}
