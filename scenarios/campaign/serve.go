package campaign

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"
	"riverqueue.com/riverui/uiendpoints"
)

// Schedule makes River's periodic job for a campaign's schedule: on each
// tick a new execution is queued, from the campaign file as it is then
// (load reads it again; when it no longer loads, the last good version is
// used and the error logged). Executions made so are compared with the
// previous one when the file names no baseline.
func Schedule(c *Campaign, home string, load func() (*Campaign, error), log *slog.Logger) *river.PeriodicJob {
	last := c
	return river.NewPeriodicJob(c.Cron, func() (river.JobArgs, *river.InsertOpts) {
		if fresh, err := load(); err != nil {
			log.Error("campaign file no longer loads; this execution uses the last good version", "campaign", c.Name, "err", err)
		} else {
			last = fresh
		}
		a := CampaignArgs{Name: last.Name, Instance: NewInstance(time.Now()), File: last.File, Source: last.Source, Home: home, Scheduled: true}
		log.Info("schedule: new execution", "campaign", a.Name, "execution", a.Instance)
		return a, campaignInsertOpts(a)
	}, &river.PeriodicJobOpts{ID: "campaign-" + c.Name})
}

// campaignInsertOpts queue an execution's coordinating job, once.
func campaignInsertOpts(a CampaignArgs) *river.InsertOpts {
	return &river.InsertOpts{
		Queue: CampaignQueue(a.Name), MaxAttempts: 25, Tags: []string{a.Tag(), "campaign-" + a.Name},
		UniqueOpts: river.UniqueOpts{ByArgs: true},
	}
}

// UI serves River's web UI for the queue (jobs, queues, states) on addr
// until ctx ends. Give it a local address: the UI can cancel and retry jobs.
// It returns once it listens (or could not), serving in the background.
func (q *Queue) UI(ctx context.Context, addr string, log *slog.Logger) (string, error) {
	var ep uiendpoints.Bundle
	switch c := q.client.(type) {
	case *river.Client[*sql.Tx]:
		ep = riverui.NewEndpoints(c, nil)
	case *river.Client[pgx.Tx]:
		ep = riverui.NewEndpoints(c, nil)
	default:
		return "", fmt.Errorf("river UI: unknown queue client %T", q.client)
	}
	h, err := riverui.NewHandler(&riverui.HandlerOpts{Endpoints: ep, Logger: log})
	if err != nil {
		return "", fmt.Errorf("river UI: %w", err)
	}
	if err := h.Start(ctx); err != nil {
		return "", fmt.Errorf("river UI: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("river UI: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return "http://" + ln.Addr().String() + "/", nil
}
