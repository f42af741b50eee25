package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/vnc"
	"github.com/firstboot/firstboot/results/manifest"
)

// Env is what the scenario steps act on. It is a typed struct, not a bag.
type Env struct {
	Machine lab.Machine
	// Start arms what must be armed and resumes the paused machine.
	Start func(ctx context.Context) error
	// Mark writes a comment into the capture at this instant.
	Mark func(text string)
	// Traffic is the live view of the capture; nil disables wait_traffic/wait_idle.
	Traffic *TrafficWatch
	// Dir is the run directory (screenshots go to Dir/screenshots).
	Dir      string
	Timeline *Timeline
	Logger   *slog.Logger
	// Progress, when set, follows the running step and action.
	Progress *Progress
	// Person is the person at the keyboard (pause, manual runs); nil when
	// the run has none.
	Person *Person
	// Recorder, while a person's session is recorded, gets the step
	// boundaries and the session's end.
	Recorder *vnc.Recorder
	// OCR configures wait_text and click_text.
	OCR OCROptions

	// last is what the running screen-reading action last saw; lastOCR
	// the last reading of any action, reused while the screen is unchanged.
	last, lastOCR *lastRead
	console       io.ReadWriteCloser
	consoleOffset int64 // how far console_expect has read ConsoleLog
}

// StepError says which step failed; the run keeps everything captured so far.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %q: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// RunSteps runs the scenario's steps in order. Each step's start and end go to
// the timeline and, as comments, into the capture. A failing action fails its
// step with a final screenshot and console tail; later steps do not run.
func RunSteps(ctx context.Context, s *Scenario, env *Env) error {
	defer env.closeConsole()
	for i, st := range s.Steps {
		env.Progress.step(st.Name, i+1, len(s.Steps))
		start := env.beginStep(st.Name)
		if err := env.endStep(st.Name, start, env.runStep(ctx, st)); err != nil {
			return err
		}
	}
	return nil
}

// beginStep marks a step's start in the capture (and the recording), and
// tells the timeline's OnBegin (the manifest says where a killed run was).
func (env *Env) beginStep(name string) time.Time {
	start := env.Timeline.begin("step " + name)
	env.mark(fmt.Sprintf("firstboot step %q start %s", name, start.Format(time.RFC3339Nano)))
	env.log().Info("step", "name", name)
	if env.Recorder != nil {
		env.Recorder.Step(name, start)
	}
	return start
}

// endStep marks a step's end and adds it to the timeline, with the failure
// artifacts when err is set; it returns err as a *StepError.
func (env *Env) endStep(name string, start time.Time, err error) error {
	end := env.Timeline.now()
	env.mark(fmt.Sprintf("firstboot step %q end %s", name, end.Format(time.RFC3339Nano)))
	entry := manifest.Entry{Name: name, Kind: manifest.KindStep, Start: start, End: end, Error: errString(err)}
	if err != nil {
		entry.Artifacts = env.failureArtifacts(name)
	}
	env.Timeline.add(entry)
	if err != nil {
		return &StepError{Step: name, Err: err}
	}
	return nil
}

func (env *Env) log() *slog.Logger {
	if env.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return env.Logger
}

func (env *Env) mark(text string) {
	if env.Mark != nil {
		env.Mark(text)
	}
}

func (env *Env) runStep(ctx context.Context, st Step) error {
	for i := range st.Actions {
		a := &st.Actions[i]
		env.Progress.action(a.Describe())
		start := env.Timeline.now()
		env.last = nil
		var arts []string
		var err error
		if a.Kind == "guest_exec" {
			arts, err = env.guestExec(ctx, a, st.Name, i+1)
		} else {
			err = env.do(ctx, a, start)
		}
		env.Timeline.add(manifest.Entry{Name: a.Describe(), Kind: manifest.KindAction, Step: st.Name, Start: start, End: env.Timeline.now(), Error: errString(err), Artifacts: arts})
		if err != nil {
			return fmt.Errorf("action %d (%s, line %d): %w", i+1, a.Kind, a.Line, err)
		}
	}
	return nil
}

