package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"crmsync/store"
	"crmsync/store/storetest"
)

func newSend(t *testing.T, s *store.Store, tenant string) *store.CampaignSend {
	t.Helper()
	cs := &store.CampaignSend{Tenant: tenant, Subject: "Hello", SenderName: "Shop", SenderEmail: "news@shop.test", Status: store.SendScheduled}
	if created, err := s.CreateSend(context.Background(), cs); err != nil || !created {
		t.Fatalf("CreateSend: created %v, %v", created, err)
	}
	return cs
}

func TestCampaignSendIsCreatedOncePerID(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	cs := newSend(t, s, "t1")
	again := &store.CampaignSend{ID: cs.ID, Tenant: "t1", Subject: "Other", Status: store.SendScheduled}
	created, err := s.CreateSend(ctx, again)
	if err != nil || created {
		t.Fatalf("second CreateSend with the same id: created %v, %v", created, err)
	}
	got, err := s.Send(ctx, "t1", cs.ID)
	if err != nil || got.Subject != "Hello" {
		t.Fatalf("the first send must stay: %+v, %v", got, err)
	}
	if _, err := s.Send(ctx, "t2", cs.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another tenant's send: %v, want ErrNotFound", err)
	}
}

func TestMessageClaimHasOneWinner(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	cs := newSend(t, s, "t1")
	rs := []*store.CampaignRecipient{
		{Tenant: "t1", SendID: cs.ID, Seq: 0, Email: "a@x.test", SubscriberID: "s-a", Fields: map[string]any{"firstName": "Ann"}},
		{Tenant: "t1", SendID: cs.ID, Seq: 1, Email: "b@x.test", SubscriberID: "s-b"},
	}
	if err := s.AddRecipients(ctx, rs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Recipients(ctx, cs.ID, 0, 5)
	if err != nil || len(got) != 2 || got[0].Email != "a@x.test" || got[1].Seq != 1 || got[0].Message == "" {
		t.Fatalf("Recipients: %+v, %v", got, err)
	}
	if r, err := s.Recipient(ctx, got[0].ID); err != nil || r.Message != got[0].Message || r.Fields["firstName"] != "Ann" {
		t.Fatalf("Recipient by id: %+v, %v", r, err)
	}
	if _, err := s.Recipient(ctx, cs.ID+"|nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown recipient: %v, want ErrNotFound", err)
	}
	claim := func() []bool {
		ms := []*store.CampaignMessage{
			{ID: got[0].Message, Tenant: "t1", SendID: cs.ID, Email: "a@x.test", Tries: 1},
			{ID: got[1].Message, Tenant: "t1", SendID: cs.ID, Email: "b@x.test", Tries: 1},
		}
		ok, err := s.ClaimMessages(ctx, ms)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if first := claim(); !first[0] || !first[1] {
		t.Fatalf("first claim: %v, want both", first)
	}
	if second := claim(); second[0] || second[1] {
		t.Fatalf("second claim: %v, want none", second)
	}
	m, err := s.Message(ctx, got[0].Message)
	if err != nil || m.State != store.MessageClaimed {
		t.Fatalf("claimed message: %+v, %v", m, err)
	}
	m.State, m.At = store.MessageSent, time.Now().UTC()
	if err := s.RecordMessages(ctx, []*store.CampaignMessage{m}); err != nil {
		t.Fatal(err)
	}
	byMail, err := s.MessageByEmail(ctx, "t1", cs.ID, " A@X.test ", "")
	if err != nil || byMail.ID != m.ID || byMail.State != store.MessageSent {
		t.Fatalf("MessageByEmail: %+v, %v", byMail, err)
	}
	if _, err := s.MessageByEmail(ctx, "t2", cs.ID, "a@x.test", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another tenant's message: %v", err)
	}
}

func TestCancelSend(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	waiting := newSend(t, s, "t1")
	got, err := s.CancelSend(ctx, "t1", waiting.ID)
	if err != nil || got.Status != store.SendCancelled {
		t.Fatalf("cancel a scheduled send: %+v, %v", got, err)
	}
	if _, err := s.CancelSend(ctx, "t1", waiting.ID); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("cancel a cancelled send: %v, want a conflict", err)
	}
	if _, err := s.CancelSend(ctx, "t2", waiting.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancel another tenant's send: %v", err)
	}

	running := newSend(t, s, "t1")
	if err := s.StartSend(ctx, running, 7); err != nil {
		t.Fatal(err)
	}
	running.Resolved, running.Status = true, store.SendSending
	if err := s.SaveSendProgress(ctx, running); err != nil {
		t.Fatal(err)
	}
	got, err = s.CancelSend(ctx, "t1", running.ID)
	if err != nil || got.Status != store.SendSending || !got.CancelRequested {
		t.Fatalf("cancel a running send: %+v, %v; want it asked to stop", got, err)
	}
	if asked, err := s.CancelRequested(ctx, running.ID); err != nil || !asked {
		t.Fatalf("CancelRequested: %v, %v", asked, err)
	}
}

