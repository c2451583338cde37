package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"crmsync/dataverse"
	"crmsync/logctx"
	"crmsync/queue"
	"crmsync/store"
)

// The anti-entropy sweep. Dataverse drops a webhook after one retry, so a change
// can be missed for good. Per connection with CRM credentials, the sweep reads
// what changed in contact, lead, account and cs_subscription through change
// tracking (a delta link kept per connection and table) and stores each change as
// an inbox event (source "sweep") shaped like the webhook it stands for, then
// publishes it: the engine applies it with the same steps, routed to the same
// partition as the record's webhooks, so one writer per record still holds. The
// rules are last-modified-wins per field, so a change that did arrive by webhook
// and comes again through the sweep changes nothing; an event's id is derived from
// the row's version, so a change found twice is stored once.
//
// What changed is not known for a row read this way, so every column read counts
// as changed (as for an event over 256 KB): a donotbulkemail still set unsubscribes
// again when the row changed after a resubscription in the eMS.
//
// A table's first read (or one after its delta link expired, or after the mapped
// columns changed) returns every row; of those, only rows changed since the last
// sweep (or since the connection was created) are applied, a few minutes of overlap
// allowing for clock skew.

// sweptTables are the tables the sweep reads, in order.
var sweptTables = []string{"contact", "lead", "account", subscriptionTable}

// sweepOverlap is how far before the last sweep a full read still applies rows,
// for clocks that disagree between the CRM and crmsync.
const sweepOverlap = 5 * time.Minute

// sweepBatch is how many events the sweep stores in one write.
const sweepBatch = 500

// SweepStore is what the sweep needs from the store.
type SweepStore interface {
	SweepConnections(ctx context.Context) ([]*store.Connection, error)
	DeltaLink(ctx context.Context, connectionID, table string) (*store.DeltaLink, error)
	SaveDeltaLink(ctx context.Context, d *store.DeltaLink) error
	AddInboxEvents(ctx context.Context, evs []*store.InboxEvent) ([]bool, error)
}

// SweepLeases hands out the fleet-wide lease of a connection's sweep; *queue.Jobs
// made with the sweep interval as its TTL is the one in use.
type SweepLeases interface {
	Acquire(ctx context.Context, job, owner string) (token int64, ok bool, err error)
}

// SweepConfig configures the anti-entropy sweep.
type SweepConfig struct {
	// Store holds the inbox and the delta links; required.
	Store SweepStore
	// Publisher puts the stored events on the stream; required. An event whose
	// publish fails is published later by the engine's recovery sweep.
	Publisher interface {
		Publish(ctx context.Context, entries ...queue.Entry) error
	}
	// Leases make a connection's sweep run once across the fleet per Interval: the
	// lease is taken for Interval and not given back. Required by Start.
	Leases SweepLeases
	// CRM gives each connection's Web API client; required.
	CRM *CRMClients
	// Interval is how often each connection is swept; default 5 min.
	Interval time.Duration
	// Owner names this process in the leases; default "sweep-" and a random id.
	Owner string
	// Logger receives one line per sweep that found changes or failed; default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Sweeper runs the anti-entropy sweep of every connection with CRM credentials.
type Sweeper struct {
	cfg  SweepConfig
	loop loop
}

// NewSweeper checks cfg and returns a sweeper that has not started.
func NewSweeper(cfg SweepConfig) (*Sweeper, error) {
	if cfg.Store == nil {
		return nil, errors.New("sweep: Store is required")
	}
	if cfg.Publisher == nil {
		return nil, errors.New("sweep: Publisher is required")
	}
	if cfg.CRM == nil {
		return nil, errors.New("sweep: CRM is required")
	}
	cfg.Interval = cmp.Or(cfg.Interval, 5*time.Minute)
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("sweep: Interval %s is negative", cfg.Interval)
	}
	cfg.Owner = cmp.Or(cfg.Owner, "sweep-"+uuid.NewString())
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sweeper{cfg: cfg}, nil
}

