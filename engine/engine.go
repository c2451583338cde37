package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"crmsync/dataverse"
	"crmsync/queue"
	"crmsync/store"
)

// Config configures the engine.
type Config struct {
	// Store is the source of truth; required.
	Store *store.Store
	// Stream delivers event ids; required.
	Stream *queue.Stream
	// Leases decide which partitions of Stream this worker owns; required.
	Leases *queue.Leases
	// LeaseTTL is how long a partition lease lives unrenewed; it must match the TTL
	// Leases was made with. Default 10 s.
	LeaseTTL time.Duration
	// Consumer names this worker in the consumer group; default host-pid-random.
	Consumer string
	// Registry holds the steps; default: the built-in sync steps.
	Registry *Registry
	// CRM gives the Web API clients for writing to the CRM; without it, eMS-side
	// changes fail with that reason (and can be replayed later).
	CRM *CRMClients
	// BatchSize is how many entries one read takes; default 64.
	BatchSize int
	// Block is how long one read waits for entries; default 2 s.
	Block time.Duration
	// MaxAttempts is how often an event is tried before it fails for good; default 5.
	MaxAttempts int
	// ClaimIdle is how long an entry stays unacknowledged before another worker
	// takes it over (its worker is presumed dead, or it failed and waits for a retry);
	// default 1 min.
	ClaimIdle time.Duration
	// SweepInterval is how often the worker looks for stored events that never
	// reached the stream (a lost publish, Redis losing its data); default 30 s.
	SweepInterval time.Duration
	// Retention is how long processed events stay in the inbox, for replay and audit;
	// default 14 days. Each worker removes older ones about once an hour.
	Retention time.Duration
	// Logger receives one line per failed event; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.Store == nil {
		return errors.New("engine: Store is required")
	}
	if c.Stream == nil {
		return errors.New("engine: Stream is required")
	}
	if c.Leases == nil {
		return errors.New("engine: Leases is required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Consumer == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.Consumer = fmt.Sprintf("%s-%d-%s", cmp.Or(host, "host"), os.Getpid(), hex.EncodeToString(b))
	}
	if c.Registry == nil {
		c.Registry = NewRegistry()
		registerRecipientSteps(c.Registry, c.Store, c.Now)
		if c.CRM != nil {
			c.Registry.Handle(StepKey{Message: MessageSubscriberChanged, Entity: EntitySubscriber, Stage: dataverse.StagePostOperation},
				subscriberToCRM(c.Store, c.CRM, c.Now))
		}
	}
	c.BatchSize = cmp.Or(c.BatchSize, 64)
	c.Block = cmp.Or(c.Block, 2*time.Second)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 5)
	c.ClaimIdle = cmp.Or(c.ClaimIdle, time.Minute)
	c.SweepInterval = cmp.Or(c.SweepInterval, 30*time.Second)
	c.LeaseTTL = cmp.Or(c.LeaseTTL, 10*time.Second)
	c.Retention = cmp.Or(c.Retention, 14*24*time.Hour)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return nil
}

// Engine runs one worker of the consumer group.
type Engine struct {
	cfg           Config
	lastRetention time.Time
	cancel        context.CancelFunc
	wg            sync.WaitGroup
}

// New validates cfg and returns an engine that has not started.
func New(cfg Config) (*Engine, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg}, nil
}

// Start launches the worker; it returns at once. Redis being down is not an error:
// the worker keeps trying.
func (e *Engine) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.run(ctx)
	}()
	return nil
}

// Stop asks the worker to finish the event in hand and waits for it, or for ctx.
// Entries it read but did not finish stay pending and are claimed later.
func (e *Engine) Stop(ctx context.Context) error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop engine: %w", ctx.Err())
	}
}

