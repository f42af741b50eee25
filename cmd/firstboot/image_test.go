package main

import (
	"bytes"
	"context"
	"errors"
	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/testvm"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runImage(t *testing.T, cache string, args ...string) (string, error) {
	t.Helper()
	a := &app{cfg: defaultConfig(), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.cfg.ImageCache = cache
	cmd := newImageCmd(a)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestImageBuildUsage(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"build"}, "name one image"},
		{[]string{"build", "testguest", "debian-12"}, "name one image"},
		{[]string{"build", "debian-12", "--agent", "x"}, "--agent applies only to testguest"},
		{[]string{"build", "testguest", "--agent", "/nonexistent/firstboot-guest"}, "--agent"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := runImage(t, t.TempDir(), tt.args...)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err %v, want a usage error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestImageBuildTestguest runs the command the way a user does, with the
// agent built from this tree; the image then loads from the cache.
func TestImageBuildTestguest(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads Debian packages; skipped in -short mode")
	}
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not installed", tool)
		}
	}
	agent := testvm.BuildAgent(t)
	cache := t.TempDir()
	out, err := runImage(t, cache, "build", "testguest", "--agent", agent)
	if err != nil {
		t.Fatalf("image build: %v\n%s", err, out)
	}
	for _, want := range []string{"kernel:  " + filepath.Join(cache, "testguest", "vmlinux") + " (vmlinux-pvh)", "initrd:  " + filepath.Join(cache, "testguest", "initrd.img"), "cmdline: console=ttyS0", "sha256:  "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
