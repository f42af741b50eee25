package rundir

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/owner"
	"github.com/firstboot/firstboot/results/manifest"
)

// runDir writes a run directory with manifest m and, when ends is given, the
// capture cut to ends bytes.
func runDir(t *testing.T, runs, id string, m manifest.Manifest, capture func(t *testing.T) (string, []int64), cutAt func([]int64) int64) string {
	t.Helper()
	dir := filepath.Join(runs, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m.RunID = id
	if capture != nil {
		src, ends := capture(t)
		data, _ := os.ReadFile(src)
		if cutAt != nil {
			data = data[:cutAt(ends)]
		}
		os.WriteFile(filepath.Join(dir, "capture.pcapng"), data, 0o644)
		m.Capture.File = "capture.pcapng"
	}
	if err := manifest.Write(dir, &m); err != nil {
		t.Fatal(err)
	}
	return dir
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range manifest.ListFiles(dir) {
		out[f], _ = os.ReadFile(filepath.Join(dir, f))
	}
	return out
}

func TestMarkAbandoned(t *testing.T) {
	runs := t.TempDir()
	self := owner.Self()
	dead := self
	dead.Start++ // this pid in another life
	elsewhere := dead
	elsewhere.Host += "-other-host"
	five := func(t *testing.T) (string, []int64) { return writeCapture(t, 5) }
	torn := func(ends []int64) int64 { return ends[3] + 20 }
	start := t0.Add(-time.Second)
	timeline := []manifest.Entry{
		{Name: "lab", Kind: manifest.KindSetup, Start: start, End: start.Add(time.Millisecond)},
		{Name: "capture", Kind: manifest.KindSetup, Start: start.Add(time.Millisecond), End: start.Add(2 * time.Millisecond)},
		{Name: "boot", Kind: manifest.KindStep, Start: t0, End: t0.Add(20 * time.Millisecond)},
	}
	idleSince := t0.Add(20 * time.Millisecond)
	running := manifest.Manifest{Status: manifest.StatusRunning, Owner: &dead, Timeline: timeline, Capture: manifest.Capture{Start: start},
		Doing: &manifest.Activity{What: "step idle", Since: idleSince}}

	killed := runDir(t, runs, "killed-while-capturing", running, five, torn)
	inSetup := running
	inSetup.Timeline = timeline[:1]
	inSetup.Doing = &manifest.Activity{What: "setup network", Since: start.Add(time.Millisecond)}
	killedInSetup := runDir(t, runs, "killed-in-setup", inSetup, nil, nil)
	analysis := manifest.Manifest{Status: manifest.StatusComplete, Doing: &manifest.Activity{What: "analysis", Since: t0}, Owner: &dead,
		Capture: manifest.Capture{Start: start, Packets: 5, Drops: 0, StoppedBy: "machine-stopped"}}
	killedInAnalysis := runDir(t, runs, "killed-in-analysis", analysis, five, nil)
	// The capture of a finished run already has its statistics.
	if _, err := RepairCapture(filepath.Join(killedInAnalysis, "capture.pcapng"), start, "capture stopped"); err != nil {
		t.Fatal(err)
	}

	live := running
	live.Owner = &self
	alive := runDir(t, runs, "live", live, five, torn)
	old := running
	old.Owner = nil
	older := runDir(t, runs, "older-version", old, five, torn)
	other := running
	other.Owner = &elsewhere
	otherHost := runDir(t, runs, "other-host", other, five, torn)
	done := manifest.Manifest{Status: manifest.StatusComplete, Owner: &dead}
	finished := runDir(t, runs, "finished", done, five, nil)
	os.MkdirAll(filepath.Join(runs, "not-a-run"), 0o755)
	os.MkdirAll(filepath.Join(runs, "broken"), 0o755)
	os.WriteFile(filepath.Join(runs, "broken", manifest.FileName), []byte("{"), 0o644)
	untouched := map[string]map[string][]byte{}
	for _, d := range []string{alive, older, otherHost, finished} {
		untouched[d] = snapshot(t, d)
	}

	want := []string{killedInAnalysis, killedInSetup, killed}
	if got, err := Abandoned(runs); err != nil || !slices.Equal(got, want) {
		t.Fatalf("Abandoned = %q, %v; want %q", got, err, want)
	}
	// Two firstboot processes starting at once mark each run once.
	var mu sync.Mutex
	var marked []Marked
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			m, err := MarkAbandoned(context.Background(), runs)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			marked = append(marked, m...)
			mu.Unlock()
		})
	}
	wg.Wait()
	var dirs []string
	for _, m := range marked {
		dirs = append(dirs, m.Dir)
		if !m.Owner.Is(dead) || !strings.HasPrefix(m.Reason, Killed) {
			t.Errorf("%s: owner %v reason %q", m.Dir, m.Owner, m.Reason)
		}
	}
	slices.Sort(dirs)
	if !slices.Equal(dirs, want) {
		t.Errorf("marked %q, want %q (each once)", dirs, want)
	}

	t.Run("killed while capturing", func(t *testing.T) {
		m, err := manifest.Read(killed)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != manifest.StatusIncomplete || !strings.HasPrefix(m.Reason, Killed+" during step idle") || m.FailedStep != "idle" || m.Doing != nil {
			t.Errorf("status %q reason %q failed step %q doing %+v", m.Status, m.Reason, m.FailedStep, m.Doing)
		}
		c := m.Capture
		if c.Packets != 4 || !c.DropsUnknown || c.StoppedBy != "killed" || !c.End.Equal(packetTime(3)) {
			t.Errorf("capture record %+v; want the 4 whole packets, drops unknown, stopped by the kill at the last packet", c)
		}
		want := append(timeline, manifest.Entry{Name: "idle", Kind: manifest.KindStep, Start: idleSince, Error: Killed})
		if len(m.Timeline) != len(want) || !reflect.DeepEqual(m.Timeline[len(want)-1], want[len(want)-1]) {
			t.Errorf("timeline %+v, want the killed step last: %+v", m.Timeline, want[len(want)-1])
		}
		if steps := m.Steps(); len(steps) != 2 || steps[1].Name != "idle" || !steps[1].End.IsZero() {
			t.Errorf("steps for the analysis: %+v; want boot, then idle open-ended", steps)
		}
		if n, ok := tsharkReads(t, filepath.Join(killed, "capture.pcapng")); !ok || n != 4 {
			t.Errorf("tshark reads %d packets (ok %v), want 4", n, ok)
		}
		if st := statistics(t, filepath.Join(killed, "capture.pcapng")); !strings.HasPrefix(st.Comment, Killed) {
			t.Errorf("statistics comment %q", st.Comment)
		}
		if !slices.Contains(m.Files, "capture.pcapng") || !slices.Contains(m.Files, "manifest.json") {
			t.Errorf("files %q", m.Files)
		}
	})
	t.Run("killed while setting up", func(t *testing.T) {
		m, _ := manifest.Read(killedInSetup)
		if m.Status != manifest.StatusIncomplete || !strings.HasPrefix(m.Reason, Killed+" during setup network") || m.FailedStep != "" {
			t.Errorf("status %q reason %q failed step %q", m.Status, m.Reason, m.FailedStep)
		}
		if last := m.Timeline[len(m.Timeline)-1]; last.Name != "network" || last.Kind != manifest.KindSetup || last.Error != Killed {
			t.Errorf("last timeline entry %+v, want the setup phase it was killed in", last)
		}
	})
	t.Run("killed during the analysis", func(t *testing.T) {
		m, _ := manifest.Read(killedInAnalysis)
		if m.Status != manifest.StatusIncomplete || !strings.HasPrefix(m.Reason, Killed+" during the analysis") || !strings.Contains(m.Reason, "firstboot analyze "+killedInAnalysis) || m.Doing != nil || len(m.Timeline) != 0 {
			t.Errorf("status %q reason %q doing %+v timeline %+v", m.Status, m.Reason, m.Doing, m.Timeline)
		}
		if m.Capture.Packets != 5 || m.Capture.DropsUnknown || m.Capture.StoppedBy != "machine-stopped" {
			t.Errorf("the finished capture's record changed: %+v", m.Capture)
		}
	})
	for d, before := range untouched {
		if after := snapshot(t, d); !equalFiles(before, after) {
			t.Errorf("%s changed, though its owner is alive, unknown or done", filepath.Base(d))
		}
	}
	if again, err := MarkAbandoned(context.Background(), runs); err != nil || len(again) != 0 {
		t.Errorf("a second MarkAbandoned marked %+v, %v", again, err)
	}
	if none, err := MarkAbandoned(context.Background(), filepath.Join(runs, "no-such-dir")); err != nil || none != nil {
		t.Errorf("a missing runs directory: %+v, %v", none, err)
	}
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
