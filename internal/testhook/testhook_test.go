package testhook

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestPause(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	t.Setenv(Env, "analysis")
	// Another phase: no pause.
	Pause(context.Background(), log, "report")
	if logs.Len() != 0 {
		t.Fatalf("paused at another phase: %s", logs.String())
	}
	// The named phase: logged, then held until the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	Pause(ctx, log, "analysis")
	if time.Since(start) < 150*time.Millisecond || !strings.Contains(logs.String(), `msg="test hook: paused" phase=analysis`) {
		t.Errorf("did not pause at the named phase (%s): %s", time.Since(start), logs.String())
	}
}
