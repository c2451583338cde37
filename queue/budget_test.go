package queue_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"crmsync/queue"
	"crmsync/queue/queuetest"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// roundTrips counts the commands and pipelines a client sends (but a new
// connection's handshake), and can make the next pipelines fail as if Redis were
// away.
type roundTrips struct {
	commands, pipelines atomic.Int64
	failPipelines       atomic.Int64
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			r.commands.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if r.failPipelines.Add(-1) >= 0 {
			return errors.New("redis is away")
		}
		r.failPipelines.Store(0)
		if !handshake(cmds[0]) {
			r.pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}

// handshake tells the commands go-redis sends on a new connection.
func handshake(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

type budgetBundle struct {
	rdb   redis.UniversalClient
	keys  queue.Keys
	clock *fakeClock
	trips *roundTrips
}

func setupBudget(t *testing.T) *budgetBundle {
	t.Helper()
	r, keys := queuetest.Open(t)
	opts, err := redis.ParseURL(queuetest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	counted := redis.NewClient(opts)
	t.Cleanup(func() { counted.Close() })
	trips := &roundTrips{}
	counted.AddHook(trips)
	_ = r // keeps the prefix's keys deleted when the test ends
	// 10:02:30 on a day: the window holds 09:58 … 10:02.
	clock := newFakeClock(time.Date(2026, 11, 2, 10, 2, 30, 0, time.UTC))
	return &budgetBundle{rdb: counted, keys: keys, clock: clock, trips: trips}
}

func (b *budgetBundle) budget() *queue.Budget {
	return queue.NewBudget(b.rdb, b.keys, queue.BudgetConfig{Now: b.clock.Now})
}

// window reads one connection's use of the current window.
func window(t *testing.T, bu *queue.Budget, conn string) queue.BudgetUse {
	t.Helper()
	w, err := bu.Windows(context.Background(), []string{conn})
	if err != nil {
		t.Fatal(err)
	}
	return w[conn]
}

func record(rec *queue.BudgetRecorder, statuses ...int) {
	for _, s := range statuses {
		rec.WebAPIRequest(s)
	}
}

// TestBudgetCountsPerConnectionAcrossTheFleet: two instances count requests of the
// same connection into one total; throttled answers and their waits are counted
// apart; unanswered attempts are not; another connection has its own count.
func TestBudgetCountsPerConnectionAcrossTheFleet(t *testing.T) {
	t.Parallel()
	b := setupBudget(t)
	ctx := context.Background()
	one, two := b.budget(), b.budget()

	record(one.For("conn-a"), 200, 204, 429, 0, 500)
	one.For("conn-a").WebAPIRetryWait(2 * time.Second)
	record(two.For("conn-a"), 201, 429)
	two.For("conn-a").WebAPIRetryWait(1500 * time.Millisecond)
	record(two.For("conn-b"), 200)
	for _, bu := range []*queue.Budget{one, two} {
		if err := bu.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got, err := one.Windows(ctx, []string{"conn-a", "conn-b", "conn-c"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]queue.BudgetUse{
		"conn-a": {Requests: 6, Throttled: 2, RetryWait: 3500 * time.Millisecond},
		"conn-b": {Requests: 1},
		"conn-c": {},
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("windows = %+v, want %+v", got, want)
	}
}

// TestBudgetWindowIsTheLastFiveMinutes: requests of the current minute and the
// four before it count; older ones only show in the per-minute series, which is
// dense and oldest first.
func TestBudgetWindowIsTheLastFiveMinutes(t *testing.T) {
	t.Parallel()
	b := setupBudget(t)
	ctx := context.Background()
	bu := b.budget()
	rec := bu.For("conn-a")
	start := b.clock.Now() // 10:02:30
	// 10:02, 10:03, …, 10:08: 1, 2, … 7 requests.
	for i := range 7 {
		for range i + 1 {
			rec.WebAPIRequest(200)
		}
		if i < 6 {
			b.clock.Advance(time.Minute)
		}
	}
	if err := bu.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Now 10:08:30: the window is 10:04 … 10:08, which holds 3+4+5+6+7.
	if n := window(t, bu, "conn-a").Requests; n != 25 {
		t.Errorf("window holds %d requests, want 25", n)
	}
	series, err := bu.Minutes(ctx, "conn-a", start.Add(-2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for i, m := range series {
		got = append(got, m.Requests)
		if want := time.Date(2026, 11, 2, 10, i, 0, 0, time.UTC); !m.At.Equal(want) {
			t.Errorf("minute %d starts at %s, want %s", i, m.At, want)
		}
	}
	if want := []int{0, 0, 1, 2, 3, 4, 5, 6, 7}; !reflect.DeepEqual(want, got) {
		t.Errorf("series = %v, want %v", got, want)
	}
}

// TestBudgetSeriesCrossesHours: a series of several hours reads every hour's
// hash, and a since before the retention is held to it.
func TestBudgetSeriesCrossesHours(t *testing.T) {
	t.Parallel()
	b := setupBudget(t)
	ctx := context.Background()
	bu := queue.NewBudget(b.rdb, b.keys, queue.BudgetConfig{Now: b.clock.Now, Retention: 3 * time.Hour})
	rec := bu.For("conn-a")
	for range 3 { // 10:02, 11:02, 12:02
		rec.WebAPIRequest(200)
		b.clock.Advance(time.Hour)
	}
	b.clock.Advance(-time.Hour)
	if err := bu.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	series, err := bu.Minutes(ctx, "conn-a", b.clock.Now().Add(-30*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 180 || !series[0].At.Equal(time.Date(2026, 11, 2, 9, 3, 0, 0, time.UTC)) {
		t.Fatalf("series of %d minutes from %s, want 180 from 09:03", len(series), series[0].At)
	}
	total := 0
	for _, m := range series {
		total += m.Requests
	}
	if total != 3 {
		t.Errorf("series holds %d requests, want 3", total)
	}
}

// TestBudgetFlushIsOnePipeline: a thousand requests of several connections and
// minutes reach Redis in one round trip, into keys that carry the connection as
// their hash tag and expire after the retention.
func TestBudgetFlushIsOnePipeline(t *testing.T) {
	t.Parallel()
	b := setupBudget(t)
	ctx := context.Background()
	bu := b.budget()
	for i := range 1000 {
		bu.For([]string{"conn-a", "conn-b"}[i%2]).WebAPIRequest(200)
		if i == 500 {
			b.clock.Advance(time.Hour)
		}
	}
	before := b.trips.commands.Load() + b.trips.pipelines.Load()
	if err := bu.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.trips.commands.Load() + b.trips.pipelines.Load() - before; n != 1 {
		t.Errorf("the flush took %d round trips, want 1", n)
	}
	keys, err := b.rdb.Keys(ctx, b.keys.Prefix()+":budget:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Errorf("keys %v, want one per connection and hour", keys)
	}
	for _, k := range keys {
		if !strings.Contains(k, ":budget:{conn-") {
			t.Errorf("key %s lacks the connection's hash tag", k)
		}
		ttl, err := b.rdb.TTL(ctx, k).Result()
		if err != nil || ttl <= 24*time.Hour || ttl > queue.DefaultBudgetRetention {
			t.Errorf("%s expires in %s (%v), want about %s", k, ttl, err, queue.DefaultBudgetRetention)
		}
	}
}

// TestBudgetKeepsCountsWhileRedisIsAway: a failed flush keeps its counts for the
// next one, which adds them once.
func TestBudgetKeepsCountsWhileRedisIsAway(t *testing.T) {
	t.Parallel()
	b := setupBudget(t)
	ctx := context.Background()
	bu := b.budget()
	record(bu.For("conn-a"), 200, 200)
	b.trips.failPipelines.Store(2)
	for range 2 {
		if err := bu.Flush(ctx); err == nil {
			t.Fatal("a flush with Redis away did not fail")
		}
	}
	record(bu.For("conn-a"), 429)
	if err := bu.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := window(t, bu, "conn-a"), (queue.BudgetUse{Requests: 3, Throttled: 1}); got != want {
		t.Errorf("after the outage: %+v, want %+v", got, want)
	}
}

// TestBudgetStartFlushesUntilStop: recorders used from many goroutines while the
// periodic flush runs lose nothing, and Stop flushes the rest.
func TestBudgetStartFlushesUntilStop(t *testing.T) {
	t.Parallel()
	b := setupBudget(t)
	ctx := context.Background()
	bu := queue.NewBudget(b.rdb, b.keys, queue.BudgetConfig{Now: b.clock.Now, FlushInterval: 5 * time.Millisecond})
	bu.Start(ctx)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			rec := bu.For("conn-a")
			for range 250 {
				rec.WebAPIRequest(200)
				time.Sleep(20 * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if err := bu.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := window(t, bu, "conn-a").Requests; n != 2000 {
		t.Errorf("counted %d requests, want 2000", n)
	}
	if b.trips.pipelines.Load() < 2 {
		t.Errorf("%d flushes, want the periodic ones and the last", b.trips.pipelines.Load())
	}
}
