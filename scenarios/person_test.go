package scenarios

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestLoadManual: a scenario without steps loads only for a person at the
// keyboard, who may also leave out the name; one with steps does not.
func TestLoadManual(t *testing.T) {
	const noSteps = "image: {builtin: testguest}\nmachine: {memory: 256MiB}\n"
	for _, text := range []string{noSteps, "name: x\n" + noSteps, "name: x\n" + noSteps + "steps: []\n"} {
		_, err := Parse("m.yaml", []byte(text))
		if err == nil || !strings.Contains(err.Error(), "firstboot run --manual") {
			t.Errorf("without steps, not manual: %v", err)
		}
	}
	s, err := ParseWith("/some/dir/Windows 12 OOBE.yaml", []byte(noSteps), LoadOptions{Manual: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "windows-12-oobe" || len(s.Steps) != 0 || s.Machine.Memory.MiB() != 256 {
		t.Errorf("manual scenario: name %q, %d steps, %d MiB", s.Name, len(s.Steps), s.Machine.Memory.MiB())
	}
	_, err = ParseWith("m.yaml", []byte(validScenario), LoadOptions{Manual: true})
	if err == nil || !strings.Contains(err.Error(), "remove them") {
		t.Errorf("manual with steps: %v", err)
	}
	// An expectation may name a step the person will make.
	if _, err := ParseWith("m.yaml", []byte(noSteps+"expect:\n  - step: browser\n    present: [\"*.mozilla.org\"]\n"), LoadOptions{Manual: true}); err != nil {
		t.Errorf("manual expect: %v", err)
	}
}

func TestLoadPause(t *testing.T) {
	ok := `name: p
image: {builtin: testguest}
steps:
  - name: a
    actions:
      - pause: "connect your viewer, then press Enter"
      - start
      - pause: {message: "log in by hand"}
`
	s, err := Parse("p.yaml", []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Steps[0].Actions[2]; a.Kind != "pause" || a.Pause.Message != "log in by hand" || !strings.Contains(a.Describe(), "firstboot continue") {
		t.Errorf("pause: %+v %q", a, a.Describe())
	}
	bad := strings.Replace(ok, `"log in by hand"`, `"  "`, 1)
	if _, err := Parse("p.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "p.yaml:8:") {
		t.Errorf("empty pause message: %v", err)
	}
}

// TestControl sends requests to a run through its control socket, in a
// run directory whose path is too long for a unix socket address.
func TestControl(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < 140 {
		dir = filepath.Join(dir, "a-rather-long-run-directory-name")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var heard []Said
	p := &Person{}
	p.idle = func(s Said) error {
		mu.Lock()
		defer mu.Unlock()
		heard = append(heard, s)
		if s.Kind == SayContinue {
			return errors.New("nothing is paused")
		}
		return nil
	}
	srv, err := listenControl(dir, p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := Control(ctx, dir, SayMark, "logged in"); err != nil {
		t.Errorf("mark: %v", err)
	}
	if err := Control(ctx, dir, SayContinue, ""); err == nil || err.Error() != "nothing is paused" {
		t.Errorf("continue: %v, want the run's refusal", err)
	}
	if err := Control(ctx, dir, SayEnd, ""); err != nil {
		t.Errorf("end: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ControlSocket)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is left behind: %v", err)
	}
	if err := Control(ctx, dir, SayMark, "late"); err == nil || !strings.Contains(err.Error(), "not a running run") {
		t.Errorf("after the run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []Said{{SayMark, "logged in"}, {SayContinue, ""}, {SayEnd, ""}}
	if len(heard) != len(want) {
		t.Fatalf("heard %v, want %v", heard, want)
	}
	for i := range want {
		if heard[i] != want[i] {
			t.Errorf("heard %v, want %v", heard, want)
		}
	}
}

// TestReadTerminal: each line typed is said with its text trimmed, and the
// end of input once; what the run answers goes back to the prompt.
func TestReadTerminal(t *testing.T) {
	var heard []Said
	var prompt strings.Builder
	p := &Person{Prompt: &prompt}
	p.idle = func(s Said) error {
		heard = append(heard, s)
		if s.Text == "bad/name" {
			return errors.New("no slashes")
		}
		return nil
	}
	p.ReadTerminal(strings.NewReader("login\n\n  browser \nbad/name\n"))
	got := make([]string, len(heard))
	for i, s := range heard {
		got[i] = s.Kind + ":" + s.Text
	}
	if strings.Join(got, ",") != "line:login,line:,line:browser,line:bad/name,eof:" {
		t.Errorf("heard %v", got)
	}
	if prompt.String() != "firstboot: no slashes\n" {
		t.Errorf("prompt %q", prompt.String())
	}
}
