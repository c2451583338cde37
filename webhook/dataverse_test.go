package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"crmsync/queue"
	"crmsync/store"
	"crmsync/webhook"
)

// fakeInbox is an in-memory Inbox that can be told to fail, for the answers that
// depend on the store's state.
type fakeInbox struct {
	mu      sync.Mutex
	conns   map[string]*store.Connection
	secret  map[string]string
	events  map[string]*store.InboxEvent
	batches []int
	fail    error
	block   chan struct{} // when set, writes wait for it to close
}

func newFakeInbox() *fakeInbox {
	return &fakeInbox{conns: map[string]*store.Connection{}, secret: map[string]string{}, events: map[string]*store.InboxEvent{}}
}

func (f *fakeInbox) add(id string, mode store.WebhookAuthMode, name, secret string) {
	f.conns[id] = &store.Connection{ID: id, Tenant: "t-" + id, WebhookAuth: store.WebhookAuth{Mode: mode, Name: name}}
	f.secret[id] = secret
}

func (f *fakeInbox) ConnectionForWebhook(_ context.Context, id string) (*store.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	c, ok := f.conns[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return c, nil
}

func (f *fakeInbox) WebhookCredentials(c *store.Connection) ([]store.WebhookCredential, error) {
	creds := []store.WebhookCredential{{Mode: c.WebhookAuth.Mode, Name: c.WebhookAuth.Name, Secret: f.secret[c.ID]}}
	if old, ok := f.secret[c.ID+"/old"]; ok {
		creds = append(creds, store.WebhookCredential{Mode: store.WebhookKey, Secret: old})
	}
	return creds, nil
}

func (f *fakeInbox) AddInboxEvents(_ context.Context, evs []*store.InboxEvent) ([]bool, error) {
	f.mu.Lock()
	f.batches = append(f.batches, len(evs))
	block := f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	dup := make([]bool, len(evs))
	for i, ev := range evs {
		if _, ok := f.events[ev.ID]; ok {
			dup[i] = true
			continue
		}
		f.events[ev.ID] = ev
	}
	return dup, nil
}

func (f *fakeInbox) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events)
}

type fakePublisher struct {
	mu   sync.Mutex
	ids  []string
	fail error
}

func (p *fakePublisher) Publish(_ context.Context, entries ...queue.Entry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	for _, e := range entries {
		p.ids = append(p.ids, e.EventID)
	}
	return nil
}

func (p *fakePublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

type bundle struct {
	inbox   *fakeInbox
	pub     *fakePublisher
	mux     *http.ServeMux
	gateway *webhook.Gateway
}

func setup(t *testing.T) *bundle { return setupWith(t, webhook.Config{}) }

// setupWith is setup with the gateway's configuration beyond its inbox,
// publisher and limits.
func setupWith(t *testing.T, cfg webhook.Config) *bundle {
	t.Helper()
	b := &bundle{inbox: newFakeInbox(), pub: &fakePublisher{}, mux: http.NewServeMux()}
	b.inbox.add("key", store.WebhookKey, "", "the-webhook-key-123")
	b.inbox.add("header", store.WebhookHTTPHeader, "x-crmsync-key", "the-header-key-123")
	b.inbox.add("query", store.WebhookHTTPQueryString, "secret", "the-query-key-1234")
	b.inbox.secret["header/old"] = "the-old-key-in-grace"
	cfg.Inbox, cfg.Publisher, cfg.MaxBodyBytes, cfg.QueueSize = b.inbox, b.pub, 64<<10, 64
	g, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.Start(context.Background())
	t.Cleanup(func() { g.Stop(context.Background()) })
	b.gateway = g
	b.mux.Handle("POST /webhooks/dataverse/{connectionId}", g.Dataverse())
	return b
}

func (b *bundle) post(t *testing.T, target string, body []byte, header http.Header) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	b.mux.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("answer %d is not JSON: %q", rec.Code, rec.Body.String())
	}
	return rec.Code, out
}

func fixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/webhooks/contact_create.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuthModes(t *testing.T) {
	t.Parallel()
	body := fixture(t)
	tests := []struct {
		name   string
		target string
		header http.Header
		want   int
	}{
		{"webhook key", "/webhooks/dataverse/key?code=the-webhook-key-123", nil, 202},
		{"webhook key wrong", "/webhooks/dataverse/key?code=the-webhook-key-124", nil, 401},
		{"webhook key missing", "/webhooks/dataverse/key", nil, 401},
		{"webhook key as header", "/webhooks/dataverse/key", http.Header{"Code": {"the-webhook-key-123"}}, 401},
		{"header", "/webhooks/dataverse/header", http.Header{"X-Crmsync-Key": {"the-header-key-123"}}, 202},
		{"header wrong", "/webhooks/dataverse/header", http.Header{"X-Crmsync-Key": {"nope"}}, 401},
		{"header in query", "/webhooks/dataverse/header?x-crmsync-key=the-header-key-123", nil, 401},
		{"query", "/webhooks/dataverse/query?secret=the-query-key-1234", nil, 202},
		{"query as code", "/webhooks/dataverse/query?code=the-query-key-1234", nil, 401},
		{"unknown connection", "/webhooks/dataverse/nope?code=the-webhook-key-123", nil, 401},
		{"rotated: the old key in its grace", "/webhooks/dataverse/header?code=the-old-key-in-grace", nil, 202},
		{"rotated: the new key", "/webhooks/dataverse/header", http.Header{"X-Crmsync-Key": {"the-header-key-123"}}, 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t)
			status, answer := b.post(t, tt.target, body, tt.header)
			if status != tt.want {
				t.Fatalf("status = %d (%v), want %d", status, answer, tt.want)
			}
			if want := map[bool]int{true: 1, false: 0}[tt.want == 202]; b.inbox.count() != want {
				t.Errorf("stored %d events, want %d", b.inbox.count(), want)
			}
			if tt.want == 401 && answer["error"] != "unauthorized" {
				t.Errorf("401 answer = %v", answer)
			}
		})
	}
}

func TestBadBodies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const target = "/webhooks/dataverse/key?code=the-webhook-key-123"
	tests := []struct {
		name string
		body []byte
		want int
	}{
		{"empty", nil, 400},
		{"not JSON", []byte("<Envelope/>"), 400},
		{"array", []byte(`[1,2]`), 400},
		{"no MessageName", []byte(`{"PrimaryEntityName":"contact","PrimaryEntityId":"x"}`), 400},
		{"no PrimaryEntityId", []byte(`{"MessageName":"Create","PrimaryEntityName":"contact"}`), 400},
		{"too large", append([]byte(`{"MessageName":"Create","PrimaryEntityName":"contact","PrimaryEntityId":"x","Pad":"`), append(bytes.Repeat([]byte("a"), 70<<10), '"', '}')...), 413},
	}
	for _, tt := range tests {
		status, answer := b.post(t, target, tt.body, nil)
		if status != tt.want || answer["error"] == nil {
			t.Errorf("%s: status %d answer %v, want %d with an error", tt.name, status, answer, tt.want)
		}
	}
	if b.inbox.count() != 0 {
		t.Errorf("bad bodies stored %d events", b.inbox.count())
	}
	// The 400 names what is wrong.
	_, answer := b.post(t, target, []byte(`{"MessageName":"Create","PrimaryEntityName":"contact"}`), nil)
	if d, _ := answer["detail"].(string); !strings.Contains(d, "PrimaryEntityId") {
		t.Errorf("detail = %q, want it to name PrimaryEntityId", d)
	}
}

func TestDuplicateAndMinimalBody(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const target = "/webhooks/dataverse/key?code=the-webhook-key-123"
	// The Content-Type is not checked, and the minimal context is enough.
	body := []byte(`{"MessageName":"Create","PrimaryEntityName":"contact","PrimaryEntityId":"44bfc2a7-903e-eb11-a813-000d3ad9c2e1"}`)
	s1, a1 := b.post(t, target, body, http.Header{"Content-Type": {"text/plain"}})
	s2, a2 := b.post(t, target, body, http.Header{"X-Request-Id": {"another-request"}})
	if s1 != 202 || s2 != 202 || a1["duplicate"] != false || a2["duplicate"] != true || a1["eventId"] != a2["eventId"] {
		t.Fatalf("answers %d %v, %d %v", s1, a1, s2, a2)
	}
	waitFor(t, func() bool { return b.pub.count() >= 1 }) // published after the answer
	if b.pub.count() != 1 {
		t.Errorf("published %d times, want once", b.pub.count())
	}
	// The same body through another connection is another event.
	s3, a3 := b.post(t, "/webhooks/dataverse/query?secret=the-query-key-1234", body, nil)
	if s3 != 202 || a3["duplicate"] != false || a3["eventId"] == a1["eventId"] {
		t.Errorf("other connection: %d %v", s3, a3)
	}
}

