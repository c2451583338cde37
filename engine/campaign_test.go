package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"crmsync/engine"
	"crmsync/mail"
	"crmsync/mail/mailtest"
	"crmsync/queue"
	"crmsync/queue/queuetest"
	"crmsync/store"
	"crmsync/store/storetest"
)

// campaignFixture is a store with a group of subscribers and a Campaigns runner.
type campaignFixture struct {
	st    *store.Store
	group *store.Group
	jobs  *queue.Jobs
	toks  *mail.Tokens
}

func newCampaignFixture(t testing.TB, emails ...string) *campaignFixture {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	g, err := st.CreateGroup(ctx, "acme", store.GroupInput{Name: "News"})
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]store.SubscriberInput, len(emails))
	for i, e := range emails {
		rows[i] = store.SubscriberInput{Email: e, Fields: map[string]any{"firstName": strings.Split(e, "@")[0]}}
	}
	for len(rows) > 0 {
		n := min(len(rows), 5000)
		if _, err := st.UpsertSubscribers(ctx, "acme", g.ID, rows[:n]); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}
	rdb, keys := queuetest.Open(t)
	toks, err := mail.NewTokens([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return &campaignFixture{st: st, group: g, jobs: queue.NewJobs(rdb.Client, keys, 5*time.Second), toks: toks}
}

func (f *campaignFixture) runner(t testing.TB, sender mail.Sender, opts ...func(*engine.CampaignsConfig)) *engine.Campaigns {
	t.Helper()
	cfg := engine.CampaignsConfig{Store: f.st, Jobs: f.jobs, Tokens: f.toks, PublicURL: "https://crmsync.test", SMTP: sender, PageSize: 4, Backoff: time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := engine.NewCampaigns(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *campaignFixture) send(t testing.TB, c *engine.Campaigns) *store.CampaignSend {
	t.Helper()
	cs, err := c.CreateSend(context.Background(), engine.SendRequest{
		Tenant: "acme", GroupID: f.group.ID, Subject: "Hello {{fields.firstName}}", SenderName: "Shop", SenderEmail: "news@shop.test",
		HTMLBody: `<html><body><p>Hi {{fields.firstName}}</p><a href="https://shop.test/offer">Offer</a></body></html>`,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// runUntilDone ticks until the send has ended, making each backoff due at once.
func (f *campaignFixture) runUntilDone(t testing.TB, c *engine.Campaigns, id string) *store.CampaignSend {
	t.Helper()
	for range 50 {
		c.Tick(context.Background())
		cs, err := f.st.Send(context.Background(), "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		if cs.Status.Done() {
			return cs
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the send did not end")
	return nil
}

// countingSender records each recipient it is given; it can stop the runner (a
// crash) after a number of messages, and refuse chosen addresses.
type countingSender struct {
	mu      sync.Mutex
	got     map[string]int
	crashAt int
	crash   context.CancelFunc
	refuse  map[string]error
}

func (s *countingSender) Send(ctx context.Context, m *mail.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refuse[m.To]; err != nil {
		return err
	}
	if s.crash != nil && len(s.got) >= s.crashAt {
		s.crash()
		return ctx.Err()
	}
	s.got[m.To]++
	return nil
}

func (s *countingSender) Close() error { return nil }

// TestSendThatCrashesResumesWithoutDuplicates: a runner stopped in the middle of
// a page leaves the messages it claimed; the next attempt sends every other
// recipient and none of those twice, counting the interrupted ones unconfirmed.
func TestSendThatCrashesResumesWithoutDuplicates(t *testing.T) {
	t.Parallel()
	f := newCampaignFixture(t, emails(10)...)
	sender := &countingSender{got: map[string]int{}, crashAt: 6}
	c := f.runner(t, sender)
	cs := f.send(t, c)

	crashCtx, crash := context.WithCancel(context.Background())
	sender.crash = crash
	c.Tick(crashCtx) // dies after six messages, inside the second page of four
	sender.mu.Lock()
	sender.crash = nil
	sender.mu.Unlock()

	done := f.runUntilDone(t, c, cs.ID)
	for addr, n := range sender.got {
		if n != 1 {
			t.Errorf("%s got %d messages", addr, n)
		}
	}
	if done.Status != store.SendSent || done.RecipientCount != 10 {
		t.Fatalf("send = %s with %d recipients", done.Status, done.RecipientCount)
	}
	if done.Sent != len(sender.got) || done.Sent+done.Unconfirmed != 10 || done.Unconfirmed == 0 {
		t.Fatalf("sent %d (sender saw %d), unconfirmed %d; want them to add up to 10 with the crash's claims unconfirmed", done.Sent, len(sender.got), done.Unconfirmed)
	}
}

// TestSendRetriesTransientRefusalsAndCountsHardBounces: a transient refusal is
// tried again in a later pass; a permanent one is a bounce at once and queues a
// bounce reaction; the counts add up.
func TestSendRetriesTransientRefusalsAndCountsHardBounces(t *testing.T) {
	t.Parallel()
	f := newCampaignFixture(t, "ok@x.test", "later@x.test", "gone@x.test")
	smtp := mailtest.Start(t, true)
	smtp.Refuse("gone@x.test", 550)
	smtp.Refuse("later@x.test", 451)
	cfg, err := mail.ParseSMTPURL(smtp.URL)
	if err != nil {
		t.Fatal(err)
	}
	pool := mail.NewSMTP(cfg)
	t.Cleanup(func() { _ = pool.Close() })
	c := f.runner(t, pool)
	cs := f.send(t, c)
	c.Tick(context.Background()) // first pass: one sent, one deferred, one bounced
	first, _ := f.st.Send(context.Background(), "acme", cs.ID)
	if first.Status != store.SendSending || first.Sent != 1 || first.Deferred != 1 || first.Bounced != 1 || first.Pass != 1 {
		t.Fatalf("after the first pass: %+v", first)
	}
	smtp.Refuse("later@x.test", 0)
	done := f.runUntilDone(t, c, cs.ID)
	if done.Status != store.SendSent || done.Sent != 2 || done.Deferred != 0 || done.Bounced != 1 {
		t.Fatalf("at the end: status %s sent %d deferred %d bounced %d", done.Status, done.Sent, done.Deferred, done.Bounced)
	}
	got := smtp.Messages()
	if len(got) != 2 {
		t.Fatalf("the server got %d messages, want 2", len(got))
	}
	html := got[0].Body("text/html")
	if !strings.Contains(html, "Hi ok") || !strings.Contains(html, "https://crmsync.test/t/c/") || !strings.Contains(html, "https://crmsync.test/t/o/") {
		t.Errorf("message not personalised and tracked:\n%s", html)
	}
	if strings.Contains(html, "https://shop.test/offer") {
		t.Error("the link goes straight to the site, untracked")
	}
	if u := got[0].Header.Get("List-Unsubscribe"); !strings.HasPrefix(u, "<https://crmsync.test/u/") || got[0].Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
		t.Errorf("one-click unsubscribe headers: %q", u)
	}
	gone, err := f.st.SubscriberByEmail(context.Background(), "acme", f.group.ID, "gone@x.test")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := f.st.InboxEvent(context.Background(), "bounce-"+mustMessageOf(t, f.st, cs.ID, gone.ID))
	if err != nil || ev.Source != "reaction" || ev.RecordID != gone.ID {
		t.Fatalf("the hard bounce queued no reaction: %+v, %v", ev, err)
	}
}

func mustMessageOf(t *testing.T, st *store.Store, sendID, subscriberID string) string {
	t.Helper()
	m, err := st.MessageByEmail(context.Background(), "acme", sendID, "", subscriberID)
	if err != nil {
		t.Fatal(err)
	}
	return m.ID
}

// TestSendLeavesOutWhoMustNotGetIt: unsubscribed, bounced and unconfirmed
// subscribers are not recipients, and the reasons are counted.
func TestSendLeavesOutWhoMustNotGetIt(t *testing.T) {
	t.Parallel()
	f := newCampaignFixture(t, "yes@x.test", "no@x.test", "bounced@x.test")
	ctx := context.Background()
	no, _ := f.st.SubscriberByEmail(ctx, "acme", f.group.ID, "no@x.test")
	if _, err := f.st.Unsubscribe(ctx, "acme", no.ID); err != nil {
		t.Fatal(err)
	}
	b, _ := f.st.SubscriberByEmail(ctx, "acme", f.group.ID, "bounced@x.test")
	if _, err := f.st.RecordBounce(ctx, "acme", b.ID, true, 3); err != nil {
		t.Fatal(err)
	}
	sender := &countingSender{got: map[string]int{}}
	c := f.runner(t, sender)
	done := f.runUntilDone(t, c, f.send(t, c).ID)
	if done.RecipientCount != 1 || sender.got["yes@x.test"] != 1 || len(sender.got) != 1 {
		t.Fatalf("recipients %d, sent to %v", done.RecipientCount, sender.got)
	}
	if done.Excluded["unsubscribed"] != 1 || done.Excluded["bounced"] != 1 {
		t.Fatalf("excluded = %v", done.Excluded)
	}
}

// TestCancelStopsASendBeforeItsNextPage: a send asked to stop sends no further page.
func TestCancelStopsASendBeforeItsNextPage(t *testing.T) {
	t.Parallel()
	f := newCampaignFixture(t, emails(8)...)
	sender := &countingSender{got: map[string]int{}}
	var c *engine.Campaigns
	var cs *store.CampaignSend
	cancelled := false
	c = f.runner(t, senderFunc(func(ctx context.Context, m *mail.Message) error {
		if !cancelled {
			cancelled = true
			if _, err := f.st.CancelSend(ctx, "acme", cs.ID); err != nil {
				return err
			}
		}
		return sender.Send(ctx, m)
	}), func(cfg *engine.CampaignsConfig) { cfg.Workers = 1 })
	cs = f.send(t, c)
	done := f.runUntilDone(t, c, cs.ID)
	if done.Status != store.SendCancelled || done.Sent != 4 || len(sender.got) != 4 {
		t.Fatalf("status %s, sent %d (sender %d); want CANCELLED after the first page of 4", done.Status, done.Sent, len(sender.got))
	}
}

type senderFunc func(ctx context.Context, m *mail.Message) error

func (f senderFunc) Send(ctx context.Context, m *mail.Message) error { return f(ctx, m) }
func (f senderFunc) Close() error                                    { return nil }

// TestSendRequestValidation: each bad input names its field.
func TestSendRequestValidation(t *testing.T) {
	t.Parallel()
	f := newCampaignFixture(t, "a@x.test")
	c := f.runner(t, &countingSender{got: map[string]int{}})
	noSMTP := f.runner(t, nil)
	good := engine.SendRequest{Tenant: "acme", GroupID: f.group.ID, Subject: "S", SenderName: "N", SenderEmail: "n@x.test", TextBody: "hi"}
	for _, tc := range []struct {
		name   string
		c      *engine.Campaigns
		change func(*engine.SendRequest)
		field  string
	}{
		{"no subject", c, func(r *engine.SendRequest) { r.Subject = " " }, "subject"},
		{"two-line subject", c, func(r *engine.SendRequest) { r.Subject = "a\r\nBcc: x@y" }, "subject"},
		{"no sender", c, func(r *engine.SendRequest) { r.SenderName = "" }, "senderName"},
		{"bad sender address", c, func(r *engine.SendRequest) { r.SenderEmail = "not an address" }, "senderEmail"},
		{"no body", c, func(r *engine.SendRequest) { r.TextBody = "" }, "htmlBody"},
		{"nothing to send to", c, func(r *engine.SendRequest) { r.GroupID = "" }, "groupId"},
		{"another tenant's group", c, func(r *engine.SendRequest) { r.Tenant = "other" }, "groupId"},
		{"unknown list", c, func(r *engine.SendRequest) { r.ListIDs = []string{"00000000-0000-0000-0000-000000000009"} }, "listIds[0]"},
		{"no way to deliver", noSMTP, func(r *engine.SendRequest) {}, "senderEmail"},
	} {
		in := good
		tc.change(&in)
		_, err := tc.c.CreateSend(context.Background(), in)
		var inv *store.InvalidError
		if !errors.As(err, &inv) || inv.Field != tc.field {
			t.Errorf("%s: %v, want invalid %s", tc.name, err, tc.field)
		}
	}
}

// BenchmarkSendOverSMTP sends a campaign to 10,000 recipients through the
// pooled SMTP sender to a real (in-process) SMTP server, on the store the tests
// use, and reports messages per second.
func BenchmarkSendOverSMTP(b *testing.B) {
	const recipients = 10000
	for range b.N {
		b.StopTimer()
		f := newCampaignFixture(b, emails(recipients)...)
		smtp := mailtest.Start(b, false)
		cfg, err := mail.ParseSMTPURL(smtp.URL)
		if err != nil {
			b.Fatal(err)
		}
		pool := mail.NewSMTP(cfg)
		c := f.runner(b, pool, func(cfg *engine.CampaignsConfig) { cfg.PageSize = 500 })
		cs := f.send(b, c)
		stopPeak := samplePeakHeap()
		b.StartTimer()
		start := time.Now()
		done := f.runUntilDone(b, c, cs.ID)
		b.ReportMetric(float64(done.Sent)/time.Since(start).Seconds(), "msgs/s")
		b.ReportMetric(float64(stopPeak())/(1<<20), "peak-heap-MB")
		b.StopTimer()
		if done.Sent != recipients || smtp.Count() != recipients {
			b.Fatalf("sent %d, server got %d", done.Sent, smtp.Count())
		}
		_ = pool.Close()
	}
}

// samplePeakHeap samples the heap in use until the returned func is called, and
// that func answers the largest sample (this process holds the embedded store too).
func samplePeakHeap() func() uint64 {
	var peak uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); <-stopped; return peak }
}

// emails are n distinct addresses.
func emails(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("r%05d@x.test", i)
	}
	return out
}

// TestSendingEngineGetsSignedMessages: a connection with a sending engine hands
// each message to it as a Standard Webhooks call, signed with its secret, once per
// recipient, with the message id as the webhook id.
func TestSendingEngineGetsSignedMessages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newCampaignFixture(t, "a@x.test", "b@x.test")
	conn, err := f.st.CreateConnection(ctx, "acme", store.ConnectionInput{
		Name: "CRM", OrganizationURL: "https://org.crm4.dynamics.com", WebhookAuthMode: store.WebhookKey,
		WebhookAuthValue: "a-webhook-key-of-some-length", RecipientType: store.RecipientContact, DefaultLanguage: "de",
	})
	if err != nil {
		t.Fatal(err)
	}
	secret := "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	var mu sync.Mutex
	got := map[string]string{} // webhook-id → recipient
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
		want, _ := mail.Sign(secret, r.Header.Get("webhook-id"), time.Unix(ts, 0), body)
		if r.Header.Get("webhook-signature") != want {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m struct{ MessageID, To string }
		_ = json.Unmarshal(body, &m)
		mu.Lock()
		got[r.Header.Get("webhook-id")] = m.To
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	url, first := srv.URL, store.ResponseFirstPerType
	if _, err := f.st.SetCampaignSettings(ctx, "acme", conn.ID, store.CampaignSettingsUpdate{SendingEngineURL: &url, SendingEngineSecret: &secret, Responses: &first}); err != nil {
		t.Fatal(err)
	}
	g, err := f.st.CreateGroup(ctx, "acme", store.GroupInput{Name: "Engine", ConnectionID: conn.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.UpsertSubscribers(ctx, "acme", g.ID, []store.SubscriberInput{{Email: "a@x.test"}, {Email: "b@x.test"}}); err != nil {
		t.Fatal(err)
	}
	c := f.runner(t, nil) // no SMTP: only the engine can deliver
	cs, err := c.CreateSend(ctx, engine.SendRequest{Tenant: "acme", GroupID: g.ID, Subject: "S", SenderName: "N", SenderEmail: "n@x.test", TextBody: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	done := f.runUntilDone(t, c, cs.ID)
	if done.Status != store.SendSent || done.Sent != 2 || len(got) != 2 {
		t.Fatalf("status %s sent %d, engine got %v", done.Status, done.Sent, got)
	}
	for id, to := range got {
		if m, err := f.st.Message(ctx, id); err != nil || m.Email != to {
			t.Errorf("webhook id %s is not the message id of %s: %+v, %v", id, to, m, err)
		}
	}
}
