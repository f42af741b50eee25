package record

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/firstboot/firstboot/lab/screen"
	"github.com/firstboot/firstboot/lab/vnc"
	"github.com/firstboot/firstboot/scenarios"
)

// Config says what to turn into a scenario.
type Config struct {
	// Scenario is the file the recorded session ran (image, machine, …);
	// its text heads the new file, with the new name.
	Scenario string
	// Recording is the recording's directory (<run>/recording).
	Recording string
	// Out is the scenario file to write. Reference crops for wait_screen
	// go beside it, in <name>-screens/.
	Out string
	// Source names the recording in the file's header (the run directory).
	Source string
	// OCR reads a screenshot; nil reads with tesseract (lab/screen).
	OCR func(ctx context.Context, png []byte) (screen.Text, error)
}

// Summary counts how the session was written down.
type Summary struct {
	Steps, Bursts           int
	TextWaits, ScreenWaits  int // bursts anchored by wait_text, by wait_screen
	TextClicks, PointClicks int // clicks anchored to text, at coordinates
	Typed, Keys             int // type and keys actions
}

// Timing of the written scenario.
const (
	// minWait: shorter pauses of the person are not worth a wait action.
	minWait = 500 * time.Millisecond
	// clickNear: a text anchor whose centre is further than this from
	// where the person clicked is not trusted; coordinates are used.
	clickNear = 60
	// crop is the size of a wait_screen reference around a pointer.
	cropW, cropH = 240, 120
)

// Write reads the recording and writes the scenario file that replays it.
func Write(ctx context.Context, cfg Config) (Summary, error) {
	events, err := vnc.ReadEvents(cfg.Recording)
	if err != nil {
		return Summary{}, err
	}
	sess, err := readSession(events)
	if err != nil {
		return Summary{}, fmt.Errorf("recording %s: %w", cfg.Recording, err)
	}
	orig, err := os.ReadFile(cfg.Scenario)
	if err != nil {
		return Summary{}, fmt.Errorf("reading the recorded scenario: %w", err)
	}
	name := scenarios.NameFromFile(cfg.Out)
	head, err := header(orig, name)
	if err != nil {
		return Summary{}, fmt.Errorf("%s: %w", cfg.Scenario, err)
	}
	ocr := cfg.OCR
	if ocr == nil {
		ocr = func(ctx context.Context, data []byte) (screen.Text, error) {
			return screen.OCR(ctx, data, screen.Options{})
		}
	}
	base := strings.TrimSuffix(filepath.Base(cfg.Out), filepath.Ext(cfg.Out))
	w := &writer{ctx: ctx, cfg: cfg, ocr: ocr, texts: map[string]screen.Text{},
		refDir: base + "-screens", outDir: filepath.Dir(cfg.Out)}
	var b bytes.Buffer
	b.Write(head)
	fmt.Fprintf(&b, "\n# Recorded with firstboot record from %s: what a person did, to replay\n", cfg.Source)
	b.WriteString("# unattended. Each burst of input first waits for text that identifies its screen,\n" +
		"# and clicks land on the text under them (# at x, y: where the person clicked).\n")
	b.WriteString("steps:\n")
	for i, st := range sess.Steps {
		last := i == len(sess.Steps)-1
		if err := w.step(&b, st, i == 0, last, sess); err != nil {
			return w.sum, err
		}
	}
	if err := os.WriteFile(cfg.Out, b.Bytes(), 0o644); err != nil {
		return w.sum, err
	}
	// The file must be one that runs: check it as a run would.
	if _, err := scenarios.Load(cfg.Out); err != nil {
		return w.sum, fmt.Errorf("the written scenario does not validate (a firstboot bug; the recording is intact in %s): %w", cfg.Recording, err)
	}
	return w.sum, nil
}

