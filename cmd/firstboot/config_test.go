package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the root command in dir with args and returns stdout.
func runCLI(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	t.Chdir(dir)
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	os.WriteFile(filepath.Join(dir, "firstboot.yaml"), []byte("runs-dir: from-file\naccel: tcg\nlog-level: warn\n"), 0o644)
	// A file named plain "firstboot" (the binary) must not be read as config.
	os.WriteFile(filepath.Join(dir, "firstboot"), []byte("\x7fELF\x00\x01"), 0o755)

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want map[string]string
	}{
		{"file beats default", nil, nil, map[string]string{"runs-dir": "from-file", "accel": "tcg", "state-dir": "/var/lib/firstboot"}},
		{"env beats file", map[string]string{"FIRSTBOOT_RUNS_DIR": "from-env"}, nil, map[string]string{"runs-dir": "from-env", "accel": "tcg"}},
		{"flag beats env", map[string]string{"FIRSTBOOT_RUNS_DIR": "from-env"}, []string{"--runs-dir", "from-flag"}, map[string]string{"runs-dir": "from-flag"}},
		{"flag default does not beat file", nil, []string{"--log-level", "debug"}, map[string]string{"accel": "tcg", "log-level": "debug"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, err := runCLI(t, dir, append([]string{"config", "show"}, tt.args...)...)
			if err != nil {
				t.Fatalf("config show: %v\n%s", err, out)
			}
			for k, v := range tt.want {
				if !strings.Contains(out, k+": "+v+"\n") {
					t.Errorf("want %s: %s in\n%s", k, v, out)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "firstboot.yaml"), []byte("acel: tcg\n"), 0o644)
	if _, err := runCLI(t, dir, "config", "show"); err == nil || !strings.Contains(err.Error(), "acel") {
		t.Errorf("unknown key in config file: err = %v", err)
	}
	os.WriteFile(filepath.Join(dir, "firstboot.yaml"), []byte("accel: fast\n"), 0o644)
	_, err := runCLI(t, dir, "config", "show")
	var ue usageError
	if err == nil || !strings.Contains(err.Error(), `accel "fast"`) {
		t.Errorf("bad accel: err = %v", err)
	} else if !asUsage(err, &ue) {
		t.Errorf("bad accel is not a usage error (exit 2): %T", err)
	}
}

func asUsage(err error, ue *usageError) bool {
	u, ok := err.(usageError)
	if ok {
		*ue = u
	}
	return ok
}
