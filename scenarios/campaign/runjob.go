package campaign

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"

	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/scenarios"
)

// RunKind is the River job kind of one run.
const RunKind = "firstboot_run"

// RunArgs is one run job: everything a worker on any host needs, the
// scenario included (a worker need not see the campaign's files).
type RunArgs struct {
	Campaign string `json:"campaign"`
	Instance string `json:"instance"`
	Job      Job    `json:"job"`
	// ScenarioFile names the scenario in messages; ScenarioDir is where its
	// relative paths start; ScenarioYAML is the scenario as run.
	ScenarioFile string `json:"scenario_file"`
	ScenarioDir  string `json:"scenario_dir"`
	ScenarioYAML []byte `json:"scenario_yaml"`
	// Publish is a base URL the finished run is uploaded to.
	Publish string `json:"publish,omitempty"`
}

// Kind is River's job kind.
func (RunArgs) Kind() string { return RunKind }

// RunsDir is where the job's runs go, relative to a worker's results directory.
func (a RunArgs) RunsDir() string { return filepath.Join(a.Campaign, a.Instance, "runs") }

// RunRequest is one run for a Runner.
type RunRequest struct {
	Scenario *scenarios.Scenario
	RunsDir  string
	Campaign *manifest.Campaign
	Logger   *slog.Logger
}

// RunResult is what a run gave.
type RunResult struct {
	// Run is nil when no run directory could be made.
	Run *scenarios.Run
	// RunErr is the run's own error (scenarios.Execute's).
	RunErr error
	// AnalysisErr: the capture could not be analysed or the report written.
	AnalysisErr error
	// Expectations met and not met (checked on the analysis).
	Met, Failed int
}

// Runner performs one run the way `firstboot run` does: the run, its
// analysis and its report. cmd provides it.
type Runner func(ctx context.Context, req RunRequest) *RunResult

// Results of a run job that are findings, not failures: never retried.
const (
	ResultOK          = "ok"
	ResultExpectation = "expectation-failed"
	ResultStepFailed  = "step-failed"
)

