package webhook_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"crmsync/store"
	"crmsync/webhook"
)

// fakeMetrics records what the gateway reports.
type fakeMetrics struct {
	mu       sync.Mutex
	requests []string // "route connection status"
	batches  []int
}

func (m *fakeMetrics) WebhookRequest(route, connection string, status int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, route+" "+connection+" "+http.StatusText(status))
}

func (m *fakeMetrics) IngestBatch(size int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches = append(m.batches, size)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	inbox := newFakeInbox()
	inbox.add("key", store.WebhookKey, "", "the-webhook-key-123")
	m := &fakeMetrics{}
	g, err := webhook.New(webhook.Config{Inbox: inbox, Publisher: &fakePublisher{}, MaxBodyBytes: 64 << 10, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	g.Start(context.Background())
	t.Cleanup(func() { g.Stop(context.Background()) })
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/dataverse/{connectionId}", g.Dataverse())
	mux.Handle("POST /webhooks/reactions/{connectionId}", g.Reactions())

	body := fixture(t)
	for _, c := range []struct {
		target string
		body   []byte
	}{
		{"/webhooks/dataverse/key?code=the-webhook-key-123", body},
		{"/webhooks/dataverse/key?code=the-webhook-key-123", body}, // a duplicate is 202 too
		{"/webhooks/dataverse/key?code=wrong-key", body},
		{"/webhooks/dataverse/made-up-id?code=the-webhook-key-123", body},
		{"/webhooks/dataverse/key?code=the-webhook-key-123", []byte("not json")},
		{"/webhooks/dataverse/key?code=the-webhook-key-123", bytes.Repeat([]byte("a"), 70<<10)},
		{"/webhooks/reactions/key", []byte("{}")},
	} {
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, c.target, bytes.NewReader(c.body)))
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	// Only an authenticated call names its connection: made-up ids add no series.
	want := []string{
		"dataverse key Accepted",
		"dataverse key Accepted",
		"dataverse  Unauthorized",
		"dataverse  Unauthorized",
		"dataverse key Bad Request",
		"dataverse  Request Entity Too Large",
		"reactions  Unauthorized",
	}
	if !slices.Equal(m.requests, want) {
		t.Errorf("requests:\n got %q\nwant %q", m.requests, want)
	}
	if !slices.Equal(m.batches, []int{1, 1}) {
		t.Errorf("batches = %v, want [1 1] (one group commit per call, one at a time)", m.batches)
	}
}
