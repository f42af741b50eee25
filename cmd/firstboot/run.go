package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testhook"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/scenarios"
)

func newRunCmd(a *app) *cobra.Command {
	var minutes float64
	var noAnalyze bool
	cmd := &cobra.Command{
		Use:   "run SCENARIO.yaml",
		Short: "Boot the scenario's machine in the lab, capture it from power-on, run its steps, analyse",
		Long: `run brings the lab up (unless it is up already), creates an isolated network with
firstboot's responders, defines the machine paused, arms the capture on its tap, resumes it and
runs the scenario's steps. Everything goes to runs/<run-id>/: manifest.json, capture.pcapng,
console.log, responders.jsonl, firstboot.log, then analysis.json and the logs.

Whatever happens (a failed step, Ctrl-C, a crashed guest) the capture so far is kept and the
manifest says why the run is incomplete; everything the run brought up is torn down.

On a terminal, a status line under the log shows the current step and action, the time
since the start, the packets and bytes captured, the last new name the machine used and
the time left in the capture window; elsewhere the same goes to the log once a minute.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := scenarios.Load(args[0])
			if err != nil {
				return usageError{err}
			}
			cfg := a.runConfig(s)
			cfg.Window = time.Duration(minutes * float64(time.Minute))
			cfg.Progress = &scenarios.Progress{}
			// The live status shares the terminal with the log: log lines go
			// through it so they scroll above it.
			line, every := newStatusLine(os.Stderr), statusLogged
			if line != nil {
				cfg.Logger = slog.New(slog.NewTextHandler(line, &slog.HandlerOptions{Level: a.logLevel}))
				every = statusRedraw
			}
			if !noAnalyze {
				cfg.Pending = "analysis"
			}
			ctx := cmd.Context()
			sctx, stopStatus := context.WithCancel(ctx)
			shown := make(chan struct{})
			go func() {
				defer close(shown)
				showProgress(sctx, cfg.Progress, line, cfg.Logger, every)
			}()
			o := a.runScenario(ctx, cfg, !noAnalyze, cmd.OutOrStdout())
			stopStatus()
			<-shown
			if o.run == nil {
				return o.runErr
			}
			runErr := o.runErr
			var imgErr *scenarios.ImageError
			if errors.As(runErr, &imgErr) {
				runErr = usageError{runErr}
			}
			if o.failed > 0 {
				// A failed expectation makes the run exit 3 so a scheduler can act on it.
				runErr = errors.Join(runErr, fmt.Errorf("%w: %d of %d not met", errExpectationFailed, o.failed, o.met+o.failed))
			}
			return errors.Join(runErr, o.analysisErr)
		},
	}
	cmd.Flags().Float64Var(&minutes, "minutes", 0, "capture window in minutes (overrides the scenario's)")
	cmd.Flags().BoolVar(&noAnalyze, "no-analyze", false, "do not analyse the capture after the run")
	return cmd
}

// runConfig is a run of s as this invocation's configuration says.
func (a *app) runConfig(s *scenarios.Scenario) scenarios.RunConfig {
	return scenarios.RunConfig{
		Scenario:   s,
		RunsDir:    a.cfg.RunsDir,
		ImageCache: a.cfg.ImageCache,
		Lab: lab.Config{
			StateDir:   a.cfg.StateDir,
			LibvirtURI: a.cfg.LibvirtURI,
			Accel:      a.cfg.Accel,
		},
		Version: version,
		Logger:  a.logger,
	}
}

// runOutcome is what a run and its analysis gave.
type runOutcome struct {
	run         *scenarios.Run // nil when no run directory could be made
	runErr      error          // the run's own (scenarios.Execute)
	analysisErr error          // analysing the capture or writing the report
	met, failed int            // the scenario's expectations
}

// runScenario is `firstboot run`'s path, which campaign workers take too:
// the run, then (with analyze) the analysis of what was captured, even when
// the run is incomplete (the capture so far is data too), and the report,
// which checks the scenario's expectations. What it did goes to out.
func (a *app) runScenario(ctx context.Context, cfg scenarios.RunConfig, analyze bool, out io.Writer) runOutcome {
	if analyze {
		cfg.Pending = "analysis"
	}
	run, runErr := scenarios.Execute(ctx, cfg)
	o := runOutcome{run: run, runErr: runErr}
	if run == nil {
		return o
	}
	// The manifest says what is still to do until it is done, so a
	// firstboot killed meanwhile is noticed (results/rundir).
	defer func() {
		if err := setPending(run.Dir, ""); err != nil {
			a.logger.Warn("updating the manifest", "err", err)
		}
	}()
	fmt.Fprintf(out, "run directory: %s\n", run.Dir)
	fmt.Fprintf(out, "status: %s", run.Manifest.Status)
	if run.Manifest.Reason != "" {
		fmt.Fprintf(out, " (%s)", run.Manifest.Reason)
	}
	fmt.Fprintf(out, "\ncapture: %d packets, %d dropped\n", run.Manifest.Capture.Packets, run.Manifest.Capture.Drops)
	if !analyze || run.Manifest.Capture.File == "" {
		return o
	}
	// A fresh context: Ctrl-C during the run must not cost the analysis of
	// what was captured.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Minute)
	defer cancel()
	s := cfg.Scenario
	testhook.Pause(ctx, a.logger, "analysis")
	if err := analyzeRunDir(actx, run.Dir, mergeFirstParty(a.cfg.FirstParty, s.FirstParty)); err != nil {
		o.analysisErr = fmt.Errorf("analysing %s: %w", run.Dir, err)
		return o
	}
	fmt.Fprintf(out, "analysis: %s\n", filepath.Join(run.Dir, "analysis.json"))
	if err := setPending(run.Dir, "report"); err != nil {
		o.analysisErr = err
		return o
	}
	testhook.Pause(ctx, a.logger, "report")
	// The report also evaluates the scenario's expectations.
	o.met, o.failed, o.analysisErr = writeRunReport(run.Dir, s, out)
	return o
}

// setPending records in the run's manifest what this process now does with
// the directory ("" when nothing).
func setPending(dir, what string) error {
	m, err := manifest.Read(dir)
	if err != nil || m.Doing == nil && what == "" {
		return err
	}
	m.Doing = nil
	if what != "" {
		m.Doing = &manifest.Activity{What: what, Since: time.Now().UTC()}
	}
	return manifest.Write(dir, m)
}

// analyzeRunDir analyses a run directory's capture, segmented by the steps in
// its manifest, and writes the outputs into the run directory.
func analyzeRunDir(ctx context.Context, dir string, firstParty []string) error {
	m, err := manifest.Read(dir)
	if err != nil {
		return err
	}
	if len(firstParty) == 0 {
		firstParty = m.Scenario.FirstParty
	}
	res, err := analyzer.AnalyzeFile(ctx, filepath.Join(dir, m.Capture.File), analyzer.Options{
		FirstParty: firstParty,
		Steps:      stepsFromManifest(m),
	})
	if err != nil {
		return err
	}
	return analyzer.WriteOutputs(dir, res, "tsv")
}

// stepsFromManifest turns the timeline's steps into contiguous analysis
// steps: each step runs until the next one starts, so nothing falls between.
func stepsFromManifest(m *manifest.Manifest) []analyzer.Step {
	ms := m.Steps()
	out := make([]analyzer.Step, len(ms))
	for i, s := range ms {
		out[i] = analyzer.Step{Name: s.Name, Start: s.Start, End: s.End}
		if i+1 < len(ms) {
			out[i].End = ms[i+1].Start
		}
	}
	return out
}

func mergeFirstParty(lists ...[]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, d := range l {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}
