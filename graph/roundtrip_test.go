package graph_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.mongodb.org/mongo-driver/v2/event"

	"crmsync/auth"
	"crmsync/graph"
	"crmsync/store"
	"crmsync/store/storetest"
)

// countingBundle is a server whose store counts the commands it sends.
type countingBundle struct {
	bundle
	commands atomic.Int64
}

func setupCounting(tb testing.TB, subscribers int) *countingBundle {
	tb.Helper()
	cb := &countingBundle{}
	cfg := storetest.Config(tb)
	cfg.Monitor = &event.CommandMonitor{Started: func(context.Context, *event.CommandStartedEvent) { cb.commands.Add(1) }}
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.DropDatabase(context.Background()); _ = st.Close(context.Background()) })
	if err := st.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	v, _ := auth.NewVerifier(auth.Config{Secret: secret})
	srv := httptest.NewServer(graph.NewHandler(graph.Config{Store: st, Verifier: v, Publisher: &fakePublisher{}}))
	tb.Cleanup(srv.Close)
	ctx := context.Background()
	conn, err := st.CreateConnection(ctx, "acme", store.ConnectionInput{Name: "CRM", OrganizationURL: "https://acme.crm4.dynamics.com",
		WebhookAuthMode: store.WebhookKey, WebhookAuthValue: "0123456789abcdef-secret", RecipientType: store.RecipientContact})
	if err != nil {
		tb.Fatal(err)
	}
	g, err := st.CreateGroup(ctx, "acme", store.GroupInput{Name: "News", ConnectionID: conn.ID, CRMSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	rows := make([]store.SubscriberInput, subscribers)
	for i := range rows {
		rows[i] = store.SubscriberInput{Email: fmt.Sprintf("s%04d@example.com", i), Fields: map[string]any{"n": i}}
	}
	if _, err := st.UpsertSubscribers(ctx, "acme", g.ID, rows); err != nil {
		tb.Fatal(err)
	}
	cb.bundle = bundle{srv: srv, store: st, conn: conn, group: g}
	return cb
}

const pageQuery = `query($g: ID!) { subscriberGroup(id: $g) { subscribers(first: 500) { totalCount edges { node {
	id email fields language subscriptionState group { name connection { name recipientType } } } } } } }`

// TestPageOfSubscribersCostsConstantRoundTrips: a page of 500 subscribers with their
// group and its connection takes a handful of store commands, not one per row.
func TestPageOfSubscribersCostsConstantRoundTrips(t *testing.T) {
	t.Parallel()
	cb := setupCounting(t, 500)
	viewer := token(t, claims("acme", "viewer", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
	before := cb.commands.Load()
	r := cb.do(t, viewer, pageQuery, map[string]any{"g": cb.group.ID})
	used := cb.commands.Load() - before
	if r.code() != "" || strings.Count(string(r.Data["subscriberGroup"]), `"email"`) != 500 {
		t.Fatalf("page: %+v (%d bytes)", r.Errors, len(r.Data["subscriberGroup"]))
	}
	// group by id, the page, the count, the group (loader), the connection (loader),
	// plus a getMore or two for a large page.
	if used > 8 {
		t.Errorf("a page of 500 used %d store commands, want at most 8", used)
	}
	t.Logf("a page of 500 subscribers with group and connection: %d store commands", used)
}

// BenchmarkSubscriberPage measures a page of 500 subscribers with nested fields.
func BenchmarkSubscriberPage(b *testing.B) {
	cb := setupCounting(b, 500)
	tok, _ := auth.Mint(secret, "b", "acme", []string{"viewer"}, time.Hour, "", "")
	b.ReportAllocs()
	start := cb.commands.Load()
	b.ResetTimer()
	for range b.N {
		r := cb.do(b, tok, pageQuery, map[string]any{"g": cb.group.ID})
		if r.code() != "" {
			b.Fatal(r.Errors)
		}
	}
	b.ReportMetric(float64(cb.commands.Load()-start)/float64(b.N), "store-commands/op")
}

// BenchmarkUpsertSubscribers measures upsertSubscribers with 10,000 rows.
func BenchmarkUpsertSubscribers(b *testing.B) {
	cb := setupCounting(b, 0)
	tok, _ := auth.Mint(secret, "b", "acme", []string{"editor"}, time.Hour, "", "")
	rows := make([]map[string]any, 10000)
	b.ReportAllocs()
	start := cb.commands.Load()
	b.ResetTimer()
	for i := range b.N {
		for j := range rows {
			rows[j] = map[string]any{"email": fmt.Sprintf("u%d-%05d@example.com", i, j), "fields": map[string]any{"n": j}}
		}
		r := cb.do(b, tok, `mutation($g: ID!, $rows: [SubscriberInput!]!) { upsertSubscribers(groupId: $g, subscribers: $rows) { created } }`,
			map[string]any{"g": cb.group.ID, "rows": rows})
		if r.code() != "" {
			b.Fatal(r.Errors)
		}
	}
	b.ReportMetric(float64(cb.commands.Load()-start)/float64(b.N), "store-commands/op")
}