// Outcome is a finished run job's output (River keeps it with the job).
type Outcome struct {
	RunID string `json:"run_id"`
	// Dir is the run directory relative to the worker's results directory.
	Dir    string `json:"dir"`
	Result string `json:"result"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	Met    int    `json:"met"`
	Failed int    `json:"failed"`
	Worker string `json:"worker"`
	// Published is where the run was uploaded, when it was, and Files the
	// sha256 of each file uploaded (by path in the run directory), so the
	// coordinator can fetch and verify what its report needs.
	Published string            `json:"published,omitempty"`
	Files     map[string]string `json:"files,omitempty"`
}

// Publisher uploads a finished run directory to base/rel and returns each
// file's sha256 by its path in the directory.
type Publisher func(ctx context.Context, dir, base, rel string) (map[string]string, error)

// RunWorker works run jobs on this host.
type RunWorker struct {
	river.WorkerDefaults[RunArgs]
	// ID names this worker in manifests; Results is where run directories
	// go (RunArgs.RunsDir below it).
	ID      string
	Results string
	Run     Runner
	Publish Publisher
	Logger  *slog.Logger
	// RetryDelay is the wait before the first retry (default 10s), longer
	// for each later one.
	RetryDelay time.Duration
	// Local: this process is the campaign's only worker (SQLite), so a job
	// that can never fit here fails at once instead of waiting for another.
	Local bool

	capacity Capacity
	slots    *slots
	stopping atomic.Bool
}

// NewRunWorker makes a worker that runs jobs within capacity.
func NewRunWorker(id, results string, c Capacity, run Runner, log *slog.Logger) *RunWorker {
	return &RunWorker{ID: id, Results: results, Run: run, Logger: log, capacity: c, slots: newSlots(c)}
}

// Stopping tells running jobs that the process is stopping: a run it
// interrupts goes back to the queue without counting as an attempt.
func (w *RunWorker) Stopping() { w.stopping.Store(true) }

// Timeout bounds the run; River cancels it after, and rescues the job of a
// worker that died once it has passed.
func (w *RunWorker) Timeout(job *river.Job[RunArgs]) time.Duration { return job.Args.Job.Timeout }

// NextRetry: an infrastructure failure is tried again soon (libvirtd
// restarted, a disk freed), a little later each time.
func (w *RunWorker) NextRetry(job *river.Job[RunArgs]) time.Time {
	d := w.RetryDelay
	if d == 0 {
		d = 10 * time.Second
	}
	return time.Now().Add(time.Duration(job.Attempt) * d)
}

// Snooze intervals: a job that does not fit now, or never fits this host.
const (
	snoozeBusy     = 3 * time.Second
	snoozeTooLarge = 30 * time.Second
)

// Work runs one job.
func (w *RunWorker) Work(ctx context.Context, job *river.Job[RunArgs]) error {
	a := job.Args
	log := w.Logger.With("job", a.Job.Key, "attempt", job.Attempt)
	if err := w.capacity.Fits(a.Job); err != nil {
		if w.Local {
			return river.JobCancel(fmt.Errorf("%w: lower the scenario's machine or run the campaign on a larger host", err))
		}
		log.Warn("job does not fit this worker; leaving it to another", "err", err)
		return river.JobSnooze(snoozeTooLarge)
	}
	release, ok := w.slots.take(a.Job)
	if !ok {
		return river.JobSnooze(snoozeBusy)
	}
	defer release()
	s, err := scenarios.ParseWith(a.ScenarioFile, a.ScenarioYAML, scenarios.LoadOptions{Dir: a.ScenarioDir})
	if err != nil {
		return river.JobCancel(fmt.Errorf("job %s: its scenario does not load here: %w", a.Job.Key, err))
	}
	runsDir := filepath.Join(w.Results, a.RunsDir())
	if err := os.MkdirAll(runsDir, 0o755); err != nil {
		return fmt.Errorf("job %s: %w", a.Job.Key, err)
	}
	// An earlier attempt whose worker died left its run "running".
	for _, d := range MarkAbandoned(runsDir, a.Job.Key, job.Attempt) {
		log.Info("earlier attempt marked incomplete", "run", d)
	}
	log.Info("run starts", "scenario", s.Name, "worker", w.ID)
	res := w.Run(ctx, RunRequest{Scenario: s, RunsDir: runsDir, Logger: log, Campaign: &manifest.Campaign{
		Name: a.Campaign, Instance: a.Instance, Job: a.Job.Key, Repetition: a.Job.Repetition, Label: a.Job.Label,
		Attempt: job.Attempt, Worker: w.ID,
	}})
	if w.stopping.Load() && ctx.Err() != nil {
		// Ctrl-C or a stopping worker: not the job's fault. The incomplete
		// run stays; the job runs again when the campaign resumes.
		log.Info("run interrupted by shutdown; the job goes back to the queue")
		return river.JobSnooze(0)
	}
	out, err := classify(res)
	if res.Run != nil {
		out.RunID, out.Worker = res.Run.Manifest.RunID, w.ID
		out.Dir = filepath.Join(a.RunsDir(), filepath.Base(res.Run.Dir))
		if a.Publish != "" && w.Publish != nil && err == nil {
			// Published or not, the run is in the results directory; a
			// failed upload is retried as an infrastructure failure.
			files, perr := w.Publish(ctx, res.Run.Dir, a.Publish, out.Dir)
			if perr != nil {
				return fmt.Errorf("run %s: publishing to %s: %w", out.RunID, a.Publish, perr)
			}
			out.Published, out.Files = a.Publish, files
		}
	}
	var perm *permanentError
	switch {
	case errors.As(err, &perm):
		log.Error("run cannot succeed here", "err", err)
		return river.JobCancel(err)
	case err != nil:
		log.Warn("run failed for an infrastructure reason; retried", "run", out.RunID, "err", err)
		return fmt.Errorf("run %s: %w", out.RunID, err)
	}
	log.Info("run done", "run", out.RunID, "result", out.Result)
	return river.RecordOutput(ctx, out)
}

// permanentError is a failure no retry can mend (a missing image).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// classify tells a run's findings (ok, failed expectation, failed step: a
// result) from infrastructure failures (retried) and permanent ones.
func classify(r *RunResult) (Outcome, error) {
	var img *scenarios.ImageError
	if errors.As(r.RunErr, &img) {
		return Outcome{}, &permanentError{r.RunErr}
	}
	if r.Run == nil {
		return Outcome{}, fmt.Errorf("no run directory: %w", r.RunErr)
	}
	m := r.Run.Manifest
	out := Outcome{Status: m.Status, Reason: m.Reason, Met: r.Met, Failed: r.Failed}
	if r.AnalysisErr != nil {
		return out, fmt.Errorf("analysing the capture: %w", r.AnalysisErr)
	}
	if r.RunErr != nil || m.Status != manifest.StatusComplete {
		if !stepFinding(m) {
			return out, fmt.Errorf("run incomplete: %s", firstNonEmpty(m.Reason, errString(r.RunErr)))
		}
		out.Result = ResultStepFailed
		return out, nil
	}
	if m.Capture.Drops > 0 {
		return out, fmt.Errorf("the capture dropped %d packets", m.Capture.Drops)
	}
	out.Result = ResultOK
	if r.Failed > 0 {
		out.Result = ResultExpectation
	}
	return out, nil
}

// stepFinding says whether an incomplete run failed in one of its scenario's
// steps with the lab intact (the machine did not do what the scenario
// expects: a finding), rather than in set-up, by a lost libvirtd or an
// interruption (infrastructure).
func stepFinding(m *manifest.Manifest) bool {
	if m.FailedStep == "" || m.Capture.Drops > 0 {
		return false
	}
	switch m.Capture.StoppedBy {
	case "machine-stopped", "window", "steps-done":
		return true
	}
	return false
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
