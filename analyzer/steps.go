package analyzer

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Step names for records outside every step.
const (
	stepBefore = "before"
	stepAfter  = "after"
)

// stepper maps packet times to step indexes: 0 is "before", 1..n the steps,
// n+1 "after". Without steps every time maps to 0, named "".
type stepper struct {
	names      []string
	start, end []int64 // ns; end = MaxInt64 for an open last step
	openEnd    bool
	// cache of the last lookup: times in [lo, hi) map to idx.
	lo, hi int64
	idx    int
}

func newStepper(steps []Step) (*stepper, error) {
	s := &stepper{lo: 1, hi: 0}
	for i, st := range steps {
		if st.Name == "" {
			return nil, fmt.Errorf("step %d has no name", i+1)
		}
		if st.Name == stepBefore || st.Name == stepAfter {
			return nil, fmt.Errorf("step name %q is reserved for records outside the steps", st.Name)
		}
		if i > 0 && st.Start.Before(steps[i-1].Start) {
			return nil, fmt.Errorf("step %q starts before step %q: steps must be in time order", st.Name, steps[i-1].Name)
		}
		end := int64(math.MaxInt64)
		switch {
		case !st.End.IsZero():
			end = st.End.UnixNano()
		case i+1 < len(steps):
			end = steps[i+1].Start.UnixNano()
		default:
			s.openEnd = true
		}
		if end < st.Start.UnixNano() {
			return nil, fmt.Errorf("step %q ends before it starts", st.Name)
		}
		s.names = append(s.names, st.Name)
		s.start = append(s.start, st.Start.UnixNano())
		s.end = append(s.end, end)
	}
	return s, nil
}

func (s *stepper) count() int { return len(s.names) + 2 }

// name returns the step name of an index.
func (s *stepper) name(i int) string {
	switch {
	case len(s.names) == 0:
		return ""
	case i == 0:
		return stepBefore
	case i > len(s.names):
		return stepAfter
	}
	return s.names[i-1]
}

// index returns the step of a packet time. A time in a gap between two steps
// belongs to the step that started last before it.
func (s *stepper) index(ts int64) int {
	if len(s.names) == 0 {
		return 0
	}
	if ts >= s.lo && ts < s.hi {
		return s.idx
	}
	n := len(s.names)
	// Last step starting at or before ts.
	i := sort.Search(n, func(i int) bool { return s.start[i] > ts }) - 1
	var idx int
	var lo, hi int64
	switch {
	case i < 0:
		idx, lo, hi = 0, math.MinInt64, s.start[0]
	case ts < s.end[i]:
		idx, lo, hi = i+1, s.start[i], s.end[i]
		if i+1 < n && s.start[i+1] < hi {
			hi = s.start[i+1]
		}
	case i == n-1:
		idx, lo, hi = n+1, s.end[i], math.MaxInt64
	default:
		idx, lo, hi = i+1, s.end[i], s.start[i+1] // in a gap
	}
	s.lo, s.hi, s.idx = lo, hi, idx
	return idx
}

// ParseSteps parses the --steps flag: "name=start,name=start,…" where start is
// RFC 3339 or Unix seconds (fractions allowed). Each step ends where the next
// starts; the last ends with the capture.
func ParseSteps(spec string) ([]Step, error) {
	var steps []Step
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, at, ok := strings.Cut(part, "=")
		if !ok || name == "" || at == "" {
			return nil, fmt.Errorf("step %q: want name=start (RFC 3339 or Unix seconds)", part)
		}
		t, err := parseTime(at)
		if err != nil {
			return nil, fmt.Errorf("step %q: %w", name, err)
		}
		steps = append(steps, Step{Name: name, Start: t})
	}
	return steps, nil
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("time %q is neither RFC 3339 nor Unix seconds", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}
