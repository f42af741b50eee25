package testvm

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/firstboot/firstboot/lab/guest"
)

// BuildAgent builds the test guest's agent (cmd/firstboot-guest) into a
// temporary directory with the Makefile's flags, so every test that builds
// the image makes the same bytes and none rebuilds another's image.
func BuildAgent(t testing.TB) string {
	t.Helper()
	agent := filepath.Join(t.TempDir(), "firstboot-guest")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build",
		"-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", agent, "github.com/firstboot/firstboot/cmd/firstboot-guest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test guest's agent: %v\n%s", err, out)
	}
	return agent
}

// ImageCache is the image cache the lab tests share with `firstboot image
// build`: FIRSTBOOT_TEST_IMAGE_CACHE when set (a cache of one's own while
// changing how images are built), else the user's.
func ImageCache(t testing.TB) string {
	t.Helper()
	if c := os.Getenv("FIRSTBOOT_TEST_IMAGE_CACHE"); c != "" {
		return c
	}
	d, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(d, "firstboot", "images")
}

// TestGuest builds the test guest into cache, or reuses it there when it is
// up to date (guest.Build serialises concurrent builds on a lock), so a test
// never depends on another package's tests having built it first.
func TestGuest(t testing.TB, cache string) guest.Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := guest.Build(ctx, guest.BuildConfig{CacheDir: cache, AgentPath: BuildAgent(t),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatalf("building the test guest into %s: %v", cache, err)
	}
	return img
}
