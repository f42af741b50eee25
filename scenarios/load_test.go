package scenarios

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const validScenario = `name: t1
image: {builtin: testguest}
steps:
  - name: boot
    actions:
      - start
      - wait: 2s
      - keys: "root<enter><wait5><leftCtrlOn>c<leftCtrlOff>"
      - console_expect: "login:"
`

func TestLoadValid(t *testing.T) {
	s, err := Parse("t1.yaml", []byte(validScenario))
	if err != nil {
		t.Fatal(err)
	}
	if s.Machine.CPUs != DefaultCPUs || s.Machine.Memory != DefaultMemory || s.Network.Mode != "simulated" {
		t.Errorf("defaults not applied: %+v %+v", s.Machine, s.Network)
	}
	if s.Capture.Window.D() != DefaultWindow {
		t.Errorf("window = %s", s.Capture.Window)
	}
	acts := s.Steps[0].Actions
	if len(acts) != 4 || acts[1].Wait.D() != 2*time.Second {
		t.Fatalf("actions: %+v", acts)
	}
	// root<enter><wait5><leftCtrlOn>c<leftCtrlOff>: r o o t, enter, wait, ctrl+c
	ev := acts[2].Keys.Parsed
	if len(ev) != 7 {
		t.Fatalf("key events = %d, want 7: %+v", len(ev), ev)
	}
	if ev[4].Codes[0] != keyEnter || ev[5].Wait != 5*time.Second {
		t.Errorf("enter/wait wrong: %+v %+v", ev[4], ev[5])
	}
	if got := ev[6].Codes; len(got) != 2 || got[0] != keyLeftCtrl || got[1] != 46 {
		t.Errorf("ctrl+c = %v, want [29 46]", got)
	}
	if !acts[3].ConsoleExpect.Regexp.MatchString("debian login: ") {
		t.Error("console_expect pattern not compiled")
	}
	if len(s.SHA256) != 64 {
		t.Error("scenario hash missing")
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"unknown top key", "nme: x\n", []string{`bad.yaml:1:1: unknown key "nme"`, `did you mean "name"?`}},
		{"unknown machine key", "name: x\nimage: {builtin: testguest}\nmachine:\n  cpu: 2\nsteps: [{name: a, actions: [start]}]\n",
			[]string{`bad.yaml:4:3: unknown key "cpu" in machine (did you mean "cpus"?)`}},
		{"wrong type", "name: x\nimage: {builtin: testguest}\nmachine: {cpus: two}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{`bad.yaml:3:17: machine.cpus: expected a whole number, found "two"`}},
		{"bad duration", "name: x\nimage: {builtin: testguest}\nsteps:\n  - name: a\n    actions:\n      - start\n      - wait: 5 minutes\n",
			[]string{`bad.yaml:7:15: "5 minutes" is not a duration`}},
		{"unknown action", "name: x\nimage: {builtin: testguest}\nsteps:\n  - name: a\n    actions:\n      - strat\n",
			[]string{`bad.yaml:6:9: unknown action "strat" (did you mean "start"?)`}},
		{"unknown key name", "name: x\nimage: {builtin: testguest}\nsteps:\n  - name: a\n    actions:\n      - start\n      - keys: \"<entr>\"\n",
			[]string{`bad.yaml:7:15: keys: at character 1: unknown key <entr> (did you mean "enter"?`}},
		{"bad enum", "name: x\nimage: {builtin: testguest}\nmachine: {firmware: efi}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{`machine.firmware: "efi" is not one of: bios, uefi (did you mean "uefi"?)`}},
		{"no start", "name: x\nimage: {builtin: testguest}\nsteps:\n  - name: a\n    actions:\n      - console_send: hi\n",
			[]string{"console_send before start", "started exactly once"}},
		{"missing required", "name: x\nsteps: []\n", []string{`missing required key "image"`}},
		{"bridge outside bridged mode", "name: x\nimage: {builtin: testguest}\nnetwork: {mode: routed, bridge: br0}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{"bridge is only for mode bridged"}},
		{"egress outside routed mode", "name: x\nimage: {builtin: testguest}\nnetwork: {egress: eth0}\nsteps: [{name: a, actions: [start]}]\n",
			[]string{"egress is only for mode routed"}},
		{"bad yaml", "name: x\n  image: [\n", []string{"bad.yaml:2:1: not valid YAML"}},
		{"empty", "", []string{"bad.yaml:1:1: the file is empty"}},
		{"two keys in one action", "name: x\nimage: {builtin: testguest}\nsteps:\n  - name: a\n    actions:\n      - start\n      - {wait: 1s, mark: m}\n",
			[]string{"bad.yaml:7:9: an action is one key"}},
		{"unknown media", "name: x\nimage: {builtin: testguest}\nsteps:\n  - name: a\n    actions:\n      - eject: cd\n      - start\n",
			[]string{`eject: no media named "cd"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
		})
	}
}

// The catalog's scenario files must all load and plan.
func TestCatalogLoads(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files found: %v", err)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			s, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := WritePlan(&b, s); err != nil {
				t.Fatal(err)
			}
			for _, st := range s.Steps {
				if !strings.Contains(b.String(), st.Name) {
					t.Errorf("plan does not show step %s", st.Name)
				}
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"512MiB": 512 << 20, "4GiB": 4 << 30, "2G": 2e9, "1024": 1024} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseSize("lots"); err == nil {
		t.Error("ParseSize(lots) accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(validScenario))
	if b, err := os.ReadFile("testguest.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse("fuzz.yaml", data)
	})
}

const screenScenario = `name: gui
image: {builtin: debian-12-desktop}
steps:
  - name: s
    actions:
      - start
      - wait_text: "Log In"
      - wait_text: {text: "(?i)user ?name", region: [0, 100, 800, 400], timeout: 2m}
      - click_text: "Continue"
      - click_text: {text: "Web Browser", index: 1, button: right, double: true, region: [0, 0, 300, 600], timeout: 30s}
      - click: [10, 20]
      - click: {x: 10, y: 20, button: middle}
      - double_click: [30, 40]
      - move: [5, 6]
      - drag: {from: [1, 2], to: [300, 400], button: left}
      - scroll: {x: 1, y: 2, dy: -3}
`

func TestLoadScreenActions(t *testing.T) {
	s, err := Parse("gui.yaml", []byte(screenScenario))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Steps[0].Actions
	if a[1].WaitText.Text != "Log In" || a[1].Timeout(time.Hour) != time.Hour {
		t.Errorf("wait_text shorthand: %+v", a[1].WaitText)
	}
	if w := a[2].WaitText; !w.Regexp.MatchString("Username") || len(w.Region) != 4 || w.Timeout.D() != 2*time.Minute {
		t.Errorf("wait_text mapping: %+v", w)
	}
	if c := a[4].ClickText; c.Index != 1 || c.Button != "right" || !c.Double || c.Timeout.D() != 30*time.Second || len(c.Region) != 4 {
		t.Errorf("click_text mapping: %+v", c)
	}
	if p := a[5].Point; p.X != 10 || p.Y != 20 || p.Button != "" {
		t.Errorf("click list: %+v", p)
	}
	if p := a[6].Point; p.X != 10 || p.Y != 20 || p.Button != "middle" {
		t.Errorf("click mapping: %+v", p)
	}
	if d := a[9].Drag; d.From[0] != 1 || d.To[1] != 400 {
		t.Errorf("drag: %+v", d)
	}
	if sc := a[10].Scroll; sc.DY != -3 || sc.DX != 0 {
		t.Errorf("scroll: %+v", sc)
	}
	var b strings.Builder
	if err := WritePlan(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"wait until the screen shows /Log In/ (timeout 5m0s)",
		"wait until the screen shows /(?i)user ?name/ in 0, 100, 800x400 (timeout 2m0s)",
		"click on /Continue/ (timeout 1m0s)",
		"right double click on /Web Browser/ (match 1) in 0, 0, 300x600 (timeout 30s)",
		"click at 10, 20", "middle click at 10, 20", "double click at 30, 40", "move at 5, 6",
		"drag from 1, 2 to 300, 400", "scroll dx 0 dy -3 at 1, 2",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, b.String())
		}
	}
}

func TestLoadScreenActionErrors(t *testing.T) {
	head := "name: x\nimage: {builtin: testguest}\nsteps:\n  - name: a\n    actions:\n      - start\n"
	tests := []struct{ action, want string }{
		{`      - wait_text: "("`, `bad.yaml:7:20: wait_text: "(" is not a regular expression`},
		{`      - wait_text: {text: a, region: [1, 2, 3]}`, `wait_text: region is x, y, width, height (4 numbers), found 3`},
		{`      - wait_text: {txt: a}`, `unknown key "txt" in wait_text (did you mean "text"?)`},
		{`      - click_text: {text: a, button: lef}`, `click_text.button: "lef" is not one of: left, middle, right (did you mean "left"?)`},
		{`      - click_text: {text: a, index: -2}`, `click_text: index -2`},
		{`      - click: [1]`, `bad.yaml:7:16: a position is [x, y] (2 numbers), found 1`},
		{`      - click: {x: 1}`, `position: missing required key "y"`},
		{`      - click: [-1, 5]`, `click: -1, 5 is off the screen`},
		{`      - move: {x: 1, y: 2, button: left}`, `move: takes no button`},
		{`      - drag: {from: [1, 2], to: [3]}`, `drag: from and to are [x, y] screen positions, found [3]`},
		{`      - scroll: {x: 1, y: 2}`, `scroll: give dy`},
		{"      - wait_text: a\nmachine: {video: none}", `wait_text: the machine has no screen`},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(head+tt.action+"\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v\n want %q", err, tt.want)
			}
		})
	}
}
