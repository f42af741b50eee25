package analyzer

import (
	"testing"
	"time"
)

func TestStepper(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s, err := newStepper([]Step{
		{Name: "a", Start: t0},
		{Name: "b", Start: t0.Add(10 * time.Second), End: t0.Add(20 * time.Second)},
		{Name: "c", Start: t0.Add(30 * time.Second), End: t0.Add(40 * time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sec  float64
		want string
	}{{-5, "before"}, {0, "a"}, {9.999, "a"}, {10, "b"}, {19, "b"}, {25, "b"}, {30, "c"}, {39.9, "c"}, {40, "after"}, {1e6, "after"}, {5, "a"}, {-1, "before"}} {
		ts := t0.Add(time.Duration(c.sec * float64(time.Second))).UnixNano()
		if got := s.name(s.index(ts)); got != c.want {
			t.Errorf("%gs: step %q, want %q", c.sec, got, c.want)
		}
	}
	none, _ := newStepper(nil)
	if none.name(none.index(5)) != "" {
		t.Error("no steps should give empty names")
	}
	for _, bad := range [][]Step{{{Name: ""}}, {{Name: "before"}}, {{Name: "x", Start: t0, End: t0.Add(-time.Second)}}} {
		if _, err := newStepper(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	steps, err := ParseSteps("boot=2026-01-02T03:04:05Z, login=1767323100.5")
	if err != nil || len(steps) != 2 || steps[1].Start.UnixMilli() != 1767323100500 || steps[0].Start.Year() != 2026 {
		t.Errorf("ParseSteps: %v %+v", err, steps)
	}
	for _, bad := range []string{"boot", "=1", "x=", "x=NaN", "x=soon"} {
		if _, err := ParseSteps(bad); err == nil {
			t.Errorf("ParseSteps(%q) accepted", bad)
		}
	}
}
