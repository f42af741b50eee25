package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildFirstboot builds the command once per test into a temporary directory.
func buildFirstboot(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "firstboot")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runBinary runs the built command in dir and returns its combined output
// and exit code; a command that cannot start fails the test.
func runBinary(t *testing.T, bin, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// TestAnalyzeCLI runs `firstboot analyze` the way a user would.
func TestAnalyzeCLI(t *testing.T) {
	bin := buildFirstboot(t)
	seed, err := os.ReadFile("../../analyzer/testdata/seed.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The extension lies: the content decides.
	capture := filepath.Join(dir, "capture.pcap")
	if err := os.WriteFile(capture, seed, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}

	t.Run("json to stdout and default out dir", func(t *testing.T) {
		stdout, stderr, code := run("analyze", capture, "--format", "json", "--first-party", "example.com")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		file, err := os.ReadFile(filepath.Join(dir, "analysis.json"))
		if err != nil {
			t.Fatal(err)
		}
		if stdout != string(file) {
			t.Error("stdout differs from analysis.json")
		}
		var a struct {
			SchemaVersion string `json:"schema_version"`
			Input         struct{ Format string }
			Destinations  []struct{ Name, Party string }
		}
		if err := json.Unmarshal(file, &a); err != nil {
			t.Fatal(err)
		}
		if a.SchemaVersion == "" || a.Input.Format != "pcapng" {
			t.Errorf("schema %q format %q", a.SchemaVersion, a.Input.Format)
		}
		first := false
		for _, d := range a.Destinations {
			first = first || (d.Name == "www.example.com" && d.Party == "first")
		}
		if !first {
			t.Errorf("--first-party not applied: %+v", a.Destinations)
		}
		for _, l := range []string{"conn", "dns", "ssl", "http", "ntp", "dhcp", "fingerprint"} {
			b, err := os.ReadFile(filepath.Join(dir, l+".log"))
			if err != nil || !strings.HasPrefix(string(b), "#separator \\x09\n") {
				t.Errorf("%s.log: %v %.40q", l, err, b)
			}
		}
	})

	t.Run("table, json logs, steps, same bytes twice", func(t *testing.T) {
		var firsts []string
		for i := 0; i < 2; i++ {
			out := filepath.Join(dir, "out")
			stdout, stderr, code := run("analyze", capture, "--out", out, "--logs", "json", "--steps", "boot=2026-11-23T10:00:00.05Z,browse=1795428000.25")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, "DESTINATION") || !strings.Contains(stdout, "www.example.com") {
				t.Errorf("table output:\n%s", stdout)
			}
			conn, _ := os.ReadFile(filepath.Join(out, "conn.log"))
			line, _, _ := strings.Cut(string(conn), "\n")
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["uid"] == nil {
				t.Errorf("conn.log is not JSON lines: %v %q", err, line)
			}
			an, _ := os.ReadFile(filepath.Join(out, "analysis.json"))
			if !strings.Contains(string(an), `"name": "browse"`) {
				t.Error("no browse step view")
			}
			firsts = append(firsts, string(an)+string(conn))
		}
		if firsts[0] != firsts[1] {
			t.Error("two runs gave different bytes")
		}
	})

	t.Run("errors", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.pcapng")
		os.WriteFile(bad, []byte("not a capture at all"), 0o644)
		for _, tc := range []struct {
			args []string
			code int
			text string
		}{
			{[]string{"analyze", bad}, 2, "bad.pcapng: not a pcap or pcapng file"},
			{[]string{"analyze", filepath.Join(dir, "missing.pcap")}, 2, "no such file"},
			{[]string{"analyze", capture, "--logs", "xml"}, 2, "--logs"},
			{[]string{"analyze", capture, "--steps", "x=never"}, 2, "--steps"},
			{[]string{"analyze"}, 2, "arg"},
		} {
			_, stderr, code := run(tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.text) {
				t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.text)
			}
		}
	})
}
