// Package screen reads a machine's screen: the words and lines on a
// screenshot, with their boxes in screen pixels, through the tesseract
// command (Debian's tesseract-ocr; no cgo), and regions of a screenshot
// matched against a reference image.
//
// Small screens are scaled up before OCR: at their own size tesseract
// missed words set in a desktop's 11-pixel fonts that it read at 2× (README,
// "Reading the screen and pointing", has the measurements).
package screen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Options say how to read a screenshot.
type Options struct {
	// Region limits reading to a rectangle in screen pixels; the zero
	// rectangle reads the whole screen.
	Region image.Rectangle
	// Scale multiplies the image before OCR; 0 picks DefaultScale.
	Scale int
	// Lang is tesseract's language (default "eng").
	Lang string
	// Command is the tesseract executable (default "tesseract" on PATH).
	Command string
}

// DefaultScale picks the factor for a screen width: 2 below 1600 pixels
// (typical VM screens, whose small fonts tesseract misreads at 1×), 1 above
// (tesseract struggles with very large images).
func DefaultScale(width int) int {
	if width < 1600 {
		return 2
	}
	return 1
}

// Word is one word tesseract read.
type Word struct {
	Text string
	// Box is where the word is, in screen pixels.
	Box image.Rectangle
	// Conf is tesseract's confidence, 0–100.
	Conf float64
}

// Line is a line of words, in reading order.
type Line struct {
	// Text is the words joined by single spaces.
	Text  string
	Box   image.Rectangle
	Words []Word
}

// Text is what a screenshot says.
type Text struct {
	// Size is the screenshot's size in pixels.
	Size  image.Point
	Lines []Line
}

// String is the text, one line per line, for logs and failure artifacts.
func (t Text) String() string {
	var b strings.Builder
	for _, l := range t.Lines {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// Dump is the text with each line's box and mean confidence, the form
// failure artifacts keep so a scenario author can pick a region.
func (t Text) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# screen %dx%d; x y width height confidence: text\n", t.Size.X, t.Size.Y)
	for _, l := range t.Lines {
		conf := 0.0
		for _, w := range l.Words {
			conf += w.Conf
		}
		if len(l.Words) > 0 {
			conf /= float64(len(l.Words))
		}
		r := l.Box
		fmt.Fprintf(&b, "%d %d %d %d %.0f: %s\n", r.Min.X, r.Min.Y, r.Dx(), r.Dy(), conf, l.Text)
	}
	return b.String()
}

// Match is one place a pattern matched.
type Match struct {
	// Text is the matched text.
	Text string
	// Box covers the words the match touches, in screen pixels.
	Box image.Rectangle
	// Line is the text of the whole line it was found in.
	Line string
}

// Center is where a click on the match lands.
func (m Match) Center() image.Point {
	return image.Pt((m.Box.Min.X+m.Box.Max.X)/2, (m.Box.Min.Y+m.Box.Max.Y)/2)
}

// Find returns every match of re in the text, line by line, in reading
// order (top to bottom; left to right within a row). A non-empty region
// keeps only the words whose centre lies inside it.
func (t Text) Find(re *regexp.Regexp, region image.Rectangle) []Match {
	var out []Match
	for _, l := range t.Lines {
		if !region.Empty() {
			l = l.within(region)
			if len(l.Words) == 0 {
				continue
			}
		}
		// starts[i] is where word i begins in l.Text.
		starts := make([]int, len(l.Words))
		pos := 0
		for i, w := range l.Words {
			starts[i] = pos
			pos += len(w.Text) + 1
		}
		for _, loc := range re.FindAllStringIndex(l.Text, -1) {
			if loc[0] == loc[1] {
				continue
			}
			var box image.Rectangle
			for i, w := range l.Words {
				if starts[i] < loc[1] && starts[i]+len(w.Text) > loc[0] {
					box = box.Union(w.Box)
				}
			}
			out = append(out, Match{Text: l.Text[loc[0]:loc[1]], Box: box, Line: l.Text})
		}
	}
	readingOrder(out, func(m Match) image.Rectangle { return m.Box })
	return out
}

// Nearest returns the line with the word under p, or the word nearest p
// within maxDist pixels (distance from p to the word's box), and that word:
// what a recorded click should be anchored to. ok is false when no word is
// that close.
func (t Text) Nearest(p image.Point, maxDist int) (line Line, word Word, ok bool) {
	best := maxDist*maxDist + 1
	for _, l := range t.Lines {
		for _, w := range l.Words {
			if d := distSq(p, w.Box); d < best {
				best, line, word, ok = d, l, w, true
			}
		}
	}
	return line, word, ok
}

// distSq is the squared distance from p to r (0 inside).
func distSq(p image.Point, r image.Rectangle) int {
	dx := max(r.Min.X-p.X, 0, p.X-(r.Max.X-1))
	dy := max(r.Min.Y-p.Y, 0, p.Y-(r.Max.Y-1))
	return dx*dx + dy*dy
}

// within is the line with only the words whose centre is inside r.
func (l Line) within(r image.Rectangle) Line {
	var ws []Word
	for _, w := range l.Words {
		c := image.Pt((w.Box.Min.X+w.Box.Max.X)/2, (w.Box.Min.Y+w.Box.Max.Y)/2)
		if c.In(r) {
			ws = append(ws, w)
		}
	}
	return newLine(ws)
}

func newLine(ws []Word) Line {
	l := Line{Words: ws}
	texts := make([]string, len(ws))
	for i, w := range ws {
		texts[i] = w.Text
		l.Box = l.Box.Union(w.Box)
	}
	l.Text = strings.Join(texts, " ")
	return l
}

// readingOrder sorts items into rows (an item whose vertical centre lies
// within a row's first box joins that row), rows top to bottom, each row
// left to right. Tesseract's own order follows its layout blocks, which on
// a screen can run down one column before the next.
func readingOrder[T any](items []T, box func(T) image.Rectangle) {
	sort.SliceStable(items, func(i, j int) bool { return box(items[i]).Min.Y < box(items[j]).Min.Y })
	for start := 0; start < len(items); {
		row := box(items[start])
		end := start + 1
		for end < len(items) {
			b := box(items[end])
			if cy := (b.Min.Y + b.Max.Y) / 2; cy < row.Min.Y || cy >= row.Max.Y {
				break
			}
			end++
		}
		r := items[start:end]
		sort.SliceStable(r, func(i, j int) bool { return box(r[i]).Min.X < box(r[j]).Min.X })
		start = end
	}
}

// OCR reads the text of a PNG screenshot with tesseract.
func OCR(ctx context.Context, pngData []byte, opts Options) (Text, error) {
	img, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		return Text{}, fmt.Errorf("ocr: the screenshot is not a PNG: %w", err)
	}
	return OCRImage(ctx, img, opts)
}

