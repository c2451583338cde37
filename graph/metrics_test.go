package graph_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"crmsync/auth"
	"crmsync/graph"
	"crmsync/store/storetest"
)

// fakeMetrics counts the operations the handler reports, by "type outcome".
type fakeMetrics struct {
	mu  sync.Mutex
	ops map[string]int
}

func (m *fakeMetrics) ObserveGraphQL(operationType, outcome string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d > 0 {
		m.ops[operationType+" "+outcome]++
	}
}

func (m *fakeMetrics) snapshot() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.ops))
	for k, v := range m.ops {
		out[k] = v
	}
	return out
}

func TestOperationMetrics(t *testing.T) {
	t.Parallel()
	st := storetest.Open(t)
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMetrics{ops: map[string]int{}}
	// Without Notices the syncEvents subscription fails at its setup.
	srv := httptest.NewServer(graph.NewHandler(graph.Config{Store: st, Verifier: v, Publisher: &fakePublisher{}, Metrics: m}))
	t.Cleanup(srv.Close)
	b := &bundle{srv: srv}
	viewer := token(t, claims("acme", "viewer", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)

	if r := b.do(t, viewer, `{ connections { id } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("query: %+v", r.Errors)
	}
	if r := b.do(t, viewer, `mutation { createSubscriberGroup(input: {name: "x"}) { id } }`, nil); r.code() != "FORBIDDEN" {
		t.Fatalf("a viewer's mutation: %+v", r.Errors)
	}
	if r := b.do(t, viewer, `{ noSuchField }`, nil); len(r.Errors) == 0 {
		t.Fatal("an invalid query was answered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.subscribe(ctx, t, viewer, `subscription { syncEvents { id } }`, nil)

	want := map[string]int{"query ok": 1, "mutation error": 1, "subscription error": 1}
	var got map[string]int
	for ctx.Err() == nil {
		if got = m.snapshot(); len(got) == len(want) && got["subscription error"] == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s observed %d times, want %d (all: %v; the invalid query must not count)", k, got[k], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("observed %v, want %v", got, want)
	}
}
