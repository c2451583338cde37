package engine_test

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/engine"
	"crmsync/queue"
	"crmsync/queue/queuetest"
	"crmsync/store"
	"crmsync/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

type bundle struct {
	store  *store.Store
	stream *queue.Stream
	leases *queue.Leases
	conn   *store.Connection
	group  *store.Group
}

func setup(t *testing.T) *bundle {
	t.Helper()
	st := storetest.Open(t)
	r, keys := queuetest.Open(t)
	ctx := context.Background()
	conn, err := st.CreateConnection(ctx, "acme", store.ConnectionInput{
		Name: "CRM", OrganizationURL: "https://acme.crm4.dynamics.com", WebhookAuthMode: store.WebhookKey,
		WebhookAuthValue: "0123456789abcdef-secret", RecipientType: store.RecipientContact,
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := st.CreateGroup(ctx, "acme", store.GroupInput{Name: "News", ConnectionID: conn.ID, CRMSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpsertSubscribers(ctx, "acme", g.ID, []store.SubscriberInput{{Email: "erika.mustermann@example.de"}}); err != nil {
		t.Fatal(err)
	}
	return &bundle{store: st, stream: queue.NewEventStream(r.Client, keys, 4), leases: queue.NewLeases(r.Client, keys, 2*time.Second), conn: conn, group: g}
}

func (b *bundle) start(t *testing.T, cfg engine.Config) {
	t.Helper()
	cfg.Store, cfg.Stream, cfg.Leases, cfg.LeaseTTL = b.store, b.stream, b.leases, 2*time.Second
	cfg.Block = 50 * time.Millisecond
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})))
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// store adds a fixture as an inbox event; publish says whether it reaches the stream.
func (b *bundle) addEvent(t *testing.T, id, fixture string, publish bool) {
	t.Helper()
	body, err := os.ReadFile("../testdata/webhooks/" + fixture)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := dataverse.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	ev := &store.InboxEvent{
		ID: id, Tenant: b.conn.Tenant, ConnectionID: b.conn.ID, Source: "dataverse",
		Message: ec.MessageName, Entity: ec.PrimaryEntityName, RecordID: ec.PrimaryEntityID, Stage: ec.Stage,
		Body: string(body), ReceivedAt: time.Now().Add(-time.Minute),
	}
	if _, err := b.store.AddInboxEvents(context.Background(), []*store.InboxEvent{ev}); err != nil {
		t.Fatal(err)
	}
	if publish {
		if err := b.stream.Publish(context.Background(), queue.Entry{EventID: id, Key: ev.PartitionKey()}); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *bundle) waitStatus(t *testing.T, id string, want store.InboxStatus) *store.InboxEvent {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ev, err := b.store.InboxEvent(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Status == want {
			return ev
		}
		time.Sleep(20 * time.Millisecond)
	}
	ev, _ := b.store.InboxEvent(context.Background(), id)
	t.Fatalf("event %s is %+v, want status %s", id, ev, want)
	return nil
}

func (b *bundle) subscriber(t *testing.T) *store.Subscriber {
	t.Helper()
	sub, err := b.store.SubscriberByEmail(context.Background(), "acme", b.group.ID, "erika.mustermann@example.de")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestOutOfOrderEventsConverge delivers the Update before the older Create: the
// result is the same as in order, because a change older than the applied one is skipped.
func TestOutOfOrderEventsConverge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, engine.Config{})
	b.addEvent(t, "update", "contact_update.json", true)
	b.waitStatus(t, "update", store.InboxProcessed)
	// The Update carries its e-mail only in the pre-image, which is enough to link.
	if sub := b.subscriber(t); sub.Fields["lastName"] != "Musterfrau" || sub.CRMRecord == nil {
		t.Fatalf("after update: %+v", sub)
	}
	b.addEvent(t, "create", "contact_create.json", true)
	b.waitStatus(t, "create", store.InboxProcessed)
	sub := b.subscriber(t)
	if sub.Fields["lastName"] != "Musterfrau" || sub.Fields["firstName"] != "Erika" {
		t.Errorf("the older Create overwrote the newer Update: %v", sub.Fields)
	}
}

func TestPermanentFailureFailsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, engine.Config{})
	b.addEvent(t, "bad", "contact_create.json", false)
	// Corrupt the stored body: a decoding failure cannot be fixed by retrying.
	ev, _ := b.store.InboxEvent(context.Background(), "bad")
	ev.ID = "bad2"
	ev.Body = `{"MessageName":1}`
	if _, err := b.store.AddInboxEvents(context.Background(), []*store.InboxEvent{ev}); err != nil {
		t.Fatal(err)
	}
	b.stream.Publish(context.Background(), queue.Entry{EventID: "bad2", Key: ev.PartitionKey()})
	got := b.waitStatus(t, "bad2", store.InboxFailed)
	if got.Attempts != 1 || !strings.Contains(got.LastError, "MessageName") {
		t.Errorf("failed event = %+v", got)
	}
}

func TestTransientFailureIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var calls atomic.Int32
	reg := engine.NewRegistry()
	reg.Handle(engine.StepKey{Message: "Create", Entity: "contact", Stage: 40}, engine.StepFunc(func(ctx context.Context, ev *engine.Event) error {
		if calls.Add(1) < 3 {
			return errors.New("CRM busy")
		}
		return nil
	}))
	b.start(t, engine.Config{Registry: reg, ClaimIdle: 100 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	b.addEvent(t, "flaky", "contact_create.json", true)
	got := b.waitStatus(t, "flaky", store.InboxProcessed)
	if got.Attempts != 3 || calls.Load() != 3 {
		t.Errorf("event = %+v after %d calls, want processed on the 3rd attempt", got, calls.Load())
	}
}

func TestRetriesAreBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := engine.NewRegistry()
	reg.Handle(engine.StepKey{Message: "Create", Entity: "contact", Stage: 40}, engine.StepFunc(func(ctx context.Context, ev *engine.Event) error {
		return errors.New("always failing")
	}))
	b.start(t, engine.Config{Registry: reg, MaxAttempts: 2, ClaimIdle: 100 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	b.addEvent(t, "doomed", "contact_create.json", true)
	got := b.waitStatus(t, "doomed", store.InboxFailed)
	if got.Attempts != 2 || !strings.Contains(got.LastError, "always failing") {
		t.Errorf("event = %+v", got)
	}
}

// TestLostPublishIsSwept stores an event that never reached the stream (a crash
// between the inbox write and the publish, or Redis losing its data).
func TestLostPublishIsSwept(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addEvent(t, "lost", "contact_create.json", false)
	b.start(t, engine.Config{SweepInterval: 50 * time.Millisecond, ClaimIdle: 200 * time.Millisecond})
	b.waitStatus(t, "lost", store.InboxProcessed)
	if sub := b.subscriber(t); sub.CRMRecord == nil {
		t.Errorf("swept event was not applied: %+v", sub)
	}
}
