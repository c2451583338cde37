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

	"crmsync/dataverse"
	"crmsync/logctx"
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
	// Notices announce each recorded outcome to every instance (the API's
	// syncEvents subscription); optional.
	Notices interface {
		EventFinished(ctx context.Context, tenant, eventID string) error
	}
	// Campaigns creates the sends the CRM's "Send campaign" asks for; without it,
	// that command fails with the reason.
	Campaigns *Campaigns
	// Metrics records how long each event's steps took; nil records nothing.
	Metrics StepMetrics
	// Logger receives a line per failed event (Warn), per event applied with
	// warnings (Info) and per event applied (Debug), each with the event's
	// attributes in its context (logctx); default slog.Default().
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
	c.Consumer = cmp.Or(c.Consumer, workerName())
	if c.Registry == nil {
		c.Registry = c.defaultRegistry()
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

// defaultRegistry holds the built-in sync steps, reading and writing through one
// set of Web API clients, so they share token caches.
func (c *Config) defaultRegistry() *Registry {
	r := NewRegistry()
	api := apiOf(c.Store, c.CRM)
	addRecipientSteps(r, c.Store, api, c.Now)
	registerListSteps(r, &Lists{Store: c.Store, API: api, Now: c.Now})
	r.Handle(StepKey{Message: MessageGroupRenamed, Entity: EntityGroup, Stage: dataverse.StagePostOperation}, groupRenamed(c.Store, api))
	r.Handle(StepKey{Message: MessageSubscriberDeleted, Entity: EntitySubscriber, Stage: dataverse.StagePostOperation}, subscriberDeleted(c.Store, api))
	reactions := &reactionStep{st: c.Store, outbox: &Outbox{Store: c.Store, Publisher: c.Stream, Now: c.Now, Logger: c.Logger}, api: api, now: c.Now}
	if c.CRM != nil {
		r.Handle(StepKey{Message: MessageSubscriberChanged, Entity: EntitySubscriber, Stage: dataverse.StagePostOperation},
			subscriberToCRM(c.Store, c.CRM, c.Now))
		reactions.writer = subscriberToCRM(c.Store, c.CRM, c.Now)
	}
	r.Handle(StepKey{Message: MessageReaction, Entity: EntityReaction, Stage: dataverse.StagePostOperation}, reactions)
	send := StepFunc(func(context.Context, *Event) error {
		return Permanent(errors.New("campaign sends are not configured in this instance"))
	})
	if c.Campaigns != nil {
		send = c.Campaigns.sendCampaignStep(api)
	}
	r.Handle(StepKey{Message: dataverse.MessageSendCampaign, Entity: "campaignactivity", Stage: dataverse.StagePostOperation}, send)
	return r
}

// StepMetrics is told how long the steps of each event took, by the message
// and entity they are registered for and their outcome ("ok" or "error");
// metrics.Registry implements it. Events no step is registered for are not
// reported, so the labels take only the registry's keys.
type StepMetrics interface {
	ObserveStep(message, entity, outcome string, d time.Duration)
}

// Engine runs one worker of the consumer group.
type Engine struct {
	cfg           Config
	lastRetention time.Time
	loop          loop
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
	e.loop.start(ctx, e.run)
	return nil
}

// Stop asks the worker to finish the event in hand and waits for it, or for ctx.
// Entries it read but did not finish stay pending and are claimed later.
func (e *Engine) Stop(ctx context.Context) error { return e.loop.stop(ctx, "engine") }

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

// handleAll works through the messages of one read in order. Consecutive events
// whose one step is a BatchStep are applied together; every event still gets an
// outcome of its own and is acknowledged only after that outcome is stored.
func (e *Engine) handleAll(ctx context.Context, log *slog.Logger, msgs []queue.Message) {
	var run []*job
	var runStep BatchStep
	inRun := map[string]bool{}
	flush := func() {
		if len(run) > 0 {
			e.applyBatch(ctx, log, runStep, run)
		}
		run, runStep = nil, nil
		clear(inRun)
	}
	conns := map[string]*store.Connection{}
	for _, m := range msgs {
		if ctx.Err() != nil {
			return
		}
		if inRun[m.EventID] {
			flush() // the same event twice in one read: the second sees the first's outcome
		}
		mctx := logctx.With(ctx, slog.String(logctx.Event, m.EventID))
		j, ack := e.load(mctx, log, m, conns)
		if j == nil {
			if ack {
				e.ack(mctx, log, m)
			}
			continue
		}
		if bs := j.batchStep(e.cfg.Registry); bs != nil {
			if bs != runStep {
				flush()
			}
			run, runStep = append(run, j), bs
			inRun[m.EventID] = true
			continue
		}
		flush()
		if jctx := j.logContext(mctx); e.handle(jctx, j) {
			e.ack(jctx, log, m)
		}
	}
	flush()
}

// job is a stream message whose event is loaded and ready for its steps; event is
// nil when preparing it failed with err.
type job struct {
	msg   queue.Message
	inbox *store.InboxEvent
	event *Event
	key   StepKey
	err   error
	log   *slog.Logger
	// attrs are the log attributes of the lines about the event.
	attrs []slog.Attr
}

// logContext gives ctx the attributes of the job's event, which every line
// logged with it then carries, down to the Web API client's retries.
func (j *job) logContext(ctx context.Context) context.Context {
	return logctx.With(ctx, j.attrs...)
}

// eventAttrs are the log attributes of the lines about an inbox event.
func eventAttrs(ev *store.InboxEvent) []slog.Attr {
	return logctx.EventAttrs(ev.Tenant, ev.ConnectionID, ev.ID, ev.CorrelationID, ev.Message, ev.Entity)
}

// sharedAttrs are the log attributes the events of jobs have in common: all of
// the event's when there is one, for lines about all of them together.
func sharedAttrs(jobs []*job) []slog.Attr {
	shared := slices.Clone(jobs[0].attrs)
	for _, j := range jobs[1:] {
		shared = slices.DeleteFunc(shared, func(a slog.Attr) bool { return !slices.ContainsFunc(j.attrs, a.Equal) })
	}
	return shared
}

// batchStep is the step that may apply this job together with others: the one
// step registered for its key, when that step is a BatchStep.
func (j *job) batchStep(r *Registry) BatchStep {
	if j.event == nil {
		return nil
	}
	steps := r.Steps(j.key)
	if len(steps) != 1 {
		return nil
	}
	bs, _ := steps[0].(BatchStep)
	return bs
}

// load reads a message's event and prepares it. It returns no job when there is
// nothing to process, with ack saying whether the entry is done with: a missing or
// already finished event is; one the store could not give is not.
func (e *Engine) load(ctx context.Context, log *slog.Logger, m queue.Message, conns map[string]*store.Connection) (j *job, ack bool) {
	ev, err := e.cfg.Store.InboxEvent(ctx, m.EventID)
	if errors.Is(err, store.ErrNotFound) {
		log.WarnContext(ctx, "stream names an event the store does not have")
		return nil, true
	}
	if err != nil {
		log.WarnContext(ctx, "engine cannot load event", slog.String("error", err.Error()))
		return nil, false
	}
	if ev.Status != store.InboxPending {
		return nil, true // done before: a duplicate entry
	}
	j = &job{msg: m, inbox: ev, log: log}
	j.event, j.key, j.err = e.prepare(ctx, ev, conns)
	j.attrs = eventAttrs(ev) // after prepare, which knows the correlation id of events stored without it
	return j, false
}

// handle runs a job's steps one event at a time and reports whether its stream
// entry is done with; ctx carries the job's log attributes.
func (e *Engine) handle(ctx context.Context, j *job) (ack bool) {
	if j.err != nil {
		return e.finish(ctx, j, j.err)
	}
	start := time.Now()
	steps := e.cfg.Registry.Steps(j.key)
	for _, s := range steps {
		if err := s.Apply(ctx, j.event); err != nil {
			e.observeSteps(j.key, len(steps), err, time.Since(start))
			return e.finish(ctx, j, fmt.Errorf("step %s: %w", j.key, err))
		}
	}
	e.observeSteps(j.key, len(steps), nil, time.Since(start))
	return e.finish(ctx, j, nil)
}

// observeSteps reports the steps of one event to the metrics, if there were any.
func (e *Engine) observeSteps(key StepKey, steps int, err error, d time.Duration) {
	if e.cfg.Metrics == nil || steps == 0 {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	e.cfg.Metrics.ObserveStep(key.Message, key.Entity, outcome, d)
}

// applyBatch runs a batch step over consecutive jobs and stores each one's
// outcome; the entries whose outcome is final are acknowledged together.
func (e *Engine) applyBatch(ctx context.Context, log *slog.Logger, step BatchStep, jobs []*job) {
	evs := make([]*Event, len(jobs))
	for i, j := range jobs {
		evs[i] = j.event
	}
	start := time.Now()
	errs := step.ApplyBatch(logctx.With(ctx, sharedAttrs(jobs)...), evs)
	each := time.Since(start) / time.Duration(len(jobs)) // the events share the batch's time
	var done []queue.Message
	for i, j := range jobs {
		var err error
		switch {
		case len(errs) != len(jobs):
			err = fmt.Errorf("step %s: the batch step gave %d outcomes for %d events", j.key, len(errs), len(jobs))
		case errs[i] != nil:
			err = fmt.Errorf("step %s: %w", j.key, errs[i])
		}
		e.observeSteps(j.key, 1, err, each)
		if e.finish(j.logContext(ctx), j, err) {
			done = append(done, j.msg)
		}
	}
	if err := e.cfg.Stream.Ack(ctx, done...); err != nil {
		log.WarnContext(ctx, "engine cannot acknowledge", slog.Int("events", len(done)), slog.String("error", err.Error()))
	}
}

// finish stores the outcome of a job — processed with its warnings, pending for a
// retry, or failed for good (a dead letter) — logs it, and reports whether its
// stream entry is done with; ctx carries the job's log attributes.
func (e *Engine) finish(ctx context.Context, j *job, err error) (ack bool) {
	attempts := j.inbox.Attempts + 1
	status, lastErr := store.InboxProcessed, ""
	if j.event != nil {
		lastErr = strings.Join(j.event.warnings, "; ")
	}
	if err != nil {
		lastErr = err.Error()
		msg := "event failed"
		status = store.InboxPending
		if isPermanent(err) || attempts >= e.cfg.MaxAttempts {
			status, msg = store.InboxFailed, "event dead-lettered"
		}
		j.log.WarnContext(ctx, msg, slog.Int("attempt", attempts), slog.String("status", string(status)), slog.String("error", lastErr))
	}
	if err := e.cfg.Store.FinishInboxEvent(ctx, j.inbox.ID, status, attempts, lastErr); err != nil {
		j.log.WarnContext(ctx, "engine cannot record the outcome", slog.String("error", err.Error()))
		return false
	}
	switch {
	case err != nil:
	case lastErr != "":
		j.log.InfoContext(ctx, "event applied with warnings", slog.Int("attempt", attempts), slog.String("warnings", lastErr))
	default:
		j.log.DebugContext(ctx, "event applied", slog.Int("attempt", attempts))
	}
	e.announce(ctx, j)
	return status != store.InboxPending
}

// announce tells the live subscribers of the job's tenant that its event has a
// new outcome; a lost announcement costs nothing but the live view.
func (e *Engine) announce(ctx context.Context, j *job) {
	if e.cfg.Notices == nil {
		return
	}
	if err := e.cfg.Notices.EventFinished(ctx, j.inbox.Tenant, j.inbox.ID); err != nil {
		j.log.DebugContext(ctx, "engine cannot announce an outcome", slog.String("error", err.Error()))
	}
}

// ack acknowledges one entry; ctx carries its event's log attributes.
func (e *Engine) ack(ctx context.Context, log *slog.Logger, m queue.Message) {
	if err := e.cfg.Stream.Ack(ctx, m); err != nil {
		log.WarnContext(ctx, "engine cannot acknowledge", slog.String("error", err.Error()))
	}
}

// prepare gives the event its steps work on and the key they are registered
// for. conns keeps the connections loaded during one read.
func (e *Engine) prepare(ctx context.Context, ev *store.InboxEvent, conns map[string]*store.Connection) (*Event, StepKey, error) {
	ec, err := e.context(ctx, ev)
	if err != nil {
		return nil, StepKey{}, err
	}
	conn := conns[ev.ConnectionID]
	if conn == nil && ev.ConnectionID == "" && ev.Source == SourceReaction {
		// A reaction to a send of a group without a connection.
		return &Event{Inbox: ev, Context: ec}, StepKey{Message: ec.MessageName, Entity: ec.PrimaryEntityName, Stage: ec.Stage}, nil
	}
	if conn == nil {
		conn, err = e.cfg.Store.ConnectionForWebhook(ctx, ev.ConnectionID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, StepKey{}, Permanent(errors.New("the connection no longer exists"))
		}
		if err != nil {
			return nil, StepKey{}, err
		}
		conns[ev.ConnectionID] = conn
	}
	key := StepKey{Message: ec.MessageName, Entity: ec.PrimaryEntityName, Stage: ec.Stage}
	return &Event{Inbox: ev, Context: ec, Connection: conn}, key, nil
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
	if ev.Source == SourceReaction {
		// The body is a reaction (store.ReactionEvent), which the reaction step reads.
		return &dataverse.ExecutionContext{MessageName: MessageReaction, PrimaryEntityName: EntityReaction, PrimaryEntityID: ev.RecordID, Stage: dataverse.StagePostOperation}, nil
	}
	ec, err := dataverse.Decode([]byte(body))
	if err != nil {
		return nil, Permanent(fmt.Errorf("decode event: %w", err))
	}
	ev.CorrelationID = cmp.Or(ev.CorrelationID, ec.CorrelationID) // stored before events kept it
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
