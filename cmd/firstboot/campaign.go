package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/internal/fsutil"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/libvirt"
	rcampaign "github.com/firstboot/firstboot/results/campaign"
	"github.com/firstboot/firstboot/scenarios"
	"github.com/firstboot/firstboot/scenarios/campaign"
)

// campaignFlags are what the campaign commands and the worker share.
type campaignFlags struct {
	dir   string // campaigns directory: one directory per campaign
	queue string // PostgreSQL URL; "" is the campaign's own SQLite file
}

func (f *campaignFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.dir, "campaigns-dir", "", "directory of campaign directories (default: <runs-dir>/campaigns)")
	cmd.PersistentFlags().StringVar(&f.queue, "queue", "", "the job queue: postgres://… for many hosts (default: a SQLite file in the campaign's directory)")
}

func (f *campaignFlags) root(a *app) string {
	if f.dir != "" {
		return f.dir
	}
	return filepath.Join(a.cfg.RunsDir, "campaigns")
}

// home is a campaign's directory: its executions, its SQLite queue, its verdicts.
func (f *campaignFlags) home(a *app, name string) string { return filepath.Join(f.root(a), name) }

// queueURL is the queue a campaign's jobs go to.
func (f *campaignFlags) queueURL(a *app, name string) string {
	if f.queue != "" {
		return f.queue
	}
	return filepath.Join(f.home(a, name), "queue.sqlite")
}

func newCampaignCmd(a *app) *cobra.Command {
	f := &campaignFlags{}
	cmd := &cobra.Command{
		Use:   "campaign",
		Short: "Run a study's whole matrix: scenarios × host labels × repetitions, now or on a schedule",
		Long: `A campaign file names scenarios (or one scenario's variants: other images or releases),
repetitions, host labels (vantage points), limits, a schedule, a baseline and fail_on
conditions; see campaigns/ and docs/campaigns.md.

Jobs live in River (riverqueue.com): by default in a SQLite file in the campaign's
directory (<runs-dir>/campaigns/<name>/), on this host; with --queue postgres://…
in PostgreSQL, where firstboot worker processes on lab hosts take them.`,
	}
	f.add(cmd)
	cmd.AddCommand(
		newCampaignValidateCmd(),
		newCampaignPlanCmd(),
		newCampaignRunCmd(a, f),
		newCampaignReportCmd(a, f),
		newCampaignServeCmd(a, f),
	)
	return cmd
}

func loadCampaign(path string) (*campaign.Campaign, error) {
	c, err := campaign.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

func newCampaignValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check campaign files and their scenarios (mistakes as file:line:column); no lab needed",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, p := range args {
				c, err := loadCampaign(p)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d scenarios, %d jobs)\n", p, len(c.Scenarios), len(c.Matrix()))
			}
			if len(errs) > 0 {
				return usageError{errors.Join(errs...)}
			}
			return nil
		},
	}
}

func newCampaignPlanCmd() *cobra.Command {
	var parallel int
	cmd := &cobra.Command{
		Use:   "plan FILE",
		Short: "Print a campaign's matrix and what this host would run at once; no lab needed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadCampaign(args[0])
			if err != nil {
				return err
			}
			return campaign.WritePlan(cmd.OutOrStdout(), c, hostCapacity(c, parallel, 0), time.Now())
		},
	}
	cmd.Flags().IntVar(&parallel, "parallel", 0, "runs at once on this host (default: the campaign's limit, else what the host holds)")
	return cmd
}

// hostCapacity is what this host lends a campaign: the flags, else the
// campaign's limits, else what the host has.
func hostCapacity(c *campaign.Campaign, parallel, memoryMiB int) campaign.Capacity {
	if c != nil {
		if parallel == 0 {
			parallel = c.Limits.Parallel
		}
		if memoryMiB == 0 {
			memoryMiB = c.Limits.Memory.MiB()
		}
	}
	return campaign.HostCapacity(parallel, memoryMiB)
}

