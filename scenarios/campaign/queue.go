package campaign

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite" // the SQLite driver: pure Go, the binary stays static
)

// Queue names. Run jobs go to a queue per host label and KVM need, so a
// worker fetches only jobs it can run: runs, runs_kvm, runs_eu-1,
// runs_eu-1_kvm. A campaign's coordinating jobs (which create an
// execution's run jobs and write its report in the campaign's directory)
// go to a queue of the campaign's own, campaign_<name>, worked by the
// `campaign run` or `campaign serve` that has that directory, never by a
// lab worker nor by another campaign's coordinator.
const runQueue = "runs"

// CampaignQueue is the queue of a campaign's coordinating jobs.
func CampaignQueue(name string) string { return "campaign_" + name }

// RunQueue is the queue of run jobs for a host label ("" any host) and KVM need.
func RunQueue(label string, kvm bool) string {
	q := runQueue
	if label != "" {
		q += "_" + label
	}
	if kvm {
		q += "_kvm"
	}
	return q
}

// Retention of finished jobs: the queue is a campaign's record while it
// runs (campaign.json is the lasting one), and a long one can take days.
const retention = 30 * 24 * time.Hour

// QueueConfig says which database holds the jobs and what this process does
// with them.
type QueueConfig struct {
	// URL is a PostgreSQL URL (postgres://…) or a SQLite file (a path, or
	// sqlite:///path); the file is created when missing.
	URL string
	// ID names this process to the queue (River's client id, recorded as who
	// attempted a job); "" picks a random one.
	ID string
	// Runs lists the run queues this process works and RunWorkers how many
	// runs at once it may start (capacity decides how many fit); none: it
	// runs no VM.
	Runs       []string
	RunWorkers int
	// Campaigns are the campaigns whose executions this process coordinates.
	Campaigns []string
	// Other queues to work (none of firstboot's jobs go there).
	Other []string
	// Periodic are the schedules this process enqueues (campaign serve).
	Periodic []*river.PeriodicJob
	// Work runs one job; nil for a process that only inserts and reads jobs.
	Work *Workers
	// RescueAfter is River's RescueStuckJobsAfter: a job still running this
	// long after its attempt began (and past its own timeout) is taken to
	// have lost its worker and is retried. Default one minute: each job's
	// own timeout is what matters.
	RescueAfter time.Duration
	// JobTimeout is River's default job timeout, for kinds that set none
	// (both of firstboot's set their own).
	JobTimeout time.Duration
	// Logger receives River's warnings; nil discards.
	Logger *slog.Logger
}

// Queue is a River client on a campaign database.
type Queue struct {
	// Where names the database for people (a PostgreSQL URL without its password).
	Where  string
	client client
	close  func()
	sqlite bool
}

// client is what firstboot uses of river.Client, whichever driver is under it.
type client interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	JobGet(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	JobCancel(ctx context.Context, id int64) (*rivertype.JobRow, error)
}

