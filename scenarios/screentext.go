package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/screen"
)

// textPollPause is the pause between two readings of the screen that did
// not show the text yet; an OCR takes about as long again.
const textPollPause = time.Second

// lastRead is the last screen a screen-reading action saw: on failure it
// becomes the step's failed-<step>.png and failed-<step>.txt, so the
// screenshot and the text are the ones the action judged.
type lastRead struct {
	png    []byte
	region image.Rectangle
	text   screen.Text
}

// readScreen takes a screenshot and reads its text (the region only, when
// one is given).
func (env *Env) readScreen(ctx context.Context, region image.Rectangle) (screen.Text, error) {
	dir := filepath.Join(env.Dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return screen.Text{}, err
	}
	shot := filepath.Join(dir, ".screen.png")
	defer os.Remove(shot)
	if err := env.Machine.Screenshot(ctx, shot); err != nil {
		return screen.Text{}, err
	}
	data, err := os.ReadFile(shot)
	if err != nil {
		return screen.Text{}, err
	}
	// An unchanged screen says what it said: while a wait_text waits, most
	// screenshots are the same bytes, and OCR is the expensive part.
	if r := env.lastOCR; r != nil && r.region == region && bytes.Equal(r.png, data) {
		env.last = r
		return r.text, nil
	}
	t0 := time.Now()
	text, err := screen.OCR(ctx, data, env.OCR.with(region))
	if err != nil {
		return screen.Text{}, err
	}
	env.log().Debug("screen read", "lines", len(text.Lines), "ocr", time.Since(t0).Round(time.Millisecond))
	env.last = &lastRead{png: data, region: region, text: text}
	env.lastOCR = env.last
	return text, nil
}

// OCROptions are the scenario runner's OCR settings (zero: tesseract on
// PATH, English, the default scale).
type OCROptions screen.Options

func (o OCROptions) with(region image.Rectangle) screen.Options {
	opts := screen.Options(o)
	opts.Region = region
	return opts
}

// findText reads the screen until re matches (in region, when given) or
// ctx ends; it returns the matches of the reading that found it.
func (env *Env) findText(ctx context.Context, re *regexp.Regexp, regionArg []int, what string) ([]screen.Match, error) {
	region := rect(regionArg)
	reads := 0
	for {
		text, err := env.readScreen(ctx, region)
		if err != nil {
			// The time ran out during a reading: a timeout like any other.
			if ctx.Err() != nil {
				return nil, env.textTimeout(ctx, re, what, reads)
			}
			return nil, fmt.Errorf("%s: reading the screen: %w", what, err)
		}
		reads++
		if ms := text.Find(re, region); len(ms) > 0 {
			return ms, nil
		}
		select {
		case <-ctx.Done():
			return nil, env.textTimeout(ctx, re, what, reads)
		case <-env.Machine.Stopped():
			return nil, fmt.Errorf("%s: the machine stopped before the screen showed /%s/", what, re)
		case <-time.After(textPollPause):
		}
	}
}

func (env *Env) textTimeout(ctx context.Context, re *regexp.Regexp, what string, reads int) error {
	return fmt.Errorf("%s: the screen never showed /%s/ (%d readings; the last screenshot and its text are kept as the step's failed-*.png and .txt): %w",
		what, re, reads, context.Cause(ctx))
}

func rect(r []int) image.Rectangle {
	if len(r) != 4 {
		return image.Rectangle{}
	}
	return image.Rect(r[0], r[1], r[0]+r[2], r[1]+r[3])
}

func (env *Env) waitText(ctx context.Context, a *Action) error {
	ctx, cancel := context.WithTimeout(ctx, a.Timeout(DefaultActionTimeout))
	defer cancel()
	_, err := env.findText(ctx, a.WaitText.Regexp, a.WaitText.Region, "wait_text")
	return err
}

// clickText clicks the match once two readings in a row show it in the
// same place: a menu or dialog that is still opening (or moving) can show
// its text before it takes clicks. Seen: Firefox's menu under load showed
// "Quit" a moment before a click on it did anything. An unchanged screen
// is not read again, so a still screen costs one screenshot more.
func (env *Env) clickText(ctx context.Context, a *Action) error {
	c := a.ClickText
	ctx, cancel := context.WithTimeout(ctx, a.Timeout(DefaultClickTextTimeout))
	defer cancel()
	var seen *screen.Match // the match the previous reading found
	for {
		ms, err := env.findText(ctx, c.Regexp, c.Region, "click_text")
		if err != nil {
			return err
		}
		i := c.Index
		if i < 0 {
			i = len(ms) + i
		}
		if i >= 0 && i < len(ms) {
			m := ms[i]
			if seen != nil && samePlace(seen.Center(), m.Center()) {
				p := m.Center()
				env.log().Info("click_text", "text", m.Text, "line", m.Line, "x", p.X, "y", p.Y)
				return env.Machine.Pointer(ctx, lab.Click(p, button(c.Button), c.Double))
			}
			seen = &m
		} else {
			// Fewer matches than the index asks for: the screen may still
			// be filling in.
			seen = nil
		}
		select {
		case <-ctx.Done():
			if seen == nil {
				return fmt.Errorf("click_text: the screen showed /%s/ %d times, never match %d: %w", c.Text, len(ms), c.Index, context.Cause(ctx))
			}
			return fmt.Errorf("click_text: /%s/ never stayed in one place for two readings: %w", c.Text, context.Cause(ctx))
		case <-time.After(textPollPause):
		}
	}
}

// samePlace says whether two readings put a match in the same place (OCR
// boxes of the same text can differ by a pixel or two).
func samePlace(a, b image.Point) bool {
	d := a.Sub(b)
	return max(d.X, -d.X) <= 3 && max(d.Y, -d.Y) <= 3
}

// pointer runs the pointer actions that name their positions.
func (env *Env) pointer(ctx context.Context, a *Action) error {
	var evs []lab.PointerEvent
	switch a.Kind {
	case "click", "double_click":
		evs = lab.Click(image.Pt(a.Point.X, a.Point.Y), button(a.Point.Button), a.Kind == "double_click")
	case "move":
		evs = lab.Move(image.Pt(a.Point.X, a.Point.Y))
	case "drag":
		d := a.Drag
		evs = lab.Drag(image.Pt(d.From[0], d.From[1]), image.Pt(d.To[0], d.To[1]), button(d.Button))
	case "scroll":
		evs = lab.Scroll(image.Pt(a.Scroll.X, a.Scroll.Y), a.Scroll.DX, a.Scroll.DY)
	default:
		return errors.New("not a pointer action: " + a.Kind)
	}
	return env.Machine.Pointer(ctx, evs)
}

func button(b string) string {
	if b == "" {
		return lab.ButtonLeft
	}
	return b
}

// saveLastRead writes the screen a failing action judged, and its text
// with boxes, as screenshots/failed-<step>.png and .txt.
func (env *Env) saveLastRead(step string) []string {
	if env.last == nil {
		return nil
	}
	dir := filepath.Join(env.Dir, "screenshots")
	base := filepath.Join(dir, "failed-"+step)
	var out []string
	if os.MkdirAll(dir, 0o755) != nil {
		return nil
	}
	if os.WriteFile(base+".png", env.last.png, 0o644) == nil {
		out = append(out, relTo(env.Dir, base+".png"))
	}
	if os.WriteFile(base+".txt", []byte(env.last.text.Dump()), 0o644) == nil {
		out = append(out, relTo(env.Dir, base+".txt"))
	}
	return out
}
