package screen

import (
	"context"
	"image"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/internal/testenv"
)

// A tesseract TSV as tesseract 5.3 writes it (levels 1–4 are page, block,
// paragraph and line boxes; 5 are words), for an image scaled by 2.
const tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n" +
	"1\t1\t0\t0\t0\t0\t0\t0\t2560\t1600\t-1\t\n" +
	"2\t1\t1\t0\t0\t0\t1416\t10\t88\t22\t-1\t\n" +
	"5\t1\t1\t1\t1\t1\t1416\t10\t88\t22\t95.7\tdebian\n" +
	"5\t1\t2\t1\t1\t1\t1470\t862\t40\t56\t93.6\tLog\n" +
	"5\t1\t2\t1\t1\t2\t1518\t862\t24\t56\t93.6\tIn\n" +
	"5\t1\t2\t1\t1\t3\t1560\t862\t30\t56\t12.0\t \n" +
	"5\t1\t3\t1\t1\t1\t1018\t878\t82\t22\t97.0\tCancel\n"

func TestParseTSV(t *testing.T) {
	txt, err := parseTSV([]byte(tsv), 2, image.Pt(100, 0))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range txt.Lines {
		got = append(got, l.Text)
	}
	// Reading order: "debian" on top; "Cancel" left of "Log In" on one row
	// although tesseract listed it after.
	if strings.Join(got, "|") != "debian|Cancel|Log In" {
		t.Fatalf("lines %q", got)
	}
	li := txt.Lines[2]
	// Boxes: divided by the scale, moved by the region's offset.
	if want := image.Rect(100+735, 431, 100+771, 459); li.Box != want {
		t.Errorf("Log In box %v, want %v", li.Box, want)
	}
	if len(li.Words) != 2 || li.Words[0].Conf != 93.6 {
		t.Errorf("words %+v", li.Words)
	}
	for _, bad := range []string{"", "nonsense\n", "level\tx\n5\t1\t1\n", "level\tx\n5\t1\t1\t1\t1\t1\tL\t1\t1\t1\t9\tx\n"} {
		if _, err := parseTSV([]byte(bad), 1, image.Point{}); err == nil {
			t.Errorf("parseTSV(%q) accepted", bad)
		}
	}
}

func TestFind(t *testing.T) {
	w := func(s string, x, y int) Word { return Word{Text: s, Box: image.Rect(x, y, x+10*len(s), y+12)} }
	txt := Text{Lines: []Line{
		newLine([]Word{w("Web", 300, 100), w("Browser", 340, 100)}),
		newLine([]Word{w("Mail", 20, 200), w("Reader", 70, 200)}),
		newLine([]Word{w("Web", 20, 102), w("Browser", 60, 102), w("Settings", 140, 102)}),
	}}
	ms := txt.Find(regexp.MustCompile(`Web Browser`), image.Rectangle{})
	if len(ms) != 2 {
		t.Fatalf("matches %+v", ms)
	}
	// Reading order: the one on the left first (same row), whatever the
	// lines' order.
	if ms[0].Box != image.Rect(20, 102, 130, 114) || ms[1].Box.Min.X != 300 {
		t.Errorf("order or boxes: %+v", ms)
	}
	if c := ms[0].Center(); c != image.Pt(75, 108) {
		t.Errorf("centre %v", c)
	}
	if ms[0].Line != "Web Browser Settings" || ms[0].Text != "Web Browser" {
		t.Errorf("match %+v", ms[0])
	}
	// A match inside a word covers that word only.
	if ms := txt.Find(regexp.MustCompile(`ett`), image.Rectangle{}); len(ms) != 1 || ms[0].Box != image.Rect(140, 102, 220, 114) {
		t.Errorf("partial word: %+v", ms)
	}
	// A region keeps the words whose centre is inside.
	ms = txt.Find(regexp.MustCompile(`Web Browser`), image.Rect(250, 0, 600, 300))
	if len(ms) != 1 || ms[0].Box.Min.X != 300 {
		t.Errorf("region: %+v", ms)
	}
	if ms := txt.Find(regexp.MustCompile(`Mail`), image.Rect(250, 0, 600, 300)); len(ms) != 0 {
		t.Errorf("text outside the region matched: %+v", ms)
	}
}

