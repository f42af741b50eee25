package scenarios

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/results/manifest"
)

// fakeMachine records media changes and answers guest_exec from a table.
// The methods these tests do not need are left to the embedded nil
// interface (calling one panics, which would show a wrong dispatch).
type fakeMachine struct {
	lab.Machine
	calls   []string
	results map[string]lab.ExecResult
	stopped chan struct{}
}

func (f *fakeMachine) InsertMedia(_ context.Context, name string) error {
	f.calls = append(f.calls, "insert "+name)
	if name == "broken" {
		return errors.New("libvirt says no")
	}
	return nil
}

func (f *fakeMachine) EjectMedia(_ context.Context, name string) error {
	f.calls = append(f.calls, "eject "+name)
	return nil
}

func (f *fakeMachine) GuestExec(_ context.Context, path string, args []string) (lab.ExecResult, error) {
	cmd := strings.Join(append([]string{path}, args...), " ")
	f.calls = append(f.calls, "exec "+cmd)
	r, ok := f.results[cmd]
	if !ok {
		return r, errors.New("the guest agent did not answer")
	}
	return r, nil
}

func (f *fakeMachine) Stopped() <-chan struct{} { return f.stopped }
func (f *fakeMachine) ConsoleLog() string {
	return filepath.Join(os.TempDir(), "firstboot-no-console.log")
}
func (f *fakeMachine) Screenshot(context.Context, string) error {
	return errors.New("no screen")
}

const devicesScenario = `name: devices
image:
  builtin: testguest
  media:
    - name: cd
      kind: cdrom
      path: cd.iso
      inserted: false
steps:
  - name: use-cd
    actions:
      - start
      - insert: cd
      - guest_exec: { path: /bin/cat, args: [/mnt/hello.txt], timeout: 30s }
      - eject: cd
  - name: fails
    actions:
      - guest_exec: { path: /bin/sh, args: [-c, "exit 3"] }
`