// IsPostgres says whether a queue URL names a PostgreSQL database.
func IsPostgres(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// OpenQueue connects to the database, brings River's tables up to date
// (rivermigrate) and makes the client. Start it to work jobs.
func OpenQueue(ctx context.Context, cfg QueueConfig) (*Queue, error) {
	rc := &river.Config{
		ID:                          cfg.ID,
		Logger:                      cfg.Logger,
		RescueStuckJobsAfter:        cfg.RescueAfter,
		JobTimeout:                  cfg.JobTimeout,
		CompletedJobRetentionPeriod: retention,
		CancelledJobRetentionPeriod: retention,
		DiscardedJobRetentionPeriod: retention,
		PeriodicJobs:                cfg.Periodic,
	}
	if rc.JobTimeout == 0 {
		rc.JobTimeout = 30 * time.Second
	}
	if rc.RescueStuckJobsAfter == 0 {
		rc.RescueStuckJobsAfter = max(time.Minute, 2*rc.JobTimeout)
	}
	if rc.Logger == nil {
		rc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Work != nil {
		rc.Workers = cfg.Work.river
		rc.Queues = map[string]river.QueueConfig{}
		for _, q := range cfg.Runs {
			rc.Queues[q] = river.QueueConfig{MaxWorkers: max(cfg.RunWorkers, 1)}
			if !IsPostgres(cfg.URL) {
				// SQLite has no LISTEN/NOTIFY: River polls, by default every
				// second, which a free slot would wait for after each run.
				rc.Queues[q] = river.QueueConfig{MaxWorkers: max(cfg.RunWorkers, 1), FetchPollInterval: 200 * time.Millisecond}
			}
		}
		for _, name := range cfg.Campaigns {
			rc.Queues[CampaignQueue(name)] = river.QueueConfig{MaxWorkers: 4}
		}
		for _, q := range cfg.Other {
			rc.Queues[q] = river.QueueConfig{MaxWorkers: 1}
		}
		if len(rc.Queues) == 0 {
			rc.Queues = nil
		}
	}
	if IsPostgres(cfg.URL) {
		return openPostgres(ctx, cfg.URL, rc)
	}
	return openSQLite(ctx, cfg.URL, rc)
}

func openPostgres(ctx context.Context, u string, rc *river.Config) (*Queue, error) {
	where := redact(u)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("queue %s: cannot reach PostgreSQL: %w (is the server running, and the URL right?)", where, err)
	}
	// Workers and coordinators start together: one at a time creates or
	// updates River's tables (rivermigrate takes no lock of its own).
	lock, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("queue %s: %w", where, err)
	}
	defer lock.Release()
	if _, err := lock.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		pool.Close()
		return nil, fmt.Errorf("queue %s: %w", where, err)
	}
	defer lock.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLock)
	c, err := newClient(ctx, riverpgxv5.New(pool), rc)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("queue %s: %w", where, err)
	}
	return &Queue{Where: where, client: c, close: pool.Close}, nil
}

// migrateLock is the advisory lock key firstboot holds while it migrates
// ("fbmigrat" in ASCII).
const migrateLock int64 = 0x66626d6967726174

func openSQLite(ctx context.Context, path string, rc *river.Config) (*Queue, error) {
	path = strings.TrimPrefix(path, "sqlite://")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("queue %s: %w", path, err)
	}
	// WAL and a busy timeout let the CLI read while a worker writes; River
	// asks for one connection, as SQLite runs one statement at a time.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	c, err := newClient(ctx, riversqlite.New(db), rc)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("queue %s: %w", path, err)
	}
	return &Queue{Where: path, client: c, close: func() { db.Close() }, sqlite: true}, nil
}

func newClient[TTx any](ctx context.Context, d riverdriver.Driver[TTx], rc *river.Config) (*river.Client[TTx], error) {
	m, err := rivermigrate.New(d, &rivermigrate.Config{Logger: rc.Logger})
	if err != nil {
		return nil, err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("creating River's tables: %w", err)
	}
	return river.NewClient(d, rc)
}

// Start begins working jobs (and enqueuing periodic ones).
func (q *Queue) Start(ctx context.Context) error { return q.client.Start(ctx) }

// Stop stops working: with cancel, running jobs are told to stop (their runs
// end incomplete and go back to the queue); otherwise they finish first.
func (q *Queue) Stop(ctx context.Context, cancel bool) error {
	if cancel {
		return q.client.StopAndCancel(ctx)
	}
	return q.client.Stop(ctx)
}

// Close releases the database.
func (q *Queue) Close() { q.close() }

// SQLite says whether the queue is a SQLite file (one host).
func (q *Queue) SQLite() bool { return q.sqlite }

// Jobs lists every job with tag, of any state, oldest first.
func (q *Queue) Jobs(ctx context.Context, kind, tag string) ([]*rivertype.JobRow, error) {
	var out []*rivertype.JobRow
	params := river.NewJobListParams().Kinds(kind).TagsAll(tag).First(1000)
	for {
		res, err := q.client.JobList(ctx, params)
		if err != nil {
			return nil, fmt.Errorf("queue %s: listing jobs: %w", q.Where, err)
		}
		out = append(out, res.Jobs...)
		if len(res.Jobs) < 1000 {
			return out, nil
		}
		params = params.After(res.LastCursor)
	}
}

// Job returns one job.
func (q *Queue) Job(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return q.client.JobGet(ctx, id)
}

// redact drops a URL's password.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "postgres://…"
	}
	if _, has := p.User.Password(); has {
		p.User = url.UserPassword(p.User.Username(), "xxxxx")
	}
	return p.String()
}