func TestNearest(t *testing.T) {
	w := func(s string, x, y int) Word { return Word{Text: s, Box: image.Rect(x, y, x+10*len(s), y+12)} }
	txt := Text{Lines: []Line{
		newLine([]Word{w("Not", 100, 100), w("Now", 140, 100)}),
		newLine([]Word{w("Continue", 400, 100)}),
	}}
	for _, tt := range []struct {
		p          image.Point
		line, word string
		ok         bool
	}{
		{image.Pt(145, 105), "Not Now", "Now", true}, // on the word
		{image.Pt(133, 105), "Not Now", "Not", true}, // between the two, nearer Not
		{image.Pt(395, 90), "Continue", "Continue", true},
		{image.Pt(300, 300), "", "", false}, // nothing within 20 pixels
	} {
		l, wd, ok := txt.Nearest(tt.p, 20)
		if ok != tt.ok || l.Text != tt.line || wd.Text != tt.word {
			t.Errorf("Nearest(%v) = %q %q %v, want %q %q %v", tt.p, l.Text, wd.Text, ok, tt.line, tt.word, tt.ok)
		}
	}
}

func requireTesseract(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("tesseract"); err != nil {
		testenv.Missing(t, "tesseract not installed (scripts/provision.sh installs tesseract-ocr)")
	}
}

// TestOCRRealScreens reads screenshots QEMU's screendump took of the
// debian-12-desktop machine (testdata/) with the real tesseract: the text a
// scenario waits for and clicks is found, with boxes on the real buttons.
func TestOCRRealScreens(t *testing.T) {
	requireTesseract(t)
	tests := []struct {
		file, pattern string
		// want is a point the match's box must contain (measured on the PNG).
		want image.Point
	}{
		{"greeter.png", `^Log In$`, image.Pt(752, 445)},
		{"greeter.png", `Cancel`, image.Pt(529, 445)},
		{"greeter.png", `debian`, image.Pt(729, 11)},
	}
	for _, tt := range tests {
		t.Run(tt.file+" "+tt.pattern, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			txt, err := OCR(context.Background(), data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			ms := txt.Find(regexp.MustCompile(tt.pattern), image.Rectangle{})
			if len(ms) != 1 {
				t.Fatalf("%d matches of /%s/; text read:\n%s", len(ms), tt.pattern, txt.Dump())
			}
			if !tt.want.In(ms[0].Box) {
				t.Errorf("/%s/ box %v does not contain %v", tt.pattern, ms[0].Box, tt.want)
			}
		})
	}
}

// TestOCRRegion reads only a region: boxes stay in screen pixels, and text
// outside it is not read.
func TestOCRRegion(t *testing.T) {
	requireTesseract(t)
	data, err := os.ReadFile("testdata/greeter.png")
	if err != nil {
		t.Fatal(err)
	}
	region := image.Rect(467, 313, 813, 487) // the login box
	txt, err := OCR(context.Background(), data, Options{Region: region})
	if err != nil {
		t.Fatal(err)
	}
	if txt.Size != image.Pt(1280, 800) {
		t.Errorf("size %v", txt.Size)
	}
	ms := txt.Find(regexp.MustCompile(`Log In`), image.Rectangle{})
	if len(ms) != 1 || !image.Pt(752, 445).In(ms[0].Box) {
		t.Fatalf("Log In in the region: %+v\n%s", ms, txt.Dump())
	}
	if strings.Contains(txt.String(), "debian") {
		t.Errorf("text outside the region read:\n%s", txt)
	}
	if _, err := OCR(context.Background(), data, Options{Region: image.Rect(2000, 0, 2100, 10)}); err == nil {
		t.Error("region outside the screen accepted")
	}
}

// BenchmarkOCR is the OCR time per screen of the real screenshots, at the
// default scale and at 1× and 3× (README, "Reading the screen and pointing").
func BenchmarkOCR(b *testing.B) {
	requireTesseract(b)
	files, _ := os.ReadDir("testdata")
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".png") {
			continue
		}
		data, err := os.ReadFile("testdata/" + f.Name())
		if err != nil {
			b.Fatal(err)
		}
		for _, scale := range []int{1, 2, 3} {
			b.Run(f.Name()+"/scale"+string(rune('0'+scale)), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := OCR(context.Background(), data, Options{Scale: scale}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