func TestSendProgressIsFenced(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	cs := newSend(t, s, "t1")
	old := *cs
	if err := s.StartSend(ctx, &old, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.StartSend(ctx, cs, 2); err != nil {
		t.Fatal(err)
	}
	old.Sent = 99
	if err := s.SaveSendProgress(ctx, &old); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("a runner whose lease passed on saved progress: %v", err)
	}
	if err := s.StartSend(ctx, &old, 1); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("an older token took the send back: %v", err)
	}
	cs.Sent = 3
	if err := s.SaveSendProgress(ctx, cs); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Send(ctx, "t1", cs.ID)
	if got.Sent != 3 {
		t.Fatalf("sent = %d, want 3", got.Sent)
	}
}

func TestReactionsCountOncePerWindow(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 29, 10, 5, 0, 0, time.UTC)
	add := func(msg string, typ store.ReactionType, url string, at time.Time) bool {
		r, added, err := s.AddReaction(ctx, &store.Reaction{Tenant: "t1", SendID: "send-1", Message: msg, Type: typ, URL: url, OccurredAt: at})
		if err != nil || r == nil {
			t.Fatal(err)
		}
		return added
	}
	steps := []struct {
		msg  string
		typ  store.ReactionType
		url  string
		at   time.Time
		want bool
	}{
		{"m1", store.ReactionOpen, "", at, true},
		{"m1", store.ReactionOpen, "", at.Add(10 * time.Minute), false}, // same window
		{"m1", store.ReactionOpen, "", at.Add(2 * time.Hour), true},     // a later open
		{"m1", store.ReactionClick, "https://a.test/", at, true},
		{"m1", store.ReactionClick, "https://a.test/", at.Add(time.Minute), false},
		{"m1", store.ReactionClick, "https://b.test/", at, true},
		{"m2", store.ReactionOpen, "", at, true},
	}
	for i, st := range steps {
		if got := add(st.msg, st.typ, st.url, st.at); got != st.want {
			t.Errorf("step %d (%s %s %s): added %v, want %v", i, st.msg, st.typ, st.url, got, st.want)
		}
	}
	n, err := s.ReactionCounts(ctx, "t1", "send-1")
	if err != nil || n[store.ReactionOpen] != 3 || n[store.ReactionClick] != 2 {
		t.Fatalf("counts %v, %v; want 3 opens, 2 clicks", n, err)
	}
	if other, _ := s.ReactionCounts(ctx, "t2", "send-1"); len(other) != 0 {
		t.Fatalf("another tenant sees counts: %v", other)
	}
	open := store.ReactionOpen
	page, more, err := s.ReactionsPage(ctx, "t1", "send-1", &open, "", 2)
	if err != nil || len(page) != 2 || !more {
		t.Fatalf("page of opens: %d, more %v, %v", len(page), more, err)
	}
}

func TestFirstResponseClaimStaysWithItsReaction(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	for i, c := range []struct {
		reaction string
		want     bool
	}{{"r1", true}, {"r2", false}, {"r1", true}} {
		got, err := s.ClaimFirstResponse(ctx, "m1", store.ReactionOpen, c.reaction)
		if err != nil || got != c.want {
			t.Errorf("claim %d by %s: %v, %v; want %v", i, c.reaction, got, err, c.want)
		}
	}
}