func newCampaignRunCmd(a *app, f *campaignFlags) *cobra.Command {
	var parallel int
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a campaign to its end (again: resume it), then write its report",
		Long: `run executes the campaign's matrix. With the default SQLite queue the runs happen on
this host, as many at once as it holds (CPUs and memory against each scenario's
machine), each with its own capture; with --queue postgres://… this command
coordinates and firstboot worker processes run the jobs.

A run that fails for an infrastructure reason (lab error, libvirtd gone, dropped
packets) is retried (limits.retries, default 2) and its incomplete run kept; a run
whose expectations fail is a result. Running the same command again after Ctrl-C,
kill -9 or a reboot resumes the unfinished execution: finished runs stay,
interrupted ones run again.

The execution's directory, <campaigns-dir>/<name>/<execution>/, holds runs/,
campaign.json (the matrix, each job's state and runs) and report.md/report.html
(each destination's k-of-n presence per scenario and step, the spread of its
connections and bytes, the comparison with the baseline). Exit 3 when a fail_on
condition holds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadCampaign(args[0])
			if err != nil {
				return err
			}
			return runCampaign(cmd.Context(), a, f, c, parallel, cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&parallel, "parallel", 0, "runs at once on this host (default: the campaign's limit, else what the host holds)")
	return cmd
}

// runCampaign runs or resumes the campaign's execution and follows it to its end.
func runCampaign(ctx context.Context, a *app, f *campaignFlags, c *campaign.Campaign, parallel int, out io.Writer) error {
	home := f.home(a, c.Name)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	local := f.queue == ""
	if local {
		// One process at a time works a campaign's SQLite queue: then every
		// job found running was left by a dead process.
		unlock, err := fsutil.LockDir(ctx, home)
		if err != nil {
			return err
		}
		defer unlock()
		if n, err := campaign.RescueOrphans(ctx, f.queueURL(a, c.Name), warnLogger(a)); err != nil {
			return err
		} else if n > 0 {
			fmt.Fprintf(out, "resuming: %d jobs a stopped firstboot left running go back to the queue\n", n)
		}
	}
	here := hostCapacity(c, parallel, 0)
	for _, j := range c.Matrix() {
		if err := here.Fits(j); local && err != nil {
			return usageError{fmt.Errorf("%w: lower the scenario's machine, or run the campaign on bigger hosts with --queue postgres://… and firstboot worker", err)}
		}
	}
	disp := newCampaignDisplay(out, a)
	defer disp.close()
	pq, err := openCampaignQueue(ctx, a, f, []string{c.Name}, here, disp, local, nil)
	if err != nil {
		return err
	}
	defer pq.close()
	args, jobID, err := pickExecution(ctx, pq.q, c, home, out)
	if err != nil {
		return err
	}
	if local {
		release, err := holdLab(ctx, a)
		if err != nil {
			return err
		}
		defer release()
	}
	fmt.Fprintf(out, "campaign %s, execution %s: %d jobs (queue %s)\n", c.Name, args.Instance, len(c.Matrix()), pq.q.Where)
	if err := pq.q.Start(ctx); err != nil {
		return err
	}
	row, err := waitJob(ctx, pq.q, jobID)
	pq.stop(ctx)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(out, "interrupted: finished runs stay in %s; run the same command again to resume\n", args.Dir())
		}
		return err
	}
	return executionOutcome(out, args.Dir(), row)
}

// pickExecution resumes the campaign's unfinished execution, or queues a new one.
func pickExecution(ctx context.Context, q *campaign.Queue, c *campaign.Campaign, home string, out io.Writer) (campaign.CampaignArgs, int64, error) {
	rows, all, err := q.Executions(ctx, c.Name)
	if err != nil {
		return campaign.CampaignArgs{}, 0, err
	}
	for i := len(rows) - 1; i >= 0; i-- {
		if rows[i].FinalizedAt == nil && !all[i].Scheduled && all[i].Home == home {
			if all[i].File != c.File || string(all[i].Source) != string(c.Source) {
				fmt.Fprintf(out, "note: the campaign file changed since execution %s began; it resumes as it began\n", all[i].Instance)
			}
			fmt.Fprintf(out, "resuming execution %s\n", all[i].Instance)
			return all[i], rows[i].ID, nil
		}
	}
	args := campaign.CampaignArgs{Name: c.Name, Instance: campaign.NewInstance(time.Now()), File: c.File, Source: c.Source, Home: home}
	if abs, err := filepath.Abs(c.File); err == nil {
		args.File = abs
	}
	id, err := q.Enqueue(ctx, args)
	return args, id, err
}

// waitJob waits until the coordinating job ends.
func waitJob(ctx context.Context, q *campaign.Queue, id int64) (*rivertype.JobRow, error) {
	for {
		row, err := q.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		if row.FinalizedAt != nil {
			return row, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// executionOutcome prints where the report is and the verdict; a failed
// verdict is exit 3.
func executionOutcome(out io.Writer, dir string, row *rivertype.JobRow) error {
	if row.State != rivertype.JobStateCompleted {
		var errs []string
		for _, e := range row.Errors {
			errs = append(errs, e.Error)
		}
		return fmt.Errorf("campaign execution %s ended %s: %s", dir, row.State, strings.Join(errs, "; "))
	}
	st, err := rcampaign.ReadState(dir)
	if err != nil {
		return err
	}
	return printVerdict(out, dir, st)
}

func printVerdict(out io.Writer, dir string, st *rcampaign.State) error {
	fmt.Fprintf(out, "campaign.json: %s\nreport: %s\nreport: %s\n", filepath.Join(dir, rcampaign.StateFile),
		filepath.Join(dir, rcampaign.MarkdownFile), filepath.Join(dir, rcampaign.HTMLFile))
	var parts []string
	for _, s := range []string{rcampaign.JobDone, rcampaign.JobFailed, rcampaign.JobCancelled, rcampaign.JobRunning, rcampaign.JobRetrying, rcampaign.JobWaiting} {
		if n := st.Counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	fmt.Fprintf(out, "jobs: %s\n", strings.Join(parts, ", "))
	if st.Verdict == nil || len(st.Verdict.Checked) == 0 {
		fmt.Fprintln(out, "verdict: no fail_on conditions")
		return nil
	}
	r := &rcampaign.Report{Verdict: *st.Verdict}
	fmt.Fprintf(out, "verdict: %s\n", r.VerdictLine())
	if st.Verdict.Failed {
		return fmt.Errorf("%w: campaign %s: %s", errExpectationFailed, st.Name, r.VerdictLine())
	}
	return nil
}

// processQueue is a campaign queue this process works, with its workers.
type processQueue struct {
	q     *campaign.Queue
	runs  *campaign.RunWorker // nil when this process runs no VM
	close func()
}

// stop stops working: running runs are interrupted and their jobs go back
// to the queue (a shutdown is not an attempt).
func (p *processQueue) stop(ctx context.Context) {
	if p.runs != nil {
		p.runs.Stopping()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	p.q.Stop(sctx, true)
}

// openCampaignQueue opens a campaign's queue for this process: it
// coordinates executions (and queues them on their schedules) and, with
// work, runs jobs of any label here.
func openCampaignQueue(ctx context.Context, a *app, f *campaignFlags, names []string, here campaign.Capacity, disp *campaignDisplay, work bool, periodic []*river.PeriodicJob) (*processQueue, error) {
	name := names[0]
	coord := &campaign.Coordinator{Poll: 3 * time.Second, Logger: a.logger, OnState: disp.update}
	p := &processQueue{}
	cfg := campaign.QueueConfig{URL: f.queueURL(a, name), Campaigns: names, Logger: warnLogger(a), Periodic: periodic}
	if work {
		host, _ := os.Hostname()
		cfg.ID = "local-" + host
		cfg.Runs, cfg.RunWorkers = []string{campaign.RunQueue("", false)}, max(here.CPUs, here.Parallel)
		if a.cfg.Accel == "kvm" {
			cfg.Runs = append(cfg.Runs, campaign.RunQueue("", true))
		}
		p.runs = campaign.NewRunWorker(cfg.ID, f.root(a), here, a.campaignRunner(disp.runLog), disp.logger)
		p.runs.Local = true
		p.runs.Publish = publishRun
	}
	cfg.Work = campaign.NewWorkers(p.runs, coord)
	q, err := campaign.OpenQueue(ctx, cfg)
	if err != nil {
		return nil, err
	}
	coord.Queue = q
	p.q, p.close = q, q.Close
	return p, nil
}

// campaignRunner runs a campaign's job the way `firstboot run` does. The
// run's whole log is its firstboot.log; log gets what it says (warnings).
func (a *app) campaignRunner(log *slog.Logger) campaign.Runner {
	return func(ctx context.Context, req campaign.RunRequest) *campaign.RunResult {
		cfg := a.runConfig(req.Scenario)
		cfg.RunsDir, cfg.Campaign, cfg.Pending = req.RunsDir, req.Campaign, "analysis"
		cfg.Logger = log.With("job", req.Campaign.Job)
		run, runErr := scenarios.Execute(ctx, cfg)
		res := &campaign.RunResult{Run: run, RunErr: runErr}
		if run != nil {
			res.Met, res.Failed, res.AnalysisErr = a.finishRun(ctx, run, req.Scenario, true, io.Discard)
		}
		return res
	}
}

// publishRun uploads a finished run to base/rel (firstboot publish).
func publishRun(ctx context.Context, dir, base, rel string) (map[string]string, error) {
	return campaign.PublishRun(ctx, dir, base, rel)
}

// holdLab keeps the lab up while this process runs jobs: every run brings it
// up and lets go of it, and a run that started the daemons would otherwise
// take them down under the others.
func holdLab(ctx context.Context, a *app) (func(), error) {
	l, err := libvirt.Up(ctx, lab.Config{StateDir: a.cfg.StateDir, LibvirtURI: a.cfg.LibvirtURI, Accel: a.cfg.Accel, Logger: a.logger})
	if err != nil {
		return nil, fmt.Errorf("bringing the lab up: %w", err)
	}
	return func() {
		tctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Down also when sharing: daemons released to this process
		// are its to stop (Down only disconnects otherwise).
		l.Down(tctx)
	}, nil
}

// warnLogger is the logger for River: its warnings and errors only.
func warnLogger(a *app) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: max(a.logLevel, slog.LevelWarn)}))
}

func newCampaignReportCmd(a *app, f *campaignFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report FILE|DIR",
		Short: "Gather a campaign execution's results and (re)write its report and verdict",
		Long: `report takes a campaign file (its latest execution) or an execution's directory,
brings campaign.json up to date from the queue (--queue for PostgreSQL), marks runs
whose worker died incomplete, and writes report.md and report.html again, with the
comparison against the campaign's baseline. Exit 3 when a fail_on condition holds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return reportCampaign(cmd.Context(), a, f, args[0], cmd.OutOrStdout())
		},
	}
	return cmd
}

