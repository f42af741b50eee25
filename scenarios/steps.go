package scenarios

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/firstboot/firstboot/results/manifest"
)

// SetupStep is one phase of bringing a run up (Packer's multistep, typed): Run
// acquires a resource, Cleanup releases it.
type SetupStep struct {
	Name    string
	Run     func(ctx context.Context) error
	Cleanup func(ctx context.Context) error // optional
}

// CleanupTimeout bounds each cleanup; cleanups get a fresh context so Ctrl-C
// still tears everything down.
const CleanupTimeout = 60 * time.Second

// RunSetup runs steps in order, then body, then the cleanups of every step that
// ran (also the one that failed) in reverse order. Cleanup errors are joined
// to the result, never lost. Each step becomes a timeline entry.
func RunSetup(ctx context.Context, tl *Timeline, steps []SetupStep, body func(ctx context.Context) error) (err error) {
	var ran []SetupStep
	defer func() {
		for i := len(ran) - 1; i >= 0; i-- {
			s := ran[i]
			if s.Cleanup == nil {
				continue
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
			start := tl.begin("cleanup " + s.Name)
			cerr := s.Cleanup(cctx)
			cancel()
			tl.add(manifest.Entry{Name: s.Name + " cleanup", Kind: manifest.KindSetup, Start: start, End: tl.now(), Error: errString(cerr)})
			if cerr != nil {
				err = errors.Join(err, fmt.Errorf("cleanup %s: %w", s.Name, cerr))
			}
		}
	}()
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("before %s: %w", s.Name, context.Cause(ctx))
		}
		ran = append(ran, s)
		start := tl.begin("setup " + s.Name)
		serr := s.Run(ctx)
		tl.add(manifest.Entry{Name: s.Name, Kind: manifest.KindSetup, Start: start, End: tl.now(), Error: errString(serr)})
		if serr != nil {
			return fmt.Errorf("%s: %w", s.Name, serr)
		}
	}
	if body != nil {
		return body(ctx)
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Timeline collects timeline entries; it is safe for concurrent use, and
// OnChange lets the run rewrite its manifest as entries arrive.
type Timeline struct {
	mu       sync.Mutex
	entries  []manifest.Entry
	Now      func() time.Time // the host clock, which also stamps the capture
	OnChange func([]manifest.Entry)
	// OnBegin hears of each phase as it begins ("setup lab", "step boot"),
	// before it has an entry: a run killed in it can say where it was.
	OnBegin func(what string, at time.Time)
}

// begin announces a phase that begins now and returns the time.
func (t *Timeline) begin(what string) time.Time {
	at := t.now()
	if t.OnBegin != nil {
		t.OnBegin(what, at)
	}
	return at
}

func (t *Timeline) now() time.Time {
	if t.Now != nil {
		return t.Now().UTC()
	}
	return time.Now().UTC()
}

func (t *Timeline) add(e manifest.Entry) {
	t.mu.Lock()
	t.entries = append(t.entries, e)
	snapshot := append([]manifest.Entry(nil), t.entries...)
	t.mu.Unlock()
	if t.OnChange != nil {
		t.OnChange(snapshot)
	}
}

// Entries returns a copy of the entries so far.
func (t *Timeline) Entries() []manifest.Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]manifest.Entry(nil), t.entries...)
}
