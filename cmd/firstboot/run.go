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
	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testhook"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/vnc"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/scenarios"
)

func newRunCmd(a *app) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run SCENARIO.yaml",
		Short: "Boot the scenario's machine in the lab, capture it from power-on, run its steps, analyse",
		Long: `run brings the lab up (unless it is up already), creates an isolated network with
firstboot's responders, defines the machine paused, arms the capture on its tap, resumes it and
runs the scenario's steps. Everything goes to runs/<run-id>/: manifest.json, capture.pcapng,
console.log, responders.jsonl, firstboot.log, then analysis.json and the logs.

Whatever happens (a failed step, Ctrl-C, a crashed guest) the capture so far is kept and the
manifest says why the run is incomplete; everything the run brought up is torn down.

--display ADDR serves the machine's screen by VNC on that local address (no password, so
loopback only): connect a viewer to watch the run or take over. A scenario's pause action waits
for Enter in this terminal or for "firstboot continue RUN" from another shell; "firstboot mark
RUN NAME" notes a moment in the timeline and the capture.

--manual is the diary method: the scenario gives only image and machine (no steps); a person
drives the machine (use --display) and each Enter here ends the current step and begins the
next, named by what was typed before it ("firstboot mark RUN NAME" from another shell does the
same). Ctrl-D, or "firstboot mark RUN --end", ends the last step and shuts the machine down.
The steps are analysed and reported like a scenario's.

On a terminal, a status line under the log shows the current step and action, the time
since the start, the packets and bytes captured, the last new name the machine used and
the time left in the capture window; elsewhere the same goes to the log once a minute.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := scenarios.LoadWith(args[0], scenarios.LoadOptions{Manual: o.manual})
			if err != nil {
				return usageError{err}
			}
			if err := checkNetworkMode(o.network); err != nil {
				return err
			}
			_, err = runScenario(cmd, a, s, o)
			return err
		},
	}
	cmd.Flags().Float64Var(&o.minutes, "minutes", 0, "capture window in minutes (overrides the scenario's)")
	cmd.Flags().BoolVar(&o.noAnalyze, "no-analyze", false, "do not analyse the capture after the run")
	cmd.Flags().StringVar(&o.display, "display", "", "serve the machine's screen by VNC on this local address (e.g. 127.0.0.1:5900)")
	cmd.Flags().BoolVar(&o.manual, "manual", false, "a person drives the machine and makes the steps (the scenario has none)")
	cmd.Flags().StringArrayVar(&o.interceptRoots, "intercept-roots", nil, "PEM file of root certificates the TLS interceptor (network.intercept_tls) trusts for real servers besides the system's (repeat for several)")
	addNetworkFlags(cmd, &o.network)
	return cmd
}

// runOptions are what run and record ask of a run beyond its scenario.
type runOptions struct {
	minutes   float64
	noAnalyze bool
	display   string
	manual    bool
	record    bool
	// network overrides the scenario's network mode; interceptRoots are
	// extra roots the TLS interceptor trusts for real servers.
	network        string
	interceptRoots []string
}

// runScenario runs s, prints where everything went, and analyses and
// reports the capture (also of an incomplete run: the capture so far is
// data too). The run is nil when no run directory was made.
func runScenario(cmd *cobra.Command, a *app, s *scenarios.Scenario, o runOptions) (*scenarios.Run, error) {
	if o.display != "" {
		addr, err := vnc.CheckAddr(o.display)
		if err != nil {
			return nil, usageError{err}
		}
		o.display = addr
	}
	cfg := a.runConfig(s)
	cfg.Window = time.Duration(o.minutes * float64(time.Minute))
	cfg.Progress = &scenarios.Progress{}
	cfg.Network = o.network
	// Extra roots the TLS interceptor trusts for real servers.
	cfg.InterceptRoots = o.interceptRoots
	cfg.Display, cfg.Manual, cfg.Record = o.display, o.manual, o.record
	cfg.Terminal, cfg.Prompt = terminal(cmd.InOrStdin()), cmd.ErrOrStderr()
	// The live status shares the terminal with the log: log lines go
	// through it so they scroll above it.
	line, every := newStatusLine(os.Stderr), statusLogged
	if line != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(line, &slog.HandlerOptions{Level: a.logLevel}))
		every = statusRedraw
	}
	if !o.noAnalyze {
		cfg.Pending = "analysis"
	}
	ctx := cmd.Context()
	sctx, stopStatus := context.WithCancel(ctx)
	shown := make(chan struct{})
	go func() {
		defer close(shown)
		showProgress(sctx, cfg.Progress, line, cfg.Logger, every)
	}()
	run, runErr := scenarios.Execute(ctx, cfg)
	stopStatus()
	<-shown
	if run == nil {
		return nil, runErr
	}
	var imgErr *scenarios.ImageError
	if errors.As(runErr, &imgErr) {
		runErr = usageError{runErr}
	}
	met, failed, err := a.finishRun(ctx, run, s, !o.noAnalyze, cmd.OutOrStdout())
	if failed > 0 {
		// A failed expectation makes the run exit 3 so a scheduler can act on it.
		err = errors.Join(err, fmt.Errorf("%w: %d of %d not met", errExpectationFailed, failed, met+failed))
	}
	return run, errors.Join(runErr, err)
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
		Bridge:  a.cfg.Bridge,
		Egress:  a.cfg.Egress,
	}
}

// finishRun is what follows a run, for `firstboot run` and campaign workers
// alike: it says where everything went and, with analyze, analyses the
// capture (also of an incomplete run: the capture so far is data too) and
// writes the report, which checks the scenario's expectations (counted met
// and not met). err is an analysis or report failure.
func (a *app) finishRun(ctx context.Context, run *scenarios.Run, s *scenarios.Scenario, analyze bool, out io.Writer) (met, failed int, err error) {
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
		return 0, 0, nil
	}
	// A fresh context: Ctrl-C during the run must not cost the analysis of
	// what was captured.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Minute)
	defer cancel()
	testhook.Pause(ctx, a.logger, "analysis")
	if err := analyzeRunDir(actx, run.Dir, mergeFirstParty(a.cfg.FirstParty, s.FirstParty)); err != nil {
		return 0, 0, fmt.Errorf("analysing %s: %w", run.Dir, err)
	}
	fmt.Fprintf(out, "analysis: %s\n", filepath.Join(run.Dir, "analysis.json"))
	if err := setPending(run.Dir, "report"); err != nil {
		return 0, 0, err
	}
	testhook.Pause(ctx, a.logger, "report")
	return writeRunReport(run.Dir, s, out)
}

// terminal is where a person types to a run: standard input when it is a
// terminal or a pipe, nil otherwise (/dev/null, a file: CI has no person,
// and their end of input must not end a manual run at once).
func terminal(in io.Reader) io.Reader {
	f, ok := in.(*os.File)
	if !ok {
		return in
	}
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	if st.Mode()&os.ModeNamedPipe != 0 {
		return f
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		return f
	}
	return nil
}

// addNetworkFlags adds the network mode and the host's uplink to a command.
func addNetworkFlags(cmd *cobra.Command, network *string) {
	cmd.Flags().StringVar(network, "network", "", "network mode for this run, overriding the scenario's: simulated, routed (real internet, NAT through this host) or bridged (real internet on a host bridge)")
	cmd.Flags().String("bridge", "", "host bridge with a wired uplink, for bridged mode (config: bridge)")
	cmd.Flags().String("egress", "", "interface routed mode leaves by (config: egress; default: the default route's)")
}

func checkNetworkMode(mode string) error {
	switch mode {
	case "", "simulated", "routed", "bridged":
		return nil
	}
	return usageError{fmt.Errorf("--network %q: want simulated, routed or bridged", mode)}
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
