package queue

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dataverse's service-protection limit on requests (reference/dataverse.md §4.6,
// §7.3): per user, over a sliding window of 300 s. A $batch or bulk request counts
// as one.
const (
	BudgetWindow = 5 * time.Minute
	BudgetLimit  = 6000
)

// Defaults for BudgetConfig, in one place.
const (
	DefaultBudgetFlushInterval = time.Second
	// DefaultBudgetRetention keeps a day of minutes, and an hour to spare, for
	// charts of the last 24 hours.
	DefaultBudgetRetention = 25 * time.Hour
)

// BudgetConfig configures a Budget; zero fields take the defaults above.
type BudgetConfig struct {
	// FlushInterval is how often counts gathered in memory go to Redis, in one
	// pipeline; default 1 s.
	FlushInterval time.Duration
	// Retention is how long a minute's counts stay in Redis; default 25 h.
	Retention time.Duration
	// Now is the clock that assigns requests to minutes; default time.Now.
	Now func() time.Time
	// Logger hears when Redis refuses the counts, and when it takes them again;
	// default discards.
	Logger *slog.Logger
}

// BudgetUse is a connection's Web API traffic over some minutes.
type BudgetUse struct {
	// Requests are the attempts Dataverse answered, whatever the answer; an
	// attempt that got no answer (a transport error) is not counted.
	Requests int
	// Throttled are the attempts answered 429 (service protection).
	Throttled int
	// RetryWait is how long requests waited for a 429's Retry-After.
	RetryWait time.Duration
}

func (u *BudgetUse) add(o BudgetUse) {
	u.Requests += o.Requests
	u.Throttled += o.Throttled
	u.RetryWait += o.RetryWait
}

// BudgetMinute is a connection's traffic in the minute that starts at At.
type BudgetMinute struct {
	At time.Time
	BudgetUse
}

// Budget counts the Web API requests each connection sends, per minute, in Redis,
// so that every instance of a fleet reads the same totals: what the connection's
// application user has spent of Dataverse's service-protection budget, as far as
// crmsync is concerned. Requests are counted in memory and added to Redis once a
// FlushInterval in one pipeline, not one round trip per request.
//
// Each connection has a hash per hour (Keys.Budget) with three fields per minute:
// "<unix minute>:r" requests, ":t" throttled and ":w" retry wait in ms. The hash
// tag is the connection, so a connection's hours share a cluster slot; a hash
// expires Retention after its last write.
type Budget struct {
	rdb  redis.UniversalClient
	keys Keys
	cfg  BudgetConfig

	mu      sync.Mutex
	pending map[budgetSlot]BudgetUse
	failing bool // the last flush failed; its counts are still pending

	stop context.CancelFunc
	done chan struct{}
}

// budgetSlot is one connection's minute (unix time / 60).
type budgetSlot struct {
	conn   string
	minute int64
}

// NewBudget returns a budget counter; Start flushes it periodically.
func NewBudget(rdb redis.UniversalClient, keys Keys, cfg BudgetConfig) *Budget {
	cfg.FlushInterval = cmp.Or(cfg.FlushInterval, DefaultBudgetFlushInterval)
	cfg.Retention = cmp.Or(cfg.Retention, DefaultBudgetRetention)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Budget{rdb: rdb, keys: keys, cfg: cfg, pending: map[budgetSlot]BudgetUse{}}
}

// BudgetRecorder counts one connection's Web API traffic; it is the connection
// client's dataverse.Observer.
type BudgetRecorder struct {
	b    *Budget
	conn string
}

// For returns the recorder of a connection's traffic.
func (b *Budget) For(connectionID string) *BudgetRecorder {
	return &BudgetRecorder{b: b, conn: connectionID}
}

// WebAPIRequest counts an attempt Dataverse answered with status; 0 (no answer)
// is not counted.
func (r *BudgetRecorder) WebAPIRequest(status int) {
	if status <= 0 {
		return
	}
	u := BudgetUse{Requests: 1}
	if status == 429 {
		u.Throttled = 1
	}
	r.b.add(r.conn, u)
}

// WebAPIRetryWait adds a wait that a 429's Retry-After imposed.
func (r *BudgetRecorder) WebAPIRetryWait(d time.Duration) {
	if d > 0 {
		r.b.add(r.conn, BudgetUse{RetryWait: d})
	}
}

func (b *Budget) add(conn string, u BudgetUse) {
	slot := budgetSlot{conn, b.cfg.Now().Unix() / 60}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.pending[slot]
	cur.add(u)
	b.pending[slot] = cur
}

// Start flushes the counts every FlushInterval until Stop.
func (b *Budget) Start(ctx context.Context) {
	ctx, b.stop = context.WithCancel(context.WithoutCancel(ctx))
	b.done = make(chan struct{})
	go func() {
		defer close(b.done)
		t := time.NewTicker(b.cfg.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_ = b.Flush(fctx)
				cancel()
			}
		}
	}()
}