func (e *Engine) run(ctx context.Context) {
	log := e.cfg.Logger.With(slog.String("consumer", e.cfg.Consumer))
	for ctx.Err() == nil {
		if err := e.cfg.Stream.EnsureGroup(ctx); err == nil {
			break
		} else {
			log.WarnContext(ctx, "engine waiting for Redis", slog.String("error", err.Error()))
			sleep(ctx, time.Second)
		}
	}
	p := newPartitions(e.cfg.Stream, e.cfg.Leases, e.cfg.Consumer)
	defer func() {
		// Give the partitions back at once, so other workers need not wait for expiry.
		releaseCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		p.releaseAll(releaseCtx)
	}()
	var lastRebalance, lastMaintenance time.Time
	for ctx.Err() == nil {
		if time.Since(lastRebalance) >= e.cfg.LeaseTTL/3 {
			taken, err := p.rebalance(ctx, e.cfg.Now())
			if err != nil && ctx.Err() == nil {
				log.WarnContext(ctx, "engine cannot balance partitions", slog.String("error", err.Error()))
			}
			lastRebalance = time.Now()
			// A partition taken over may hold entries its last owner never finished.
			for _, part := range taken {
				msgs, err := e.cfg.Stream.Claim(ctx, part, e.cfg.Consumer, 0, 1000)
				if err != nil {
					log.WarnContext(ctx, "engine cannot claim a taken-over partition", slog.String("error", err.Error()))
					continue
				}
				e.handleAll(ctx, log, msgs)
			}
		}
		if time.Since(lastMaintenance) >= min(e.cfg.SweepInterval, e.cfg.ClaimIdle/2) {
			e.maintain(ctx, log, p.list())
			lastMaintenance = time.Now()
		}
		owned := p.list()
		if len(owned) == 0 {
			sleep(ctx, e.cfg.Block)
			continue
		}
		msgs, err := e.cfg.Stream.Read(ctx, e.cfg.Consumer, owned, e.cfg.BatchSize, e.cfg.Block)
		if err != nil {
			if ctx.Err() == nil {
				log.WarnContext(ctx, "engine cannot read events", slog.String("error", err.Error()))
				sleep(ctx, time.Second)
			}
			continue
		}
		e.handleAll(ctx, log, msgs)
	}
}

// maintain retries this worker's failed entries once they have waited ClaimIdle, and
// re-publishes stored events that are pending while the stream is empty: their
// publish was lost.
func (e *Engine) maintain(ctx context.Context, log *slog.Logger, owned []int) {
	for _, part := range owned {
		msgs, err := e.cfg.Stream.Claim(ctx, part, e.cfg.Consumer, e.cfg.ClaimIdle, e.cfg.BatchSize)
		if err != nil {
			log.WarnContext(ctx, "engine cannot claim idle events", slog.String("error", err.Error()))
			return
		}
		e.handleAll(ctx, log, msgs)
	}

	if time.Since(e.lastRetention) >= time.Hour {
		e.lastRetention = time.Now()
		for {
			n, err := e.cfg.Store.DeleteProcessedBefore(ctx, e.cfg.Now().Add(-e.cfg.Retention), 1000)
			if err != nil {
				log.WarnContext(ctx, "engine cannot apply the inbox retention", slog.String("error", err.Error()))
				break
			}
			if n < 1000 {
				break
			}
		}
	}

	n, err := e.cfg.Stream.Len(ctx)
	if err != nil || n > 0 {
		return
	}
	pending, err := e.cfg.Store.PendingInboxEvents(ctx, e.cfg.Now().Add(-5*time.Second), 1000)
	if err != nil {
		log.WarnContext(ctx, "engine cannot sweep the inbox", slog.String("error", err.Error()))
		return
	}
	entries := make([]queue.Entry, len(pending))
	for i, ev := range pending {
		entries[i] = queue.Entry{EventID: ev.ID, Key: ev.PartitionKey()}
	}
	if len(entries) > 0 {
		if err := e.cfg.Stream.Publish(ctx, entries...); err != nil {
			log.WarnContext(ctx, "engine cannot re-publish events", slog.String("error", err.Error()))
			return
		}
		log.InfoContext(ctx, "re-published stored events that were not on the stream", slog.Int("count", len(entries)))
	}
}

