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
		var cur []screen.Word
		emit := func() {
			if len(cur) > 0 {
				out = append(out, newLabel(cur))
			}
			cur = nil
		}
		for i, w := range l.Words {
			if i > 0 && w.Box.Min.X-l.Words[i-1].Box.Max.X > l.Box.Dy() {
				emit()
			}
			cur = append(cur, w)
		}
		emit()
	}
	return out
}

func newLabel(ws []screen.Word) label {
	l := label{Words: ws}
	texts := make([]string, len(ws))
	for i, w := range ws {
		texts[i] = w.Text
		l.Box = l.Box.Union(w.Box)
		l.Conf += w.Conf
	}
	// Punctuation at the ends ("Booting from ROM...", "Password:") adds
	// nothing to an anchor but escapes; the rest still matches the line.
	l.Text = strings.TrimFunc(strings.Join(texts, " "), unicode.IsPunct)
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
// with confidence. "" when the screen has no usable text.
func identify(t, prev screen.Text) (phrase string, isNew bool) {
	before := prev.String()
	best, bestScore := "", -1.0
	for _, l := range labels(t) {
		for _, p := range phrases(l) {
			if p.Conf < minConf || !usable(p.Text) {
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

// clickAnchor finds the text a click at p was aimed at: the label under it,
// else the nearest within reach. index is which match of the phrase, in
// the reading order click_text uses, is the clicked one.
func clickAnchor(t screen.Text, p image.Point) (phrase string, index int, ok bool) {
	var under *label
	bestDist := clickNear + 1
	ls := labels(t)
	for i := range ls {
		l := &ls[i]
		if l.Conf < minConf-10 || letters(l.Text) < 2 {
			continue
		}
		if d := distToBox(p, l.Box.Inset(-3)); d < bestDist {
			under, bestDist = l, d
		}
	}
	if under == nil {
		return "", 0, false
	}
	target := *under
	if len(target.Words) > maxLabelWords {
		// A sentence: the word under the click.
		target, bestDist = label{}, clickNear+1
		for _, w := range under.Words {
			if d := distToBox(p, w.Box.Inset(-3)); d < bestDist && letters(w.Text) >= 2 {
				target, bestDist = newLabel([]screen.Word{w}), d
			}
		}
		if target.Text == "" {
			return "", 0, false
		}
	}
	re, err := regexp.Compile(regexp.QuoteMeta(target.Text))
	if err != nil {
		return "", 0, false
	}
	index, bestDist = -1, clickNear+1
	for i, m := range t.Find(re, image.Rectangle{}) {
		if d := distToBox(p, image.Rectangle{Min: m.Center(), Max: m.Center().Add(image.Pt(1, 1))}); d < bestDist {
			index, bestDist = i, d
		}
	}
	if index < 0 {
		return "", 0, false
	}
	return target.Text, index, true
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

// distToBox is how far p is from r (0 inside), in the larger of the two
// axis distances.
func distToBox(p image.Point, r image.Rectangle) int {
	dx := max(r.Min.X-p.X, 0, p.X-(r.Max.X-1))
	dy := max(r.Min.Y-p.Y, 0, p.Y-(r.Max.Y-1))
	return max(dx, dy)
}