// SweepResult says what one sweep found.
type SweepResult struct {
	// Read counts the changed rows and deletions change tracking reported.
	Read int
	// Queued counts the events stored for them that were not stored before.
	Queued int
}

// Start launches the sweep loop; it returns at once. Every fifth of the interval
// the loop looks for connections whose lease is free and sweeps them, so each
// connection is swept about once per interval by one process of the fleet.
func (s *Sweeper) Start(ctx context.Context) error {
	if s.cfg.Leases == nil {
		return errors.New("sweep: Leases is required to start the loop")
	}
	s.loop.start(ctx, func(ctx context.Context) {
		for ctx.Err() == nil {
			s.sweepDue(ctx)
			sleep(ctx, s.cfg.Interval/5)
		}
	})
	return nil
}

// Stop ends the loop after the sweep in hand and waits for it, or for ctx.
func (s *Sweeper) Stop(ctx context.Context) error { return s.loop.stop(ctx, "sweep") }

// sweepDue sweeps the connections whose lease this process gets.
func (s *Sweeper) sweepDue(ctx context.Context) {
	log := s.cfg.Logger
	conns, err := s.cfg.Store.SweepConnections(ctx)
	if err != nil {
		log.WarnContext(ctx, "sweep cannot list connections", slog.String("error", err.Error()))
		return
	}
	for _, conn := range conns {
		if ctx.Err() != nil {
			return
		}
		if len(conn.ClientSecret) == 0 {
			continue // a client id alone cannot read the CRM
		}
		_, ok, err := s.cfg.Leases.Acquire(ctx, "sweep:"+conn.ID, s.cfg.Owner)
		if err != nil {
			log.WarnContext(ctx, "sweep cannot take its lease", slog.String("error", err.Error()))
			return
		}
		if !ok {
			continue
		}
		cctx := logctx.With(ctx, slog.String(logctx.Tenant, conn.Tenant), slog.String(logctx.Connection, conn.ID))
		res, err := s.SweepConnection(cctx, conn)
		clog := log.With(slog.Int("read", res.Read), slog.Int("queued", res.Queued))
		switch {
		case err != nil:
			clog.WarnContext(cctx, "sweep failed", slog.String("error", err.Error()))
		case res.Queued > 0:
			clog.InfoContext(cctx, "sweep found changes")
		}
	}
}

// SweepConnection reads what changed in the connection's swept tables since its
// last sweep and queues it for the engine, whatever the lease says; a table that
// fails does not keep the others from being swept.
func (s *Sweeper) SweepConnection(ctx context.Context, conn *store.Connection) (SweepResult, error) {
	var res SweepResult
	client, err := s.cfg.CRM.For(conn)
	if err != nil {
		return res, fmt.Errorf("sweep connection %s: %w", conn.ID, err)
	}
	me, err := client.WhoAmI(ctx)
	if err != nil {
		return res, fmt.Errorf("sweep connection %s: %w", conn.ID, err)
	}
	var errs []error
	for _, table := range sweptTables {
		if err := s.sweepTable(ctx, client, conn, strings.ToLower(me.UserID), table, &res); err != nil {
			errs = append(errs, fmt.Errorf("sweep %s of connection %s: %w", table, conn.ID, err))
		}
	}
	return res, errors.Join(errs...)
}

