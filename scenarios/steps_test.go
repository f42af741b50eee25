package scenarios

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRunSetupCleanupOrder(t *testing.T) {
	var log []string
	step := func(name string, fail bool) SetupStep {
		return SetupStep{
			Name: name,
			Run: func(ctx context.Context) error {
				log = append(log, "run "+name)
				if fail {
					return errors.New(name + " broke")
				}
				return nil
			},
			Cleanup: func(ctx context.Context) error {
				if ctx.Err() != nil {
					t.Errorf("cleanup %s got a cancelled context", name)
				}
				log = append(log, "cleanup "+name)
				if name == "a" {
					return errors.New("a cleanup broke")
				}
				return nil
			},
		}
	}
	tests := []struct {
		name    string
		steps   []SetupStep
		cancel  bool
		want    string
		wantErr []string
	}{
		{"all ok", []SetupStep{step("a", false), step("b", false)}, false,
			"run a,run b,body,cleanup b,cleanup a", []string{"a cleanup broke"}},
		{"second fails", []SetupStep{step("a", false), step("b", true), step("c", false)}, false,
			"run a,run b,cleanup b,cleanup a", []string{"b: b broke", "a cleanup broke"}},
		{"cancelled", []SetupStep{step("a", false), step("b", false)}, true,
			"", []string{"before a", "context canceled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log = nil
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			tl := &Timeline{}
			err := RunSetup(ctx, tl, tt.steps, func(context.Context) error {
				log = append(log, "body")
				return nil
			})
			got := strings.Join(log, ",")
			if got != tt.want {
				t.Errorf("log = %q, want %q", got, tt.want)
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
			for _, e := range tl.Entries() {
				if e.Start.IsZero() || e.End.Before(e.Start) {
					t.Errorf("timeline entry %+v has bad times", e)
				}
			}
		})
	}
}

// TestOnBeginHearsSetupAndSteps: every phase a run can be killed in, setup
// and scenario steps alike, reaches OnBegin before it runs (the manifest's
// "doing", which says where a killed run was).
func TestOnBeginHearsSetupAndSteps(t *testing.T) {
	s, err := Parse("b.yaml", []byte(`name: b
image: {builtin: testguest}
steps:
  - name: one
    actions: [start]
  - name: two
    actions: [{wait: 1ms}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var heard []string
	tl := &Timeline{OnBegin: func(what string, _ time.Time) { heard = append(heard, what) }}
	setup := []SetupStep{{Name: "lab", Run: func(context.Context) error { return nil }}}
	err = RunSetup(context.Background(), tl, setup, func(ctx context.Context) error {
		env := &Env{Machine: &fakeMachine{stopped: make(chan struct{})}, Start: func(context.Context) error { return nil }, Dir: t.TempDir(), Timeline: tl}
		return RunSteps(ctx, s, env)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(heard, ", "), "setup lab, step one, step two"; !strings.HasPrefix(got, want) {
		t.Errorf("OnBegin heard %q; want it to begin with %q", got, want)
	}
}
