package campaign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/firstboot/firstboot/internal/fsutil"
	rcampaign "github.com/firstboot/firstboot/results/campaign"
	"github.com/firstboot/firstboot/results/diff"
	"github.com/firstboot/firstboot/results/manifest"
)

// CampaignKind is the River job kind that coordinates one execution of a
// campaign: it creates the execution's directory and run jobs, keeps
// campaign.json up to date while they run (snoozing between looks), and
// when every job has ended writes the report and the verdict.
const CampaignKind = "firstboot_campaign"

// CampaignArgs is one execution of a campaign.
type CampaignArgs struct {
	Name     string `json:"name"`
	Instance string `json:"instance"`
	// File names the campaign file; Source is its bytes when the execution
	// was asked for (an execution keeps its matrix if the file changes).
	File   string `json:"file"`
	Source []byte `json:"source"`
	// Home is the campaign's directory (one subdirectory per execution),
	// on the host that coordinates.
	Home string `json:"home"`
	// Scheduled: made by a schedule; compared with the previous execution
	// when the file names no baseline.
	Scheduled bool `json:"scheduled,omitempty"`
}

// Kind is River's job kind.
func (CampaignArgs) Kind() string { return CampaignKind }

// Tag marks an execution's jobs in the queue.
func (a CampaignArgs) Tag() string { return InstanceTag(a.Name, a.Instance) }

// Dir is the execution's directory.
func (a CampaignArgs) Dir() string { return filepath.Join(a.Home, a.Instance) }

// InstanceTag is the queue tag of an execution's jobs (River's tags allow
// letters, digits, '_' and '-').
func InstanceTag(name, instance string) string { return name + "-" + instance }

// NewInstance names an execution by its start (sortable, unique per second).
func NewInstance(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// Coordinator works campaign jobs.
type Coordinator struct {
	river.WorkerDefaults[CampaignArgs]
	// Queue is where the execution's run jobs go (set once the queue is open).
	Queue *Queue
	// Poll is how long the job snoozes between looks at its run jobs.
	Poll   time.Duration
	Logger *slog.Logger
	// OnState, when set, sees every campaign.json written (a live display).
	OnState func(*rcampaign.State)
}

// Timeout bounds one look (the report of thousands of runs takes a
// while). A coordinator killed during a look on PostgreSQL leaves its job
// to River's rescuer for this long; on SQLite the next process takes it at once.
func (c *Coordinator) Timeout(*river.Job[CampaignArgs]) time.Duration { return 10 * time.Minute }

// NextRetry: a look that failed (a full disk, the database away) is tried
// again soon.
func (c *Coordinator) NextRetry(job *river.Job[CampaignArgs]) time.Time {
	return time.Now().Add(time.Duration(min(job.Attempt, 30)) * 5 * time.Second)
}

// Work makes sure the execution's run jobs exist, records their state, and
// once all have ended writes the report and verdict.
func (c *Coordinator) Work(ctx context.Context, job *river.Job[CampaignArgs]) error {
	a := job.Args
	camp, err := Parse(a.File, a.Source)
	if err != nil {
		return river.JobCancel(fmt.Errorf("campaign %s: %w", a.File, err))
	}
	dir := a.Dir()
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o755); err != nil {
		return fmt.Errorf("campaign %s: %w", a.Name, err)
	}
	if err := writeOnce(filepath.Join(dir, "campaign.yaml"), a.Source); err != nil {
		return err
	}
	rows, err := c.Queue.Jobs(ctx, RunKind, a.Tag())
	if err != nil {
		return err
	}
	matrix := camp.Matrix()
	if len(rows) < len(matrix) {
		if err := c.Queue.InsertRuns(ctx, camp, a); err != nil {
			return err
		}
		if rows, err = c.Queue.Jobs(ctx, RunKind, a.Tag()); err != nil {
			return err
		}
	}
	st := State(camp, a, rows, c.Queue.Where, job.CreatedAt)
	if st.Ended() {
		if err := Gather(ctx, a, rows); err != nil {
			return err
		}
		if err := Finish(camp, a, st); err != nil {
			return err
		}
	}
	if err := rcampaign.WriteState(dir, st); err != nil {
		return err
	}
	if c.OnState != nil {
		c.OnState(st)
	}
	if !st.Ended() {
		return river.JobSnooze(c.Poll)
	}
	return river.RecordOutput(ctx, st.Verdict)
}