func (env *Env) do(ctx context.Context, a *Action, start time.Time) error {
	m := env.Machine
	switch a.Kind {
	case "start":
		return env.Start(ctx)
	case "reboot":
		return m.Reboot(ctx)
	case "reset":
		return m.Reset(ctx)
	case "shutdown":
		return m.Shutdown(ctx, a.Timeout(2*time.Minute))
	case "wait":
		return sleep(ctx, a.Wait.D())
	case "mark":
		return noteMark(env, a.Mark)
	case "keys", "type":
		return env.sendKeys(ctx, a.Keys)
	case "pause":
		return env.pause(ctx, a.Pause.Message)
	case "screenshot":
		dir := filepath.Join(env.Dir, "screenshots")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return m.Screenshot(ctx, filepath.Join(dir, a.Screenshot+".png"))
	case "wait_screen":
		return env.waitScreen(ctx, a)
	case "wait_text":
		return env.waitText(ctx, a)
	case "click_text":
		return env.clickText(ctx, a)
	case "click", "double_click", "move", "drag", "scroll":
		return env.pointer(ctx, a)
	case "console_expect":
		ctx, cancel := context.WithTimeout(ctx, a.Timeout(DefaultActionTimeout))
		defer cancel()
		return env.consoleExpect(ctx, a.ConsoleExpect)
	case "console_send":
		return env.consoleSend(ctx, a.ConsoleSend)
	case "wait_traffic":
		if env.Traffic == nil {
			return errors.New("wait_traffic needs the live capture, which this run does not have")
		}
		ctx, cancel := context.WithTimeout(ctx, a.Timeout(DefaultActionTimeout))
		defer cancel()
		return env.Traffic.WaitFor(ctx, a.WaitTraffic, start)
	case "wait_idle":
		if env.Traffic == nil {
			return errors.New("wait_idle needs the live capture, which this run does not have")
		}
		ctx, cancel := context.WithTimeout(ctx, a.Timeout(10*time.Minute))
		defer cancel()
		return env.Traffic.WaitIdle(ctx, a.WaitIdle.Quiet.D(), env.Timeline.now)
	case "insert":
		if err := m.InsertMedia(ctx, a.Media.Name); err != nil {
			return fmt.Errorf("inserting media %s (image.media): %w", a.Media.Name, err)
		}
		return nil
	case "eject":
		if err := m.EjectMedia(ctx, a.Media.Name); err != nil {
			return fmt.Errorf("ejecting media %s (image.media): %w", a.Media.Name, err)
		}
		return nil
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

func (env *Env) sendKeys(ctx context.Context, k *KeysArgs) error {
	for _, ev := range k.Parsed {
		if ev.Wait > 0 {
			if err := sleep(ctx, ev.Wait); err != nil {
				return err
			}
			continue
		}
		if err := env.Machine.SendKeys(ctx, ev.Codes, 50); err != nil {
			return err
		}
		if err := sleep(ctx, k.Interval.D()); err != nil {
			return err
		}
	}
	return nil
}

// consoleExpect reads the serial console log from where the last match ended
// until the pattern matches. The log file, not the console stream, is read, so
// nothing the guest printed before the action is missed.
func (env *Env) consoleExpect(ctx context.Context, e *ExpectArgs) error {
	logPath := env.Machine.ConsoleLog()
	for {
		data, err := readFrom(logPath, env.consoleOffset)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("reading console log: %w", err)
		}
		if loc := e.Regexp.FindIndex(data); loc != nil {
			env.consoleOffset += int64(loc[1])
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("console never showed /%s/: %w", e.Pattern, context.Cause(ctx))
		case <-env.Machine.Stopped():
			// One last read: the pattern may be in what the guest printed last.
			if data, _ := readFrom(logPath, env.consoleOffset); e.Regexp.Match(data) {
				return nil
			}
			return fmt.Errorf("the machine stopped before the console showed /%s/", e.Pattern)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readFrom(path string, offset int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

func (env *Env) consoleSend(ctx context.Context, s *SendArgs) error {
	if env.console == nil {
		c, err := env.Machine.Console(ctx)
		if err != nil {
			return fmt.Errorf("opening the serial console: %w", err)
		}
		env.console = c
	}
	text := s.Text
	if !s.NoEnter {
		text += "\n"
	}
	_, err := io.WriteString(env.console, text)
	return err
}

func (env *Env) closeConsole() {
	if env.console != nil {
		env.console.Close()
		env.console = nil
	}
}

// failureArtifacts saves what helps explain a failed step: a screenshot and
// the console tail. Errors here are logged, not returned: the step's own error
// is what matters.
func (env *Env) failureArtifacts(step string) []string {
	// A screen-reading action failed: keep the screen it judged and its text.
	out := env.saveLastRead(step)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := filepath.Join(env.Dir, "screenshots")
	shot := filepath.Join(dir, "failed-"+step+".png")
	select {
	case <-env.Machine.Stopped():
	default:
		if out != nil {
			break
		}
		if err := os.MkdirAll(dir, 0o755); err == nil {
			if err := env.Machine.Screenshot(ctx, shot); err == nil {
				out = append(out, relTo(env.Dir, shot))
			} else {
				env.log().Warn("final screenshot failed", "step", step, "err", err)
			}
		}
	}
	if data, err := os.ReadFile(env.Machine.ConsoleLog()); err == nil {
		tail := data
		if len(tail) > 4096 {
			tail = tail[len(tail)-4096:]
			if i := bytes.IndexByte(tail, '\n'); i >= 0 {
				tail = tail[i+1:]
			}
		}
		p := filepath.Join(env.Dir, "console-tail-"+step+".txt")
		if os.WriteFile(p, tail, 0o644) == nil {
			out = append(out, relTo(env.Dir, p))
		}
	}
	return out
}

func relTo(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil {
		return r
	}
	return p
}

// guestExecTail is how much of stderr a failed guest_exec quotes.
const guestExecTail = 512

// guestExec runs the action's program through the guest agent, stores its
// output as guest-exec/<step>-<n>.out and .err, and fails on a non-zero exit
// with the exit status and the end of stderr.
func (env *Env) guestExec(ctx context.Context, a *Action, step string, n int) ([]string, error) {
	g := a.GuestExec
	ctx, cancel := context.WithTimeout(ctx, a.Timeout(DefaultActionTimeout))
	defer cancel()
	res, err := env.Machine.GuestExec(ctx, g.Path, g.Args)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(env.Dir, "guest-exec")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, fmt.Sprintf("%s-%d", step, n))
	var arts []string
	for _, f := range []struct {
		ext  string
		data []byte
	}{{".out", res.Stdout}, {".err", res.Stderr}} {
		if err := os.WriteFile(base+f.ext, f.data, 0o644); err != nil {
			return arts, fmt.Errorf("storing the guest's output: %w", err)
		}
		arts = append(arts, relTo(env.Dir, base+f.ext))
	}
	env.log().Info("guest exec", "step", step, "path", g.Path, "exit", res.ExitCode, "signal", res.Signal,
		"stdout_bytes", len(res.Stdout), "stderr_bytes", len(res.Stderr), "truncated", res.Truncated)
	if res.ExitCode == 0 && res.Signal == 0 {
		return arts, nil
	}
	status := fmt.Sprintf("exit status %d", res.ExitCode)
	if res.Signal != 0 {
		status = fmt.Sprintf("killed by signal %d", res.Signal)
	}
	tail := bytes.TrimSpace(res.Stderr)
	if len(tail) > guestExecTail {
		tail = append([]byte("…"), tail[len(tail)-guestExecTail:]...)
	}
	if len(tail) == 0 {
		return arts, fmt.Errorf("%s in the guest: %s (no stderr; stdout in %s)", g.Path, status, arts[0])
	}
	return arts, fmt.Errorf("%s in the guest: %s: %s", g.Path, status, tail)
}
