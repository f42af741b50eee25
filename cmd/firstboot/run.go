package main

import (
	"context"
	"errors"
	"fmt"
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
	var network string
	var interceptRoots []string
	cmd := &cobra.Command{
		Use:   "run SCENARIO.yaml",
		Short: "Boot the scenario's machine in the lab, capture it from power-on, run its steps, analyse",
		Long: `run brings the lab up (unless it is up already), creates an isolated network with
firstboot's responders, defines the machine paused, arms the capture on its tap, resumes it and
runs the scenario's steps. Everything goes to runs/<run-id>/: manifest.json, capture.pcapng,
console.log, responders.jsonl, firstboot.log, then analysis.json and the logs.

With --network routed (or network.mode: routed) the machine reaches the real internet through
this host: lab DHCP, DNS forwarded to this namespace's resolvers (logged to uplink-dns.jsonl), the
rest NATed out of the default route (or --egress). With --network bridged it sits on the host
bridge (--bridge) and takes its address from that network's DHCP.

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
			if err := checkNetworkMode(network); err != nil {
				return err
			}
			cfg := scenarios.RunConfig{
				Scenario:   s,
				RunsDir:    a.cfg.RunsDir,
				ImageCache: a.cfg.ImageCache,
				Lab: lab.Config{
					StateDir:   a.cfg.StateDir,
					LibvirtURI: a.cfg.LibvirtURI,
					Accel:      a.cfg.Accel,
				},
				Window:   time.Duration(minutes * float64(time.Minute)),
				Version:  version,
				Logger:   a.logger,
				Progress: &scenarios.Progress{},
				Network:  network,
				Bridge:   a.cfg.Bridge,
				Egress:   a.cfg.Egress,
				// Extra roots the TLS interceptor trusts for real servers.
				InterceptRoots: interceptRoots,
			}
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
			run, runErr := scenarios.Execute(ctx, cfg)
			stopStatus()
			<-shown
			if run == nil {
				return runErr
			}
			// The manifest says what is still to do until it is done, so a
			// firstboot killed meanwhile is noticed (results/rundir).
			defer func() {
				if err := setPending(run.Dir, ""); err != nil {
					a.logger.Warn("updating the manifest", "err", err)
				}
			}()
			var imgErr *scenarios.ImageError
			if errors.As(runErr, &imgErr) {
				runErr = usageError{runErr}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "run directory: %s\n", run.Dir)
			fmt.Fprintf(cmd.OutOrStdout(), "status: %s", run.Manifest.Status)
			if run.Manifest.Reason != "" {
				fmt.Fprintf(cmd.OutOrStdout(), " (%s)", run.Manifest.Reason)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\ncapture: %d packets, %d dropped\n", run.Manifest.Capture.Packets, run.Manifest.Capture.Drops)
			if noAnalyze || run.Manifest.Capture.File == "" {
				return runErr
			}
			// Analyse what was captured even when the run is incomplete: the
			// capture so far is data too. A fresh context: Ctrl-C during the run
			// must not cost the analysis of what was captured.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Minute)
			defer cancel()
			testhook.Pause(ctx, a.logger, "analysis")
			if err := analyzeRunDir(actx, run.Dir, mergeFirstParty(a.cfg.FirstParty, s.FirstParty)); err != nil {
				return errors.Join(runErr, fmt.Errorf("analysing %s: %w", run.Dir, err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "analysis: %s\n", filepath.Join(run.Dir, "analysis.json"))
			if err := setPending(run.Dir, "report"); err != nil {
				return errors.Join(runErr, err)
			}
			testhook.Pause(ctx, a.logger, "report")
			// The report also evaluates the scenario's expectations; a failed
			// one makes the run exit 3 so a scheduler can act on it.
			if err := writeRunReport(run.Dir, s, cmd.OutOrStdout()); err != nil {
				return errors.Join(runErr, err)
			}
			return runErr
		},
	}
	cmd.Flags().Float64Var(&minutes, "minutes", 0, "capture window in minutes (overrides the scenario's)")
	cmd.Flags().BoolVar(&noAnalyze, "no-analyze", false, "do not analyse the capture after the run")
	cmd.Flags().StringArrayVar(&interceptRoots, "intercept-roots", nil, "PEM file of root certificates the TLS interceptor (network.intercept_tls) trusts for real servers besides the system's (repeat for several)")
	addNetworkFlags(cmd, &network)
	return cmd
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