// InsertRuns queues an execution's run jobs; a job already queued is not
// queued again (River's unique jobs), so this can be repeated safely.
func (q *Queue) InsertRuns(ctx context.Context, camp *Campaign, a CampaignArgs) error {
	var params []river.InsertManyParams
	for _, j := range camp.Matrix() {
		s := camp.ScenarioNamed(j.Scenario)
		dir := s.Dir
		if dir == "" {
			dir, _ = filepath.Abs(filepath.Dir(s.File))
		}
		params = append(params, river.InsertManyParams{
			Args: RunArgs{Campaign: a.Name, Instance: a.Instance, Job: j, ScenarioFile: s.File, ScenarioDir: dir, ScenarioYAML: s.Source, Publish: camp.Publish},
			InsertOpts: &river.InsertOpts{
				Queue:       RunQueue(j.Label, j.KVM),
				MaxAttempts: camp.Retries() + 1,
				Tags:        []string{a.Tag()},
				UniqueOpts:  river.UniqueOpts{ByArgs: true},
			},
		})
	}
	if _, err := q.client.InsertMany(ctx, params); err != nil {
		return fmt.Errorf("queue %s: inserting the run jobs: %w", q.Where, err)
	}
	return nil
}

// Enqueue queues an execution of a campaign (idempotent for one instance).
func (q *Queue) Enqueue(ctx context.Context, a CampaignArgs) (int64, error) {
	res, err := q.client.Insert(ctx, a, campaignInsertOpts(a))
	if err != nil {
		return 0, fmt.Errorf("queue %s: %w", q.Where, err)
	}
	return res.Job.ID, nil
}

// Executions lists a campaign's coordinating jobs, oldest first.
func (q *Queue) Executions(ctx context.Context, name string) ([]*rivertype.JobRow, []CampaignArgs, error) {
	rows, err := q.Jobs(ctx, CampaignKind, "campaign-"+name)
	if err != nil {
		return nil, nil, err
	}
	args := make([]CampaignArgs, len(rows))
	for i, r := range rows {
		if err := json.Unmarshal(r.EncodedArgs, &args[i]); err != nil {
			return nil, nil, fmt.Errorf("queue %s: job %d: %w", q.Where, r.ID, err)
		}
	}
	return rows, args, nil
}

// State builds campaign.json from the queue's run jobs and the runs
// directory of the execution (each attempt's run, incomplete ones too).
func State(camp *Campaign, a CampaignArgs, rows []*rivertype.JobRow, where string, created time.Time) *rcampaign.State {
	st := &rcampaign.State{
		Name: a.Name, Instance: a.Instance, File: a.File, SHA256: camp.SHA256, Queue: where,
		Created: created.UTC(), Updated: time.Now().UTC(), Repetitions: camp.Repetitions, Hosts: camp.Hosts,
	}
	for _, s := range camp.Scenarios {
		osName := strings.TrimSpace(strings.Join([]string{s.OS.Product, s.OS.Release}, " "))
		st.Scenarios = append(st.Scenarios, rcampaign.Scenario{Name: s.Name, File: s.File, OS: osName})
	}
	byKey := map[string]*rivertype.JobRow{}
	for _, r := range rows {
		var args RunArgs
		if json.Unmarshal(r.EncodedArgs, &args) == nil {
			byKey[args.Job.Key] = r
		}
	}
	runs := attemptRuns(filepath.Join(a.Dir(), "runs"))
	for _, j := range camp.Matrix() {
		js := rcampaign.Job{Key: j.Key, Scenario: j.Scenario, Label: j.Label, Repetition: j.Repetition, State: rcampaign.JobWaiting, Runs: runs[j.Key]}
		if r := byKey[j.Key]; r != nil {
			jobState(&js, r)
		}
		st.Jobs = append(st.Jobs, js)
	}
	st.Count()
	return st
}

// jobState fills a job's state from its queue row.
func jobState(js *rcampaign.Job, r *rivertype.JobRow) {
	js.QueueID, js.QueueState, js.Attempt, js.MaxAttempts = r.ID, string(r.State), r.Attempt, r.MaxAttempts
	if n := len(r.AttemptedBy); n > 0 {
		js.Worker = r.AttemptedBy[n-1]
	}
	for _, e := range r.Errors {
		js.Errors = append(js.Errors, fmt.Sprintf("attempt %d: %s", e.Attempt, e.Error))
	}
	switch r.State {
	case rivertype.JobStateRunning:
		js.State = rcampaign.JobRunning
	case rivertype.JobStateRetryable:
		js.State = rcampaign.JobRetrying
	case rivertype.JobStateCompleted:
		js.State = rcampaign.JobDone
		var out Outcome
		if json.Unmarshal(r.Output(), &out) == nil {
			js.RunID, js.Result, js.Met, js.Failed, js.Worker = out.RunID, out.Result, out.Met, out.Failed, out.Worker
			js.RunDir = filepath.Join("runs", filepath.Base(out.Dir))
		}
	case rivertype.JobStateDiscarded:
		js.State = rcampaign.JobFailed
	case rivertype.JobStateCancelled:
		js.State = rcampaign.JobCancelled
		if len(r.Errors) > 0 {
			js.State = rcampaign.JobFailed // cancelled by its worker: it cannot run
		}
	default: // available, scheduled, pending
		if len(r.Errors) > 0 {
			js.State = rcampaign.JobRetrying
		}
	}
}