func TestStoreDownIs503AndPublishFailureStill202(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const target = "/webhooks/dataverse/key?code=the-webhook-key-123"
	b.inbox.fail = errors.New("connection refused")
	if status, answer := b.post(t, target, fixture(t), nil); status != http.StatusServiceUnavailable || answer["error"] != "unavailable" {
		t.Errorf("store down: %d %v", status, answer)
	}
	b.inbox.fail = nil
	b.pub.fail = errors.New("redis down")
	if status, answer := b.post(t, target, fixture(t), nil); status != http.StatusAccepted || answer["duplicate"] != false {
		t.Errorf("redis down: %d %v (the event is stored, so it must be 202)", status, answer)
	}
	if b.inbox.count() != 1 {
		t.Errorf("stored %d", b.inbox.count())
	}
}

func TestSizeExceededIsMarkedForReread(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := []byte(`{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":"44bfc2a7-903e-eb11-a813-000d3ad9c2e1","OperationId":"45bfc2a7-903e-eb11-a813-000d3ad9c2e1"}`)
	status, answer := b.post(t, "/webhooks/dataverse/key?code=the-webhook-key-123", body, http.Header{"X-Ms-Dynamics-Msg-Size-Exceeded": {"true"}})
	if status != 202 {
		t.Fatalf("status %d %v", status, answer)
	}
	ev := b.inbox.events[answer["eventId"].(string)]
	if ev == nil || !ev.SizeExceeded || ev.Message != "Update" || ev.Tenant != "t-key" {
		t.Errorf("stored %+v", ev)
	}
}

func body(i int) []byte {
	return []byte(fmt.Sprintf(`{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":"%08d-903e-eb11-a813-000d3ad9c2e1","OperationId":"%08d-0000-0000-0000-000000000000"}`, i, i))
}

// TestGroupCommit holds the store while calls arrive: they are stored together by one
// write, and each is answered only after it.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const target = "/webhooks/dataverse/key?code=the-webhook-key-123"
	release := b.holdStore(t)

	var wg sync.WaitGroup
	codes := make([]int, 21)
	post := func(i int) {
		defer wg.Done()
		codes[i], _ = b.post(t, target, body(i), nil)
	}
	wg.Add(1)
	go post(0)
	waitFor(t, func() bool { b.inbox.mu.Lock(); defer b.inbox.mu.Unlock(); return len(b.inbox.batches) == 1 })
	for i := 1; i <= 20; i++ {
		wg.Add(1)
		go post(i)
	}
	waitFor(t, func() bool { return b.gateway.Queued() == 20 })
	if n := b.inbox.count(); n != 0 {
		t.Fatalf("%d events stored before the write finished", n)
	}
	release()
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusAccepted {
			t.Errorf("call %d: %d", i, c)
		}
	}
	b.inbox.mu.Lock()
	batches := append([]int(nil), b.inbox.batches...)
	b.inbox.mu.Unlock()
	if len(batches) != 2 || batches[0] != 1 || batches[1] != 20 {
		t.Errorf("batches = %v, want [1 20]", batches)
	}
	waitFor(t, func() bool { return b.pub.count() == 21 })
	if b.inbox.count() != 21 || b.pub.count() != 21 {
		t.Errorf("stored %d, published %d", b.inbox.count(), b.pub.count())
	}
}

// TestFullQueueIs503 fills the group-commit queue while the store hangs: the next
// call is refused at once with 503, never queued without bound.
func TestFullQueueIs503(t *testing.T) {
	t.Parallel()
	b := setup(t) // QueueSize 64
	const target = "/webhooks/dataverse/key?code=the-webhook-key-123"
	release := b.holdStore(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.post(t, target, body(0), nil) }()
	waitFor(t, func() bool { b.inbox.mu.Lock(); defer b.inbox.mu.Unlock(); return len(b.inbox.batches) == 1 })
	for i := 1; i <= 64; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); b.post(t, target, body(i), nil) }()
	}
	waitFor(t, func() bool { return b.gateway.Queued() == 64 })
	status, answer := b.post(t, target, body(99), nil)
	if status != http.StatusServiceUnavailable || answer["error"] != "unavailable" {
		t.Errorf("full queue: %d %v", status, answer)
	}
	release()
	wg.Wait()
	if b.inbox.count() != 65 {
		t.Errorf("stored %d, want the 65 queued", b.inbox.count())
	}
	// Stopped: queued work is done, new calls are 503.
	if err := b.gateway.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if status, _ := b.post(t, target, body(100), nil); status != http.StatusServiceUnavailable {
		t.Errorf("after Stop: %d", status)
	}
}

// holdStore makes store writes wait until the returned func is called (at the latest
// when the test ends, so its cleanup can drain the gateway).
func (b *bundle) holdStore(t *testing.T) func() {
	ch := make(chan struct{})
	b.inbox.mu.Lock()
	b.inbox.block = ch
	b.inbox.mu.Unlock()
	var once sync.Once
	release := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return release
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
