package record

import (
	"image"
	"regexp"
	"strings"
	"unicode"

	"github.com/firstboot/firstboot/lab/screen"
)

// What OCR text is trusted as an anchor.
const (
	// minConf is the least mean tesseract confidence of an anchor's words.
	minConf = 70
	// minLetters: shorter text is too likely to appear anywhere.
	minLetters = 4
	// maxLabelWords: longer runs of words are sentences, whose OCR breaks
	// more easily; a single word of them is used instead.
	maxLabelWords = 4
	// junkConf: words read with less confidence at a label's ends are taken
	// for icons.
	junkConf = 50
	// shortConf: a one- or two-letter word at a label's end needs this
	// much confidence to be taken for a word ("OK") rather than an icon.
	shortConf = 90
)

// label is a run of words that reads as one thing on the screen (a
// button's caption, a menu entry): words of a line with no wide gap.
type label struct {
	Text  string
	Box   image.Rectangle
	Words []screen.Word
	Conf  float64
}

// labels splits each line where the gap between two words is wider than
// the line is high: tesseract joins widgets side by side (a panel's
// "Applications" and "Places") into one line.
func labels(t screen.Text) []label {
	var out []label
	for _, l := range t.Lines {
		out = append(out, splitLine(l)...)
	}
	return out
}

func splitLine(l screen.Line) []label {
	var out []label
	var cur []screen.Word
	for i, w := range l.Words {
		if i > 0 && w.Box.Min.X-l.Words[i-1].Box.Max.X > l.Box.Dy() {
			out = append(out, newLabel(cur))
			cur = nil
		}
		cur = append(cur, w)
	}
	if len(cur) > 0 {
		out = append(out, newLabel(cur))
	}
	return out
}

// junkWord is what OCR makes of an icon beside a label ("3€", "mf", "Q"):
// no letter, little confidence, or one or two letters without much.
func junkWord(w screen.Word) bool {
	n := 0
	for _, r := range w.Text {
		if unicode.IsLetter(r) {
			n++
		}
	}
	return n == 0 || w.Conf < junkConf || (len([]rune(w.Text)) <= 2 && w.Conf < shortConf)
}

func newLabel(ws []screen.Word) label {
	// Icons read as words at either end are not part of the label; in the
	// middle they stay (the label must still be the line's text).
	for len(ws) > 1 && junkWord(ws[0]) {
		ws = ws[1:]
	}
	for len(ws) > 1 && junkWord(ws[len(ws)-1]) {
		ws = ws[:len(ws)-1]
	}
	l := label{Words: ws}
	texts := make([]string, len(ws))
	for i, w := range ws {
		texts[i] = w.Text
		l.Box = l.Box.Union(w.Box)
		l.Conf += w.Conf
	}
	// Punctuation at the ends ("Booting from ROM...", "Password:") adds
	// nothing to an anchor but escapes; the rest still matches the line.
	l.Text = strings.TrimFunc(strings.Join(texts, " "), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	l.Conf /= float64(len(ws))
	return l
}

// usable says whether text can anchor a replay: enough letters, and no
// digits (clocks, counters and versions change between runs).
func usable(text string) bool {
	letters := 0
	for _, r := range text {
		switch {
		case unicode.IsDigit(r):
			return false
		case unicode.IsLetter(r):
			letters++
		}
	}
	return letters >= minLetters
}

// phrases are the anchor candidates of a label: the label itself when it is
// short, else each of its words.
func phrases(l label) []label {
	if len(l.Words) <= maxLabelWords {
		return []label{l}
	}
	out := make([]label, len(l.Words))
	for i, w := range l.Words {
		out[i] = newLabel([]screen.Word{w})
	}
	return out
}

// identify picks the text that best says which screen this is: preferably
// text the previous screen did not show (isNew), the longest such, read
// with confidence. Text the person typed is left out: its echo says what
// they did, not that the machine has moved on. "" when the screen has no
// usable text.
func identify(t, prev screen.Text, typed []string) (phrase string, isNew bool) {
	before := prev.String()
	best, bestScore := "", -1.0
	for _, l := range labels(t) {
		for _, p := range phrases(l) {
			if p.Conf < minConf || !usable(p.Text) || echoes(p.Text, typed) {
				continue
			}
			fresh := !strings.Contains(before, p.Text)
			score := float64(min(len(p.Text), 24)) + p.Conf/100
			if fresh {
				score += 1000
			}
			if score > bestScore {
				best, bestScore, isNew = p.Text, score, fresh
			}
		}
	}
	return best, isNew
}

// clickAnchor finds the text a click at p was aimed at: the label (see
// labels) with the word under it, or the nearest word within reach. index
// is which match of the phrase, in the reading order click_text uses, is
// the clicked one.
func clickAnchor(t screen.Text, p image.Point) (phrase string, index int, ok bool) {
	line, word, ok := t.Nearest(p, clickNear)
	if !ok || letters(word.Text) < 2 {
		return "", 0, false
	}
	if junkWord(word) {
		return "", 0, false // an icon, most likely: keep the coordinates
	}
	target := newLabel([]screen.Word{word})
	for _, l := range splitLine(line) {
		if containsWord(l.Words, word) && len(l.Words) <= maxLabelWords {
			target = l
		}
	}
	// A word the pointer covers reads badly ("Byowser"): such a label is
	// no anchor, and the click keeps its coordinates.
	if target.Conf < minConf || letters(target.Text) < 2 {
		return "", 0, false
	}
	for _, w := range target.Words {
		if w.Conf < junkConf+5 {
			return "", 0, false
		}
	}
	re, err := regexp.Compile(regexp.QuoteMeta(target.Text))
	if err != nil {
		return "", 0, false
	}
	index, best := -1, clickNear*clickNear+1
	for i, m := range t.Find(re, image.Rectangle{}) {
		c := m.Center().Sub(p)
		if d := c.X*c.X + c.Y*c.Y; d < best {
			index, best = i, d
		}
	}
	if index < 0 {
		return "", 0, false
	}
	return target.Text, index, true
}

func containsWord(ws []screen.Word, w screen.Word) bool {
	for _, x := range ws {
		if x == w {
			return true
		}
	}
	return false
}

func letters(s string) int {
	n := 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			n++
		}
	}
	return n
}

// echoes says whether text shows something the person typed.
func echoes(text string, typed []string) bool {
	low := strings.ToLower(text)
	for _, t := range typed {
		t = strings.ToLower(strings.TrimSpace(t))
		if len(t) >= 3 && (strings.Contains(low, t) || strings.Contains(t, low)) {
			return true
		}
	}
	return false
}
