package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/duckdbtest"
	"github.com/firstboot/firstboot/internal/testpg"
	rcampaign "github.com/firstboot/firstboot/results/campaign"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
	"github.com/firstboot/firstboot/scenarios/campaign"
)

// writeCampaign writes a campaign of the test guest (reps times) and its
// 384 MiB variant (once), with extra lines, and returns its path.
func writeCampaign(t *testing.T, name string, reps int, extra string) string {
	t.Helper()
	scen, err := filepath.Abs("../../scenarios/testguest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`name: %s
scenarios:
  - path: %s
    repetitions: %d
  - path: %s
    repetitions: 1
    variants:
      - name: testguest-384m
        os: { release: "1 (384 MiB)" }
        machine: { memory: 384MiB }
%s`, name, scen, reps, scen, extra)
	p := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// bg is a firstboot process the test runs in the background.
type bg struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// start runs the binary in the background with the test's lab flags; the
// test's cleanup kills it if it is still running.
func (e *e2eEnv) start(t *testing.T, args ...string) *bg {
	t.Helper()
	cmd := exec.Command(e.bin, append(args, "--state-dir", e.state, "--image-cache", e.cache, "--accel", "tcg")...)
	p := &bg{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to end and returns its exit code.
func (p *bg) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%v still runs after %s:\n%s", p.cmd.Args, d, p.out)
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 0
}

// runningRun finds a run of a campaign under root that worker (any: "")
// is in the middle of: capturing, in one of its scenario's steps.
func runningRun(root, worker string) *manifest.Manifest {
	dirs, _ := filepath.Glob(filepath.Join(root, "*", "*", "runs", "*"))
	for _, d := range dirs {
		m, err := manifest.Read(d)
		if err == nil && m.Status == manifest.StatusRunning && m.Campaign != nil && (worker == "" || m.Campaign.Worker == worker) &&
			!m.Capture.Start.IsZero() && len(m.Steps()) > 0 {
			return m
		}
	}
	return nil
}

// executions returns a campaign's finished executions under its directory, oldest first.
func executions(t *testing.T, home string) []*rcampaign.State {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(home, "2*"))
	var out []*rcampaign.State
	for _, d := range dirs {
		if st, err := rcampaign.ReadState(d); err == nil && st.Finished != nil {
			out = append(out, st)
		}
	}
	return out
}

// checkExecution checks a finished execution of writeCampaign's campaign:
// every job done with a run, the killed job's earlier run kept and marked
// incomplete, and a report that says the test guest's destinations are
// stable in all its runs.
func checkExecution(t *testing.T, dir string, reps int, killed string) *rcampaign.State {
	t.Helper()
	st, err := rcampaign.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Jobs) != reps+1 || st.Counts[rcampaign.JobDone] != reps+1 {
		t.Fatalf("jobs: %+v", st.Jobs)
	}
	for _, j := range st.Jobs {
		if j.Result != campaign.ResultOK || j.RunDir == "" {
			t.Errorf("%s: result %q run %q", j.Key, j.Result, j.RunDir)
		}
		if j.Key != killed {
			continue
		}
		if len(j.Runs) < 2 {
			t.Errorf("%s was killed mid-run, yet lists runs %+v", j.Key, j.Runs)
			continue
		}
		first := j.Runs[0]
		m, err := manifest.Read(filepath.Join(dir, "runs", first.ID))
		if err != nil || m.Status != manifest.StatusIncomplete || m.Reason == "" {
			t.Errorf("the killed run %s: %+v, %v", first.ID, m, err)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, rcampaign.MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("## testguest (firstboot test guest 1): %d of %d runs analysed", reps, reps),
		fmt.Sprintf("| news.example.com | third | %d/%d stable |", reps, reps),
		"## testguest-384m (firstboot test guest 1 (384 MiB)): 1 of 1 runs analysed",
		"### Step browse",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, rcampaign.HTMLFile)); err != nil {
		t.Error(err)
	}
	return st
}

// TestCampaignSQLite is the default path end to end: `campaign run` on this
// host with the SQLite queue, killed with SIGKILL mid-run, run again: it
// resumes (the finished runs stay, the interrupted ones run again), ends,
// and writes campaign.json and the report. The campaign then exports to
// Parquet, which DuckDB reads back in agreement with each run's analysis.
func TestCampaignSQLite(t *testing.T) {
	e := newE2E(t)
	runs := t.TempDir()
	file := writeCampaign(t, "e2e-sqlite", 3, "limits: { run_timeout: 4m }\nfail_on: [expectation-failed, run-failed]\n")
	home := filepath.Join(runs, "campaigns", "e2e-sqlite")
	first := e.start(t, "campaign", "run", file, "--runs-dir", runs)
	var killed *manifest.Manifest
	waitFor(t, "a run in progress", 3*time.Minute, func() bool { killed = runningRun(filepath.Join(runs, "campaigns"), ""); return killed != nil }, first.out)
	first.cmd.Process.Signal(syscall.SIGKILL)
	first.wait(t, time.Minute)

	out, code := e.run(t, "", "campaign", "run", file, "--runs-dir", runs)
	if code != 0 || !strings.Contains(out, "resuming") {
		t.Fatalf("campaign run again: exit %d\n%s\nfirst process:\n%s", code, out, first.out)
	}
	execs := executions(t, home)
	if len(execs) != 1 {
		t.Fatalf("want one execution, resumed; found %d", len(execs))
	}
	dir := filepath.Join(home, execs[0].Instance)
	st := checkExecution(t, dir, 3, killed.Campaign.Job)
	if st.Verdict == nil || st.Verdict.Failed || len(st.Verdict.Checked) != 2 {
		t.Errorf("verdict: %+v", st.Verdict)
	}

	t.Run("export", func(t *testing.T) {
		pq := t.TempDir()
		if o, code := e.run(t, "", "export", home, "--format", "parquet", "--out", pq); code != 0 {
			t.Fatalf("export: exit %d\n%s", code, o)
		}
		rows := duckdbtest.Query(t, fmt.Sprintf(`SELECT run, job, repetition, count(*) AS n, sum(orig_ip_bytes) AS up FROM '%s/conns.parquet' GROUP BY ALL`, pq))
		tls := duckdbtest.Query(t, fmt.Sprintf(`SELECT run, count(*) AS n, min(ja4) AS ja4 FROM '%s/tls.parquet' GROUP BY ALL`, pq))
		tlsBy := map[string]map[string]any{}
		for _, r := range tls {
			tlsBy[r["run"].(string)] = r
		}
		if len(rows) != 4 {
			t.Fatalf("DuckDB finds %d analysed runs, want 4: %v", len(rows), rows)
		}
		for _, r := range rows {
			var j rcampaign.Job
			for _, x := range st.Jobs {
				if x.RunID == r["run"] {
					j = x
				}
			}
			data, err := os.ReadFile(filepath.Join(dir, j.RunDir, "analysis.json"))
			if err != nil {
				t.Fatalf("run %v is not one the campaign counts: %v", r["run"], err)
			}
			var a schema.Analysis
			json.Unmarshal(data, &a)
			var up int64
			for _, c := range a.Conns {
				up += c.OrigIPBytes
			}
			if r["job"] != j.Key || duckdbtest.Int(t, r["repetition"]) != int64(j.Repetition) || duckdbtest.Int(t, r["n"]) != int64(len(a.Conns)) || duckdbtest.Int(t, r["up"]) != up {
				t.Errorf("run %s: DuckDB %v; analysis.json %d conns, %d bytes up, job %s", j.RunID, r, len(a.Conns), up, j.Key)
			}
			if tr := tlsBy[j.RunID]; tr == nil || duckdbtest.Int(t, tr["n"]) != int64(len(a.TLS)) || len(a.TLS) == 0 || tr["ja4"] == "" {
				t.Errorf("run %s: DuckDB tls %v; analysis.json %d TLS records", j.RunID, tr, len(a.TLS))
			}
		}
	})
}

// TestCampaignWorkersPostgres runs a campaign on PostgreSQL with two
// `firstboot worker` processes with different labels; one is killed with
// SIGKILL mid-run, and the campaign still completes on the other: the job
// runs again there once its timeout has passed, and the killed run is kept,
// marked incomplete.
func TestCampaignWorkersPostgres(t *testing.T) {
	e := newE2E(t)
	pg := testpg.Start(t)
	root := t.TempDir()
	campaigns := filepath.Join(root, "campaigns")
	// A short run timeout: a killed worker's job runs again after it.
	file := writeCampaign(t, "e2e-pg", 3, "limits: { run_timeout: 100s }\n")
	var workers []*bg
	for _, label := range []string{"eu-1", "us-1"} {
		workers = append(workers, e.start(t, "worker", "--queue", pg.URL, "--label", label, "--id", "w-"+label, "--parallel", "1", "--results", campaigns))
	}
	coord := e.start(t, "campaign", "run", file, "--queue", pg.URL, "--campaigns-dir", campaigns)
	var killed *manifest.Manifest
	waitFor(t, "worker w-eu-1 in a run", 3*time.Minute, func() bool { killed = runningRun(campaigns, "w-eu-1"); return killed != nil }, workers[0].out)
	workers[0].cmd.Process.Signal(syscall.SIGKILL)
	workers[0].wait(t, time.Minute)
	if code := coord.wait(t, 8*time.Minute); code != 0 {
		t.Fatalf("campaign run: exit %d\n%s\nworker us-1:\n%s\nworker eu-1:\n%s", code, coord.out, workers[1].out, workers[0].out)
	}
	// A worker told to stop stops (its jobs, none now, would go back to the queue).
	workers[1].cmd.Process.Signal(syscall.SIGTERM)
	if code := workers[1].wait(t, time.Minute); code != exitInterrupted {
		t.Errorf("worker us-1 on SIGTERM: exit %d\n%s", code, workers[1].out)
	}
	execs := executions(t, filepath.Join(campaigns, "e2e-pg"))
	if len(execs) != 1 {
		t.Fatalf("executions: %d", len(execs))
	}
	st := checkExecution(t, filepath.Join(campaigns, "e2e-pg", execs[0].Instance), 3, killed.Campaign.Job)
	for _, j := range st.Jobs {
		if j.Key == killed.Campaign.Job && j.Worker != "w-us-1" {
			t.Errorf("the killed job %s ended on %q, want w-us-1", j.Key, j.Worker)
		}
	}
}

// TestCampaignSchedule serves a campaign whose schedule fires every 20
// seconds: River's periodic job queues executions, the second is compared
// with the first and both verdicts are recorded.
func TestCampaignSchedule(t *testing.T) {
	e := newE2E(t)
	runs := t.TempDir()
	scen, _ := filepath.Abs("../../scenarios/testguest.yaml")
	file := filepath.Join(t.TempDir(), "sched.yaml")
	text := "name: e2e-sched\nscenarios:\n  - path: " + scen + "\nschedule: \"@every 20s\"\nlimits: { run_timeout: 3m }\nfail_on: [new-destination, gone-destination]\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(runs, "campaigns", "e2e-sched")
	serve := e.start(t, "campaign", "serve", file, "--runs-dir", runs, "--ui", "127.0.0.1:0")
	t.Run("River UI", func(t *testing.T) {
		var url string
		waitFor(t, "the River UI's address", time.Minute, func() bool {
			_, rest, ok := strings.Cut(serve.out.String(), "River UI: ")
			url, _, _ = strings.Cut(rest, "\n")
			return ok && strings.HasSuffix(url, "/")
		}, serve.out)
		for _, path := range []string{"", "api/jobs?state=available"} {
			resp, err := http.Get(url + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || len(body) == 0 {
				t.Errorf("GET %s%s: %s\n%.300s", url, path, resp.Status, body)
			}
		}
	})
	waitFor(t, "two executions' verdicts", 5*time.Minute, func() bool {
		b, _ := os.ReadFile(filepath.Join(home, campaign.VerdictFile))
		return bytes.Count(b, []byte("\n")) >= 2
	}, serve.out)
	serve.cmd.Process.Signal(syscall.SIGTERM)
	if code := serve.wait(t, 2*time.Minute); code != exitInterrupted {
		t.Errorf("serve on SIGTERM: exit %d\n%s", code, serve.out)
	}
	execs := executions(t, home)
	if len(execs) < 2 {
		t.Fatalf("finished executions: %d\n%s", len(execs), serve.out)
	}
	first, second := execs[0], execs[1]
	if first.Verdict == nil || first.Verdict.Baseline != "" || len(first.Verdict.NotChecked) != 2 {
		t.Errorf("the first execution has nothing to compare with: %+v", first.Verdict)
	}
	if second.Verdict == nil || second.Verdict.Baseline != filepath.Join(home, first.Instance) || len(second.Verdict.NotChecked) != 0 {
		t.Errorf("the second execution is compared with the first: %+v", second.Verdict)
	}
	md, _ := os.ReadFile(filepath.Join(home, second.Instance, rcampaign.MarkdownFile))
	if !strings.Contains(string(md), "## Compared with "+filepath.Join(home, first.Instance)) || !strings.Contains(string(md), "- **testguest** (1 runs before, 1 now)") {
		t.Errorf("the second report lacks the comparison:\n%s", md)
	}
}
