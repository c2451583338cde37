package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"crmsync/store"
	"crmsync/store/storetest"
)

func addSubscriber(t *testing.T, s *store.Store, g *store.Group, email string, in store.SignUp) *store.Subscriber {
	t.Helper()
	sub, existing, err := s.AddSubscriber(context.Background(), g, email, in)
	if err != nil || existing {
		t.Fatalf("AddSubscriber %s: existing %v, %v", email, existing, err)
	}
	return sub
}

func TestConsentLedgerReadsInTheOrderWritten(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	news, fair := newGroup(t, s, "t1"), newGroup(t, s, "t1")
	a := addSubscriber(t, s, news, "ann@example.de", store.SignUp{})
	b := addSubscriber(t, s, fair, "ann@example.de", store.SignUp{})
	t0 := time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC)
	ev := func(sub *store.Subscriber, action store.ConsentAction, source store.ConsentSource, at time.Time) *store.ConsentEvent {
		return &store.ConsentEvent{Tenant: "t1", SubscriberID: sub.ID, GroupID: sub.GroupID, Email: sub.Email, Action: action, Source: source, At: at, IP: "192.0.2.1"}
	}
	if err := s.AppendConsent(ctx, ev(a, store.ConsentRequested, store.SourceForm, t0), ev(a, store.ConsentConfirmed, store.SourceConfirmation, t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendConsent(ctx, ev(b, store.ConsentSubscribed, store.SourceOperator, t0), ev(a, store.ConsentUnsubscribed, store.SourceUnsubscribeLink, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	page, more, err := s.ConsentHistory(ctx, "t1", a.ID, "", 2)
	if err != nil || !more || len(page) != 2 || page[0].Action != store.ConsentRequested || page[1].Action != store.ConsentConfirmed {
		t.Fatalf("first page: %+v more %v, %v", page, more, err)
	}
	rest, more, err := s.ConsentHistory(ctx, "t1", a.ID, page[1].ID, 10)
	if err != nil || more || len(rest) != 1 || rest[0].Action != store.ConsentUnsubscribed || !rest[0].At.Equal(t0.Add(time.Hour)) {
		t.Fatalf("second page: %+v more %v, %v", rest, more, err)
	}
	if n, err := s.CountConsent(ctx, "t1", a.ID); err != nil || n != 3 {
		t.Errorf("CountConsent = %d, %v", n, err)
	}
	if page, _, _ := s.ConsentHistory(ctx, "t2", a.ID, "", 10); len(page) != 0 {
		t.Errorf("another tenant sees %d entries", len(page))
	}
	all, err := s.ConsentByEmail(ctx, "t1", " ANN@example.de")
	if err != nil || len(all) != 4 || all[2].GroupID != fair.ID {
		t.Fatalf("ConsentByEmail: %d entries, %v", len(all), err)
	}

	// Erasure removes the address and the browser's traces; the entries stay.
	if err := s.DeleteSubscriber(ctx, "t1", a.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	all, err = s.ConsentByEmail(ctx, "t1", "ann@example.de")
	if err != nil || len(all) != 1 || all[0].SubscriberID != b.ID {
		t.Fatalf("after erasing one subscriber, the export holds %d entries, %v", len(all), err)
	}
	kept, _, err := s.ConsentHistory(ctx, "t1", a.ID, "", 10)
	if err != nil || len(kept) != 3 || kept[0].Email != "" || kept[0].IP != "" || kept[0].Source != store.SourceForm {
		t.Fatalf("erased entries: %+v, %v", kept, err)
	}
}

func TestSuppressionGivesTheReasonOfEachAddress(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	conn, err := s.CreateConnection(ctx, "t1", validConnection())
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateConnection(ctx, "t1", validConnection())
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.CreateGroup(ctx, "t1", store.GroupInput{Name: "News", ConnectionID: conn.ID})
	if err != nil {
		t.Fatal(err)
	}
	og, err := s.CreateGroup(ctx, "t1", store.GroupInput{Name: "Other", ConnectionID: other.ID})
	if err != nil {
		t.Fatal(err)
	}
	unsub := store.SignUp{State: store.Unsubscribed}
	left := addSubscriber(t, s, g, "left@example.de", unsub)       // the ledger says how
	complained := addSubscriber(t, s, g, "spam@example.de", unsub) // the ledger says how
	addSubscriber(t, s, g, "quiet@example.de", unsub)              // no ledger entry
	bounced := addSubscriber(t, s, g, "gone@example.de", store.SignUp{})
	addSubscriber(t, s, g, "happy@example.de", store.SignUp{}) // subscribed: not listed
	addSubscriber(t, s, og, "elsewhere@example.de", unsub)     // another connection's
	if _, err := s.RecordBounce(ctx, "t1", bounced.ID, true, 3); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC)
	entry := func(sub *store.Subscriber, action store.ConsentAction) *store.ConsentEvent {
		return &store.ConsentEvent{Tenant: "t1", SubscriberID: sub.ID, GroupID: g.ID, Email: sub.Email, Action: action, Source: store.SourceReaction, At: at}
	}
	if err := s.AppendConsent(ctx, entry(left, store.ConsentSubscribed), entry(left, store.ConsentUnsubscribed),
		entry(complained, store.ConsentComplained), entry(bounced, store.ConsentBounced)); err != nil {
		t.Fatal(err)
	}
	page, more, err := s.SuppressionPage(ctx, "t1", conn.ID, "", 3)
	if err != nil || !more || len(page) != 3 {
		t.Fatalf("first page: %d, more %v, %v", len(page), more, err)
	}
	rest, more, err := s.SuppressionPage(ctx, "t1", conn.ID, page[2].SubscriberID, 10)
	if err != nil || more || len(rest) != 1 {
		t.Fatalf("second page: %d, more %v, %v", len(rest), more, err)
	}
	got := map[string]store.ConsentAction{}
	for _, p := range append(page, rest...) {
		got[p.Email] = p.Reason
		if p.At.IsZero() {
			t.Errorf("%s: no time", p.Email)
		}
	}
	want := map[string]store.ConsentAction{
		"left@example.de": store.ConsentUnsubscribed, "spam@example.de": store.ConsentComplained,
		"quiet@example.de": store.ConsentUnsubscribed, "gone@example.de": store.ConsentBounced,
	}
	if len(got) != len(want) {
		t.Errorf("suppressed %v, want %v", got, want)
	}
	for e, r := range want {
		if got[e] != r {
			t.Errorf("%s: reason %q, want %q", e, got[e], r)
		}
	}
	if n, err := s.CountSuppressed(ctx, "t1", conn.ID); err != nil || n != 4 {
		t.Errorf("CountSuppressed = %d, %v", n, err)
	}
	if page, _, err := s.SuppressionPage(ctx, "t2", conn.ID, "", 10); err != nil || len(page) != 0 {
		t.Errorf("another tenant: %d, %v", len(page), err)
	}
}

func TestAddSubscriberClaimsTheAddressOnce(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	g := newGroup(t, s, "t1")
	first := addSubscriber(t, s, g, "ann@example.de", store.SignUp{OptIn: store.OptInPending, Fields: map[string]any{"firstName": "Ann"}})
	if first.DoubleOptInStatus != store.OptInPending || first.SubscriptionState != store.Subscribed || first.Language != "de" || first.Fields["firstName"] != "Ann" {
		t.Errorf("new subscriber: %+v", first)
	}
	held, existing, err := s.AddSubscriber(ctx, g, "ann@example.de", store.SignUp{})
	if err != nil || !existing || held.ID != first.ID {
		t.Fatalf("second AddSubscriber: %+v existing %v, %v", held, existing, err)
	}
	// Only a PENDING subscriber expires.
	if err := s.ApplySignUp(ctx, held, store.SignUp{OptIn: store.OptInConfirmed}); err != nil {
		t.Fatal(err)
	}
	if removed, err := s.ExpireSubscriber(ctx, first); err != nil || removed {
		t.Fatalf("expiring a confirmed subscriber: removed %v, %v", removed, err)
	}
	pending := addSubscriber(t, s, g, "bob@example.de", store.SignUp{OptIn: store.OptInPending})
	if removed, err := s.ExpireSubscriber(ctx, pending); err != nil || !removed {
		t.Fatalf("expiring a pending subscriber: removed %v, %v", removed, err)
	}
	if _, err := s.SubscriberByEmail(ctx, "t1", g.ID, "bob@example.de"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired subscriber still found: %v", err)
	}
	again := addSubscriber(t, s, g, "bob@example.de", store.SignUp{})
	if again.ID == pending.ID {
		t.Error("the address was not released")
	}
	if err := s.ApplySignUp(ctx, pending, store.SignUp{State: store.Subscribed}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ApplySignUp brought an expired subscriber back: %v", err)
	}
}

func TestConfirmationLinkIsUsedOnce(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	c := &store.Confirmation{ID: "c1", Tenant: "t1", SubscriberID: "s1", Email: "ann@example.de", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.AddConfirmation(ctx, c); err != nil {
		t.Fatal(err)
	}
	if first, err := s.UseConfirmation(ctx, c); err != nil || !first {
		t.Fatalf("first use: %v, %v", first, err)
	}
	if first, err := s.UseConfirmation(ctx, c); err != nil || first {
		t.Fatalf("second use: %v, %v", first, err)
	}
	if used, err := s.ConfirmationUsed(ctx, "c1"); err != nil || !used {
		t.Errorf("ConfirmationUsed = %v, %v", used, err)
	}
	if n, err := s.LiveConfirmations(ctx, "t1", "s1", t0); err != nil || n != 1 {
		t.Errorf("LiveConfirmations = %d, %v", n, err)
	}
	if got, err := s.ExpiredConfirmations(ctx, t0.Add(time.Hour), 10); err != nil || len(got) != 1 {
		t.Errorf("ExpiredConfirmations = %d, %v", len(got), err)
	}
	if err := s.PruneConfirmationUses(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if used, err := s.ConfirmationUsed(ctx, "c1"); err != nil || used {
		t.Errorf("after the prune: used %v, %v", used, err)
	}
}

// TestUpsertRecordsOperatorConsent: subscribers an operator adds, and a
// subscription state an operator changes, are in the ledger with the operator;
// an upsert that changes no state adds nothing.
func TestUpsertRecordsOperatorConsent(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := store.WithActor(context.Background(), "ops@acme")
	g, err := s.CreateGroup(ctx, "t1", store.GroupInput{Name: "News"})
	if err != nil {
		t.Fatal(err)
	}
	unsub, subscribed := store.Unsubscribed, store.Subscribed
	for _, rows := range [][]store.SubscriberInput{
		{{Email: "b@x.test"}}, // new, no state given: nothing to record
		{{Email: "a@x.test", SubscriptionState: &subscribed}}, // new and SUBSCRIBED by the operator
		{{Email: "a@x.test", Fields: map[string]any{"n": 1}}}, // no state change
		{{Email: "a@x.test", SubscriptionState: &unsub}},      // UNSUBSCRIBED
	} {
		if _, err := s.UpsertSubscribers(ctx, "t1", g.ID, rows); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := s.SubscriberByEmail(ctx, "t1", g.ID, "a@x.test")
	evs, _, err := s.ConsentHistory(ctx, "t1", a.ID, "", 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("ledger = %d entries, %v; want 2", len(evs), err)
	}
	if evs[0].Action != store.ConsentSubscribed || evs[1].Action != store.ConsentUnsubscribed ||
		evs[1].Source != store.SourceOperator || evs[1].Actor != "ops@acme" {
		t.Fatalf("ledger = %+v, %+v", evs[0], evs[1])
	}
	b, _ := s.SubscriberByEmail(ctx, "t1", g.ID, "b@x.test")
	if n, err := s.CountConsent(ctx, "t1", b.ID); err != nil || n != 0 {
		t.Fatalf("a subscriber added without a state has %d ledger entries, %v", n, err)
	}
}
