package vnc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// EventsFile is the recording's event log in its directory.
const EventsFile = "events.jsonl"

// FinalScreen is the screenshot the recorder takes when the session ends.
const FinalScreen = "final.png"

// BurstGap is the pause in a person's input that starts a new burst: the
// recorder photographs the screen before the first key or click after it,
// which is the screen the person was looking at when they acted.
const BurstGap = 1500 * time.Millisecond

// Event is one line of a recording.
type Event struct {
	Time time.Time `json:"t"`
	// Kind is "key", "pointer", "step" (a step begins, named Name) or "end"
	// (the session ended, Name says why; Screen is the last screen).
	Kind    string `json:"kind"`
	Down    bool   `json:"down,omitempty"`
	Keysym  uint32 `json:"keysym,omitempty"`
	Buttons uint8  `json:"buttons,omitempty"`
	X       int    `json:"x,omitempty"`
	Y       int    `json:"y,omitempty"`
	Name    string `json:"name,omitempty"`
	// Screen is a screenshot (relative to the recording directory) taken as
	// the event arrived, before the machine saw it.
	Screen string `json:"screen,omitempty"`
}

// Recorder writes what a person does through the proxy into a directory:
// every key and pointer event with its time, step boundaries, and the
// screenshots a scenario writer needs (the screen before each burst of
// input, and under each click). Use its Input as Config.OnInput.
type Recorder struct {
	dir   string
	shoot func(ctx context.Context, path string) error
	log   *slog.Logger

	mu        sync.Mutex
	f         *os.File
	w         *bufio.Writer
	lastInput time.Time // the last press (key or button)
	lastEvent time.Time // the last event of any kind, motion included
	buttons   uint8
	shots     int
	err       error
}

// NewRecorder starts a recording in dir (created if needed). shoot writes a
// PNG of the machine's screen to a path.
func NewRecorder(dir string, shoot func(ctx context.Context, path string) error, log *slog.Logger) (*Recorder, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, EventsFile))
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{dir: dir, shoot: shoot, log: log, f: f, w: bufio.NewWriter(f)}, nil
}

// Dir is the recording's directory.
func (r *Recorder) Dir() string { return r.dir }

// Input records a viewer's event. A key press or click that starts a
// burst, every click, and the pointer starting to move after a pause first
// get a screenshot of the screen as it is: the last shows the screen before
// the pointer (which the screenshot includes) covers what it goes to click.
func (r *Recorder) Input(in Input) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := Event{Time: in.Time.UTC()}
	acts := false
	idle := r.lastEvent.IsZero() || in.Time.Sub(r.lastEvent) >= BurstGap
	r.lastEvent = in.Time
	switch in.Kind {
	case Key:
		ev.Kind, ev.Down, ev.Keysym = "key", in.Down, in.Keysym
		acts = in.Down
	case Pointer:
		ev.Kind, ev.Buttons, ev.X, ev.Y = "pointer", in.Buttons, in.X, in.Y
		pressed := in.Buttons &^ r.buttons
		r.buttons = in.Buttons
		acts = pressed != 0
		// A click is anchored to what is under it: photograph every one.
		if pressed&0b111 != 0 || (!acts && idle) {
			ev.Screen = r.screenshot()
		}
	default:
		return
	}
	if acts {
		if ev.Screen == "" && (r.lastInput.IsZero() || in.Time.Sub(r.lastInput) >= BurstGap) {
			ev.Screen = r.screenshot()
		}
		r.lastInput = in.Time
	}
	r.write(ev)
}

// Step records that a step begins.
func (r *Recorder) Step(name string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(Event{Time: t.UTC(), Kind: "step", Name: name})
	// The first input of a step always starts a burst.
	r.lastInput = time.Time{}
}

// Why a recorded session ended (Event.Name of the "end" event).
const (
	EndedByPerson  = "person"          // the person said so; the machine is shut down after
	EndedByMachine = "machine-stopped" // the machine powered off
)

// End records the end of the session, why it ended, and the last screen
// (when the machine still has one).
func (r *Recorder) End(t time.Time, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := Event{Time: t.UTC(), Kind: "end", Name: why}
	if r.shoot != nil && why != EndedByMachine {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := r.shoot(ctx, filepath.Join(r.dir, FinalScreen)); err != nil {
			r.log.Warn("recording: final screenshot", "err", err)
		} else {
			ev.Screen = FinalScreen
		}
	}
	r.write(ev)
}

// Close flushes the recording; its error is the first write error, if any.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return r.err
	}
	err := errors.Join(r.err, r.w.Flush(), r.f.Close())
	r.f = nil
	return err
}

// screenshot saves the screen as the next numbered PNG; "" when it failed.
func (r *Recorder) screenshot() string {
	if r.shoot == nil {
		return ""
	}
	r.shots++
	name := fmt.Sprintf("screen-%04d.png", r.shots)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.shoot(ctx, filepath.Join(r.dir, name)); err != nil {
		r.log.Warn("recording: screenshot", "err", err)
		return ""
	}
	return name
}

func (r *Recorder) write(ev Event) {
	if r.f == nil {
		return
	}
	b, err := json.Marshal(ev)
	if err == nil {
		_, err = r.w.Write(append(b, '\n'))
	}
	if err == nil {
		// Each line reaches the file at once: a crash keeps the recording.
		err = r.w.Flush()
	}
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("recording: %w", err)
	}
}

// ReadEvents reads a recording's events.
func ReadEvents(dir string) ([]Event, error) {
	f, err := os.Open(filepath.Join(dir, EventsFile))
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	defer f.Close()
	var out []Event
	dec := json.NewDecoder(f)
	for line := 1; ; line++ {
		var ev Event
		if err := dec.Decode(&ev); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("recording %s: event %d: %w", filepath.Join(dir, EventsFile), line, err)
		}
		out = append(out, ev)
	}
}