func reportCampaign(ctx context.Context, a *app, f *campaignFlags, arg string, out io.Writer) error {
	dir, c, err := findExecution(a, f, arg)
	if err != nil {
		return usageError{err}
	}
	st, err := rcampaign.ReadState(dir)
	if err != nil {
		return usageError{fmt.Errorf("%s is not a campaign execution: %w", dir, err)}
	}
	home := filepath.Dir(dir)
	args := campaign.CampaignArgs{Name: c.Name, Instance: filepath.Base(dir), File: c.File, Source: c.Source, Home: home}
	url := f.queueURL(a, c.Name)
	if f.queue != "" || fileExists(url) {
		q, err := campaign.OpenQueue(ctx, campaign.QueueConfig{URL: url, Logger: warnLogger(a)})
		if err != nil {
			return err
		}
		defer q.Close()
		rows, err := q.Jobs(ctx, campaign.RunKind, args.Tag())
		if err != nil {
			return err
		}
		if err := campaign.Gather(ctx, args, rows); err != nil {
			return err
		}
		if len(rows) > 0 {
			prev := st
			st = campaign.State(c, args, rows, q.Where, prev.Created)
			st.Finished = prev.Finished
		}
	}
	for _, j := range st.Jobs {
		if j.State == rcampaign.JobDone || j.State == rcampaign.JobFailed {
			campaign.MarkAbandoned(filepath.Join(dir, "runs"), j.Key, j.Attempt+1)
		}
	}
	if st.Ended() {
		if err := campaign.Finish(c, args, st); err != nil {
			return err
		}
	}
	if err := rcampaign.WriteState(dir, st); err != nil {
		return err
	}
	if !st.Ended() {
		r, err := rcampaign.Build(st, dir, rcampaign.Options{})
		if err != nil {
			return err
		}
		if err := rcampaign.Write(dir, r); err != nil {
			return err
		}
		fmt.Fprintf(out, "the execution has not ended: %s\n", r.Summary())
	}
	return printVerdict(out, dir, st)
}

