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
