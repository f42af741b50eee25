package campaign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testpg"
	rcampaign "github.com/firstboot/firstboot/results/campaign"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/publish/publishtest"
	"github.com/firstboot/firstboot/results/schema"
	"github.com/firstboot/firstboot/scenarios"
)

// testCampaign writes a campaign of the test guest scenario (2 repetitions)
// and a variant, and returns its path.
func testCampaign(t *testing.T, extra string) string {
	t.Helper()
	scen, err := filepath.Abs("../testguest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := fmt.Sprintf(`name: unit
scenarios:
  - path: %s
  - path: %s
    variants:
      - name: testguest-big
        machine: { memory: 384MiB }
        os: { release: "2" }
repetitions: 2
limits: { retries: 1, run_timeout: 1m }
%s`, scen, scen, extra)
	p := filepath.Join(dir, "unit.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeRunner writes what a real run writes (a manifest and an analysis) and
// fails as told: infra[key] infrastructure failures first, then a result.
type fakeRunner struct {
	mu       sync.Mutex
	infra    map[string]int
	expect   map[string]bool // job key -> an expectation fails
	dests    func(key string, rep int) []string
	attempts map[string]int
}

func (f *fakeRunner) run(_ context.Context, req RunRequest) *RunResult {
	f.mu.Lock()
	key := req.Campaign.Job
	f.attempts[key]++
	fail := f.attempts[key] <= f.infra[key]
	f.mu.Unlock()
	id := scenarios.NewRunID(req.Scenario.Name, time.Now())
	dir := filepath.Join(req.RunsDir, id)
	os.MkdirAll(dir, 0o755)
	m := &manifest.Manifest{RunID: id, Status: manifest.StatusComplete, Campaign: req.Campaign,
		Scenario: manifest.Scenario{Name: req.Scenario.Name}, Capture: manifest.Capture{StoppedBy: "machine-stopped"}}
	res := &RunResult{Run: &scenarios.Run{Dir: dir, Manifest: m}, Met: 2}
	if fail {
		m.Status, m.Reason, m.Capture.StoppedBy = manifest.StatusIncomplete, "lab: libvirtd went away", "libvirtd-lost"
		res.RunErr = errors.New("lab: libvirtd went away")
	} else {
		a := schema.Analysis{Steps: []schema.StepView{{Name: "first-boot"}}}
		for i, d := range f.dests(key, req.Campaign.Repetition) {
			dst := schema.Destination{Name: d, Party: "third", Connections: int64(1 + i), BytesUp: 100 * int64(req.Campaign.Repetition)}
			a.Destinations = append(a.Destinations, dst)
			a.Steps[0].Destinations = append(a.Steps[0].Destinations, dst)
		}
		data, _ := json.Marshal(a)
		os.WriteFile(filepath.Join(dir, "analysis.json"), data, 0o644)
		if f.expect[key] {
			res.Met, res.Failed = 1, 1
		}
	}
	manifest.Write(dir, m)
	return res
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runLocal works one execution of the campaign on a SQLite queue to its
// end, its runs in the campaign's directory.
func runLocal(t *testing.T, file, home string, f *fakeRunner) *rcampaign.State {
	t.Helper()
	rw := NewRunWorker("local-test", filepath.Dir(home), Capacity{CPUs: 2, MemoryMiB: 4096}, f.run, quiet())
	rw.RetryDelay = 100 * time.Millisecond
	return execute(t, file, home, rw)
}

// execute works one execution of the campaign with rw on a SQLite queue
// in home, to its end, and returns its campaign.json.
func execute(t *testing.T, file, home string, rw *RunWorker) *rcampaign.State {
	t.Helper()
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	coord := &Coordinator{Poll: 200 * time.Millisecond, Logger: quiet()}
	q, err := OpenQueue(ctx, QueueConfig{URL: filepath.Join(home, "queue.sqlite"), ID: "local-test",
		Runs: []string{RunQueue("", false)}, RunWorkers: 2, Campaigns: []string{c.Name}, Work: NewWorkers(rw, coord), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	coord.Queue = q
	defer q.Stop(context.Background(), true)
	args := CampaignArgs{Name: c.Name, Instance: NewInstance(time.Now()), File: file, Source: c.Source, Home: home}
	startAndWait(t, ctx, q, args)
	st, err := rcampaign.ReadState(args.Dir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// startAndWait queues an execution, starts q (the caller stops it) and
// waits until the execution's coordinating job has completed.
func startAndWait(t *testing.T, ctx context.Context, q *Queue, args CampaignArgs) {
	t.Helper()
	id, err := q.Enqueue(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		row, err := q.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if row.FinalizedAt != nil {
			if row.State != "completed" {
				t.Fatalf("campaign job %s: %v", row.State, row.Errors)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the campaign did not finish")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestCampaignOnSQLite runs a campaign on River's SQLite queue with a
// runner that writes real run directories: an infrastructure failure is
// retried and its run kept, a failed expectation is a result (not retried),
// campaign.json and the report say what happened, and a fail_on condition
// makes the verdict fail.
func TestCampaignOnSQLite(t *testing.T) {
	file := testCampaign(t, "fail_on: [expectation-failed, run-failed]\n")
	home := filepath.Join(t.TempDir(), "unit")
	f := &fakeRunner{
		infra:    map[string]int{"testguest/r2": 1},
		expect:   map[string]bool{"testguest-big/r1": true},
		attempts: map[string]int{},
		dests: func(key string, rep int) []string {
			if rep == 2 && strings.HasPrefix(key, "testguest/") {
				return []string{"a.example.com", "b.example.com"}
			}
			return []string{"a.example.com"}
		},
	}
	st := runLocal(t, file, home, f)
	if len(st.Jobs) != 4 || st.Counts[rcampaign.JobDone] != 4 {
		t.Fatalf("jobs: %+v", st.Counts)
	}
	for _, j := range st.Jobs {
		want := 1
		if j.Key == "testguest/r2" {
			want = 2
		}
		if f.attempts[j.Key] != want || len(j.Runs) != want {
			t.Errorf("%s: %d attempts, %d runs listed; want %d", j.Key, f.attempts[j.Key], len(j.Runs), want)
		}
		if j.RunDir == "" {
			t.Errorf("%s: no run", j.Key)
		}
	}
	if st.Verdict == nil || !st.Verdict.Failed || len(st.Verdict.Held) != 1 || st.Verdict.Held[0].Condition != "expectation-failed" {
		t.Errorf("verdict: %+v", st.Verdict)
	}
	md, err := os.ReadFile(filepath.Join(home, st.Instance, rcampaign.MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| a.example.com | third | 2/2 stable |", "| b.example.com | third | 1/2 unstable |", "testguest-big"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if _, err := os.Stat(filepath.Join(home, st.Instance, rcampaign.HTMLFile)); err != nil {
		t.Error(err)
	}
}

// TestCampaignOnPostgres runs a campaign with two host labels on a real
// PostgreSQL: two workers, each with one label, take only their label's
// jobs; a coordinator (working no run queue) follows and finishes it.
func TestCampaignOnPostgres(t *testing.T) {
	pg := testpg.Start(t)
	file := testCampaign(t, "hosts: [eu-1, us-1]\n")
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results := t.TempDir()
	f := &fakeRunner{attempts: map[string]int{}, dests: func(string, int) []string { return []string{"a.example.com"} }}
	var workers []*Queue
	for _, label := range []string{"eu-1", "us-1"} {
		rw := NewRunWorker("w-"+label, results, Capacity{CPUs: 2, MemoryMiB: 4096}, f.run, quiet())
		q, err := OpenQueue(ctx, QueueConfig{URL: pg.URL, ID: "w-" + label, Runs: []string{RunQueue("", false), RunQueue(label, false)},
			RunWorkers: 2, Work: NewWorkers(rw, nil), Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		if err := q.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer q.Stop(context.Background(), true)
		workers = append(workers, q)
	}
	coord := &Coordinator{Poll: 200 * time.Millisecond, Logger: quiet()}
	q, err := OpenQueue(ctx, QueueConfig{URL: pg.URL, ID: "coordinator", Campaigns: []string{c.Name}, Work: NewWorkers(nil, coord), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	coord.Queue = q
	home := filepath.Join(results, c.Name)
	defer q.Stop(context.Background(), true)
	args := CampaignArgs{Name: c.Name, Instance: NewInstance(time.Now()), File: file, Source: c.Source, Home: home}
	startAndWait(t, ctx, q, args)
	st, err := rcampaign.ReadState(args.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Jobs) != 8 || st.Counts[rcampaign.JobDone] != 8 {
		t.Fatalf("jobs: %+v", st.Counts)
	}
	for _, j := range st.Jobs {
		if j.Worker != "w-"+j.Label {
			t.Errorf("%s ran on %s, want the worker labelled %s", j.Key, j.Worker, j.Label)
		}
	}
}

// TestOpenQueueConcurrently: workers and a coordinator starting at once on a
// fresh database each bring River's tables up, one at a time.
func TestOpenQueueConcurrently(t *testing.T) {
	pg := testpg.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			q, err := OpenQueue(ctx, QueueConfig{URL: pg.URL, Logger: quiet()})
			if err == nil {
				q.Close()
			}
			errs <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestCampaignPublishedResults: a worker whose results the coordinator
// cannot see publishes each run to the campaign's store; the coordinator
// gathers what the report needs from there, verified.
func TestCampaignPublishedResults(t *testing.T) {
	store := publishtest.NewStore()
	srv := httptest.NewServer(store)
	defer srv.Close()
	file := testCampaign(t, "publish: "+srv.URL+"/study\n")
	f := &fakeRunner{attempts: map[string]int{}, dests: func(string, int) []string { return []string{"a.example.com"} }}
	// The worker's disk, not the coordinator's.
	rw := NewRunWorker("remote", t.TempDir(), Capacity{CPUs: 2, MemoryMiB: 4096}, f.run, quiet())
	rw.Publish = PublishRun
	home := filepath.Join(t.TempDir(), "unit")
	st := execute(t, file, home, rw)
	dir := filepath.Join(home, st.Instance)
	if st.Counts[rcampaign.JobDone] != 4 {
		t.Fatalf("state %+v", st)
	}
	md, _ := os.ReadFile(filepath.Join(dir, rcampaign.MarkdownFile))
	if !strings.Contains(string(md), "| a.example.com | third | 2/2 stable |") {
		t.Errorf("the report was not made from the gathered runs:\n%s", md)
	}
	for _, j := range st.Jobs {
		if _, err := os.Stat(filepath.Join(dir, j.RunDir, "analysis.json")); err != nil {
			t.Errorf("%s: %v", j.Key, err)
		}
		if _, ok := store.File("/study/unit/" + st.Instance + "/runs/" + filepath.Base(j.RunDir) + "/manifest.json"); !ok {
			t.Errorf("%s: not published", j.Key)
		}
	}
}

// TestStopPutsJobsBack: a process told to stop (Ctrl-C) interrupts its runs,
// and their jobs go back to the queue without counting an attempt; the next
// process runs them.
func TestStopPutsJobsBack(t *testing.T) {
	file := testCampaign(t, "")
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "unit")
	url := filepath.Join(home, "queue.sqlite")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	started := make(chan struct{}, 8)
	// As a real run stopped by Ctrl-C: its directory kept, incomplete.
	blocking := func(ctx context.Context, req RunRequest) *RunResult {
		started <- struct{}{}
		<-ctx.Done()
		dir := filepath.Join(req.RunsDir, "interrupted")
		os.MkdirAll(dir, 0o755)
		m := &manifest.Manifest{RunID: "interrupted", Status: manifest.StatusIncomplete, Reason: "interrupted: a signal", Campaign: req.Campaign,
			Capture: manifest.Capture{StoppedBy: "interrupted"}}
		manifest.Write(dir, m)
		return &RunResult{Run: &scenarios.Run{Dir: dir, Manifest: m}, RunErr: errors.New("interrupted: a signal")}
	}
	rw := NewRunWorker("first", filepath.Dir(home), Capacity{CPUs: 1, MemoryMiB: 4096}, blocking, quiet())
	q, err := OpenQueue(ctx, QueueConfig{URL: url, ID: "first", Runs: []string{RunQueue("", false)}, RunWorkers: 1, Work: NewWorkers(rw, nil), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	args := CampaignArgs{Name: c.Name, Instance: NewInstance(time.Now()), File: file, Source: c.Source, Home: home}
	if err := q.InsertRuns(ctx, c, args); err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-started
	rw.Stopping()
	if err := q.Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	rows, err := q.Jobs(ctx, RunKind, args.Tag())
	q.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.State == "running" || r.State == "retryable" || len(r.Errors) > 0 || r.FinalizedAt != nil {
			t.Errorf("job %d after the stop: %s, errors %v", r.ID, r.State, r.Errors)
		}
	}
	// The next process runs every job, the interrupted one too.
	f := &fakeRunner{attempts: map[string]int{}, dests: func(string, int) []string { return []string{"a.example.com"} }}
	rw2 := NewRunWorker("second", filepath.Dir(home), Capacity{CPUs: 2, MemoryMiB: 4096}, f.run, quiet())
	q2, err := OpenQueue(ctx, QueueConfig{URL: url, ID: "second", Runs: []string{RunQueue("", false)}, RunWorkers: 2, Work: NewWorkers(rw2, nil), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if err := q2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer q2.Stop(context.Background(), true)
	for done := 0; done < len(rows); time.Sleep(100 * time.Millisecond) {
		rows, err := q2.Jobs(ctx, RunKind, args.Tag())
		if err != nil || ctx.Err() != nil {
			t.Fatalf("jobs: %v %v", err, ctx.Err())
		}
		done = 0
		for _, r := range rows {
			if r.State == "completed" {
				done++
			}
		}
	}
}

// TestCapacity: runs fit a host by CPUs and memory (with the overhead per
// run), within limits; a job that never fits says why.
func TestCapacity(t *testing.T) {
	c := Capacity{CPUs: 2, MemoryMiB: 2048}
	small := Job{Key: "s", CPUs: 1, MemoryMiB: 512}
	big := Job{Key: "b", CPUs: 1, MemoryMiB: 2048}
	if err := c.Fits(big); err == nil || !strings.Contains(err.Error(), "needs 2304 MiB") {
		t.Errorf("big: %v", err)
	}
	if err := c.Fits(Job{Key: "w", CPUs: 4}); err == nil || !strings.Contains(err.Error(), "needs 4 CPUs") {
		t.Errorf("wide: %v", err)
	}
	if n := c.AtOnce([]Job{small, small, small}); n != 2 {
		t.Errorf("two 1-CPU runs fit 2 CPUs, got %d", n)
	}
	c.MemoryMiB = 1000
	if n := c.AtOnce([]Job{small, small}); n != 1 {
		t.Errorf("768 MiB each in 1000 MiB: %d at once", n)
	}
	s := newSlots(Capacity{CPUs: 2, MemoryMiB: 8192, Parallel: 1})
	release, ok := s.take(small)
	if _, ok2 := s.take(small); !ok || ok2 {
		t.Errorf("parallel 1: %v %v", ok, ok2)
	}
	release()
	release() // twice is once
	if _, ok := s.take(small); !ok {
		t.Error("the slot was not given back")
	}
}
