package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/engine"
	"crmsync/store"
)

// BenchmarkSyncNewSubscribersToCRM queues 10,000 new subscribers of a CRM-synced
// group for the CRM (the emulator, over HTTP) and waits until every event has its
// outcome, through the real engine, stream and store. "batched" is the engine as
// it runs; "one-by-one" applies each event on its own with one row per request, as
// before batching.
func BenchmarkSyncNewSubscribersToCRM(b *testing.B) {
	n := benchSubscribers()
	for _, mode := range []struct {
		name     string
		register func(*crmBundle, *engine.Config)
	}{
		{"batched", func(cb *crmBundle, cfg *engine.Config) { cfg.CRM = cb.clients }},
		{"one-by-one", func(cb *crmBundle, cfg *engine.Config) {
			w := &engine.OutboxWriter{Store: cb.store, Clients: cb.clients, MaxBulkRows: 1}
			cfg.Registry = engine.NewRegistry()
			cfg.Registry.Handle(engine.StepKey{Message: engine.MessageSubscriberChanged, Entity: engine.EntitySubscriber, Stage: dataverse.StagePostOperation},
				engine.StepFunc(w.Apply))
		}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			cb := crmSetup(b)
			ctx := context.Background()
			cfg := engine.Config{Store: cb.store, Stream: cb.stream, Leases: cb.leases, LeaseTTL: 2 * time.Second,
				Block: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
			mode.register(cb, &cfg)
			eng, err := engine.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := eng.Start(ctx); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = eng.Stop(context.Background()) })
			outbox := &engine.Outbox{Store: cb.store, Publisher: cb.stream}

			var elapsed time.Duration
			var requests int64
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				g, err := cb.store.CreateGroup(ctx, "acme", store.GroupInput{Name: fmt.Sprintf("Import %d", i), ConnectionID: cb.conn.ID, CRMSync: true})
				if err != nil {
					b.Fatal(err)
				}
				rows := make([]store.SubscriberInput, n)
				for j := range rows {
					rows[j] = store.SubscriberInput{Email: fmt.Sprintf("b%d-%05d@example.de", i, j), Fields: map[string]any{"lastName": fmt.Sprintf("Bench %d", j)}}
				}
				res, err := cb.store.UpsertSubscribers(ctx, "acme", g.ID, rows)
				if err != nil {
					b.Fatal(err)
				}
				before, start := cb.requests(), time.Now()
				b.StartTimer()

				if err := outbox.SubscribersChanged(ctx, "acme", g.ID, res.Changed); err != nil {
					b.Fatal(err)
				}
				// An entry leaves the stream once its event's outcome is stored.
				for {
					left, err := cb.stream.Len(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if left == 0 {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				elapsed += time.Since(start)
				requests += cb.requests() - before
			}
			if c, err := cb.store.CountInbox(ctx); err != nil || c.Failed > 0 || c.Pending > 0 {
				b.Fatalf("inbox %+v (%v): every event should be processed", c, err)
			}
			records := float64(n * b.N)
			b.ReportMetric(records/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(requests)*1000/records, "requests/1000records")
		})
	}
}

// benchSubscribers is how many subscribers one round syncs: 10,000 unless
// CRMSYNC_BENCH_SUBSCRIBERS says otherwise (for profiling).
func benchSubscribers() int {
	if n, err := strconv.Atoi(os.Getenv("CRMSYNC_BENCH_SUBSCRIBERS")); err == nil && n > 0 {
		return n
	}
	return 10000
}