// OCRImage reads the text of an image with tesseract.
func OCRImage(ctx context.Context, img image.Image, opts Options) (Text, error) {
	b := img.Bounds()
	region := b
	if !opts.Region.Empty() {
		region = opts.Region.Add(b.Min).Intersect(b)
		if region.Empty() {
			return Text{}, fmt.Errorf("ocr: region %v is outside the %dx%d screen", opts.Region, b.Dx(), b.Dy())
		}
	}
	scale := opts.Scale
	if scale <= 0 {
		scale = DefaultScale(b.Dx())
	}
	lang := opts.Lang
	if lang == "" {
		lang = "eng"
	}
	command := opts.Command
	if command == "" {
		command = "tesseract"
	}
	if _, err := exec.LookPath(command); err != nil {
		return Text{}, fmt.Errorf("ocr: %s not found: install Debian's tesseract-ocr (scripts/provision.sh does): %w", command, err)
	}
	// PGM through stdin: tesseract (leptonica) reads it without a decoder
	// round trip, and no temporary file is left behind on Ctrl-C.
	pgm := grayPGM(img, region, scale)
	// --psm 11 (sparse text): a screen is scattered labels, not a page of
	// paragraphs. One thread: tesseract's OpenMP threads cost more CPU than
	// they save on images this size, and the VM needs the cores.
	cmd := exec.CommandContext(ctx, command, "stdin", "stdout", "-l", lang, "--psm", "11", "tsv")
	cmd.Env = append(cmd.Environ(), "OMP_THREAD_LIMIT=1")
	cmd.Stdin = bytes.NewReader(pgm)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return Text{}, fmt.Errorf("ocr: %w", context.Cause(ctx))
		}
		return Text{}, fmt.Errorf("ocr: tesseract: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	t, err := parseTSV(stdout.Bytes(), scale, region.Min.Sub(b.Min))
	if err != nil {
		return Text{}, fmt.Errorf("ocr: %w", err)
	}
	t.Size = b.Size()
	return t, nil
}