func (e *Engine) handleAll(ctx context.Context, log *slog.Logger, msgs []queue.Message) {
	for _, m := range msgs {
		if ctx.Err() != nil {
			return
		}
		if e.handle(ctx, log, m) {
			if err := e.cfg.Stream.Ack(ctx, m); err != nil {
				log.WarnContext(ctx, "engine cannot acknowledge", slog.String("event", m.EventID), slog.String("error", err.Error()))
			}
		}
	}
}

// handle processes one event and reports whether its stream entry is done with.
// It is acknowledged only after the outcome is in the store.
func (e *Engine) handle(ctx context.Context, log *slog.Logger, m queue.Message) (ack bool) {
	log = log.With(slog.String("event", m.EventID))
	ev, err := e.cfg.Store.InboxEvent(ctx, m.EventID)
	if errors.Is(err, store.ErrNotFound) {
		log.WarnContext(ctx, "stream names an event the store does not have")
		return true
	}
	if err != nil {
		log.WarnContext(ctx, "engine cannot load event", slog.String("error", err.Error()))
		return false
	}
	if ev.Status != store.InboxPending {
		return true // done before: a duplicate entry
	}
	log = log.With(slog.String("tenant", ev.Tenant), slog.String("connection", ev.ConnectionID))

	warnings, err := e.process(ctx, ev)
	attempts := ev.Attempts + 1
	status, lastErr := store.InboxProcessed, strings.Join(warnings, "; ")
	if err != nil {
		lastErr = err.Error()
		status = store.InboxPending
		if isPermanent(err) || attempts >= e.cfg.MaxAttempts {
			status = store.InboxFailed
		}
		log.WarnContext(ctx, "event failed", slog.Int("attempt", attempts), slog.String("status", string(status)), slog.String("error", lastErr))
	}
	if err := e.cfg.Store.FinishInboxEvent(ctx, ev.ID, status, attempts, lastErr); err != nil {
		log.WarnContext(ctx, "engine cannot record the outcome", slog.String("error", err.Error()))
		return false
	}
	return status != store.InboxPending
}

func (e *Engine) process(ctx context.Context, ev *store.InboxEvent) (warnings []string, err error) {
	if ev.Source == "reaction" {
		// Stored and kept; campaign sends, which reactions belong to, are not built yet.
		return nil, Permanent(errors.New("reaction events are not processed by this version; replay them once campaign sends are available"))
	}
	ec, err := e.context(ctx, ev)
	if err != nil {
		return nil, err
	}
	conn, err := e.cfg.Store.ConnectionForWebhook(ctx, ev.ConnectionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, Permanent(errors.New("the connection no longer exists"))
	}
	if err != nil {
		return nil, err
	}
	key := StepKey{Message: ec.MessageName, Entity: ec.PrimaryEntityName, Stage: ec.Stage}
	event := &Event{Inbox: ev, Context: ec, Connection: conn}
	for _, s := range e.cfg.Registry.Steps(key) {
		if err := s.Apply(ctx, event); err != nil {
			return nil, fmt.Errorf("step %s: %w", key, err)
		}
	}
	return event.warnings, nil
}

// context gives the execution context of an event: decoded from the body of a
// Dataverse webhook, made up for an eMS-side change (its record and message).
func (e *Engine) context(ctx context.Context, ev *store.InboxEvent) (*dataverse.ExecutionContext, error) {
	if ev.Source == SourceEMS {
		return &dataverse.ExecutionContext{MessageName: ev.Message, PrimaryEntityName: ev.Entity, PrimaryEntityID: ev.RecordID, Stage: ev.Stage}, nil
	}
	body, err := e.cfg.Store.InboxEventBody(ctx, ev.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, Permanent(errors.New("the event's body is missing from the store"))
	}
	if err != nil {
		return nil, err
	}
	ev.Body = body
	ec, err := dataverse.Decode([]byte(body))
	if err != nil {
		return nil, Permanent(fmt.Errorf("decode event: %w", err))
	}
	if ev.SizeExceeded {
		ec.MarkSizeExceeded()
	}
	return ec, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