func TestBouncesMarkTheAddressInvalid(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	g, err := s.CreateGroup(ctx, "t1", store.GroupInput{Name: "News"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.UpsertSubscribers(ctx, "t1", g.ID, []store.SubscriberInput{{Email: "soft@x.test"}, {Email: "hard@x.test"}})
	if err != nil {
		t.Fatal(err)
	}
	soft, _ := s.SubscriberByEmail(ctx, "t1", g.ID, "soft@x.test")
	hard, _ := s.SubscriberByEmail(ctx, "t1", g.ID, "hard@x.test")
	_ = res
	for i := 1; i <= 3; i++ {
		invalid, err := s.RecordBounce(ctx, "t1", soft.ID, false, 3)
		if err != nil || invalid != (i == 3) {
			t.Fatalf("soft bounce %d: invalid %v, %v", i, invalid, err)
		}
	}
	if invalid, err := s.RecordBounce(ctx, "t1", hard.ID, true, 3); err != nil || !invalid {
		t.Fatalf("hard bounce: invalid %v, %v", invalid, err)
	}
	if _, err := s.RecordBounce(ctx, "t2", hard.ID, true, 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another tenant's subscriber: %v", err)
	}
}

func TestCampaignSettingsValidate(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	c, err := s.CreateConnection(ctx, "t1", validConnection())
	if err != nil {
		t.Fatal(err)
	}
	intp := func(n int) *int { return &n }
	strp := func(v string) *string { return &v }
	mode := store.ResponseMode("EVERY_OTHER")
	for _, bad := range []struct {
		in    store.CampaignSettingsUpdate
		field string
	}{
		{store.CampaignSettingsUpdate{SendRatePerMinute: intp(-1)}, "sendRatePerMinute"},
		{store.CampaignSettingsUpdate{SoftBounceLimit: intp(0)}, "softBounceLimit"},
		{store.CampaignSettingsUpdate{Responses: &mode}, "responses"},
		{store.CampaignSettingsUpdate{SendingEngineURL: strp("ftp://x")}, "sendingEngineUrl"},
		{store.CampaignSettingsUpdate{SendingEngineURL: strp("https://engine.test/hook")}, "sendingEngineSecret"},
		{store.CampaignSettingsUpdate{SendingEngineURL: strp("https://engine.test/hook"), SendingEngineSecret: strp("plain")}, "sendingEngineSecret"},
	} {
		_, err := s.SetCampaignSettings(ctx, "t1", c.ID, bad.in)
		var inv *store.InvalidError
		if !errors.As(err, &inv) || inv.Field != bad.field {
			t.Errorf("%+v: %v, want invalid %s", bad.in, err, bad.field)
		}
	}
	first := store.ResponseFirstPerType
	secret := "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	got, err := s.SetCampaignSettings(ctx, "t1", c.ID, store.CampaignSettingsUpdate{
		SendRatePerMinute: intp(600), Responses: &first, SoftBounceLimit: intp(2),
		SendingEngineURL: strp("https://engine.test/hook"), SendingEngineSecret: &secret,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Campaigns.SendRatePerMinute != 600 || got.Campaigns.ResponseMode() != first || got.Campaigns.SoftBounces() != 2 {
		t.Fatalf("settings %+v", got.Campaigns)
	}
	if open, err := s.SendingEngineSecret(got); err != nil || open != secret {
		t.Fatalf("sealed secret opens to %q, %v", open, err)
	}
	if string(got.Campaigns.SendingEngineSecret) == secret {
		t.Fatal("the sending engine secret is stored in plain text")
	}
}

// TestReactionCountsAreExactUnderConcurrency: reactions stored at once from many
// goroutines, some of them duplicates, count exactly once each: a count of
// inserted documents, not a counter updated in place.
func TestReactionCountsAreExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two goroutines per message: the second is a duplicate within the window.
			_, _, err := s.AddReaction(ctx, &store.Reaction{Tenant: "t1", SendID: "send-c", Message: fmt.Sprintf("m%02d", i/2), Type: store.ReactionOpen, OccurredAt: at})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	n, err := s.ReactionCounts(ctx, "t1", "send-c")
	if err != nil || n[store.ReactionOpen] != 20 {
		t.Fatalf("opens = %d, %v; want 20", n[store.ReactionOpen], err)
	}
}

// TestCancelWinsOverAResolvingRunner: a send cancelled while its runner resolves
// the recipients stays cancelled; the runner's next save is refused.
func TestCancelWinsOverAResolvingRunner(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	cs := newSend(t, s, "t1")
	if err := s.StartSend(ctx, cs, 3); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CancelSend(ctx, "t1", cs.ID); err != nil || got.Status != store.SendCancelled {
		t.Fatalf("cancel: %+v, %v", got, err)
	}
	cs.Resolved, cs.Status = true, store.SendSending
	if err := s.SaveSendProgress(ctx, cs); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the runner's save after a cancel: %v, want ErrFenced", err)
	}
	if got, _ := s.Send(ctx, "t1", cs.ID); got.Status != store.SendCancelled {
		t.Fatalf("status %s, want CANCELLED", got.Status)
	}
}