func TestMediaAndGuestExecActions(t *testing.T) {
	s, err := Parse("devices.yaml", []byte(devicesScenario))
	if err != nil {
		t.Fatal(err)
	}
	if s.Image.Media[0].StartsInserted() {
		t.Fatal("inserted: false not decoded")
	}
	longStderr := strings.Repeat("x", 2000) + "mount: no medium found"
	f := &fakeMachine{stopped: make(chan struct{}), results: map[string]lab.ExecResult{
		"/bin/cat /mnt/hello.txt": {Stdout: []byte("hello\n")},
		"/bin/sh -c exit 3":       {ExitCode: 3, Stderr: []byte(longStderr)},
	}}
	dir := t.TempDir()
	tl := &Timeline{Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}
	env := &Env{Machine: f, Start: func(context.Context) error { return nil }, Dir: dir, Timeline: tl}
	err = RunSteps(context.Background(), s, env)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "fails" {
		t.Fatalf("err = %v, want step fails to fail", err)
	}
	for _, want := range []string{"exit status 3", "mount: no medium found", "…"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(err.Error()) > 1000 {
		t.Errorf("error quotes all of stderr (%d bytes)", len(err.Error()))
	}
	wantCalls := "insert cd|exec /bin/cat /mnt/hello.txt|eject cd|exec /bin/sh -c exit 3"
	if got := strings.Join(f.calls, "|"); got != wantCalls {
		t.Errorf("calls %s, want %s", got, wantCalls)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "guest-exec", "use-cd-3.out")); err != nil || string(b) != "hello\n" {
		t.Errorf("stored stdout = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "guest-exec", "fails-1.err")); err != nil || string(b) != longStderr {
		t.Errorf("stored stderr: %d bytes, %v", len(b), err)
	}
	var execEntry *manifest.Entry
	for _, e := range tl.Entries() {
		if e.Kind == manifest.KindAction && e.Step == "use-cd" && strings.HasPrefix(e.Name, "guest exec") {
			execEntry = &e
		}
	}
	if execEntry == nil || strings.Join(execEntry.Artifacts, ",") != "guest-exec/use-cd-3.out,guest-exec/use-cd-3.err" {
		t.Errorf("timeline entry of the guest exec: %+v", execEntry)
	}
}

func TestMediaActionErrors(t *testing.T) {
	s, err := Parse("m.yaml", []byte(`name: m
image:
  builtin: testguest
  media: [{name: broken, kind: cdrom, path: x.iso}]
steps:
  - name: a
    actions:
      - start
      - insert: broken
`))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMachine{stopped: make(chan struct{})}
	env := &Env{Machine: f, Start: func(context.Context) error { return nil }, Dir: t.TempDir(), Timeline: &Timeline{}}
	err = RunSteps(context.Background(), s, env)
	if err == nil || !strings.Contains(err.Error(), "inserting media broken") || !strings.Contains(err.Error(), "libvirt says no") {
		t.Errorf("err = %v", err)
	}
}

func TestDeviceScenarioErrors(t *testing.T) {
	head := "name: x\nimage:\n  builtin: testguest\n  media:\n    - {name: cd, kind: cdrom, path: a.iso}\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"media named twice", "name: x\nimage:\n  builtin: testguest\n  media:\n    - {name: cd, kind: cdrom, path: a.iso}\n    - {name: cd, kind: disk, path: b.img}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{`bad.yaml:6:7: media "cd": the name is used twice`}},
		{"bad media name", "name: x\nimage:\n  builtin: testguest\n  media:\n    - {name: a/b, kind: cdrom, path: a.iso}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{`media "a/b": name it with letters`}},
		{"sata disk hotplug", "name: x\nimage:\n  builtin: testguest\n  media:\n    - {name: d, kind: disk, path: d.img, inserted: false}\nmachine: {disk_bus: sata}\nsteps: [{name: a, actions: [start, {insert: d}]}]\n",
			[]string{`media "d": a sata disk cannot be plugged in`, "insert d: a sata disk cannot be plugged in or out"}},
		{"insert before start", head + "steps: [{name: a, actions: [{insert: cd}, start]}]\n",
			[]string{"insert before start"}},
		{"unknown media lists names", head + "steps: [{name: a, actions: [start, {eject: dvd}]}]\n",
			[]string{`eject: no media named "dvd" in image.media (it has: cd)`}},
		{"media named image", "name: x\nimage:\n  builtin: testguest\n  media:\n    - {name: image, kind: cdrom, path: a.iso}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{`media "image": the name is reserved`}},
		{"eject image without iso", "name: x\nimage: {builtin: testguest}\nsteps: [{name: a, actions: [start, {eject: image}]}]\n",
			[]string{`eject: no media named "image"`}},
		{"ide on uefi", "name: x\nimage: {builtin: testguest}\nmachine: {disk_bus: ide, firmware: uefi}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{"disk_bus ide needs firmware bios"}},
		{"cpu features without model", "name: x\nimage: {builtin: testguest}\nmachine: {cpu_features: [+sse4.2]}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{"cpu_features: set cpu_model too"}},
		{"cpu feature without sign", "name: x\nimage: {builtin: testguest}\nmachine: {cpu_model: Penryn, cpu_features: [sse4.2]}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{`"sse4.2": write +name`}},
		{"smc on windows", "name: x\nos: {family: windows}\nimage: {builtin: testguest}\nmachine: {apple_smc_osk_file: osk.txt}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{"the Apple SMC is for macOS guests"}},
		{"inserted not a bool", "name: x\nimage:\n  builtin: testguest\n  media:\n    - {name: cd, kind: cdrom, path: a.iso, inserted: later}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{`inserted: expected true or false, found "later"`}},
		{"bad media sha", "name: x\nimage:\n  builtin: testguest\n  media:\n    - {name: cd, kind: cdrom, path: a.iso, sha256: abc}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{`media "cd": sha256: expected 64`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
		})
	}
}

func TestEjectBootISO(t *testing.T) {
	if _, err := Parse("iso.yaml", []byte("name: x\nimage: {kind: iso, path: setup.iso}\nsteps: [{name: a, actions: [start, {eject: image}, {insert: image}]}]\n")); err != nil {
		t.Errorf("eject/insert of the installer ISO: %v", err)
	}
}

func TestReadOSK(t *testing.T) {
	dir := t.TempDir()
	key := strings.Repeat("k", 64)
	for _, tc := range []struct {
		name, content, want string
	}{
		{"with newline", key + "\n", ""},
		{"bare", key, ""},
		{"short", "abc\n", "3 characters, want 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			os.WriteFile(p, []byte(tc.content), 0o600)
			got, err := readOSK(p)
			if tc.want == "" {
				if err != nil || got != key {
					t.Errorf("readOSK = %q, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "docs/images.md") {
				t.Errorf("err = %v, want %q and a pointer to docs/images.md", err, tc.want)
			}
		})
	}
	var ie *ImageError
	if _, err := readOSK(filepath.Join(dir, "missing")); !errors.As(err, &ie) || !strings.Contains(err.Error(), "file not found") {
		t.Errorf("missing key file: %v", err)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/mnt/cd":     "/mnt/cd",
		"-c":          "-c",
		"":            "''",
		"a b":         "'a b'",
		"it's":        `'it'\''s'`,
		"$(cat x)":    "'$(cat x)'",
		"x=1,y=2":     "x=1,y=2",
		"! mount /cd": "'! mount /cd'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// The plan shows the virtual hardware, the media's start state and the
// guest agent, so a researcher sees them before a run.
func TestPlanShowsHardware(t *testing.T) {
	s, err := Load("testguest-devices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WritePlan(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Penryn CPU, TPM 2.0",
		"cdrom driver-cd (" + filepath.Join("..", "images", "testguest-devices", "driver-cd.iso") + ", starts ejected)",
		"guest agent: virtio port org.qemu.guest_agent.0",
		"insert driver-cd",
		"eject driver-cd",
		`guest exec /bin/umount /mnt/cd`,
		`guest exec /bin/sh -c '! mount -t iso9660 -o ro /dev/sr0 /mnt/cd'`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, b.String())
		}
	}
	m, err := Load("macos-catalina.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	WritePlan(&b, m)
	if !strings.Contains(b.String(), "Penryn CPU (+ssse3 +sse4.2") || !strings.Contains(b.String(), "Apple SMC (key from ../images/macos-catalina/osk.txt)") {
		t.Errorf("macOS plan lacks the CPU features or the SMC:\n%s", b.String())
	}
	if strings.Contains(b.String(), "guest agent:") {
		t.Error("the plan mentions the guest agent for a scenario without guest_exec")
	}
}
