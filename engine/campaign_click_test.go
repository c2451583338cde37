package engine_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"crmsync/engine"
	"crmsync/mail"
	"crmsync/queue"
	"crmsync/store"
	"crmsync/webhook"
)

// keepingSender keeps each message it is given, by recipient.
type keepingSender struct {
	mu  sync.Mutex
	got map[string]*mail.Message
}

func (s *keepingSender) Send(_ context.Context, m *mail.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[m.To] = m
	return nil
}

func (s *keepingSender) Close() error { return nil }

// idsPublisher keeps the ids of the events published, once each stored event.
type idsPublisher struct {
	mu  sync.Mutex
	ids []string
}

func (p *idsPublisher) Publish(_ context.Context, entries ...queue.Entry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range entries {
		p.ids = append(p.ids, e.EventID)
	}
	return nil
}

var clickURL = regexp.MustCompile(`https://crmsync\.test(/t/c/[A-Za-z0-9_-]+)`)

// TestCampaignClickRedirectsToPersonalisedLink, end to end: a send whose link has
// placeholders goes out; a click on each recipient's tracked link redirects to
// the link filled and escaped for that recipient, from the message's address and
// the fields the recipient was sent with, and is recorded once however often it
// is clicked. The text part shows the same filled link, and {{unsubscribeUrl}}
// alone in an href is still the message's unsubscribe link.
func TestCampaignClickRedirectsToPersonalisedLink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newCampaignFixture(t)
	if _, err := f.st.UpsertSubscribers(ctx, "acme", f.group.ID, []store.SubscriberInput{
		{Email: "ann@example.de", Fields: map[string]any{"firstName": "Ann"}},
		{Email: "bob@example.de", Fields: map[string]any{"firstName": "Bob & Co"}},
	}); err != nil {
		t.Fatal(err)
	}
	sender := &keepingSender{got: map[string]*mail.Message{}}
	c := f.runner(t, sender)
	cs, err := c.CreateSend(ctx, engine.SendRequest{
		Tenant: "acme", GroupID: f.group.ID, Subject: "Offers", SenderName: "Shop", SenderEmail: "news@shop.test",
		HTMLBody: `<p>Hi {{fields.firstName}}: <a href="https://shop.example/offer?u={{email}}&n={{fields.firstName}}">your offer</a>.
<a href="{{unsubscribeUrl}}">Unsubscribe</a></p>`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if done := f.runUntilDone(t, c, cs.ID); done.Sent != 2 {
		t.Fatalf("send ended %s with %d sent, want 2", done.Status, done.Sent)
	}

	pub := &idsPublisher{}
	g, err := webhook.New(webhook.Config{Inbox: f.st, Publisher: pub, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background()) })
	mux := http.NewServeMux()
	mux.Handle("GET /t/c/{token}", g.Tracking(f.toks, f.st).Click())

	for addr, want := range map[string]string{
		"ann@example.de": "https://shop.example/offer?u=ann%40example.de&n=Ann",
		"bob@example.de": "https://shop.example/offer?u=bob%40example.de&n=Bob+%26+Co",
	} {
		m := sender.got[addr]
		if m == nil {
			t.Fatalf("no message to %s", addr)
		}
		click := clickURL.FindStringSubmatch(m.HTML)
		if click == nil || strings.Contains(m.HTML, "shop.example") {
			t.Fatalf("the link to %s is not tracked:\n%s", addr, m.HTML)
		}
		if !strings.Contains(m.HTML, `<a href="`+m.UnsubscribeURL+`">Unsubscribe</a>`) {
			t.Errorf("the unsubscribe link to %s is not %s:\n%s", addr, m.UnsubscribeURL, m.HTML)
		}
		if !strings.Contains(m.Text, want) {
			t.Errorf("the text part to %s lacks %s:\n%s", addr, want, m.Text)
		}
		for range 2 {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, click[1], nil))
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != want {
				t.Errorf("click of %s: %d to %q, want 302 to %q", addr, rec.Code, rec.Header().Get("Location"), want)
			}
		}
	}

	if err := g.Stop(ctx); err != nil { // publishes what it stored, then returns
		t.Fatal(err)
	}
	if len(pub.ids) != 2 {
		t.Fatalf("recorded %d clicks, want one per recipient: %v", len(pub.ids), pub.ids)
	}
	for _, id := range pub.ids {
		body, err := f.st.InboxEventBody(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var re store.ReactionEvent
		if err := json.Unmarshal([]byte(body), &re); err != nil {
			t.Fatal(err)
		}
		if re.Type != string(store.ReactionClick) || re.CampaignSendID != cs.ID || re.URL != "https://shop.example/offer?u={{email}}&n={{fields.firstName}}" {
			t.Errorf("recorded %+v, want a click on the link as the template wrote it", re)
		}
	}
}
