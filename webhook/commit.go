package webhook

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"crmsync/logctx"
	"crmsync/queue"
	"crmsync/store"
)

// ErrBusy is returned when the group-commit queue is full or the gateway is
// stopping: the caller answers 503 so that Dataverse retries.
var ErrBusy = errors.New("ingest queue is full")

// committer stores events in groups: requests that arrive while a write is in flight
// are stored together by the next InsertMany (up to MaxBatch), and each request gets
// its answer only once its group is durable. Under load the groups grow; alone, an
// event is written at once.
type committer struct {
	inbox    Inbox
	pub      Publisher
	maxBatch int
	timeout  time.Duration
	logger   *slog.Logger
	metrics  Metrics // optional

	queue chan *pending
	// publishes carries the new events of stored groups to the publisher
	// goroutine, so a slow or absent Redis never holds up the next commit. When it
	// is full the group is dropped: its events are stored, and the recovery sweep
	// publishes them.
	publishes chan []*store.InboxEvent
	mu        sync.RWMutex // guards stopped against submit racing Stop
	stop      chan struct{}
	done      chan struct{}
	once      sync.Once
	stopped   bool
}

type pending struct {
	ev   *store.InboxEvent
	done chan commitResult
}

type commitResult struct {
	dup bool
	err error
}

func newCommitter(inbox Inbox, pub Publisher, queueSize, maxBatch int, timeout time.Duration, logger *slog.Logger) *committer {
	return &committer{
		inbox: inbox, pub: pub, maxBatch: maxBatch, timeout: timeout, logger: logger,
		queue: make(chan *pending, queueSize), stop: make(chan struct{}), done: make(chan struct{}),
		publishes: make(chan []*store.InboxEvent, 64),
	}
}

// submit queues an event and waits until its group is stored. It never blocks on a
// full queue: that is ErrBusy at once.
func (c *committer) submit(ctx context.Context, ev *store.InboxEvent) (dup bool, err error) {
	p := &pending{ev: ev, done: make(chan commitResult, 1)}
	c.mu.RLock()
	if c.stopped {
		c.mu.RUnlock()
		return false, ErrBusy
	}
	select {
	case c.queue <- p:
		c.mu.RUnlock()
	default:
		c.mu.RUnlock()
		return false, ErrBusy
	}
	select {
	case r := <-p.done:
		return r.dup, r.err
	case <-ctx.Done():
		// The event may still be stored; Dataverse's retry will then be a duplicate.
		return false, ctx.Err()
	}
}

// run writes groups until Stop, then drains what is queued.
func (c *committer) run() {
	published := make(chan struct{})
	go func() {
		defer close(published)
		for evs := range c.publishes {
			entries := make([]queue.Entry, len(evs))
			for i, ev := range evs {
				entries[i] = queue.Entry{EventID: ev.ID, Key: ev.PartitionKey()}
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			if err := c.pub.Publish(ctx, entries...); err != nil {
				c.warn("events stored but not published; the recovery sweep will publish them", evs, slog.String("error", err.Error()))
			}
			cancel()
		}
	}()
	defer func() {
		close(c.publishes)
		<-published
		close(c.done)
	}()
	for {
		select {
		case p := <-c.queue:
			c.commit(c.collect(p))
		case <-c.stop:
			for {
				select {
				case p := <-c.queue:
					c.commit(c.collect(p))
				default:
					return
				}
			}
		}
	}
}

// collect takes first and whatever else is already queued, up to maxBatch.
func (c *committer) collect(first *pending) []*pending {
	batch := []*pending{first}
	for len(batch) < c.maxBatch {
		select {
		case p := <-c.queue:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

func (c *committer) commit(batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	evs := make([]*store.InboxEvent, len(batch))
	for i, p := range batch {
		evs[i] = p.ev
	}
	dup, err := c.inbox.AddInboxEvents(ctx, evs)
	if err != nil {
		for _, p := range batch {
			p.done <- commitResult{err: err}
		}
		return
	}
	if c.metrics != nil {
		c.metrics.IngestBatch(len(batch))
	}
	var stored []*store.InboxEvent
	for i, p := range batch {
		if !dup[i] {
			ev := *p.ev
			ev.Body = "" // the publisher needs its id, key and log attributes, not its body
			stored = append(stored, &ev)
		}
	}
	// Answer first: the events are durable. A publish that fails is made good by the
	// engine's recovery sweep.
	for i, p := range batch {
		p.done <- commitResult{dup: dup[i]}
	}
	if len(stored) == 0 {
		return
	}
	select {
	case c.publishes <- stored:
	default:
		c.warn("publisher is behind; the recovery sweep will publish these events", stored)
	}
}

// warn logs a line about stored events once per connection they came through,
// with the connection's attributes, and the event's own when it is the only one.
func (c *committer) warn(msg string, evs []*store.InboxEvent, attrs ...slog.Attr) {
	type conn struct{ tenant, id string }
	var order []conn
	byConn := map[conn][]*store.InboxEvent{}
	for _, ev := range evs {
		k := conn{ev.Tenant, ev.ConnectionID}
		if byConn[k] == nil {
			order = append(order, k)
		}
		byConn[k] = append(byConn[k], ev)
	}
	for _, k := range order {
		evs := byConn[k]
		ctx := logctx.With(context.Background(), slog.String(logctx.Tenant, k.tenant), slog.String(logctx.Connection, k.id))
		if len(evs) == 1 {
			ctx = logctx.With(ctx, eventAttrs(evs[0])...)
		}
		c.logger.LogAttrs(ctx, slog.LevelWarn, msg, append([]slog.Attr{slog.Int("count", len(evs))}, attrs...)...)
	}
}

// shutdown stops taking events, stores those already queued, and waits for that.
func (c *committer) shutdown(ctx context.Context) error {
	c.once.Do(func() {
		c.mu.Lock()
		c.stopped = true
		c.mu.Unlock()
		close(c.stop)
	})
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
