package report

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/firstboot/firstboot/results/schema"
)

// Timeline geometry, in SVG user units (pixels at 100 %).
const (
	tlWidth     = 1160
	tlLabelW    = 270 // destination names, left of the plot
	tlRight     = 16
	tlTop       = 60 // two staggered lines of step labels, then the top time axis
	tlPad       = 10 // inner margin of the plot, so a big dot at the edge stays clear of the labels
	tlRowH      = 18
	tlAxisH     = 30
	tlLegendH   = 24
	tlMaxRows   = 120
	tlMaxLabel  = 40 // characters of a destination name shown before "…"
	tlMinRadius = 2.5
	tlMaxRadius = 9.0
	tlCharW     = 6.2 // rough width of one 11 px character, to fit step labels
)

// timeline is the SVG picture, laid out here so the template only prints
// numbers and escaped strings.
type timeline struct {
	Width, Height       int
	PlotX, PlotW        string
	AxisX2              string
	PlotTop, PlotBottom string
	AxisY, LegendY      string
	Bands               []tlBand
	Rows                []tlRow
	Marks               []tlMark
	Ticks               []tlTick
	Note                string
	LegendX             string
	Legend              []tlLegend
}

type tlBand struct {
	Step, Label            string
	X, W, Y, H             string
	LabelX, LabelY, Shade  string
	LineX1, LineY1, LineY2 string
}

type tlRow struct {
	Name, Label, Party string
	Y, TextY           string
	Odd                bool
}

type tlMark struct {
	CX, CY, R, X2, Party, Title string
	Line                        bool
}

type tlTick struct{ X, Label string }

