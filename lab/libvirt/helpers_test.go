package libvirt

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

type syscallStat = syscall.Stat_t

func statIno(path string, st *syscall.Stat_t) error { return syscall.Stat(path, st) }

func itoa(i int) string { return strconv.Itoa(i) }

// testLogger sends the lab's log lines to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// destroyOnCleanup destroys m when the test ends, logging the tail of its
// console first if the test failed.
func destroyOnCleanup(t *testing.T, m *Machine) {
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(m.ConsoleLog())
			lines := strings.Split(string(b), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("console tail of %s:\n%s", m.Name(), strings.Join(lines, "\n"))
		}
		if err := m.Destroy(context.Background()); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
}

// testImageCache is where the built test guest is: FIRSTBOOT_IMAGE_CACHE or
// the user's image cache.
func testImageCache() string {
	if cache := os.Getenv("FIRSTBOOT_IMAGE_CACHE"); cache != "" {
		return cache
	}
	home, _ := os.UserCacheDir()
	return filepath.Join(home, "firstboot", "images")
}
