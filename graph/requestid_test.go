package graph_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"crmsync/engine"
	"crmsync/graph"
	"crmsync/logctx"
	"crmsync/logctx/logctxtest"
	"crmsync/store"
)

// setupRequestID is setup whose changes reach a real engine.Outbox (or changes,
// when given) over a connection that writes to the CRM, logging to logs.
func setupRequestID(t *testing.T, changes graph.SubscriberChanges, logs *logctxtest.Recorder) *bundle {
	t.Helper()
	b := setup(t, func(cfg *graph.Config) {
		cfg.Changes = changes
		if changes == nil {
			cfg.Changes = &engine.Outbox{Store: cfg.Store, Publisher: cfg.Publisher}
		}
		cfg.Logger = logs.Logger(slog.LevelInfo)
	})
	bidirectional := true
	if _, err := b.store.UpdateConnection(context.Background(), "acme", b.conn.ID, store.ConnectionUpdate{Bidirectional: &bidirectional}); err != nil {
		t.Fatal(err)
	}
	return b
}

// correlations answers the correlation ids of the events published since the
// first from, and how many were published in all.
func (b *bundle) correlations(t *testing.T, from int) ([]string, int) {
	t.Helper()
	b.pub.mu.Lock()
	entries := b.pub.entries[from:]
	b.pub.mu.Unlock()
	var out []string
	for _, e := range entries {
		ev, err := b.store.InboxEvent(context.Background(), e.EventID)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Source != engine.SourceEMS {
			t.Errorf("event %s has source %q, want %q", ev.ID, ev.Source, engine.SourceEMS)
		}
		out = append(out, ev.CorrelationID)
	}
	return out, from + len(entries)
}

const upsertTwo = `mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [{email: "c@example.com"}, {email: "d@example.com"}]) { created } }`

// TestRequestIDCorrelatesChanges: the events a mutation's changes create carry the
// request's id, the caller's when it is sane, else a generated one; the answer
// echoes it.
func TestRequestIDCorrelatesChanges(t *testing.T) {
	t.Parallel()
	b := setupRequestID(t, nil, &logctxtest.Recorder{})
	editor := callerToken(t, "acme", "editor")

	r, h := b.doWith(t, http.Header{graph.RequestIDHeader: {"req-123"}}, editor, upsertTwo, map[string]any{"g": b.group.ID})
	if r.code() != "" {
		t.Fatalf("upsertSubscribers: %+v", r.Errors)
	}
	if got := h.Get(graph.RequestIDHeader); got != "req-123" {
		t.Errorf("answered request id %q, want the caller's req-123", got)
	}
	corrs, seen := b.correlations(t, 0)
	if len(corrs) != 2 || corrs[0] != "req-123" || corrs[1] != "req-123" {
		t.Errorf("the two subscribers' events are correlated with %q, want req-123 each", corrs)
	}

	sub, err := b.store.SubscriberByEmail(context.Background(), "acme", b.group.ID, "c@example.com")
	if err != nil {
		t.Fatal(err)
	}
	r, _ = b.doWith(t, http.Header{graph.RequestIDHeader: {"req-456"}}, editor,
		`mutation($s: ID!) { unsubscribe(subscriberId: $s) { subscriptionState } }`, map[string]any{"s": sub.ID})
	if r.code() != "" {
		t.Fatalf("unsubscribe: %+v", r.Errors)
	}
	if corrs, seen = b.correlations(t, seen); len(corrs) != 1 || corrs[0] != "req-456" {
		t.Errorf("unsubscribe's events are correlated with %q, want req-456", corrs)
	}

	// An id that is not sane is replaced, and the events carry the replacement.
	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for i, sent := range []string{"bad id!", strings.Repeat("a", 129), "ä"} {
		state := []string{"SUBSCRIBED", "UNSUBSCRIBED"}[i%2] // a change each time
		r, h := b.doWith(t, http.Header{graph.RequestIDHeader: {sent}}, editor,
			`mutation($g: ID!, $state: SubscriptionState) { upsertSubscribers(groupId: $g, subscribers: [{email: "c@example.com", subscriptionState: $state}]) { updated } }`,
			map[string]any{"g": b.group.ID, "state": state})
		if r.code() != "" {
			t.Fatalf("upsertSubscribers: %+v", r.Errors)
		}
		got := h.Get(graph.RequestIDHeader)
		if !generated.MatchString(got) {
			t.Errorf("request id %q answered %q, want a generated one", sent, got)
		}
		var corrs []string
		if corrs, seen = b.correlations(t, seen); len(corrs) != 1 || corrs[0] != got {
			t.Errorf("request id %q: events correlated with %q, want the generated %q", sent, corrs, got)
		}
	}
}

// TestRequestIDHeader: which ids a caller may choose, and that every answer, even
// an unauthenticated one, carries one.
func TestRequestIDHeader(t *testing.T) {
	t.Parallel()
	b := setupRequestID(t, nil, &logctxtest.Recorder{})
	longest := strings.Repeat("x", 128)
	for _, tt := range []struct {
		sent string
		kept bool
	}{
		{"req-123", true},
		{"A.b_c:d-9", true},
		{longest, true},
		{longest + "x", false},
		{"", false},
		{"has space", false},
		{"semi;colon", false},
		{"slash/", false},
	} {
		_, h := b.doWith(t, http.Header{graph.RequestIDHeader: {tt.sent}}, "", `{ __typename }`, nil)
		got := h.Get(graph.RequestIDHeader)
		if kept := got == tt.sent; kept != tt.kept || got == "" {
			t.Errorf("sent %q, answered %q; want kept %v", tt.sent, got, tt.kept)
		}
	}
	_, h1 := b.doWith(t, nil, "", `{ __typename }`, nil)
	_, h2 := b.doWith(t, nil, "", `{ __typename }`, nil)
	if a, z := h1.Get(graph.RequestIDHeader), h2.Get(graph.RequestIDHeader); a == "" || a == z {
		t.Errorf("requests without an id got %q and %q, want two different ones", a, z)
	}
}

// failingChanges refuses every change, so a resolver fails and logs.
type failingChanges struct{ graph.SubscriberChanges }

func (failingChanges) SubscribersChanged(context.Context, string, string, []string) error {
	return errors.New("outbox down")
}

// TestRequestIDInLogs: a resolver's failure is answered INTERNAL without its
// detail, and logged with it, the request's id and the caller's tenant.
func TestRequestIDInLogs(t *testing.T) {
	t.Parallel()
	logs := &logctxtest.Recorder{}
	b := setupRequestID(t, failingChanges{}, logs)
	r, _ := b.doWith(t, http.Header{graph.RequestIDHeader: {"req-log"}}, callerToken(t, "acme", "editor"), upsertTwo, map[string]any{"g": b.group.ID})
	if r.code() != "INTERNAL" || r.Errors[0].Message != "internal error" {
		t.Fatalf("upsertSubscribers with the outbox down: %+v, want INTERNAL saying no more", r.Errors)
	}
	line := logs.Line(t, "graphql resolver failed")
	if msg, _ := line["error"].(string); !strings.Contains(msg, "outbox down") || line[logctx.Correlation] != "req-log" || line[logctx.Tenant] != "acme" {
		t.Errorf("the failure's line = %v, want correlation req-log and tenant acme\n%s", line, logs)
	}
}