// sweepTable reads one table's changes, queues them and keeps the new delta link.
func (s *Sweeper) sweepTable(ctx context.Context, client *dataverse.Client, conn *store.Connection, me, table string, res *SweepResult) error {
	started := s.cfg.Now().UTC()
	cols := slices.Concat(readColumns(conn, table), authorColumns)
	pos := &store.DeltaLink{ConnectionID: conn.ID, Table: table, Columns: strings.Join(cols, ",")}
	since := conn.CreatedAt
	prev, err := s.cfg.Store.DeltaLink(ctx, conn.ID, table)
	switch {
	case err == nil:
		since = prev.SweptAt
		if prev.Columns == pos.Columns {
			pos.Link = prev.Link
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	since = since.Add(-sweepOverlap)
	next, err := s.readChanges(ctx, client, conn, me, table, pos.Link, cols, since, res)
	if errors.Is(err, dataverse.ErrDeltaExpired) {
		s.cfg.Logger.InfoContext(ctx, "sweep's delta link expired; reading the whole table", slog.String("connection", conn.ID), slog.String("table", table))
		next, err = s.readChanges(ctx, client, conn, me, table, "", cols, since, res)
	}
	if err != nil {
		return err
	}
	pos.Link, pos.SweptAt = next, started
	return s.cfg.Store.SaveDeltaLink(ctx, pos)
}

// authorColumns tell who created and last changed a row, and when.
var authorColumns = []string{"createdon", "_createdby_value", "_modifiedby_value"}

// ownUntouched reports whether crmsync (the user me) created the row and nobody
// changed it since: its state is what crmsync wrote from the eMS, so applying it
// back would change nothing — an import's records need not travel back.
func ownUntouched(row dataverse.Row, me string) bool {
	created, _ := row.Time("createdon")
	modified, _ := row.Time("modifiedon")
	by, _ := row.String("_createdby_value")
	last, _ := row.String("_modifiedby_value")
	return me != "" && strings.EqualFold(by, me) && strings.EqualFold(last, me) && !created.IsZero() && created.Equal(modified)
}

// readChanges reads one change-tracking answer and queues its changes; a full read
// (no link) queues only rows changed since the given time, and no row crmsync
// created that is untouched since. It returns the next delta link.
func (s *Sweeper) readChanges(ctx context.Context, client *dataverse.Client, conn *store.Connection, me, table, link string, cols []string, since time.Time, res *SweepResult) (string, error) {
	pk := table + "id"
	d := client.Changes(ctx, tableSet(table), link, cols)
	var batch []*store.InboxEvent
	for d.Next(ctx) {
		id, row := d.Deleted(), d.Row()
		if row != nil {
			id, _ = row.String(pk)
			if t, ok := row.Time("modifiedon"); link == "" && ok && t.Before(since) {
				continue
			}
			if ownUntouched(row, me) {
				continue
			}
		} else if table == subscriptionTable {
			continue // a removed subscription row says nothing about consent
		}
		res.Read++
		ev, err := sweepEvent(conn, table, strings.ToLower(id), row, s.cfg.Now())
		if err != nil {
			return "", err
		}
		if batch = append(batch, ev); len(batch) == sweepBatch {
			if err := s.queue(ctx, batch, res); err != nil {
				return "", err
			}
			batch = batch[:0]
		}
	}
	if err := d.Err(); err != nil {
		return "", err
	}
	if err := s.queue(ctx, batch, res); err != nil {
		return "", err
	}
	return d.DeltaLink(), nil
}

// queue stores events and publishes those not stored before.
func (s *Sweeper) queue(ctx context.Context, evs []*store.InboxEvent, res *SweepResult) error {
	if len(evs) == 0 {
		return nil
	}
	dup, err := s.cfg.Store.AddInboxEvents(ctx, evs)
	if err != nil {
		return fmt.Errorf("store the sweep's events: %w", err)
	}
	var entries []queue.Entry
	for i, ev := range evs {
		if !dup[i] {
			entries = append(entries, queue.Entry{EventID: ev.ID, Key: ev.PartitionKey()})
		}
	}
	res.Queued += len(entries)
	if len(entries) == 0 {
		return nil
	}
	if err := s.cfg.Publisher.Publish(ctx, entries...); err != nil {
		s.cfg.Logger.WarnContext(ctx, "sweep cannot publish its events; the recovery sweep will", slog.Int("events", len(entries)), slog.String("error", err.Error()))
	}
	return nil
}
