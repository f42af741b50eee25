package libvirt

import (
	"log/slog"
	"strconv"
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
