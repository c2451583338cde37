package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/engine"
	"crmsync/logctx"
	"crmsync/logctx/logctxtest"
	"crmsync/queue"
	"crmsync/store"
)

// TestEventLogLinesNameTheEvent handles three events — a CRM change that fails
// for good, one applied with a warning, and an eMS-side change written back to the
// CRM — through steps that call the Web API, which refuses every first attempt.
// Every line logged while handling them (the engine's, the Web API client's
// retries and token fetches) must name the event's tenant, connection, event id
// and correlation id.
func TestEventLogLinesNameTheEvent(t *testing.T) {
	t.Parallel()
	b := crmSetup(t)
	logs := &logctxtest.Recorder{}
	logger := logs.Logger(slog.LevelDebug)
	b.clients.Logger = logger

	// A Web API that answers 503 to every other call, so each step's call is retried once.
	var calls atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/token":
			_, _ = w.Write([]byte(`{"token_type":"Bearer","expires_in":3600,"access_token":"t"}`))
		case calls.Add(1)%2 == 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"0x80040216","message":"try again"}}`))
		default:
			_, _ = w.Write([]byte(`{"UserId":"u","BusinessUnitId":"b","OrganizationId":"o"}`))
		}
	}))
	t.Cleanup(flaky.Close)
	client, err := dataverse.NewClient(dataverse.Config{OrganizationURL: flaky.URL, TokenURL: flaky.URL + "/token",
		ClientID: "c", ClientSecret: "s", Logger: logger, Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	crmStep := engine.StepFunc(func(ctx context.Context, ev *engine.Event) error {
		if _, err := client.WhoAmI(ctx); err != nil {
			return err
		}
		if ev.Context.MessageName == dataverse.MessageUpdate {
			return engine.Permanent(errors.New("refused by the test"))
		}
		ev.Warn("a warning of the test")
		return nil
	})
	reg.Handle(engine.StepKey{Message: dataverse.MessageCreate, Entity: "contact", Stage: 40}, crmStep)
	reg.Handle(engine.StepKey{Message: dataverse.MessageUpdate, Entity: "contact", Stage: 40}, crmStep)
	reg.Handle(engine.StepKey{Message: engine.MessageSubscriberChanged, Entity: engine.EntitySubscriber, Stage: 40},
		&engine.OutboxWriter{Store: b.store, Clients: b.clients})
	b.start(t, engine.Config{Registry: reg, Logger: logger})

	// The CRM's events, stored as before the correlation id was kept: the engine
	// takes it from the body.
	b.addEvent(t, "log-applied", "contact_create.json", true)
	b.addEvent(t, "log-failed", "contact_update.json", true)
	// An eMS-side change made while a request with a correlation id is handled.
	sub := b.subscribers(t, []store.SubscriberInput{{Email: "log.test@example.de"}})[0]
	outbox := &engine.Outbox{Store: b.store, Publisher: b.stream}
	reqCtx := logctx.With(context.Background(), slog.String(logctx.Correlation, "request-7"))
	if err := outbox.SubscribersChanged(reqCtx, "acme", b.group.ID, []string{sub}); err != nil {
		t.Fatal(err)
	}

	correlation := map[string]string{
		"log-applied": "9d4c7524-a578-4783-b608-73f7b0b68fd2",
		"log-failed":  "b374239d-4233-41a9-8b17-a86cb4f737b5",
	}
	// want is the lines each event must have, by message.
	want := map[string][]string{
		"log-applied": {"dataverse: retrying", "event applied with warnings"},
		"log-failed":  {"dataverse: retrying", "event dead-lettered"},
		"ems":         {"event applied"},
	}
	var lines []map[string]any
	waitUntil(t, func() bool {
		lines = logs.Lines(t)
		for key, msgs := range want {
			for _, msg := range msgs {
				if !hasLine(lines, key, msg) {
					return false
				}
			}
		}
		return true
	})

	// Lines that are about an event whenever they are logged.
	perEvent := map[string]bool{"dataverse: retrying": true, "dataverse: got access token": true,
		"event failed": true, "event dead-lettered": true, "event applied": true, "event applied with warnings": true}
	for _, l := range lines {
		ev, _ := l[logctx.Event].(string)
		if ev == "" {
			if perEvent[l["msg"].(string)] {
				t.Errorf("a line about an event names none: %v", l)
			}
			continue
		}
		wantCorr := correlation[ev]
		if strings.HasPrefix(ev, "ems-") {
			wantCorr = "request-7"
		}
		if l[logctx.Tenant] != "acme" || l[logctx.Connection] != b.conn.ID || l[logctx.Correlation] != wantCorr || wantCorr == "" {
			t.Errorf("line about event %s: tenant %v, connection %v, correlation %v; want acme, %s, %s: %v",
				ev, l[logctx.Tenant], l[logctx.Connection], l[logctx.Correlation], b.conn.ID, wantCorr, l)
		}
	}
	for _, l := range lines {
		if l["msg"] == "event dead-lettered" && !strings.Contains(l["error"].(string), "refused by the test") {
			t.Errorf("the dead-letter line does not give the error: %v", l)
		}
	}
	if t.Failed() {
		t.Log(logs.String())
	}
}

// hasLine reports whether lines hold msg about the event id, or about an eMS-side
// event when id is "ems".
func hasLine(lines []map[string]any, id, msg string) bool {
	for _, l := range lines {
		ev, _ := l[logctx.Event].(string)
		if l["msg"] == msg && (ev == id || id == "ems" && strings.HasPrefix(ev, "ems-")) {
			return true
		}
	}
	return false
}

// failingPublisher refuses every publish, as a Redis that is away does.
type failingPublisher struct{}

func (failingPublisher) Publish(context.Context, ...queue.Entry) error {
	return errors.New("redis: connection refused")
}

// TestOutboxSaysWhenItCannotPublish: an eMS change whose publish fails is still
// stored (the recovery sweep publishes it), and a warning with the tenant and
// the change's correlation id says so.
func TestOutboxSaysWhenItCannotPublish(t *testing.T) {
	t.Parallel()
	b := crmSetup(t)
	ctx := logctx.With(context.Background(), slog.String(logctx.Tenant, "acme"), slog.String(logctx.Correlation, "req-9"))
	logs := &logctxtest.Recorder{}
	outbox := &engine.Outbox{Store: b.store, Publisher: failingPublisher{}, Logger: logs.Logger(slog.LevelInfo)}
	ids := b.subscribers(t, []store.SubscriberInput{{Email: "late@example.de"}})
	if err := outbox.SubscribersChanged(ctx, "acme", b.group.ID, ids); err != nil {
		t.Fatal(err)
	}
	line := logs.Line(t, "eMS changes stored but not published; the recovery sweep will publish them")
	if line["tenant"] != "acme" || line["correlation"] != "req-9" || line["count"] != float64(1) {
		t.Errorf("the warning is %v", line)
	}
	evs, _, err := b.store.SyncEventsPage(ctx, "acme", store.SyncEventFilter{RecordID: ids[0]}, store.EventPosition{}, 10)
	if err != nil || len(evs) != 1 || evs[0].Status != store.InboxPending || evs[0].CorrelationID != "req-9" {
		t.Errorf("stored events %+v, %v; want one pending, correlated with req-9", evs, err)
	}
}
