package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"crmsync/dataverse"
	"crmsync/queue"
	"crmsync/store"
)

// SchedulerConfig configures the runner of list syncs.
type SchedulerConfig struct {
	// Store holds lists, runs and schedules; required.
	Store *store.Store
	// Jobs are the fenced job leases that let one instance of the fleet run a list
	// at a time; required.
	Jobs *queue.Jobs
	// Seen holds the records each run has seen, for finding the members to remove;
	// required.
	Seen *queue.RunSets
	// CRM gives the Web API clients; default: made from the store's secrets.
	CRM *CRMClients
	// Owner names this instance in the leases; default host-pid-random.
	Owner string
	// Interval is how often the scheduler looks for due schedules and pending runs;
	// default 5 s.
	Interval time.Duration
	// MaxAttempts is how often a run is tried before it fails for good; default 5.
	MaxAttempts int
	// Backoff is the wait after a run's first failure, doubling with each further
	// one; default 30 s.
	Backoff time.Duration
	// PageSize is how many members one step of a run reads and applies; memory
	// stays bounded by it, whatever the list's size. Default 5000, the Web API's
	// page.
	PageSize int
	// Retention is how long finished runs and their changes are kept; default 14
	// days (the inbox's). Each instance removes older ones about once an hour.
	Retention time.Duration
	// Metrics counts the runs' attempts by outcome; nil counts nothing.
	Metrics RunMetrics
	// Logger receives one line per failed run; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// RunMetrics is told the outcome of every list sync attempt that ran to its end:
// "applied", "skipped" (a dry run), "failed" (for good) or "retry"; metrics.Registry
// implements it.
type RunMetrics interface {
	SyncRun(outcome string)
}

// Scheduler fires due list schedules, once per due time across the fleet, and runs
// pending list syncs under a fenced job lease per list.
type Scheduler struct {
	cfg           SchedulerConfig
	lists         *Lists
	loop          loop
	lastRetention time.Time
}

// NewScheduler validates cfg and returns a scheduler that has not started.
func NewScheduler(cfg SchedulerConfig) (*Scheduler, error) {
	if cfg.Store == nil || cfg.Jobs == nil || cfg.Seen == nil {
		return nil, errors.New("scheduler: Store, Jobs and Seen are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Owner = cmp.Or(cfg.Owner, workerName())
	cfg.Interval = cmp.Or(cfg.Interval, 5*time.Second)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, 5)
	cfg.Backoff = cmp.Or(cfg.Backoff, 30*time.Second)
	cfg.PageSize = cmp.Or(cfg.PageSize, dataverse.MaxPageSize)
	cfg.Retention = cmp.Or(cfg.Retention, 14*24*time.Hour)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Scheduler{cfg: cfg, lists: &Lists{Store: cfg.Store, API: apiOf(cfg.Store, cfg.CRM), Now: cfg.Now}}, nil
}

// Start runs the scheduler until Stop; it returns at once.
func (s *Scheduler) Start(ctx context.Context) {
	s.loop.start(ctx, func(ctx context.Context) {
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		for {
			s.Tick(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// Stop asks the scheduler to stop and waits for the run in hand, or for ctx; a run
// cut short stays pending and is taken up again (by any instance) later.
func (s *Scheduler) Stop(ctx context.Context) error { return s.loop.stop(ctx, "scheduler") }

// Tick fires the schedules that are due and executes the pending runs this
// instance can lease. Start calls it every Interval; tests call it directly.
func (s *Scheduler) Tick(ctx context.Context) {
	log := s.cfg.Logger.With(slog.String("component", "scheduler"))
	now := s.cfg.Now().UTC()
	due, err := s.cfg.Store.DueLists(ctx, now, 100)
	if err != nil {
		log.WarnContext(ctx, "scheduler cannot read due lists", slog.String("error", err.Error()))
		return
	}
	for _, l := range due {
		if err := s.fire(ctx, l, *l.NextSyncAt); err != nil {
			log.WarnContext(ctx, "scheduler cannot fire a schedule", slog.String("list", l.CRMListID), slog.String("error", err.Error()))
		}
	}
	if now.Sub(s.lastRetention) >= time.Hour {
		s.lastRetention = now
		for {
			n, err := s.cfg.Store.DeleteRunsBefore(ctx, now.Add(-s.cfg.Retention), 1000)
			if err != nil {
				log.WarnContext(ctx, "scheduler cannot apply the runs' retention", slog.String("error", err.Error()))
			}
			if err != nil || n < 1000 {
				break
			}
		}
	}
	runs, err := s.cfg.Store.RunnableRuns(ctx, now, 100)
	if err != nil {
		log.WarnContext(ctx, "scheduler cannot read pending runs", slog.String("error", err.Error()))
		return
	}
	for _, r := range runs {
		if ctx.Err() != nil {
			return
		}
		s.execute(ctx, log, r)
	}
}

// fire queues the run of a schedule's due time and moves the schedule on. The
// run's id is derived from the list and the due time, so instances that fire the
// same due time concurrently, or one that crashes between the two writes, make
// one run.
func (s *Scheduler) fire(ctx context.Context, l *store.MarketingList, due time.Time) error {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%d", l.ID, due.UnixNano()))
	_, err := s.cfg.Store.CreateRun(ctx, &store.SyncRun{
		ID: "sched-" + hex.EncodeToString(sum[:12]), Tenant: l.Tenant, ConnectionID: l.ConnectionID, CRMListID: l.CRMListID,
		Trigger: store.TriggerSchedule, StartedAt: s.cfg.Now().UTC(),
	})
	if err != nil {
		return err
	}
	_, err = s.cfg.Store.AdvanceSchedule(ctx, l, due)
	return err
}

// workerName names this process in the consumer group and the leases.
func workerName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", cmp.Or(host, "host"), os.Getpid(), hex.EncodeToString(b))
}

// jobName is the job lease of a list: one runner per list in the fleet.
func jobName(r *store.SyncRun) string { return "list:" + r.Tenant + "|" + r.CRMListID }

// execute runs one pending run if this instance gets the list's lease. The lease
// is renewed while the run goes on; losing it cancels the run, and the fencing
// token makes the store refuse whatever the old runner still tries to record.
func (s *Scheduler) execute(ctx context.Context, log *slog.Logger, r *store.SyncRun) {
	leased(ctx, s.cfg.Jobs, jobName(r), s.cfg.Owner, log, func(runCtx context.Context, token int64) {
		s.runLeased(ctx, runCtx, log, r, token)
	})
}

// runLeased runs r with the list's lease held; runCtx ends when the lease is lost.
func (s *Scheduler) runLeased(ctx, runCtx context.Context, log *slog.Logger, r *store.SyncRun, token int64) {
	if err := s.cfg.Store.StartRun(runCtx, r, token); err != nil {
		if !errors.Is(err, store.ErrFenced) {
			log.WarnContext(ctx, "scheduler cannot start a run", slog.String("run", r.ID), slog.String("error", err.Error()))
		}
		return
	}
	err := s.lists.reconcile(runCtx, r, s.cfg.Seen, s.cfg.PageSize)
	if err := s.cfg.Seen.Drop(context.WithoutCancel(ctx), r.ID); err != nil {
		log.WarnContext(ctx, "scheduler cannot drop a run's seen set; it expires", slog.String("error", err.Error()))
	}
	if errors.Is(err, store.ErrFenced) || (err != nil && ctx.Err() != nil) {
		return // taken over, or shutting down: the run stays with whoever holds it
	}
	now := s.cfg.Now().UTC()
	r.Attempts++
	switch {
	case err == nil:
		r.Status, r.FinishedAt, r.Error = store.RunApplied, &now, nil
		if r.DryRun {
			r.Status = store.RunSkipped
		} else if l, lerr := s.cfg.Store.List(ctx, r.Tenant, r.CRMListID); lerr == nil {
			if err := s.cfg.Store.MarkListSynced(ctx, l, now); err != nil {
				log.WarnContext(ctx, "scheduler cannot record the list's last sync", slog.String("error", err.Error()))
			}
		}
	case isPermanent(err) || r.Attempts >= s.cfg.MaxAttempts:
		msg := err.Error()
		r.Status, r.FinishedAt, r.Error = store.RunFailed, &now, &msg
	default:
		msg := err.Error()
		r.Error = &msg
		r.NextAttemptAt = now.Add(s.cfg.Backoff << (r.Attempts - 1))
	}
	if err != nil {
		log.WarnContext(ctx, "list sync run failed", slog.String("run", r.ID), slog.Int("attempt", r.Attempts), slog.String("status", string(r.Status)), slog.String("error", err.Error()))
	}
	if s.cfg.Metrics != nil {
		outcome := "retry"
		if r.FinishedAt != nil {
			outcome = strings.ToLower(string(r.Status))
		}
		s.cfg.Metrics.SyncRun(outcome)
	}
	if err := s.cfg.Store.FinishRun(context.WithoutCancel(ctx), r); err != nil && !errors.Is(err, store.ErrFenced) {
		log.WarnContext(ctx, "scheduler cannot record a run's outcome", slog.String("run", r.ID), slog.String("error", err.Error()))
	}
}

// reconcile is one full sync of a list with its group: it streams the list's
// members page by page (a dynamic list's by running its query), applies each page
// to the group in bulk and notes the records it saw in a run set; then it walks
// the group's current members and removes those the run did not see. Memory is
// bounded by the page size. A dry run computes the same changes and writes none.
func (ls *Lists) reconcile(ctx context.Context, r *store.SyncRun, seen *queue.RunSets, pageSize int) error {
	l, err := ls.Store.List(ctx, r.Tenant, r.CRMListID)
	if err != nil {
		return Permanent(fmt.Errorf("list %s: %w", r.CRMListID, err))
	}
	conn, err := ls.Store.ConnectionForWebhook(ctx, l.ConnectionID)
	if err != nil {
		return Permanent(fmt.Errorf("the list's connection: %w", err))
	}
	client, err := clientFor(ls.API, conn)
	if err != nil {
		return Permanent(err)
	}
	if r.DryRun {
		if linked, err := ls.groupExists(ctx, l); err != nil || !linked {
			if err != nil {
				return err
			}
			return ls.planUnlinked(ctx, client, l, r, pageSize)
		}
	} else if _, err := ls.ensureLinked(ctx, conn, l); err != nil { // its group may have been deleted since
		return err
	}
	if err := seen.Drop(ctx, r.ID); err != nil { // what an interrupted attempt left
		return err
	}

	var distinct int64
	a := ls.newApplier(conn, l.MemberType)
	step := func() error {
		ids := make([]string, len(a.members))
		for i, m := range a.members {
			ids[i] = m.Ref.ID
		}
		out, err := a.flush(ctx, ls.Store, l, r.DryRun)
		if err != nil {
			return err
		}
		n, err := seen.Add(ctx, r.ID, ids)
		if err != nil {
			return err
		}
		distinct += n
		var changes []store.SyncChange
		for _, o := range out {
			switch {
			case o.SubscriberID == "":
				continue
			case o.Joined:
				r.Added++
				changes = append(changes, store.SyncChange{Email: o.Member.Email, Action: store.ChangeAdd, Applied: !r.DryRun})
			case o.Changed:
				r.Updated++
				changes = append(changes, store.SyncChange{Email: o.Member.Email, Action: store.ChangeUpdate, Applied: !r.DryRun})
			}
		}
		return ls.Store.CheckpointRun(ctx, r, changes)
	}
	rows := client.ListMembers(ctx, l.CRMListID, fetchColumns(recipientColumns(conn, l.MemberType.Entity())))
	for rows.Next(ctx) {
		a.add(rows.Row())
		if len(a.members) >= pageSize {
			if err := step(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the list's members: %w", crmError(err))
	}
	if err := step(); err != nil {
		return err
	}

	return ls.Store.EachListMember(ctx, l, pageSize, func(page []store.ListMember) error {
		ids := make([]string, len(page))
		for i, m := range page {
			ids[i] = m.RecordID
		}
		in, err := seen.Seen(ctx, r.ID, ids)
		if err != nil {
			return err
		}
		// A set that lost members (Redis lost its data) would remove members the
		// list still has: stop, and let the run start over.
		if n, err := seen.Len(ctx, r.ID); err != nil || n != distinct {
			return fmt.Errorf("the run's set of seen members was lost (%d of %d left, %v); the run starts over", n, distinct, err)
		}
		var gone []store.ListMember
		var changes []store.SyncChange
		for i, m := range page {
			if !in[i] {
				gone = append(gone, m)
				changes = append(changes, store.SyncChange{Email: m.Email, Action: store.ChangeRemove, Applied: !r.DryRun})
			}
		}
		if len(gone) == 0 {
			return nil
		}
		if !r.DryRun {
			if err := ls.Store.RemoveMembersByID(ctx, l, gone); err != nil {
				return err
			}
		}
		r.Removed += len(gone)
		return ls.Store.CheckpointRun(ctx, r, changes)
	})
}

// planUnlinked is the dry run of a list not linked to a group yet: every member
// with an address would be added.
func (ls *Lists) planUnlinked(ctx context.Context, client *dataverse.Client, l *store.MarketingList, r *store.SyncRun, pageSize int) error {
	rows := client.ListMembers(ctx, l.CRMListID, []string{"emailaddress1", "statecode"})
	var changes []store.SyncChange
	for rows.Next(ctx) {
		raw, _ := rows.Row().String("emailaddress1")
		email, err := store.NormalizeEmail(raw)
		if err != nil {
			continue
		}
		if reason := inactiveReason(l.MemberType, rowEntity(l.MemberType.Entity(), "", rows.Row())); reason != "" {
			continue
		}
		changes = append(changes, store.SyncChange{Email: strings.ToLower(email), Action: store.ChangeAdd})
		r.Added++
		if len(changes) >= pageSize {
			if err := ls.Store.CheckpointRun(ctx, r, changes); err != nil {
				return err
			}
			changes = changes[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the list's members: %w", crmError(err))
	}
	return ls.Store.CheckpointRun(ctx, r, changes)
}
