package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/guest"
	"github.com/firstboot/firstboot/lab/libvirt"
	"github.com/firstboot/firstboot/scenarios"
	"github.com/firstboot/firstboot/scenarios/campaign"
)

func newWorkerCmd(a *app) *cobra.Command {
	var (
		queue, results, id string
		labels             []string
		parallel           int
		memory             string
		rescueAfter        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "worker --queue postgres://… [--label eu-1]…",
		Short: "Run campaign jobs from a shared queue on this lab host",
		Long: `worker takes campaign jobs from the PostgreSQL queue and runs them here, as many at
once as this host holds (its CPUs and memory against each scenario's machine, or
--parallel and --memory). It takes only jobs it can run: jobs for any host, jobs for
its --label (a vantage point: "eu-1"), and jobs that need KVM only where KVM works.

Runs go to --results (a directory every host shares, default <runs-dir>/campaigns),
as <campaign>/<execution>/runs/<run-id>/, or are uploaded when the campaign names a
publish target. Stopping the worker (Ctrl-C, SIGTERM) interrupts its runs; their jobs
go back to the queue. A worker that is killed leaves its jobs running: they run again
on another worker once their timeout has passed, and the killed run is marked
incomplete.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if !campaign.IsPostgres(queue) {
				return usageError{errors.New("worker: --queue postgres://… is required (a campaign's own SQLite queue is worked by firstboot campaign run)")}
			}
			for _, l := range labels {
				if !campaign.ValidLabel(l) {
					return usageError{fmt.Errorf("--label %q: use lower-case letters and digits, '-' between them", l)}
				}
			}
			memMiB := 0
			if memory != "" {
				sz, err := scenarios.ParseSize(memory)
				if err != nil {
					return usageError{fmt.Errorf("--memory: %w", err)}
				}
				memMiB = sz.MiB()
			}
			if results == "" {
				results = filepath.Join(a.cfg.RunsDir, "campaigns")
			}
			if id == "" {
				host, _ := os.Hostname()
				id = strings.Join(append([]string{host}, labels...), "-")
			}
			release, err := holdLab(ctx, a)
			if err != nil {
				return err
			}
			defer release()
			kvm := workerKVM(ctx, a)
			var queues []string
			for _, l := range append([]string{""}, labels...) {
				queues = append(queues, campaign.RunQueue(l, false))
				if kvm {
					queues = append(queues, campaign.RunQueue(l, true))
				}
			}
			here := campaign.HostCapacity(parallel, memMiB)
			disp := newCampaignDisplay(cmd.OutOrStdout(), a)
			defer disp.close()
			rw := campaign.NewRunWorker(id, results, here, a.campaignRunner(disp.runLog), disp.logger)
			rw.Publish = publishRun
			q, err := campaign.OpenQueue(ctx, campaign.QueueConfig{
				URL: queue, ID: id, Runs: queues, RunWorkers: max(here.CPUs, here.Parallel),
				Work: campaign.NewWorkers(rw, nil), RescueAfter: rescueAfter, Logger: warnLogger(a),
			})
			if err != nil {
				return err
			}
			defer q.Close()
			if err := q.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "worker %s: queues %s; %d CPUs, %d MiB for guests; results in %s\n",
				id, strings.Join(queues, ", "), here.CPUs, here.MemoryMiB, results)
			<-ctx.Done()
			pq := &processQueue{q: q, runs: rw}
			pq.stop(ctx)
			return ctx.Err()
		},
	}
	f := cmd.Flags()
	f.StringVar(&queue, "queue", "", "the campaigns' PostgreSQL queue: postgres://user:pass@host/db")
	f.StringArrayVar(&labels, "label", nil, "a host label (vantage point) this worker serves (repeatable)")
	f.StringVar(&results, "results", "", "where runs go: a directory all hosts share (default: <runs-dir>/campaigns)")
	f.StringVar(&id, "id", "", "this worker's name in the queue and manifests (default: host name and labels)")
	f.IntVar(&parallel, "parallel", 0, "runs at once (default: what the host holds)")
	f.StringVar(&memory, "memory", "", "guest memory at once, e.g. 16GiB (default: available memory less 1 GiB)")
	f.DurationVar(&rescueAfter, "rescue-after", 0, "a job still running this long (and past its own timeout) lost its worker and runs again (default 1m: each job's timeout decides)")
	return cmd
}

// workerKVM says whether this host's runs get KVM: --accel kvm says so, tcg
// says not, auto asks the lab's probe (a brief boot of the test guest,
// cached per host).
func workerKVM(ctx context.Context, a *app) bool {
	switch a.cfg.Accel {
	case "kvm":
		return true
	case "tcg":
		return false
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false
	}
	g, err := guest.Load(a.cfg.ImageCache)
	if err != nil {
		a.logger.Warn("worker: no test guest to probe KVM with; taking no KVM-only jobs", "err", err)
		return false
	}
	l, err := libvirt.Up(ctx, lab.Config{StateDir: a.cfg.StateDir, LibvirtURI: a.cfg.LibvirtURI, Accel: "auto", Logger: a.logger})
	if err != nil {
		return false
	}
	defer l.Close()
	r, err := l.ProbeKVM(ctx, g.Kernel)
	return err == nil && slices.Contains([]string{"kvm"}, r.Accel)
}
