// Package campaign is what a campaign leaves behind: campaign.json (the
// matrix, each job's state and runs) and the campaign report (per scenario
// and step, each destination's k-of-n presence across repetitions, the spread
// of its connections and bytes, the comparison with a baseline, and the
// verdict of the campaign's fail_on conditions).
package campaign

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/firstboot/firstboot/internal/fsutil"
)

// StateFile is campaign.json's name in an execution's directory.
const StateFile = "campaign.json"

// SchemaVersion changes when a field of campaign.json changes meaning.
const SchemaVersion = 1

// State is campaign.json: one execution of a campaign.
type State struct {
	SchemaVersion int    `json:"schema_version"`
	Name          string `json:"name"`
	Instance      string `json:"instance"`
	// File and SHA256 identify the campaign file as it was when the execution began.
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	// Queue is where the jobs are (a SQLite file, or PostgreSQL without password).
	Queue       string     `json:"queue"`
	Created     time.Time  `json:"created"`
	Updated     time.Time  `json:"updated"`
	Finished    *time.Time `json:"finished,omitempty"`
	Repetitions int        `json:"repetitions"`
	Hosts       []string   `json:"hosts,omitempty"`
	Scenarios   []Scenario `json:"scenarios"`
	Jobs        []Job      `json:"jobs"`
	// Counts counts jobs by State.
	Counts  map[string]int `json:"counts"`
	Verdict *Verdict       `json:"verdict,omitempty"`
}

// Scenario is one scenario of the matrix.
type Scenario struct {
	Name string `json:"name"`
	File string `json:"file"`
	OS   string `json:"os,omitempty"`
}

// Job states, as campaign.json and the report say them.
const (
	JobWaiting   = "waiting"   // queued, not started
	JobRunning   = "running"   // a worker runs it
	JobRetrying  = "retrying"  // an attempt failed for an infrastructure reason; it runs again
	JobDone      = "done"      // a run with a result (ok, failed expectation, failed step)
	JobFailed    = "failed"    // no usable run: retries exhausted, or it cannot run
	JobCancelled = "cancelled" // cancelled by a person
)

// Job is one cell of the matrix and what became of it.
type Job struct {
	Key        string `json:"key"`
	Scenario   string `json:"scenario"`
	Label      string `json:"label,omitempty"`
	Repetition int    `json:"repetition"`
	// QueueID is the job's id in the queue; QueueState is River's state.
	QueueID     int64  `json:"queue_id,omitempty"`
	QueueState  string `json:"queue_state,omitempty"`
	State       string `json:"state"`
	Attempt     int    `json:"attempt"`
	MaxAttempts int    `json:"max_attempts"`
	Worker      string `json:"worker,omitempty"`
	// RunID and RunDir (relative to the execution's directory) name the run
	// that counts; Result says what it found.
	RunID  string `json:"run_id,omitempty"`
	RunDir string `json:"run_dir,omitempty"`
	Result string `json:"result,omitempty"`
	// Met and Failed count the run's expectations.
	Met    int `json:"met,omitempty"`
	Failed int `json:"failed,omitempty"`
	// Runs lists every attempt's run (incomplete ones too), oldest first.
	Runs   []RunRef `json:"runs,omitempty"`
	Errors []string `json:"errors,omitempty"`
}

// RunRef is one attempt's run directory.
type RunRef struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Worker  string `json:"worker,omitempty"`
}

// Ended says whether every job has ended.
func (s *State) Ended() bool {
	for _, j := range s.Jobs {
		switch j.State {
		case JobDone, JobFailed, JobCancelled:
		default:
			return false
		}
	}
	return true
}

// Count fills Counts.
func (s *State) Count() {
	s.Counts = map[string]int{}
	for _, j := range s.Jobs {
		s.Counts[j.State]++
	}
}

// WriteState stores campaign.json in dir atomically.
func WriteState(dir string, s *State) error {
	s.SchemaVersion = SchemaVersion
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, StateFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	return nil
}

// ReadState loads campaign.json from an execution's directory.
func ReadState(dir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	return &s, nil
}