// header is the recorded scenario's text with the new name and without an
// empty steps list, comments and layout kept.
func header(orig []byte, name string) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(orig, &root); err != nil {
		return nil, err
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a scenario (a mapping of keys)")
	}
	lines := strings.SplitAfter(string(orig), "\n")
	top := root.Content[0]
	named := false
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		switch k.Value {
		case "name", "steps":
			if v.Line != k.Line || (v.Kind != yaml.ScalarNode && !(v.Kind == yaml.SequenceNode && len(v.Content) == 0)) {
				return nil, fmt.Errorf("line %d: write %s on one line to record from this scenario", k.Line, k.Value)
			}
			lines[k.Line-1] = ""
			if k.Value == "name" {
				lines[k.Line-1] = "name: " + name + "\n"
				named = true
			}
		}
	}
	out := strings.Join(lines, "")
	if !named {
		out = "name: " + name + "\n" + out
	}
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return []byte(out), nil
}

// writer writes the steps, reading screenshots as it needs them.
type writer struct {
	ctx   context.Context
	cfg   Config
	ocr   func(ctx context.Context, png []byte) (screen.Text, error)
	texts map[string]screen.Text
	prev  screen.Text // the last burst's screen
	// lastInput is the person's last press so far, across steps.
	lastInput time.Time
	// typed is the text the person typed so far.
	typed  []string
	refDir string
	outDir string
	refs   int
	sum    Summary
}

func (w *writer) step(b *bytes.Buffer, st step, first, last bool, sess session) error {
	w.sum.Steps++
	fmt.Fprintf(b, "  - name: %s\n    actions:\n", quote(st.Name))
	if first {
		b.WriteString("      - start\n")
	}
	if w.lastInput.IsZero() {
		w.lastInput = st.Start
	}
	inputInStep := st.Start
	for _, burst := range bursts(st.Gestures) {
		// An anchor's timeout follows what the person waited since their
		// last input, in this step or before; the pause kept as a wait
		// is this step's share of it.
		if err := w.anchor(b, st.Name, burst, burst[0].Time.Sub(w.lastInput), burst[0].Time.Sub(inputInStep)); err != nil {
			return err
		}
		if err := w.burst(b, burst); err != nil {
			return err
		}
		w.lastInput = burst[len(burst)-1].Last
		inputInStep = w.lastInput
	}
	// The person's time between their last input and the step's end:
	// what the machine did then belongs to this step.
	if tail := st.End.Sub(inputInStep); tail >= minWait {
		fmt.Fprintf(b, "      - wait: %s\n", roundWait(tail))
	}
	if last && sess.EndedBy == vnc.EndedByPerson {
		if sess.FinalScreen != "" {
			text, err := w.read(sess.FinalScreen)
			if err != nil {
				return err
			}
			if phrase, _ := identify(text, screen.Text{}, w.typed); phrase != "" {
				fmt.Fprintf(b, "      # the screen the person left the machine at\n      - wait_text: {text: %s, timeout: 1m}\n", quote(regexp.QuoteMeta(phrase)))
				w.sum.TextWaits++
			}
			b.WriteString("      - screenshot: final\n")
		}
		b.WriteString("      - shutdown: 2m\n")
	}
	return nil
}

// bursts splits gestures where the person paused (vnc.BurstGap), as the
// recorder did when it took its screenshots.
func bursts(gs []gesture) [][]gesture {
	var out [][]gesture
	for i, g := range gs {
		if i == 0 || g.Time.Sub(gs[i-1].Last) >= vnc.BurstGap {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], g)
	}
	return out
}