type tlLegend struct{ X, TextX, Party, Label string }

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func buildTimeline(a *schema.Analysis, origin time.Time) *timeline {
	// Time domain: the capture, widened to the steps.
	t0, t1 := a.Summary.FirstTS, a.Summary.LastTS
	for _, v := range a.Steps {
		if !v.Start.IsZero() && (t0.IsZero() || v.Start.Before(t0)) {
			t0 = v.Start
		}
		if v.End.After(t1) {
			t1 = v.End
		}
	}
	if !origin.IsZero() && (t0.IsZero() || origin.Before(t0)) {
		t0 = origin
	}
	if t0.IsZero() {
		return nil
	}
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	plotX := float64(tlLabelW)
	plotW := float64(tlWidth - tlLabelW - tlRight)
	x := func(t time.Time) float64 {
		v := t.Sub(t0).Seconds() / span
		return plotX + tlPad + math.Max(0, math.Min(1, v))*(plotW-2*tlPad)
	}

	// Rows: destinations in order of first connection, as in the tables.
	party := map[string]string{}
	for _, d := range a.Destinations {
		party[strings.ToLower(d.Name)] = d.Party
	}
	first := map[string]time.Time{}
	var names []string
	for _, c := range a.Conns {
		n := connName(c)
		if t, ok := first[n]; !ok || c.TS.Before(t) {
			if !ok {
				names = append(names, n)
			}
			first[n] = c.TS
		}
	}
	sort.SliceStable(names, func(i, j int) bool {
		if !first[names[i]].Equal(first[names[j]]) {
			return first[names[i]].Before(first[names[j]])
		}
		return names[i] < names[j]
	})
	tl := &timeline{Width: tlWidth, PlotX: f1(plotX), PlotW: f1(plotW), AxisX2: f1(plotX + plotW)}
	if len(names) > tlMaxRows {
		tl.Note = fmt.Sprintf("Showing the first %d of %d destinations (by first connection).", tlMaxRows, len(names))
		names = names[:tlMaxRows]
	}
	row := map[string]int{}
	top := float64(tlTop)
	for i, n := range names {
		row[n] = i
		y := top + float64(i)*tlRowH
		label := n
		if r := []rune(label); len(r) > tlMaxLabel {
			label = string(r[:tlMaxLabel-1]) + "…"
		}
		tl.Rows = append(tl.Rows, tlRow{Name: n, Label: label, Party: partyClass(party[strings.ToLower(n)]),
			Y: f1(y), TextY: f1(y + tlRowH/2 + 4), Odd: i%2 == 1})
	}
	rows := len(names)
	if rows == 0 {
		rows = 1
	}
	bottom := top + float64(rows)*tlRowH
	tl.PlotTop, tl.PlotBottom = f1(top), f1(bottom)
	tl.AxisY = f1(bottom)
	tl.LegendY = f1(bottom + tlAxisH + 14)
	tl.Height = int(bottom) + tlAxisH + tlLegendH

	// Steps as shaded bands, labels staggered over two lines so short steps
	// do not overprint each other.
	for i, v := range a.Steps {
		start, end := v.Start, v.End
		if start.IsZero() {
			start = t0
		}
		if end.IsZero() || end.Before(start) {
			end = t1
		}
		bx, ex := x(start), x(end)
		w := math.Max(ex-bx, 1)
		labelY := 14.0
		if i%2 == 1 {
			labelY = 30
		}
		label := v.Name
		if fit := int((w + 40) / tlCharW); fit < len([]rune(label)) {
			if fit < 2 {
				fit = 2
			}
			label = string([]rune(label)[:fit-1]) + "…"
		}
		// Keep the label inside the picture: a late step's label ends at the right edge.
		lx := math.Min(bx+3, float64(tlWidth-tlRight)-float64(len([]rune(label)))*tlCharW)
		lx = math.Max(lx, plotX)
		tl.Bands = append(tl.Bands, tlBand{Step: v.Name, Label: label,
			X: f1(bx), W: f1(w), Y: f1(top), H: f1(bottom - top),
			LabelX: f1(lx), LabelY: f1(labelY), Shade: strconv.Itoa(i % 2),
			LineX1: f1(bx), LineY1: f1(labelY + 4), LineY2: f1(bottom)})
	}

	// Connections: a dot at the start sized by bytes (area ∝ bytes), a line for the duration.
	var maxBytes int64 = 1
	for _, c := range a.Conns {
		maxBytes = max(maxBytes, c.OrigIPBytes+c.RespIPBytes)
	}
	for _, c := range a.Conns {
		n := connName(c)
		r, ok := row[n]
		if !ok {
			continue
		}
		b := c.OrigIPBytes + c.RespIPBytes
		rad := tlMinRadius + (tlMaxRadius-tlMinRadius)*math.Sqrt(float64(b)/float64(maxBytes))
		cx := x(c.TS)
		x2 := x(c.TS.Add(time.Duration(c.Duration * float64(time.Second))))
		svc := c.Proto
		if c.Service != "" {
			svc += " " + c.Service
		}
		title := fmt.Sprintf("%s — %s/%d %s — %s, %s — %s B up, %s B down",
			n, c.Proto, c.RespP, svc, offset(c.TS, origin), seconds(c.Duration), commas(c.OrigIPBytes), commas(c.RespIPBytes))
		if c.Step != "" {
			title += " — step " + c.Step
		}
		cy := top + float64(r)*tlRowH + tlRowH/2
		tl.Marks = append(tl.Marks, tlMark{CX: f1(cx), CY: f1(cy), R: f1(rad), X2: f1(x2), Line: x2-cx >= 1,
			Party: partyClass(party[strings.ToLower(n)]), Title: title})
	}

	for _, tk := range ticks(span) {
		tl.Ticks = append(tl.Ticks, tlTick{X: f1(x(t0.Add(time.Duration(tk * float64(time.Second))))), Label: tickLabel(tk + t0.Sub(origin).Seconds())})
	}
	// The legend names the parties shown, in the tables' own words.
	shown := map[string]bool{}
	for _, r := range tl.Rows {
		shown[r.Party] = true
	}
	tl.LegendX = f1(plotX)
	lx := plotX + 42 // after "Party:"
	for _, p := range parties {
		if shown[p] {
			tl.Legend = append(tl.Legend, tlLegend{X: f1(lx + 6), TextX: f1(lx + 16), Party: p, Label: p})
			lx += 90
		}
	}
	return tl
}

// parties are the Party values of schema.Destination, in legend order.
var parties = []string{"first", "third", "local", "unknown"}

func connName(c schema.Conn) string {
	if c.Name != "" {
		return c.Name
	}
	return c.RespH
}

func partyClass(p string) string {
	switch p {
	case "first", "third", "local":
		return p
	}
	return "unknown"
}

// ticks returns tick positions (seconds from the domain's start) at a round
// interval giving at most ten ticks.
func ticks(span float64) []float64 {
	steps := []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400}
	step := steps[len(steps)-1]
	for _, s := range steps {
		if span/s <= 10 {
			step = s
			break
		}
	}
	var out []float64
	for i := 0; float64(i)*step <= span+1e-9 && i <= 1000; i++ {
		out = append(out, float64(i)*step)
	}
	return out
}

func tickLabel(s float64) string {
	switch {
	case math.Abs(s) < 120:
		return strconv.FormatFloat(math.Round(s*1000)/1000, 'f', -1, 64) + " s"
	case math.Abs(s) < 7200:
		m := int(math.Round(s))
		return fmt.Sprintf("%d:%02d", m/60, m%60)
	}
	m := int(math.Round(s))
	return fmt.Sprintf("%d:%02d:%02d", m/3600, m/60%60, m%60)
}
