package engine

import (
	"context"
	"testing"
	"time"

	"crmsync/queue"
	"crmsync/queue/queuetest"
)

// TestSweepRunsOncePerIntervalAcrossTheFleet: two processes share the sweep's
// leases; of the two that look for due connections, only the first sweeps, and the
// delta links carry its clock.
func TestSweepRunsOncePerIntervalAcrossTheFleet(t *testing.T) {
	t.Parallel()
	r, dv := newCRMRules(t)
	if _, err := dv.Create("contacts", map[string]any{"emailaddress1": "a@example.de"}); err != nil {
		t.Fatal(err)
	}
	rdb, keys := queuetest.Open(t)
	jobs := queue.NewJobs(rdb.Client, keys, time.Hour)
	stream := queue.NewEventStream(rdb.Client, keys, queue.DefaultPartitions)
	sweeper := func(owner string, at time.Time) *Sweeper {
		s, err := NewSweeper(SweepConfig{Store: r.st, Publisher: stream, Leases: jobs, CRM: &CRMClients{Secret: r.st.CRMClientSecret},
			Interval: time.Hour, Owner: owner, Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first, second := r.at(0), r.at(1)
	ctx := context.Background()
	sweeper("first", first).sweepDue(ctx)
	sweeper("second", second).sweepDue(ctx)
	for _, table := range sweptTables {
		d, err := r.st.DeltaLink(ctx, r.conn.ID, table)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if !d.SweptAt.Equal(first) || d.Link == "" {
			t.Errorf("%s: swept at %s with link %q, want only the first sweep (%s)", table, d.SweptAt, d.Link, first)
		}
	}
}
