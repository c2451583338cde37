package engine

import (
	"context"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
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

// TestSweepSkipsWhatCrmsyncCreatedUntouched: a record crmsync created and nobody
// changed since holds what the eMS sent, so the sweep does not queue it; one a
// person changed after crmsync created it, and one a person created, it does.
func TestSweepSkipsWhatCrmsyncCreatedUntouched(t *testing.T) {
	t.Parallel()
	r, dv := newCRMRules(t)
	ctx := context.Background()
	login := func(id, secret string) *dataverse.Client {
		c, err := dataverse.NewClient(dataverse.Config{OrganizationURL: dv.URL(), TokenURL: dv.URL() + "/t/oauth2/v2.0/token", ClientID: id, ClientSecret: secret})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	app, person := login(emulator.DefaultClientID, emulator.DefaultClientSecret), login(emulator.DefaultUserClientID, emulator.DefaultUserClientSecret)
	create := func(c *dataverse.Client, email string) string {
		id, err := c.Create(ctx, "contacts", map[string]any{"lastname": "X", "emailaddress1": email})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	create(app, "own@example.de")
	touched := create(app, "touched@example.de")
	if err := person.Update(ctx, "contacts", touched, map[string]any{"lastname": "Changed"}); err != nil {
		t.Fatal(err)
	}
	create(person, "person@example.de")

	rdb, keys := queuetest.Open(t)
	s, err := NewSweeper(SweepConfig{Store: r.st, Publisher: queue.NewEventStream(rdb.Client, keys, queue.DefaultPartitions),
		Leases: queue.NewJobs(rdb.Client, keys, time.Hour), CRM: &CRMClients{Secret: r.st.CRMClientSecret}, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.SweepConnection(ctx, r.conn)
	if err != nil || res.Read != 2 || res.Queued != 2 {
		t.Errorf("sweep = %+v, %v; want the two rows a person touched", res, err)
	}
}
