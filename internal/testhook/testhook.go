// Package testhook lets end-to-end tests stop firstboot at a named moment
// that is too short to catch by watching its progress (the analysis of a
// small capture takes milliseconds), to kill it there. Only tests set the
// variable; unset, Pause does nothing.
package testhook

import (
	"context"
	"log/slog"
	"os"
)

// Env names the phase to pause at (FIRSTBOOT_TEST_PAUSE=analysis).
const Env = "FIRSTBOOT_TEST_PAUSE"

// Pause blocks until ctx ends when the environment names phase, after
// logging "test hook: paused" with the phase for the test to watch for.
func Pause(ctx context.Context, log *slog.Logger, phase string) {
	if os.Getenv(Env) != phase || phase == "" {
		return
	}
	if log != nil {
		log.Info("test hook: paused", "phase", phase)
	}
	<-ctx.Done()
}