// findExecution resolves a campaign file (its latest execution) or an
// execution's directory, with the campaign as that execution began.
func findExecution(a *app, f *campaignFlags, arg string) (string, *campaign.Campaign, error) {
	dir := arg
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		c, err := campaign.Load(arg)
		if err != nil {
			return "", nil, err
		}
		home := f.home(a, c.Name)
		ents, _ := os.ReadDir(home)
		dir = ""
		for _, e := range ents {
			if e.IsDir() && fileExists(filepath.Join(home, e.Name(), rcampaign.StateFile)) {
				dir = filepath.Join(home, e.Name())
			}
		}
		if dir == "" {
			return "", nil, fmt.Errorf("campaign %s has no execution in %s yet: firstboot campaign run %s", c.Name, home, arg)
		}
	}
	src := filepath.Join(dir, "campaign.yaml")
	data, err := os.ReadFile(src)
	if err != nil {
		return "", nil, fmt.Errorf("%s is not a campaign execution (no campaign.yaml): %w", dir, err)
	}
	st, err := rcampaign.ReadState(dir)
	if err != nil {
		return "", nil, fmt.Errorf("%s is not a campaign execution: %w", dir, err)
	}
	// The execution's copy, read as if it were the original file (its
	// relative paths start there).
	c, err := campaign.Parse(st.File, data)
	if err != nil {
		return "", nil, err
	}
	return dir, c, nil
}

