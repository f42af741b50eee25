package scenarios

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/firstboot/firstboot/lab/vnc"
	"github.com/firstboot/firstboot/results/manifest"
)

// ManualFirstStep names the step a manual run begins with, at power-on.
const ManualFirstStep = "boot"

// manualShutdown bounds the ACPI shutdown that ends a manual run.
const manualShutdown = 2 * time.Minute

// RunManual is the diary method: the person drives the machine and says
// where the steps begin. The machine starts in step "boot"; each line the
// person enters (or firstboot mark RUN NAME) ends the current step and
// begins the next, named by what was typed (step-N when nothing was). The
// end of the terminal's input (Ctrl-D) or firstboot mark RUN --end ends the
// last step with an ACPI shutdown; so does the machine powering off. Steps
// go to the timeline and the capture as a scenario's do.
func RunManual(ctx context.Context, env *Env) error {
	p := env.Person
	if p == nil {
		return errors.New("a manual run needs a person: run it with firstboot run --manual")
	}
	type request struct {
		said  Said
		reply chan error
	}
	reqs := make(chan request)
	ending := errors.New("the run is ending")
	stop := p.listen(func(s Said) error {
		r := request{s, make(chan error, 1)}
		select {
		case reqs <- r:
		case <-ctx.Done():
			return ending
		}
		select {
		case err := <-r.reply:
			return err
		case <-ctx.Done():
			return ending
		}
	})
	defer stop()

	cur, n := ManualFirstStep, 1
	used := map[string]bool{cur: true}
	start := env.beginStep(cur)
	if err := env.action(cur, "start", func() error { return env.Start(ctx) }); err != nil {
		return env.endStep(cur, start, err)
	}
	p.Tell("manual run: you drive the machine. Step %q has begun.\n"+
		"  Enter ends it and begins the next step: type the next step's name first, or it is step-%d.\n"+
		"  Ctrl-D ends the last step and shuts the machine down.\n"+
		"  From another shell: firstboot mark %s NAME, firstboot mark %s --end", cur, n+1, p.RunDir, p.RunDir)
	for {
		select {
		case r := <-reqs:
			switch r.said.Kind {
			case SayLine, SayMark:
				name := r.said.Text
				if name == "" {
					name = fmt.Sprintf("step-%d", n+1)
				}
				if err := checkStepName(name); err != nil {
					r.reply <- err
					continue
				}
				if used[name] {
					r.reply <- fmt.Errorf("there is a step %q already: give another name", name)
					continue
				}
				if err := env.endStep(cur, start, nil); err != nil {
					r.reply <- err
					return err
				}
				used[name], n = true, n+1
				prev := cur
				// The step begins before the person hears it has: what they
				// do on hearing it belongs to it.
				cur, start = name, env.beginStep(name)
				p.Tell("step %q ended; step %q has begun", prev, name)
				r.reply <- nil
			case SayEOF, SayEnd:
				r.reply <- nil
				p.Tell("ending step %q: shutting the machine down", cur)
				if env.Recorder != nil {
					env.Recorder.End(env.Timeline.now(), vnc.EndedByPerson)
				}
				err := env.action(cur, "shutdown (ACPI, forced after 2m0s)", func() error {
					return env.Machine.Shutdown(ctx, manualShutdown)
				})
				return env.endStep(cur, start, err)
			case SayContinue:
				r.reply <- errors.New("nothing is paused: in a manual run Enter (or firstboot mark RUN NAME) ends the step, Ctrl-D (or firstboot mark RUN --end) ends the run")
			default:
				r.reply <- fmt.Errorf("unknown request %q", r.said.Kind)
			}
		case <-env.Machine.Stopped():
			p.Tell("the machine powered off: step %q and the run end", cur)
			if env.Recorder != nil {
				env.Recorder.End(env.Timeline.now(), vnc.EndedByMachine)
			}
			return env.endStep(cur, start, nil)
		case <-ctx.Done():
			return env.endStep(cur, start, context.Cause(ctx))
		}
	}
}

// action runs f as an action of a step, with its timeline entry.
func (env *Env) action(step, name string, f func() error) error {
	start := env.Timeline.now()
	err := f()
	env.Timeline.add(manifest.Entry{Name: name, Kind: manifest.KindAction, Step: step, Start: start, End: env.Timeline.now(), Error: errString(err)})
	return err
}
