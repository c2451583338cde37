package graph_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"crmsync/store"
)

// ev is an event of a connection for events: its source (which names its
// direction), how long ago it was received, and its status (pending when empty).
type ev struct {
	source string
	ago    time.Duration
	status store.InboxStatus
}

// events stores events of one of acme's connections.
func (b *bundle) events(t *testing.T, connID string, evs ...ev) {
	t.Helper()
	ctx := context.Background()
	var docs []*store.InboxEvent
	for _, e := range evs {
		docs = append(docs, &store.InboxEvent{ID: fmt.Sprintf("%s-%d-%d", connID, len(docs), time.Now().UnixNano()), Tenant: "acme", ConnectionID: connID,
			Source: e.source, Message: "Update", Entity: "contact", RecordID: "row", Body: "{}", ReceivedAt: time.Now().Add(-e.ago).UTC()})
	}
	if _, err := b.store.AddInboxEvents(ctx, docs); err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.status != "" && e.status != store.InboxPending {
			if err := b.store.FinishInboxEvent(ctx, docs[i].ID, e.status, 1, "CRM said no"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestAPIBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rec := b.budget.For(b.conn.ID)
	for _, s := range []int{200, 204, 429, 200} {
		rec.WebAPIRequest(s)
	}
	rec.WebAPIRetryWait(1500 * time.Millisecond)
	b.budget.For("another-connection").WebAPIRequest(200)
	if err := b.budget.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var got struct {
		ConnectionID                                             string
		WindowSeconds, Limit, Used, Left, Throttled, RetryWaitMs int
		Minutes                                                  []struct {
			At                  time.Time
			Requests, Throttled int
		}
	}
	decode(t, b.do(t, callerToken(t, "acme", "viewer"), `query($c: ID!) { apiBudget(connectionId: $c) {
		connectionId windowSeconds limit used left throttled retryWaitMs minutes(hours: 2) { at requests throttled } } }`,
		map[string]any{"c": b.conn.ID}), "apiBudget", &got)
	if got.ConnectionID != b.conn.ID || got.WindowSeconds != 300 || got.Limit != 6000 || got.Used != 4 || got.Left != 5996 || got.Throttled != 1 || got.RetryWaitMs != 1500 {
		t.Errorf("apiBudget = %+v", got)
	}
	if n := len(got.Minutes); n != 120 {
		t.Fatalf("%d minutes, want 120", n)
	}
	last := got.Minutes[len(got.Minutes)-1]
	if last.Requests+got.Minutes[len(got.Minutes)-2].Requests != 4 || time.Since(last.At) > time.Minute || time.Since(got.Minutes[0].At) < 119*time.Minute {
		t.Errorf("minutes from %s to %+v", got.Minutes[0].At, last)
	}
}

func TestSyncStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.events(t, b.conn.ID,
		ev{"dataverse", 3 * time.Minute, store.InboxProcessed},
		ev{"dataverse", 3 * time.Minute, store.InboxProcessed},
		ev{"dataverse", 3 * time.Minute, store.InboxFailed},
		ev{"ems", 3 * time.Minute, store.InboxProcessed},
		ev{"dataverse", 2 * time.Hour, store.InboxProcessed}, // before since
	)
	since := time.Now().Add(-time.Hour)
	var got struct {
		Since, Until time.Time
		Total        int
		Truncated    bool
		Buckets      []struct {
			At                time.Time
			Direction, Status string
			Count             int
		}
	}
	decode(t, b.do(t, callerToken(t, "acme", "viewer"), `query($c: ID!, $since: Time!) { syncStats(connectionId: $c, since: $since) {
		since until total truncated buckets { at direction status count } } }`, map[string]any{"c": b.conn.ID, "since": since.Format(time.RFC3339Nano)}), "syncStats", &got)
	var buckets []string
	for _, bu := range got.Buckets {
		buckets = append(buckets, fmt.Sprintf("%s/%s:%d", bu.Direction, bu.Status, bu.Count))
	}
	if want := "CRM_TO_EMS/APPLIED:2 CRM_TO_EMS/FAILED:1 EMS_TO_CRM/APPLIED:1"; strings.Join(buckets, " ") != want || got.Total != 4 || got.Truncated ||
		!got.Since.Equal(since.Truncate(time.Minute)) || time.Since(got.Until) > time.Minute {
		t.Errorf("syncStats = %+v; buckets %s, want %s", got, buckets, want)
	}
}

// TestStatsRefuseBadInput: out-of-range spans and hours name the argument; an id
// that names no connection of the caller's tenant — malformed, unknown or
// another tenant's — is not found, as for every other query.
func TestStatsRefuseBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	viewer, other := callerToken(t, "acme", "viewer"), callerToken(t, "globex", "admin")
	const stats = `query($c: ID!, $since: Time!) { syncStats(connectionId: $c, since: $since) { total } }`
	const budget = `query($c: ID!, $h: Int) { apiBudget(connectionId: $c) { used minutes(hours: $h) { requests } } }`
	at := func(d time.Duration) string { return time.Now().Add(d).Format(time.RFC3339) }
	for _, tc := range []struct {
		name, tok, query string
		vars             map[string]any
		code, field      string
	}{
		{"since two days back", viewer, stats, map[string]any{"c": b.conn.ID, "since": at(-48 * time.Hour)}, "BAD_USER_INPUT", "since"},
		{"since an hour ahead", viewer, stats, map[string]any{"c": b.conn.ID, "since": at(time.Hour)}, "BAD_USER_INPUT", "since"},
		{"since not a time", viewer, stats, map[string]any{"c": b.conn.ID, "since": "yesterday"}, "BAD_USER_INPUT", ""},
		{"stats of a malformed id", viewer, stats, map[string]any{"c": "}{../*", "since": at(-time.Hour)}, "NOT_FOUND", ""},
		{"stats of another tenant's", other, stats, map[string]any{"c": b.conn.ID, "since": at(-time.Hour)}, "NOT_FOUND", ""},
		{"no hours", viewer, budget, map[string]any{"c": b.conn.ID, "h": 0}, "BAD_USER_INPUT", "hours"},
		{"more than a day", viewer, budget, map[string]any{"c": b.conn.ID, "h": 25}, "BAD_USER_INPUT", "hours"},
		{"budget of a malformed id", viewer, budget, map[string]any{"c": "}{../*"}, "NOT_FOUND", ""},
		{"budget of an unknown id", viewer, budget, map[string]any{"c": "0190c5f5-0000-7000-8000-000000000000"}, "NOT_FOUND", ""},
		{"budget of another tenant's", other, budget, map[string]any{"c": b.conn.ID}, "NOT_FOUND", ""},
	} {
		wantError(t, tc.name, b.do(t, tc.tok, tc.query, tc.vars), tc.code, tc.field)
	}
}