// anchor writes what the replay waits for before a burst: text that
// identifies the burst's screen, else a reference crop of it; and the
// person's own pause when the screen did not visibly change.
func (w *writer) anchor(b *bytes.Buffer, stepName string, burst []gesture, waited, gap time.Duration) error {
	w.sum.Bursts++
	// The screen as the burst began: before the pointer set off, or as
	// its first press came.
	shot := ""
	for _, g := range burst {
		if shot = cmp.Or(g.Before, g.Screen); shot != "" {
			break
		}
	}
	if shot == "" {
		if gap >= minWait {
			fmt.Fprintf(b, "      - wait: %s\n", roundWait(gap))
		}
		return nil
	}
	text, err := w.read(shot)
	if err != nil {
		return err
	}
	timeout := waitTimeout(waited)
	phrase, isNew := identify(text, w.prev, w.typed)
	w.prev = text
	if phrase != "" {
		if !isNew && gap >= minWait {
			// Same words as before: the person's pause keeps the pace.
			fmt.Fprintf(b, "      - wait: %s\n", roundWait(gap))
		}
		fmt.Fprintf(b, "      - wait_text: {text: %s, timeout: %s}\n", quote(regexp.QuoteMeta(phrase)), minutes(timeout))
		w.sum.TextWaits++
		return nil
	}
	ref, region, err := w.crop(shot, stepName, burst[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(b, "      # no text on this screen: a reference crop instead\n")
	if region == nil {
		fmt.Fprintf(b, "      - wait_screen: {reference: %s, timeout: %s}\n", quote(ref), minutes(timeout))
	} else {
		fmt.Fprintf(b, "      - wait_screen: {reference: %s, region: [%d, %d, %d, %d], timeout: %s}\n", quote(ref), region[0], region[1], region[2], region[3], minutes(timeout))
	}
	w.sum.ScreenWaits++
	return nil
}

// burst writes a burst's gestures: typed runs as type, other keys as keys,
// pointer gestures as themselves.
func (w *writer) burst(b *bytes.Buffer, gs []gesture) error {
	for i := 0; i < len(gs); {
		g := gs[i]
		switch g.Kind {
		case gChar, gKey:
			j, kind := i, g.Kind
			var text strings.Builder
			for ; j < len(gs) && gs[j].Kind == kind; j++ {
				text.WriteString(gs[j].Text)
			}
			if kind == gChar {
				fmt.Fprintf(b, "      - type: %s\n", quote(text.String()))
				w.typed = append(w.typed, text.String())
				w.sum.Typed++
			} else {
				fmt.Fprintf(b, "      - keys: %s\n", quote(text.String()))
				w.sum.Keys++
			}
			i = j
			continue
		case gClick:
			if err := w.click(b, g); err != nil {
				return err
			}
		case gDrag:
			fmt.Fprintf(b, "      - drag: {from: [%d, %d], to: [%d, %d]%s}\n", g.At.X, g.At.Y, g.To.X, g.To.Y, buttonArg(g.Button))
		case gScroll:
			fmt.Fprintf(b, "      - scroll: {x: %d, y: %d", g.At.X, g.At.Y)
			if g.DX != 0 {
				fmt.Fprintf(b, ", dx: %d", g.DX)
			}
			if g.DY != 0 {
				fmt.Fprintf(b, ", dy: %d", g.DY)
			}
			b.WriteString("}\n")
		case gMove:
			fmt.Fprintf(b, "      - move: [%d, %d]\n", g.At.X, g.At.Y)
		case gSkip:
			fmt.Fprintf(b, "      # left out: %s\n", g.Text)
		}
		i++
	}
	return nil
}

// click writes a click anchored to the text under it when OCR finds some
// (click_text), at its coordinates otherwise.
func (w *writer) click(b *bytes.Buffer, g gesture) error {
	kind := "click"
	if g.Double {
		kind = "double_click"
	}
	// The screen before the pointer arrived first: that is what a replay
	// looks at, and the pointer does not cover the text there.
	for _, shot := range []string{g.Before, g.Screen} {
		if shot == "" {
			continue
		}
		text, err := w.read(shot)
		if err != nil {
			return err
		}
		if phrase, index, ok := clickAnchor(text, g.At); ok {
			re := quote(regexp.QuoteMeta(phrase))
			if index == 0 && !g.Double && (g.Button == "" || g.Button == "left") {
				fmt.Fprintf(b, "      - click_text: %s  # at %d, %d\n", re, g.At.X, g.At.Y)
			} else {
				fmt.Fprintf(b, "      - click_text: {text: %s, index: %d%s, double: %t}  # at %d, %d\n", re, index, buttonArg(g.Button), g.Double, g.At.X, g.At.Y)
			}
			w.sum.TextClicks++
			return nil
		}
	}
	if g.Button == "" || g.Button == "left" {
		fmt.Fprintf(b, "      - %s: [%d, %d]\n", kind, g.At.X, g.At.Y)
	} else {
		fmt.Fprintf(b, "      - %s: {x: %d, y: %d%s}\n", kind, g.At.X, g.At.Y, buttonArg(g.Button))
	}
	w.sum.PointClicks++
	return nil
}

func buttonArg(button string) string {
	if button == "" || button == "left" {
		return ""
	}
	return ", button: " + button
}

// read OCRs a recording's screenshot once.
func (w *writer) read(name string) (screen.Text, error) {
	if t, ok := w.texts[name]; ok {
		return t, nil
	}
	data, err := os.ReadFile(filepath.Join(w.cfg.Recording, name))
	if err != nil {
		return screen.Text{}, fmt.Errorf("recording: %w", err)
	}
	t, err := w.ocr(w.ctx, data)
	if err != nil {
		return screen.Text{}, fmt.Errorf("reading %s: %w", name, err)
	}
	w.texts[name] = t
	return t, nil
}

// crop saves the reference for wait_screen beside the scenario file: the
// area around the pointer when the burst starts with one, else the whole
// screen. It returns the path relative to the scenario and the region.
func (w *writer) crop(shot, stepName string, g gesture) (string, []int, error) {
	f, err := os.Open(filepath.Join(w.cfg.Recording, shot))
	if err != nil {
		return "", nil, err
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		return "", nil, fmt.Errorf("recording %s: %w", shot, err)
	}
	bounds := img.Bounds()
	r := bounds
	var region []int
	if g.Kind != gChar && g.Kind != gKey && g.Kind != gSkip {
		r = image.Rect(g.At.X-cropW/2, g.At.Y-cropH/2, g.At.X+cropW/2, g.At.Y+cropH/2)
		// Slide the box inside the screen rather than cutting it.
		r = r.Add(image.Pt(max(0, -r.Min.X)-max(0, r.Max.X-bounds.Dx()), max(0, -r.Min.Y)-max(0, r.Max.Y-bounds.Dy()))).Intersect(bounds)
		region = []int{r.Min.X, r.Min.Y, r.Dx(), r.Dy()}
	}
	out := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	draw.Draw(out, out.Bounds(), img, r.Min, draw.Src)
	w.refs++
	rel := filepath.Join(w.refDir, fmt.Sprintf("%s-%d.png", fileSafe(stepName), w.refs))
	if err := os.MkdirAll(filepath.Join(w.outDir, w.refDir), 0o755); err != nil {
		return "", nil, err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, out); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(w.outDir, rel), buf.Bytes(), 0o644); err != nil {
		return "", nil, err
	}
	return rel, region, nil
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, s)
}

// waitTimeout gives an anchor three times what the person waited for the
// screen, in whole minutes from 1 to 15: the replay may run slower.
func waitTimeout(gap time.Duration) time.Duration {
	t := (3*gap + time.Minute - 1).Truncate(time.Minute)
	return min(max(t, time.Minute), 15*time.Minute)
}

// minutes writes a whole number of minutes as 5m (Go writes 5m0s).
func minutes(d time.Duration) string { return fmt.Sprintf("%dm", int(d/time.Minute)) }

// roundWait writes a pause to a tenth of a second, or whole seconds from
// ten seconds up.
func roundWait(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// quote writes s as a YAML scalar a person reads easily: single-quoted
// (where only ' is doubled, so a regex's backslashes stay single), or
// double-quoted with JSON's escapes (which are YAML's) when it holds
// control characters.
func quote(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || !unicode.IsPrint(r) && r != ' ' }) {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}