// grayPGM renders the region, scaled by an integer factor with bilinear
// interpolation, as a binary 8-bit PGM.
func grayPGM(img image.Image, r image.Rectangle, scale int) []byte {
	w, h := r.Dx(), r.Dy()
	gray := make([]float64, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			cr, cg, cb, _ := img.At(r.Min.X+x, r.Min.Y+y).RGBA()
			// ITU-R BT.601 luma, 16-bit channels to 0–255.
			gray[y*w+x] = (0.299*float64(cr) + 0.587*float64(cg) + 0.114*float64(cb)) / 257
		}
	}
	sw, sh := w*scale, h*scale
	header := fmt.Sprintf("P5\n%d %d\n255\n", sw, sh)
	out := make([]byte, len(header)+sw*sh)
	copy(out, header)
	px := out[len(header):]
	at := func(x, y int) float64 {
		x = min(max(x, 0), w-1)
		y = min(max(y, 0), h-1)
		return gray[y*w+x]
	}
	for y := 0; y < sh; y++ {
		// Source coordinate of the destination pixel's centre.
		fy := (float64(y)+0.5)/float64(scale) - 0.5
		y0 := int(fy)
		if fy < 0 {
			y0 = -1
		}
		ty := fy - float64(y0)
		for x := 0; x < sw; x++ {
			fx := (float64(x)+0.5)/float64(scale) - 0.5
			x0 := int(fx)
			if fx < 0 {
				x0 = -1
			}
			tx := fx - float64(x0)
			v := (at(x0, y0)*(1-tx)+at(x0+1, y0)*tx)*(1-ty) + (at(x0, y0+1)*(1-tx)+at(x0+1, y0+1)*tx)*ty
			px[y*sw+x] = uint8(min(max(v+0.5, 0), 255))
		}
	}
	return out
}

// errTSV is a tesseract output this package cannot read.
var errTSV = errors.New("unexpected tesseract TSV output")

// parseTSV reads tesseract's TSV (level, page, block, paragraph, line, word,
// left, top, width, height, conf, text), keeps the words (level 5) and
// groups them into lines. Boxes are divided by scale and moved by off, so
// they are in screen pixels.
func parseTSV(data []byte, scale int, off image.Point) (Text, error) {
	type key struct{ block, par, line int }
	var order []key
	lines := map[key][]Word{}
	rows := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(rows) == 0 || !strings.HasPrefix(rows[0], "level\t") {
		return Text{}, fmt.Errorf("%w: no header", errTSV)
	}
	for n, row := range rows[1:] {
		f := strings.SplitN(row, "\t", 12)
		if len(f) < 11 {
			return Text{}, fmt.Errorf("%w: line %d has %d fields", errTSV, n+2, len(f))
		}
		if f[0] != "5" || len(f) < 12 {
			continue
		}
		text := strings.TrimSpace(f[11])
		if text == "" {
			continue
		}
		var v [9]int
		for i := 1; i <= 9; i++ {
			x, err := strconv.Atoi(f[i])
			if err != nil {
				return Text{}, fmt.Errorf("%w: line %d field %d: %q", errTSV, n+2, i+1, f[i])
			}
			v[i-1] = x
		}
		conf, err := strconv.ParseFloat(f[10], 64)
		if err != nil {
			return Text{}, fmt.Errorf("%w: line %d confidence %q", errTSV, n+2, f[10])
		}
		left, top, w, h := v[5], v[6], v[7], v[8]
		box := image.Rect(left/scale, top/scale, (left+w+scale-1)/scale, (top+h+scale-1)/scale).Add(off)
		k := key{v[1], v[2], v[3]}
		if _, ok := lines[k]; !ok {
			order = append(order, k)
		}
		lines[k] = append(lines[k], Word{Text: text, Box: box, Conf: conf})
	}
	var t Text
	for _, k := range order {
		t.Lines = append(t.Lines, newLine(lines[k]))
	}
	readingOrder(t.Lines, func(l Line) image.Rectangle { return l.Box })
	return t, nil
}
