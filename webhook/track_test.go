package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"crmsync/mail"
	"crmsync/store"
	"crmsync/webhook"
)

// fakeTracking is an in-memory TrackingStore that counts the recipient lookups.
type fakeTracking struct {
	mu         sync.Mutex
	messages   map[string]*store.CampaignMessage
	sends      map[string]*store.CampaignSend
	recipients map[string]*store.CampaignRecipient
	recipErr   error
	recipReads int
}

func (f *fakeTracking) Message(_ context.Context, id string) (*store.CampaignMessage, error) {
	if m, ok := f.messages[id]; ok {
		return m, nil
	}
	return nil, store.ErrNotFound
}

func (f *fakeTracking) SendByID(_ context.Context, id string) (*store.CampaignSend, error) {
	if cs, ok := f.sends[id]; ok {
		return cs, nil
	}
	return nil, store.ErrNotFound
}

func (f *fakeTracking) Recipient(_ context.Context, id string) (*store.CampaignRecipient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recipReads++
	if f.recipErr != nil {
		return nil, f.recipErr
	}
	if r, ok := f.recipients[id]; ok {
		return r, nil
	}
	return nil, store.ErrNotFound
}

func (f *fakeTracking) reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recipReads
}

// TestClickRedirectsToPersonalisedLink: a click goes to the token's link filled
// for the message's recipient (its address, and the fields it was sent with, read
// only for a link that names fields), and is recorded once, with the link as the
// template wrote it.
func TestClickRedirectsToPersonalisedLink(t *testing.T) {
	t.Parallel()
	now := time.Date(2027, 3, 1, 9, 30, 0, 0, time.UTC)
	b := setupWith(t, webhook.Config{Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	toks, err := mail.NewTokens([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	links := []string{
		"https://shop.example/offer?u={{email}}&n={{fields.firstName}}",
		"https://shop.example/me?u={{email}}",
		"https://shop.example/plain",
		"https://shop.example/{{fields.path}}?back={{unsubscribeUrl}}",
	}
	st := &fakeTracking{
		sends:    map[string]*store.CampaignSend{"cs1": {ID: "cs1", Tenant: "t-key", Links: links}},
		messages: map[string]*store.CampaignMessage{},
		recipients: map[string]*store.CampaignRecipient{
			"cs1|000000000": {ID: "cs1|000000000", Tenant: "t-key", Fields: map[string]any{"firstName": "Ann", "path": "//evil.example"}},
			"cs1|000000002": {ID: "cs1|000000002", Tenant: "other", Fields: map[string]any{"firstName": "Eve"}},
		},
	}
	message := func(seq, email string) [16]byte {
		id := mail.NewMessageID()
		st.messages[mail.FormatMessageID(id)] = &store.CampaignMessage{
			ID: mail.FormatMessageID(id), Tenant: "t-key", ConnectionID: "key", SendID: "cs1", Recipient: "cs1|" + seq, Email: email, SubscriberID: "s-" + seq,
		}
		return id
	}
	ann, bob, eve := message("000000000", "ann@example.de"), message("000000001", "bob+news@example.de"), message("000000002", "eve@example.de")
	b.mux.Handle("GET /t/c/{token}", b.gateway.Tracking(toks, st).Click())
	click := func(id [16]byte, link int) *httptest.ResponseRecorder {
		t.Helper()
		rec := httptest.NewRecorder()
		b.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/t/c/"+toks.Sign(mail.KindClick, id, link), nil))
		return rec
	}

	for _, tc := range []struct {
		name  string
		id    [16]byte
		link  int
		want  string
		reads int // recipient lookups
	}{
		{"email and fields", ann, 0, "https://shop.example/offer?u=ann%40example.de&n=Ann", 1},
		{"the same click again", ann, 0, "https://shop.example/offer?u=ann%40example.de&n=Ann", 1},
		{"email only: no recipient lookup", bob, 1, "https://shop.example/me?u=bob%2Bnews%40example.de", 0},
		{"no placeholders", bob, 2, "https://shop.example/plain", 0},
		{"a path value stays in the path; no unsubscribe link", ann, 3, "https://shop.example/%2F%2Fevil.example?back=", 1},
		{"recipient gone: fields empty", bob, 0, "https://shop.example/offer?u=bob%2Bnews%40example.de&n=", 1},
		{"another tenant's recipient is not read", eve, 0, "https://shop.example/offer?u=eve%40example.de&n=", 1},
	} {
		before := st.reads()
		rec := click(tc.id, tc.link)
		if rec.Code != http.StatusFound || rec.Header().Get("Location") != tc.want {
			t.Errorf("%s: %d to %q, want 302 to %q", tc.name, rec.Code, rec.Header().Get("Location"), tc.want)
		}
		if n := st.reads() - before; n != tc.reads {
			t.Errorf("%s: %d recipient lookups, want %d", tc.name, n, tc.reads)
		}
	}

	// Recorded: Ann's two clicks on link 0 once, each with the template's link.
	if n := b.inbox.count(); n != 6 {
		t.Errorf("recorded %d clicks, want 6 (Ann's repeated click once)", n)
	}
	annClicks := 0
	for _, ev := range b.inbox.events {
		var re store.ReactionEvent
		if err := json.Unmarshal([]byte(ev.Body), &re); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(links, re.URL) {
			t.Errorf("recorded URL %q, want a link as the template wrote it", re.URL)
		}
		if re.SubscriberID == "s-000000000" && re.URL == links[0] {
			annClicks++
		}
	}
	if annClicks != 1 {
		t.Errorf("Ann's click on the offer recorded %d times, want once", annClicks)
	}

	// The store failing to give the recipient is a 503, and nothing is recorded.
	st.mu.Lock()
	st.recipErr = errors.New("store down")
	st.mu.Unlock()
	if rec := click(ann, 3); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Location") != "" {
		t.Errorf("recipient lookup failing: %d to %q, want 503 without a redirect", rec.Code, rec.Header().Get("Location"))
	}
	if rec := click(ann, len(links)); rec.Code != http.StatusNotFound {
		t.Errorf("a link index beyond the send's links: %d, want 404", rec.Code)
	}
	if n := b.inbox.count(); n != 6 {
		t.Errorf("recorded %d clicks after the refusals, want still 6", n)
	}
}

// testLog sends a handler's log lines to the test's log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestUnsubscribeRecordsTheClientBehindATrustedProxy: the consent ledger gets the
// address X-Forwarded-For names when the call comes from a trusted proxy, and the
// connecting address otherwise.
func TestUnsubscribeRecordsTheClientBehindATrustedProxy(t *testing.T) {
	t.Parallel()
	proxies, err := webhook.NewClientIP("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	b := setupWith(t, webhook.Config{ClientIP: proxies, Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	toks, err := mail.NewTokens([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	st := &fakeTracking{sends: map[string]*store.CampaignSend{"cs1": {ID: "cs1", Tenant: "t-key"}}, messages: map[string]*store.CampaignMessage{}}
	b.mux.Handle("POST /u/{token}", b.gateway.Tracking(toks, st).Unsubscribe())
	for _, tc := range []struct{ remote, forwarded, want string }{
		{"10.0.0.7:4000", "203.0.113.9", "203.0.113.9"},
		{"198.51.100.4:4000", "203.0.113.9", "198.51.100.4"}, // not a proxy: its header is not believed
	} {
		id := mail.NewMessageID()
		st.messages[mail.FormatMessageID(id)] = &store.CampaignMessage{
			ID: mail.FormatMessageID(id), Tenant: "t-key", ConnectionID: "key", SendID: "cs1", Email: "ann@example.de", SubscriberID: "s1",
		}
		req := httptest.NewRequest(http.MethodPost, "/u/"+toks.Sign(mail.KindUnsubscribe, id, 0), strings.NewReader("List-Unsubscribe=One-Click"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = tc.remote
		req.Header.Set("X-Forwarded-For", tc.forwarded)
		rec := httptest.NewRecorder()
		b.mux.ServeHTTP(rec, req)
		if rec.Code >= 300 {
			t.Fatalf("from %s: %d %s", tc.remote, rec.Code, rec.Body)
		}
		var re store.ReactionEvent
		for _, ev := range b.inbox.events {
			var r store.ReactionEvent
			if err := json.Unmarshal([]byte(ev.Body), &r); err != nil {
				t.Fatal(err)
			}
			if r.Message == mail.FormatMessageID(id) {
				re = r
			}
		}
		if re.IP != tc.want {
			t.Errorf("from %s forwarding %s: the ledger gets %q, want %q", tc.remote, tc.forwarded, re.IP, tc.want)
		}
	}
}
