package engine_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
	"crmsync/engine"
	"crmsync/queue"
	"crmsync/queue/queuetest"
	"crmsync/store"
	"crmsync/store/storetest"
)

// crmBundle is a store, a stream and a CRM-synced group whose connection writes
// to an emulator that counts the requests.
type crmBundle struct {
	*bundle
	crm     *emulator.Emulator
	counter *emulator.RequestCounter
	user    *dataverse.Client
	clients *engine.CRMClients
}

func crmSetup(tb testing.TB) *crmBundle {
	tb.Helper()
	ctx := context.Background()
	dv := emulator.New(emulator.Config{LimitRequests: -1, LimitExecSeconds: -1})
	counter := emulator.NewRequestCounter(dv)
	srv := httptest.NewServer(counter)
	tb.Cleanup(func() {
		srv.Close()
		_ = dv.Close()
	})
	user, err := dataverse.NewClient(dataverse.Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultUserClientID, ClientSecret: emulator.DefaultUserClientSecret})
	if err != nil {
		tb.Fatal(err)
	}
	st := storetest.Open(tb)
	r, keys := queuetest.Open(tb)
	owner := emulator.AppUserDomainName
	created, err := st.CreateConnection(ctx, "acme", store.ConnectionInput{
		Name: "CRM", OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret, OwnerLogin: &owner,
		WebhookAuthMode: store.WebhookKey, WebhookAuthValue: "0123456789abcdef-secret", RecipientType: store.RecipientContact,
		ReactivateRecords: true, Bidirectional: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := st.ConnectionForWebhook(ctx, created.ID)
	if err != nil {
		tb.Fatal(err)
	}
	g, err := st.CreateGroup(ctx, "acme", store.GroupInput{Name: "News", ConnectionID: conn.ID, CRMSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	return &crmBundle{
		bundle: &bundle{store: st, stream: queue.NewEventStream(r.Client, keys, queue.DefaultPartitions), leases: queue.NewLeases(r.Client, keys, 2*time.Second), conn: conn, group: g},
		crm:    dv, counter: counter, user: user, clients: &engine.CRMClients{Secret: st.CRMClientSecret},
	}
}

// requests is how many Web API requests crmsync's application user sent so far.
func (b *crmBundle) requests() int64 { return b.counter.Requests(b.crm.ApplicationUserID()) }

// subscribers adds subscribers to the group and returns their ids in order.
func (b *crmBundle) subscribers(tb testing.TB, rows []store.SubscriberInput) []string {
	tb.Helper()
	res, err := b.store.UpsertSubscribers(context.Background(), "acme", b.group.ID, rows)
	if err != nil {
		tb.Fatal(err)
	}
	if len(res.Rejected) > 0 {
		tb.Fatalf("rejected: %+v", res.Rejected)
	}
	return res.Changed
}

// events are SubscriberChanged events of subscribers, as the engine hands them to
// its steps.
func (b *crmBundle) events(ids []string) []*engine.Event {
	evs := make([]*engine.Event, len(ids))
	for i, id := range ids {
		evs[i] = &engine.Event{
			Inbox: &store.InboxEvent{ID: "ev-" + id, Tenant: "acme", ConnectionID: b.conn.ID, Source: engine.SourceEMS, RecordID: id},
			Context: &dataverse.ExecutionContext{MessageName: engine.MessageSubscriberChanged, PrimaryEntityName: engine.EntitySubscriber,
				PrimaryEntityID: id, Stage: dataverse.StagePostOperation},
			Connection: b.conn,
		}
	}
	return evs
}

// probeStep is a batch step that records its batches and fails the events whose
// record says so: "bad" for good, "later" for now; "warn" succeeds with a warning.
type probeStep struct {
	mu      sync.Mutex
	batches [][]string
}

func (p *probeStep) Apply(ctx context.Context, ev *engine.Event) error {
	return p.ApplyBatch(ctx, []*engine.Event{ev})[0]
}

func (p *probeStep) ApplyBatch(_ context.Context, evs []*engine.Event) []error {
	errs := make([]error, len(evs))
	var ids []string
	for i, ev := range evs {
		ids = append(ids, ev.Context.PrimaryEntityID)
		switch ev.Context.PrimaryEntityID {
		case "bad":
			errs[i] = engine.Permanent(errors.New("the CRM refused this row"))
		case "later":
			errs[i] = errors.New("the CRM is busy")
		case "warn":
			ev.Warn("applied in part")
		}
	}
	p.mu.Lock()
	p.batches = append(p.batches, ids)
	p.mu.Unlock()
	return errs
}

// TestBatchedEventsKeepTheirOwnOutcomes: the events of one read go to a batch step
// together, and each still gets its own outcome — processed (with its warning),
// failed with its reason, or pending for a retry — and only the final ones are
// acknowledged.
func TestBatchedEventsKeepTheirOwnOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	probe := &probeStep{}
	reg := engine.NewRegistry()
	reg.Handle(engine.StepKey{Message: "Probe", Entity: "probe", Stage: dataverse.StagePostOperation}, probe)
	records := []string{"ok", "warn", "bad", "later"}
	evs := make([]*store.InboxEvent, len(records))
	entries := make([]queue.Entry, len(records))
	for i, r := range records {
		evs[i] = &store.InboxEvent{ID: "probe-" + r, Tenant: "acme", ConnectionID: b.conn.ID, Source: engine.SourceEMS,
			Message: "Probe", Entity: "probe", RecordID: r, Stage: dataverse.StagePostOperation, Body: "{}", ReceivedAt: time.Now()}
		entries[i] = queue.Entry{EventID: evs[i].ID, Key: evs[i].PartitionKey()}
	}
	if _, err := b.store.AddInboxEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := b.stream.Publish(ctx, entries...); err != nil {
		t.Fatal(err)
	}
	b.start(t, engine.Config{Registry: reg})

	b.waitStatus(t, "probe-ok", store.InboxProcessed)
	if got := b.waitStatus(t, "probe-warn", store.InboxProcessed); got.LastError != "applied in part" {
		t.Errorf("warned event: %+v", got)
	}
	if got := b.waitStatus(t, "probe-bad", store.InboxFailed); !strings.Contains(got.LastError, "the CRM refused this row") || got.Attempts != 1 {
		t.Errorf("refused event: %+v", got)
	}
	waitUntil(t, func() bool {
		ev, err := b.store.InboxEvent(ctx, "probe-later")
		return err == nil && ev.Attempts == 1 && ev.Status == store.InboxPending && strings.Contains(ev.LastError, "the CRM is busy")
	})
	// The three final outcomes are acknowledged (and removed); the retry waits.
	waitUntil(t, func() bool { n, err := b.stream.Len(ctx); return err == nil && n == 1 })

	probe.mu.Lock()
	defer probe.mu.Unlock()
	if len(probe.batches) != 1 {
		t.Fatalf("batches %v, want the four events in one", probe.batches)
	}
	got := slices.Sorted(slices.Values(probe.batches[0]))
	if want := []string{"bad", "later", "ok", "warn"}; !slices.Equal(got, want) {
		t.Errorf("batch %v, want %v", got, want)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("condition not met in time")
}

// TestRefusedBulkRowIsSentAgainAlone: a CreateMultiple is atomic, so one bad row
// refuses it; its rows are sent again as one $batch of single operations, so only
// the bad row's subscriber fails, and the next request carries fewer rows.
func TestRefusedBulkRowIsSentAgainAlone(t *testing.T) {
	t.Parallel()
	b := crmSetup(t)
	ctx := context.Background()
	rows := make([]store.SubscriberInput, 60)
	for i := range rows {
		rows[i] = store.SubscriberInput{Email: fmt.Sprintf("row%02d@example.de", i), Fields: map[string]any{"lastName": fmt.Sprintf("Row %d", i)}}
	}
	rows[3].Fields["lastName"] = strings.Repeat("x", 51)
	ids := b.subscribers(t, rows)
	w := &engine.OutboxWriter{Store: b.store, Clients: b.clients, MaxBulkRows: 40}

	app := b.crm.ApplicationUserID()
	batches, contacts := b.counter.RequestsTo(app, "$batch"), b.counter.RequestsTo(app, "contacts")
	errs := w.ApplyBatch(ctx, b.events(ids))
	// One $batch of queries; a CreateMultiple of 40 refused, its rows again in one
	// $batch; then the other 20 in one CreateMultiple.
	if n, m := b.counter.RequestsTo(app, "$batch")-batches, b.counter.RequestsTo(app, "contacts")-contacts; n != 2 || m != 2 {
		t.Errorf("%d $batch and %d contacts requests, want 2 and 2", n, m)
	}
	for i, err := range errs {
		var p *engine.PermanentError
		switch {
		case i == 3 && (!errors.As(err, &p) || !strings.Contains(err.Error(), "exceeded the maximum allowed length")):
			t.Errorf("the bad row's event: %v, want a permanent failure with the CRM's reason", err)
		case i != 3 && err != nil:
			t.Errorf("event %d: %v", i, err)
		}
	}
	for i, id := range ids {
		sub, err := b.store.Subscriber(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		if (sub.CRMRecord != nil) != (i != 3) {
			t.Errorf("subscriber %d linked to %+v", i, sub.CRMRecord)
		}
	}
}

// TestPendingDoubleOptInIsNotSent: a subscriber who has not confirmed the double
// opt-in does not reach the CRM; the event succeeds with that reason.
func TestPendingDoubleOptInIsNotSent(t *testing.T) {
	t.Parallel()
	b := crmSetup(t)
	ctx := context.Background()
	ids := b.subscribers(t, []store.SubscriberInput{{Email: "pending@example.de"}})
	sub, err := b.store.Subscriber(ctx, "acme", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	sub.DoubleOptInStatus = store.OptInPending
	if err := b.store.SaveSubscriber(ctx, sub); err != nil {
		t.Fatal(err)
	}
	b.start(t, engine.Config{CRM: b.clients})
	outbox := &engine.Outbox{Store: b.store, Publisher: b.stream}
	if err := outbox.SubscribersChanged(ctx, "acme", b.group.ID, ids); err != nil {
		t.Fatal(err)
	}
	var ev *store.InboxEvent
	waitUntil(t, func() bool {
		evs, _, err := b.store.SyncEventsPage(ctx, "acme", store.SyncEventFilter{RecordID: ids[0]}, store.EventPosition{}, 1)
		if err != nil || len(evs) == 0 {
			return false
		}
		ev = evs[0]
		return ev.Status == store.InboxProcessed
	})
	if !strings.Contains(ev.LastError, "has not confirmed the double opt-in") {
		t.Errorf("event %+v, want the reason", ev)
	}
	if n := b.requests(); n != 0 {
		t.Errorf("%d requests to the CRM, want none", n)
	}
}

// TestComplaintSetsDoNotBulkEmail: the hook for complaints and "unsubscribe from
// all" sets donotbulkemail on each record with one bulk request per table; a
// record the CRM does not have fails on its own.
func TestComplaintSetsDoNotBulkEmail(t *testing.T) {
	t.Parallel()
	b := crmSetup(t)
	ctx := context.Background()
	contact, err := b.user.Create(ctx, "contacts", map[string]any{"lastname": "Complainer", "emailaddress1": "c@example.de"})
	if err != nil {
		t.Fatal(err)
	}
	lead, err := b.user.Create(ctx, "leads", map[string]any{"subject": "Fair", "lastname": "Lead", "emailaddress1": "l@example.de"})
	if err != nil {
		t.Fatal(err)
	}
	missing := "00000000-0000-4000-8000-00000000abcd"
	w := &engine.OutboxWriter{Store: b.store, Clients: b.clients}
	before := b.requests()
	errs := w.OptOutOfBulkEmail(ctx, b.conn, []store.CRMRecordRef{
		{Entity: store.RecipientContact, ID: contact}, {Entity: store.RecipientLead, ID: lead}, {Entity: store.RecipientContact, ID: missing},
	})
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], dataverse.ErrNotFound) {
		t.Errorf("outcomes %v, want the missing contact's failure only", errs)
	}
	// contacts: an UpdateMultiple refused for the missing row, then a $batch; leads: one UpdateMultiple.
	if n := b.requests() - before; n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	for set, id := range map[string]string{"contacts": contact, "leads": lead} {
		row, err := b.user.Get(ctx, set, id, []string{"donotbulkemail"})
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := row.Bool("donotbulkemail"); !v {
			t.Errorf("%s %s: donotbulkemail is not set: %v", set, id, row)
		}
	}
}
