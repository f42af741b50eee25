package campaign

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// RescueOrphans hands back to the queue, at once, the jobs a dead process
// left running: for a queue that no other process uses (a campaign's SQLite
// file, whose directory lock this process holds), every running job is an
// orphan of a firstboot that was killed or whose host rebooted. It lets
// River's own rescuer do it: a short-lived client for which every job has
// timed out becomes the leader and rescues them (an attempt counted, as for
// any infrastructure failure), instead of waiting for each job's timeout.
// It returns how many jobs it handed back.
func RescueOrphans(ctx context.Context, url string, log *slog.Logger) (int, error) {
	q, err := OpenQueue(ctx, QueueConfig{
		URL: url, ID: fmt.Sprintf("firstboot-resume-%d", os.Getpid()), Logger: log,
		Work: &Workers{river: rescueWorkers()}, Other: []string{"resume"},
		JobTimeout: time.Millisecond, RescueAfter: 2 * time.Millisecond,
	})
	if err != nil {
		return 0, err
	}
	defer q.Close()
	running := func() (int, error) {
		res, err := q.client.JobList(ctx, river.NewJobListParams().States(rivertype.JobStateRunning).First(10000))
		if err != nil {
			return 0, err
		}
		return len(res.Jobs), nil
	}
	n, err := running()
	if err != nil || n == 0 {
		return 0, err
	}
	if err := q.Start(ctx); err != nil {
		return 0, err
	}
	defer q.Stop(context.WithoutCancel(ctx), false)
	// The dead process may still hold the leadership for its time to live
	// (about 15 s) before this client can take it and rescue.
	deadline := time.Now().Add(time.Minute)
	for left := n; left > 0; {
		if time.Now().After(deadline) {
			return n - left, fmt.Errorf("queue %s: %d jobs left running by a dead process were not handed back within a minute", q.Where, left)
		}
		select {
		case <-ctx.Done():
			return n - left, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		if left, err = running(); err != nil {
			return n - left, err
		}
	}
	return n, nil
}

// rescueWorkers know the job kinds, with no timeout of their own (River's
// default then applies: RescueOrphans sets it to nothing). They never work:
// the rescuing client works no queue of theirs.
func rescueWorkers() *river.Workers {
	w := river.NewWorkers()
	river.AddWorker(w, river.WorkFunc(func(context.Context, *river.Job[RunArgs]) error { return river.JobSnooze(0) }))
	river.AddWorker(w, river.WorkFunc(func(context.Context, *river.Job[CampaignArgs]) error { return river.JobSnooze(0) }))
	return w
}