// TestConnectionHealth judges connections in each state, in one list.
func TestConnectionHealth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	newConn := func(name string) string {
		c, err := b.store.CreateConnection(ctx, "acme", store.ConnectionInput{Name: name, OrganizationURL: "https://" + strings.ToLower(name) + ".crm4.dynamics.com",
			WebhookAuthMode: store.WebhookKey, WebhookAuthValue: "0123456789abcdef-secret", RecipientType: store.RecipientContact})
		if err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	quiet, healthy, degraded, failing, stuck := newConn("Quiet"), newConn("Healthy"), newConn("Degraded"), newConn("Failing"), newConn("Stuck")
	b.events(t, healthy, ev{"dataverse", time.Minute, store.InboxProcessed}, ev{"ems", 10 * time.Second, ""})
	b.events(t, degraded, ev{"dataverse", time.Minute, store.InboxProcessed}, ev{"dataverse", 3 * time.Hour, store.InboxFailed})
	b.events(t, failing, ev{"dataverse", time.Minute, store.InboxFailed}, ev{"dataverse", 2 * time.Minute, store.InboxFailed})
	b.events(t, stuck, ev{"dataverse", 20 * time.Minute, ""}, ev{"dataverse", time.Minute, store.InboxProcessed})
	for _, s := range []int{429, 429, 200} {
		b.budget.For(degraded).WebAPIRequest(s)
	}
	if err := b.budget.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.store.SaveConnectionCheck(ctx, &store.ConnectionCheck{Tenant: "acme", ConnectionID: failing, Detail: "the token endpoint refused the client secret", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// testConnection keeps its outcome: the setup's connection tests fine.
	admin := callerToken(t, "acme", "admin")
	decode(t, b.do(t, admin, `mutation($c: ID!) { testConnection(id: $c) { ok testedAt } }`, map[string]any{"c": b.conn.ID}), "testConnection", new(struct{ Ok bool }))

	type health struct {
		Status                                         string
		Reasons                                        []string
		LastEventAt                                    *time.Time
		FailedEvents, DeadLetters, ThrottledLastWindow int
		LastTest                                       *struct {
			Ok       bool
			Detail   string
			TestedAt time.Time
		}
	}
	var conns []struct {
		ID     string
		Health health
	}
	decode(t, b.do(t, callerToken(t, "acme", "viewer"), `{ connections { id health { status reasons lastEventAt failedEvents deadLetters throttledLastWindow
		lastTest { ok detail testedAt } } } }`, nil), "connections", &conns)
	got := map[string]health{}
	for _, c := range conns {
		got[c.ID] = c.Health
	}
	check := func(name, id, status string, reasons ...string) health {
		t.Helper()
		h := got[id]
		if h.Status != status || len(h.Reasons) != len(reasons) {
			t.Errorf("%s: %s %q, want %s with %d reasons", name, h.Status, h.Reasons, status, len(reasons))
			return h
		}
		for i, r := range reasons {
			if !strings.Contains(h.Reasons[i], r) {
				t.Errorf("%s: reason %q, want it to say %q", name, h.Reasons[i], r)
			}
		}
		return h
	}
	if h := check("quiet", quiet, "UNKNOWN", "nothing received"); h.LastEventAt != nil || h.LastTest != nil {
		t.Errorf("quiet: %+v", h)
	}
	if h := check("tested", b.conn.ID, "HEALTHY"); h.LastTest == nil || !h.LastTest.Ok || time.Since(h.LastTest.TestedAt) > time.Minute {
		t.Errorf("tested: %+v", h)
	}
	if h := check("healthy", healthy, "HEALTHY"); h.LastEventAt == nil || time.Since(*h.LastEventAt) > 20*time.Second {
		t.Errorf("healthy: %+v", h)
	}
	if h := check("degraded", degraded, "DEGRADED", "1 failed event waiting for a replay", "throttled 2 requests"); h.DeadLetters != 1 || h.FailedEvents != 0 || h.ThrottledLastWindow != 2 {
		t.Errorf("degraded: %+v", h)
	}
	if h := check("failing", failing, "FAILING", "the last connection test", "none of the events", "2 failed events waiting"); h.FailedEvents != 2 || h.LastTest == nil || h.LastTest.Ok {
		t.Errorf("failing: %+v", h)
	}
	check("stuck", stuck, "DEGRADED", "wait for the engine, the oldest for 20m")
}

// TestHealthOfAListCostsConstantRoundTrips: the health of every connection of a
// list is judged together, not one connection at a time.
func TestHealthOfAListCostsConstantRoundTrips(t *testing.T) {
	t.Parallel()
	cb := setupCounting(t, 0)
	ctx := context.Background()
	viewer := callerToken(t, "acme", "viewer")
	addBusy := func() {
		c, err := cb.store.CreateConnection(ctx, "acme", store.ConnectionInput{Name: "More", OrganizationURL: "https://more.crm4.dynamics.com",
			WebhookAuthMode: store.WebhookKey, WebhookAuthValue: "0123456789abcdef-secret", RecipientType: store.RecipientContact})
		if err != nil {
			t.Fatal(err)
		}
		cb.events(t, c.ID, ev{"dataverse", time.Minute, store.InboxProcessed})
	}
	cb.events(t, cb.conn.ID, ev{"dataverse", time.Minute, store.InboxProcessed})
	cost := func(want int) int64 {
		before := cb.commands.Load()
		var conns []struct{ Health struct{ Status string } }
		decode(t, cb.do(t, viewer, `{ connections { health { status } } }`, nil), "connections", &conns)
		if len(conns) != want {
			t.Fatalf("%d connections, want %d", len(conns), want)
		}
		return cb.commands.Load() - before
	}
	one := cost(1)
	for range 9 {
		addBusy()
	}
	ten := cost(10)
	t.Logf("the health of 1 and of 10 connections: %d and %d store commands", one, ten)
	if ten != one {
		t.Errorf("the health of 10 connections took %d store commands, of one %d", ten, one)
	}
}
