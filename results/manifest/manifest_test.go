package manifest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	m := &Manifest{RunID: "r1", Status: StatusComplete, Timeline: []Entry{
		{Name: "lab-up", Kind: KindSetup, Start: t0, End: t0.Add(time.Second)},
		{Name: "boot", Kind: KindStep, Start: t0.Add(2 * time.Second), End: t0.Add(5 * time.Second)},
		{Name: "start", Kind: KindAction, Step: "boot", Start: t0.Add(2 * time.Second)},
		{Name: "browse", Kind: KindStep, Start: t0.Add(5 * time.Second), End: t0.Add(9 * time.Second)},
	}}
	if err := Write(dir, m); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip changed the manifest:\n got %+v\nwant %+v", got, m)
	}
	steps := got.Steps()
	if len(steps) != 2 || steps[0].Name != "boot" || steps[1].Name != "browse" {
		t.Errorf("Steps() = %+v", steps)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".manifest.json.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestReadRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"garbage.json": "not json",
		"future.json":  `{"schema_version": 99}`,
		"none.json":    `{}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := Read(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Read(%s) = %v, want an error naming the file", name, err)
		}
	}
}