// Stop ends the periodic flush and flushes what is left, within ctx.
func (b *Budget) Stop(ctx context.Context) error {
	if b.stop != nil {
		b.stop()
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return b.Flush(ctx)
}

// Flush adds the counts gathered since the last flush to Redis. When Redis
// refuses them they are kept for the next flush (those older than Retention are
// dropped), so an outage loses nothing but what a crash loses.
func (b *Budget) Flush(ctx context.Context) error {
	b.mu.Lock()
	batch := b.pending
	b.pending = map[budgetSlot]BudgetUse{}
	b.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		expire := map[string]bool{}
		for s, u := range batch {
			key := b.keys.Budget(s.conn, s.minute/60)
			f := strconv.FormatInt(s.minute, 10)
			if u.Requests > 0 {
				p.HIncrBy(ctx, key, f+":r", int64(u.Requests))
			}
			if u.Throttled > 0 {
				p.HIncrBy(ctx, key, f+":t", int64(u.Throttled))
			}
			if ms := u.RetryWait.Milliseconds(); ms > 0 {
				p.HIncrBy(ctx, key, f+":w", ms)
			}
			expire[key] = true
		}
		for key := range expire {
			p.Expire(ctx, key, b.cfg.Retention)
		}
		return nil
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		oldest := b.cfg.Now().Add(-b.cfg.Retention).Unix() / 60
		for s, u := range batch {
			if s.minute >= oldest {
				cur := b.pending[s]
				cur.add(u)
				b.pending[s] = cur
			}
		}
		if !b.failing {
			b.cfg.Logger.WarnContext(ctx, "Web API request counts not stored in Redis yet; kept in memory", slog.String("error", err.Error()))
		}
		b.failing = true
		return fmt.Errorf("flush Web API budget: %w", err)
	}
	if b.failing {
		b.cfg.Logger.InfoContext(ctx, "Web API request counts stored in Redis again")
	}
	b.failing = false
	return nil
}

// Windows answers each connection's use of the current window: the sum of its
// last five minutes, this one included. That stands for Dataverse's sliding
// window of 300 s: it covers between 240 and 300 s, depending on how far the
// current minute is, and lags the requests by up to a FlushInterval.
func (b *Budget) Windows(ctx context.Context, connectionIDs []string) (map[string]BudgetUse, error) {
	now := b.minute(b.cfg.Now())
	from := now - int64(BudgetWindow/time.Minute) + 1
	got, err := b.read(ctx, connectionIDs, from, now)
	if err != nil {
		return nil, err
	}
	out := make(map[string]BudgetUse, len(connectionIDs))
	for _, id := range connectionIDs {
		var sum BudgetUse
		for _, u := range got[id] {
			sum.add(u)
		}
		out[id] = sum
	}
	return out, nil
}

// Minutes answers a connection's use per minute from the minute of since to the
// current one, oldest first, one entry per minute (empty ones included). since is
// held to Retention.
func (b *Budget) Minutes(ctx context.Context, connectionID string, since time.Time) ([]BudgetMinute, error) {
	now := b.cfg.Now()
	last := b.minute(now)
	first := max(b.minute(since), b.minute(now.Add(-b.cfg.Retention))+1)
	got, err := b.read(ctx, []string{connectionID}, first, last)
	if err != nil {
		return nil, err
	}
	out := make([]BudgetMinute, 0, max(last-first+1, 0))
	for m := first; m <= last; m++ {
		out = append(out, BudgetMinute{At: time.Unix(m*60, 0).UTC(), BudgetUse: got[connectionID][m]})
	}
	return out, nil
}

func (b *Budget) minute(t time.Time) int64 { return t.Unix() / 60 }

// read loads the minutes first…last of each connection, in one pipeline of an
// HGETALL per connection and hour.
func (b *Budget) read(ctx context.Context, conns []string, first, last int64) (map[string]map[int64]BudgetUse, error) {
	type hour struct {
		conn string
		cmd  *redis.MapStringStringCmd
	}
	var hours []hour
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range conns {
			for h := first / 60; h <= last/60; h++ {
				hours = append(hours, hour{c, p.HGetAll(ctx, b.keys.Budget(c, h))})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read Web API budget: %w", err)
	}
	out := make(map[string]map[int64]BudgetUse, len(conns))
	for _, h := range hours {
		for field, v := range h.cmd.Val() {
			ms, kind, _ := strings.Cut(field, ":")
			m, err1 := strconv.ParseInt(ms, 10, 64)
			n, err2 := strconv.ParseInt(v, 10, 64)
			if err1 != nil || err2 != nil || m < first || m > last {
				continue
			}
			if out[h.conn] == nil {
				out[h.conn] = map[int64]BudgetUse{}
			}
			u := out[h.conn][m]
			switch kind {
			case "r":
				u.Requests += int(n)
			case "t":
				u.Throttled += int(n)
			case "w":
				u.RetryWait += time.Duration(n) * time.Millisecond
			}
			out[h.conn][m] = u
		}
	}
	return out, nil
}