func newCampaignServeCmd(a *app, f *campaignFlags) *cobra.Command {
	var (
		ui       string
		parallel int
		work     bool
	)
	cmd := &cobra.Command{
		Use:   "serve FILE...",
		Short: "Run campaigns on their schedule: each execution compared with the previous one, its verdict recorded",
		Long: `serve keeps running: on each tick of a campaign's schedule (cron, in the file) River's
periodic jobs queue a new execution; this process coordinates it, and each execution is
compared with the campaign's previous one (or the file's baseline) and its verdict
appended to <campaigns-dir>/<name>/verdicts.jsonl.

With the default SQLite queue (one campaign) the runs happen on this host; with
--queue postgres://… firstboot worker processes run them (--work: this host too).
--ui 127.0.0.1:8080 serves River's web UI on that local address. docs/campaigns.md has
systemd units for serve and worker.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var camps []*campaign.Campaign
			for _, p := range args {
				c, err := loadCampaign(p)
				if err != nil {
					return err
				}
				if c.Cron == nil {
					return usageError{fmt.Errorf("%s: no schedule: add one (schedule: \"30 3 * * *\") or use firstboot campaign run", p)}
				}
				camps = append(camps, c)
			}
			local := f.queue == ""
			if local && len(camps) > 1 {
				return usageError{errors.New("serve: several campaigns need a shared queue (--queue postgres://…); with SQLite give one")}
			}
			first := camps[0]
			if local {
				work = true
				unlock, err := fsutil.LockDir(ctx, ensureDir(f.home(a, first.Name)))
				if err != nil {
					return err
				}
				defer unlock()
				if _, err := campaign.RescueOrphans(ctx, f.queueURL(a, first.Name), warnLogger(a)); err != nil {
					return err
				}
			}
			disp := newCampaignDisplay(cmd.OutOrStdout(), a)
			defer disp.close()
			here := hostCapacity(first, parallel, 0)
			var periodic []*river.PeriodicJob
			var names []string
			for i, c := range camps {
				names = append(names, c.Name)
				path := args[i]
				home := ensureDir(f.home(a, c.Name))
				periodic = append(periodic, campaign.Schedule(c, home, func() (*campaign.Campaign, error) { return campaign.Load(path) }, disp.logger))
			}
			pq, err := openCampaignQueue(ctx, a, f, names, here, disp, work, periodic)
			if err != nil {
				return err
			}
			defer pq.close()
			if work {
				release, err := holdLab(ctx, a)
				if err != nil {
					return err
				}
				defer release()
			}
			if ui != "" {
				u, err := pq.q.UI(ctx, ui, warnLogger(a))
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "River UI: %s\n", u)
			}
			if err := pq.q.Start(ctx); err != nil {
				return err
			}
			for _, c := range camps {
				fmt.Fprintf(cmd.OutOrStdout(), "serving campaign %s (%q); next executions: %s\n", c.Name, c.Schedule, times(c.Next(time.Now(), 3)))
			}
			<-ctx.Done()
			pq.stop(ctx)
			return ctx.Err()
		},
	}
	cmd.Flags().StringVar(&ui, "ui", "", "serve River's web UI on this local address (e.g. 127.0.0.1:8080)")
	cmd.Flags().IntVar(&parallel, "parallel", 0, "runs at once on this host (default: the campaign's limit, else what the host holds)")
	cmd.Flags().BoolVar(&work, "work", false, "with --queue postgres://…, run jobs on this host too")
	return cmd
}

func ensureDir(d string) string {
	os.MkdirAll(d, 0o755)
	return d
}

func times(ts []time.Time) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Format(time.RFC3339))
	}
	return strings.Join(s, ", ")
}
