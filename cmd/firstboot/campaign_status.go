package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	rcampaign "github.com/firstboot/firstboot/results/campaign"
)

// campaignDisplay shows a campaign's progress: a line per job event (started,
// done, retrying, failed) and, on a terminal, a status line under them with
// the counts and the time since the start.
type campaignDisplay struct {
	line *statusLine // nil when stderr is not a terminal
	// logger is for job events; runLog for what runs say (their warnings):
	// each run's full log is its own firstboot.log.
	logger, runLog *slog.Logger
	out            io.Writer

	mu      sync.Mutex
	prev    map[string]rcampaign.Job
	ended   map[string]bool
	started time.Time
}

func newCampaignDisplay(out io.Writer, a *app) *campaignDisplay {
	d := &campaignDisplay{out: out, prev: map[string]rcampaign.Job{}, ended: map[string]bool{}, started: time.Now()}
	var w io.Writer = os.Stderr
	if d.line = newStatusLine(os.Stderr); d.line != nil {
		w = d.line
	}
	d.logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: a.logLevel}))
	d.runLog = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: max(a.logLevel, slog.LevelWarn)}))
	return d
}

// update is called with each campaign.json the coordinator writes.
func (d *campaignDisplay) update(st *rcampaign.State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, j := range st.Jobs {
		key := st.Instance + " " + j.Key
		p, seen := d.prev[key]
		d.prev[key] = j
		if seen && p.State == j.State && p.Attempt == j.Attempt && p.Worker == j.Worker {
			continue
		}
		switch j.State {
		case rcampaign.JobWaiting:
			continue
		case rcampaign.JobRunning:
			d.logger.Info("job running", "job", j.Key, "attempt", j.Attempt, "worker", j.Worker)
		case rcampaign.JobDone:
			d.logger.Info("job done", "job", j.Key, "result", j.Result, "run", j.RunID, "worker", j.Worker)
		case rcampaign.JobRetrying:
			d.logger.Warn("job failed for an infrastructure reason; it runs again", "job", j.Key, "attempt", j.Attempt, "err", last(j.Errors))
		default:
			d.logger.Error("job ended without a usable run", "job", j.Key, "state", j.State, "err", last(j.Errors))
		}
	}
	if st.Finished != nil && !d.ended[st.Instance] {
		d.ended[st.Instance] = true
		verdict := "no fail_on conditions"
		if st.Verdict != nil && len(st.Verdict.Checked) > 0 {
			verdict = (&rcampaign.Report{Verdict: *st.Verdict}).VerdictLine()
		}
		d.logger.Info("execution ended", "campaign", st.Name, "execution", st.Instance, "verdict", verdict)
	}
	if d.line != nil {
		d.line.draw(campaignStatusText(st, time.Since(d.started)))
	}
}

// campaignStatusText is the status line: counts of jobs by state and the elapsed time.
func campaignStatusText(st *rcampaign.State, elapsed time.Duration) string {
	var parts []string
	for _, s := range []string{rcampaign.JobRunning, rcampaign.JobRetrying, rcampaign.JobWaiting, rcampaign.JobFailed} {
		if n := st.Counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	return fmt.Sprintf("campaign %s %s: %d/%d done · %s · %s", st.Name, st.Instance, st.Counts[rcampaign.JobDone], len(st.Jobs),
		strings.Join(parts, " · "), elapsed.Round(time.Second))
}

func (d *campaignDisplay) close() {
	if d.line != nil {
		d.line.clear()
	}
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
