package engine_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

// flakyCRM is an emulator behind a switch: while failing > 0, each read of list
// members (a FetchXML query) answers 503 and counts the switch down.
type flakyCRM struct {
	dv      *emulator.Emulator
	failing atomic.Int32
}

func (f *flakyCRM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("fetchXml") && f.failing.Add(-1) >= 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"0x80040216","message":"The service is temporarily unavailable."}}`))
		return
	}
	f.dv.ServeHTTP(w, r)
}

// TestFailedRunRetriesWithBackoffThenFails: a run whose member read fails with a
// retryable error stays PENDING with the error and its next attempt pushed out by
// the backoff; when the CRM answers again the run applies; a run that keeps
// failing ends FAILED with the reason after MaxAttempts.
func TestFailedRunRetriesWithBackoffThenFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	crm := &flakyCRM{dv: emulator.New(emulator.Config{})}
	srv := httptest.NewServer(crm)
	t.Cleanup(func() { srv.Close(); _ = crm.dv.Close() })
	if _, err := crm.dv.Create("contacts", map[string]any{"lastname": "Ada", "emailaddress1": "ada@example.de"}); err != nil {
		t.Fatal(err)
	}
	listID, err := crm.dv.Create("lists", map[string]any{"listname": "All", "createdfromcode": int64(dataverse.ListMemberContact), "type": true,
		"query": `<fetch><entity name="contact"><attribute name="fullname"/></entity></fetch>`})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	st := storetest.Open(t)
	_, err = st.CreateConnection(ctx, "acme", store.ConnectionInput{
		Name: "CRM", OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token", ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret,
		WebhookAuthMode: store.WebhookKey, WebhookAuthValue: "0123456789abcdef-secret", RecipientType: store.RecipientContact, Bidirectional: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	clients := &engine.CRMClients{Secret: st.CRMClientSecret, Tune: func(c *dataverse.Config) { c.MaxRetries = -1 }}
	r, keys := queuetest.Open(t)
	m := newFakeMetrics()
	sched, err := engine.NewScheduler(engine.SchedulerConfig{Store: st, Jobs: queue.NewJobs(r.Client, keys, 5*time.Second), Seen: queue.NewRunSets(r.Client, keys),
		CRM: clients, MaxAttempts: 3, Backoff: time.Minute, Now: clock, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	lists := &engine.Lists{Store: st, API: clients, Now: clock}

	crm.failing.Store(1)
	run, err := lists.SyncNow(ctx, "acme", listID, false)
	if err != nil {
		t.Fatal(err)
	}
	sched.Tick(ctx)
	got, err := st.Run(ctx, "acme", run.ID)
	if err != nil || got.Status != store.RunPending || got.Attempts != 1 || got.Error == nil || !strings.Contains(*got.Error, "503") ||
		got.NextAttemptAt.Sub(now.Add(time.Minute)).Abs() > time.Millisecond {
		t.Fatalf("after a failed attempt: %+v (error %v), %v; want PENDING, one attempt, the reason, next attempt in a minute", got, got.Error, err)
	}
	sched.Tick(ctx) // not due yet: nothing happens
	if again, _ := st.Run(ctx, "acme", run.ID); again.Attempts != 1 {
		t.Fatalf("a run was retried before its backoff passed: %+v", again)
	}
	now = now.Add(time.Minute)
	sched.Tick(ctx)
	got, _ = st.Run(ctx, "acme", run.ID)
	if got.Status != store.RunApplied || got.Attempts != 2 || got.Error != nil || got.Added != 1 {
		t.Fatalf("after the CRM answered again: %+v (error %v); want APPLIED on the second attempt, error cleared", got, got.Error)
	}

	// A CRM that keeps failing: attempts 1, 2 (after 1 min), 3 (after 2 min) → FAILED.
	crm.failing.Store(100)
	run, err = lists.SyncNow(ctx, "acme", listID, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, wait := range []time.Duration{0, time.Minute, 2 * time.Minute} {
		now = now.Add(wait)
		sched.Tick(ctx)
	}
	got, _ = st.Run(ctx, "acme", run.ID)
	if got.Status != store.RunFailed || got.Attempts != 3 || got.Error == nil || got.FinishedAt == nil {
		t.Fatalf("a run that keeps failing: %+v; want FAILED after 3 attempts with the reason", got)
	}
	// The metrics count every attempt that ran to its end (the tick before the
	// backoff passed ran none).
	for outcome, want := range map[string]int{"retry": 3, "applied": 1, "failed": 1, "skipped": 0} {
		if n := m.get(m.runs, outcome); n != want {
			t.Errorf("sync runs %q counted %d times, want %d (all: %v)", outcome, n, want, m.runs)
		}
	}
}