// attemptRuns lists each job's runs in a runs directory, by attempt.
func attemptRuns(runsDir string) map[string][]rcampaign.RunRef {
	out := map[string][]rcampaign.RunRef{}
	ents, _ := os.ReadDir(runsDir)
	for _, e := range ents {
		m, err := manifest.Read(filepath.Join(runsDir, e.Name()))
		if err != nil || m.Campaign == nil {
			continue
		}
		out[m.Campaign.Job] = append(out[m.Campaign.Job], rcampaign.RunRef{ID: m.RunID, Attempt: m.Campaign.Attempt, Status: m.Status, Reason: m.Reason, Worker: m.Campaign.Worker})
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
	}
	return out
}

// Finish writes an ended execution's report, compared with the baseline,
// and records the verdict in st and in the campaign's verdicts.jsonl.
func Finish(camp *Campaign, a CampaignArgs, st *rcampaign.State) error {
	opts := rcampaign.Options{FailOn: camp.FailOn}
	base := camp.BaselinePath()
	if base == "" && a.Scheduled {
		base = BaselinePrevious
	}
	switch base {
	case "":
	case BaselinePrevious:
		if prev := PreviousExecution(a.Home, a.Instance); prev != "" {
			base = prev
		} else {
			base = ""
		}
	}
	if base != "" {
		runs, err := LoadBaseline(base)
		if err != nil {
			return fmt.Errorf("campaign %s: baseline: %w", a.Name, err)
		}
		opts.Baseline, opts.BaselineSource = runs, base
	}
	r, err := rcampaign.Build(st, a.Dir(), opts)
	if err != nil {
		return err
	}
	if err := rcampaign.Write(a.Dir(), r); err != nil {
		return err
	}
	now := time.Now().UTC()
	st.Finished, st.Verdict = &now, &r.Verdict
	return appendVerdict(a.Home, a.Instance, now, r.Verdict)
}

// PreviousExecution is the latest execution before instance in home that
// finished, or "".
func PreviousExecution(home, instance string) string {
	ents, _ := os.ReadDir(home)
	for i := len(ents) - 1; i >= 0; i-- {
		name := ents[i].Name()
		if !ents[i].IsDir() || name >= instance {
			continue
		}
		if st, err := rcampaign.ReadState(filepath.Join(home, name)); err == nil && st.Finished != nil {
			return filepath.Join(home, name)
		}
	}
	return ""
}

// LoadBaseline reads what an execution is compared with: an execution's
// directory (its runs), a campaign's directory (its latest finished
// execution), or what `firstboot diff` reads (runs, datasets, globs).
func LoadBaseline(path string) ([]diff.Run, error) {
	if _, err := os.Stat(filepath.Join(path, rcampaign.StateFile)); err == nil {
		return diff.LoadSide([]string{filepath.Join(path, "runs")})
	}
	if prev := PreviousExecution(path, "~"); prev != "" {
		return diff.LoadSide([]string{filepath.Join(prev, "runs")})
	}
	return diff.LoadSide([]string{path})
}

// VerdictFile records each finished execution's verdict in a campaign's directory.
const VerdictFile = "verdicts.jsonl"

// VerdictRecord is one line of verdicts.jsonl.
type VerdictRecord struct {
	Instance string            `json:"instance"`
	Finished time.Time         `json:"finished"`
	Verdict  rcampaign.Verdict `json:"verdict"`
}

// appendVerdict records an execution's verdict in verdicts.jsonl, in place
// of an earlier line of the same execution (campaign report writes it again).
func appendVerdict(home, instance string, at time.Time, v rcampaign.Verdict) error {
	line, err := json.Marshal(VerdictRecord{Instance: instance, Finished: at, Verdict: v})
	if err != nil {
		return err
	}
	path := filepath.Join(home, VerdictFile)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var out []byte
	for _, l := range bytes.SplitAfter(old, []byte("\n")) {
		var r VerdictRecord
		if len(bytes.TrimSpace(l)) == 0 || (json.Unmarshal(l, &r) == nil && r.Instance == instance) {
			continue
		}
		out = append(out, l...)
	}
	return fsutil.WriteFileAtomic(path, append(append(out, line...), '\n'), 0o644)
}

func writeOnce(path string, data []byte) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return fsutil.WriteFileAtomic(path, data, 0o644)
}

// Workers are the job kinds a process can work. Every process that starts
// a client registers both: River's leader rescues jobs of any kind and asks
// the kind for its timeout.
type Workers struct{ river *river.Workers }

// NewWorkers registers the run and campaign workers (nil: a stand-in that
// this process never asks to work, as it has no such queue).
func NewWorkers(run *RunWorker, coord *Coordinator) *Workers {
	w := river.NewWorkers()
	if run == nil {
		run = &RunWorker{}
	}
	if coord == nil {
		coord = &Coordinator{}
	}
	river.AddWorker(w, run)
	river.AddWorker(w, coord)
	return &Workers{river: w}
}
