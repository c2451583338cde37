package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"crmsync/store"
	"crmsync/store/storetest"
)

// TestRandomInterleavingsConverge is the property test of the rules: the same CRM
// events (webhooks, delivered late, out of order and twice) interleaved with the
// same eMS changes give one final subscriber, whatever the interleaving. An eMS
// change is made at its own time, so it is applied in time order; a CRM change made
// at t may be applied any time after t. The run in time order starts from the
// subscriber linked by the contact's Create; in the shuffled runs the Create (and
// its duplicates) comes anywhere. (A cs_subscription row that comes before any of
// its contact's events is rare here; TestSubscriptionRowBeforeItsRecordIsLinked…
// proves that case.)
//
// eMS edits of mapped fields are in: a mapped field the CRM has set follows the
// CRM, so an eMS edit of it counts only until the CRM's value arrives.
func TestRandomInterleavingsConverge(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	cfg := storetest.Config(t)
	cfg.Now = func() time.Time { return time.UnixMilli(clock.Load()).UTC() }
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.DropDatabase(context.Background())
		_ = st.Close(context.Background())
	})
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := newRulesFor(t, st, store.ConnectionInput{OrganizationURL: "https://acme.crm4.dynamics.com"},
		store.FieldMapping{CRMEntity: "contact", CRMAttribute: "cs_lang", SubscriberField: "language", Kind: store.MappingSimple},
		store.FieldMapping{CRMEntity: "contact", CRMAttribute: "cs_doi", SubscriberField: "doubleOptInStatus", Kind: store.MappingOptionSet,
			OptionLabels: map[string]any{"1": "Unknown", "2": "Externally documented"}},
		store.FieldMapping{CRMEntity: "contact", CRMAttribute: "gendercode", SubscriberField: "fields.salutation", Kind: store.MappingOptionSet,
			OptionLabels: map[string]any{"1": "Herr", "2": "Frau"}})
	base := r.t0.Truncate(time.Second)
	for seed := range uint64(8) {
		rnd := rand.New(rand.NewPCG(seed, 5))
		events := convergeEvents(rnd, base)
		want := r.convergeRun(&clock, base, events, slices.Clone(events), true)
		got := r.convergeRun(&clock, base, events, interleave(rnd, events), false)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("seed %d: shuffled\n%+v\nwant (in time order)\n%+v", seed, got, want)
		}
	}
}

// convergeEvent is one change of the property test, applied by kind to a run's
// own contact, subscription row and group.
type convergeEvent struct {
	at    time.Time
	crm   bool
	kind  string
	value string
}

// convergeEvents draws the changes of one trial, in time order: CRM changes on even
// seconds after the contact's Create at base, eMS changes on odd seconds, and the
// Create again (a duplicate delivery).
func convergeEvents(rnd *rand.Rand, base time.Time) []convergeEvent {
	crmKinds := []string{"lastname", "language", "donotbulkemail", "doi", "subscription", "gender"}
	emsKinds := []string{"language", "unsubscribe", "resubscribe", "city", "lastName", "salutation"}
	values := map[string][]string{
		"lastname": {"Meier", "Müller", "Schulz"}, "language": {"de", "en", "fr"}, "donotbulkemail": {"true", "false"},
		"doi": {"1", "2"}, "subscription": {"true", "false"}, "gender": {"1", "2"}, "city": {"Köln", "Bonn"},
		"unsubscribe": {""}, "resubscribe": {""}, "lastName": {"Ems", "Mail"}, "salutation": {"Divers", "Herr"},
	}
	events := []convergeEvent{{at: base, crm: true, kind: "create"}}
	for sec := 1; sec <= 24; sec++ {
		kinds, crm := emsKinds, sec%2 == 0
		if crm {
			kinds = crmKinds
		}
		kind := kinds[rnd.IntN(len(kinds))]
		vs := values[kind]
		events = append(events, convergeEvent{at: base.Add(time.Duration(sec) * time.Second), crm: crm, kind: kind, value: vs[rnd.IntN(len(vs))]})
	}
	return events
}

// interleave delays every CRM event by a random number of places and delivers some
// twice; eMS events keep their order.
func interleave(rnd *rand.Rand, events []convergeEvent) []convergeEvent {
	type placed struct {
		key float64
		ev  convergeEvent
	}
	var out []placed
	span := float64(len(events))
	for i, ev := range events {
		if !ev.crm {
			out = append(out, placed{float64(i), ev})
			continue
		}
		out = append(out, placed{float64(i) + rnd.Float64()*span, ev})
		if rnd.IntN(3) == 0 {
			out = append(out, placed{float64(i) + rnd.Float64()*span, ev})
		}
	}
	slices.SortStableFunc(out, func(a, b placed) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	seq := make([]convergeEvent, len(out))
	for i, p := range out {
		seq[i] = p.ev
	}
	return seq
}

// convergeState is what must converge: the subscriber without its ids, its
// run's own address and bookkeeping times.
type convergeState struct {
	Fields   map[string]any
	Language string
	State    store.SubscriptionState
	OptIn    store.DoubleOptInStatus
	Linked   bool
	Stamps   map[string]store.Stamp
}

// convergeRun applies seq — after the contact's Create (the link) when linkFirst —
// to a new group, contact and subscription row of their own, and returns the
// subscriber.
func (r *rules) convergeRun(clock *atomic.Int64, base time.Time, events, seq []convergeEvent, linkFirst bool) convergeState {
	r.t.Helper()
	ctx := context.Background()
	clock.Store(base.Add(-time.Second).UnixMilli())
	g, err := r.st.CreateGroup(ctx, "acme", store.GroupInput{Name: "Run " + uuid.NewString(), ConnectionID: r.conn.ID, CRMSync: true})
	if err != nil {
		r.t.Fatal(err)
	}
	contact, row, email := uuid.NewString(), uuid.NewString(), "run-"+uuid.NewString()[:8]+"@example.de"
	r.addSubscriber(g.ID, email, map[string]any{"city": "Berlin"})
	apply := func(ev convergeEvent) {
		if !ev.crm {
			clock.Store(ev.at.UnixMilli())
			r.emsChange(g.ID, email, ev)
			return
		}
		pre := attrs{"emailaddress1": email}
		switch ev.kind {
		case "create":
			r.apply(webhookBody("Create", "contact", contact, ev.at, attrs{"emailaddress1": email, "firstname": "Erika", "lastname": "Muster"}, nil))
		case "lastname":
			r.apply(webhookBody("Update", "contact", contact, ev.at, attrs{"lastname": ev.value}, pre))
		case "language":
			r.apply(webhookBody("Update", "contact", contact, ev.at, attrs{"cs_lang": ev.value}, pre))
		case "donotbulkemail":
			r.apply(webhookBody("Update", "contact", contact, ev.at, attrs{"donotbulkemail": ev.value == "true"}, pre))
		case "doi":
			r.apply(webhookBody("Update", "contact", contact, ev.at, attrs{"cs_doi": opt(ev.value[0] - '0')}, pre))
		case "gender":
			r.apply(webhookBody("Update", "contact", contact, ev.at, attrs{"gendercode": opt(ev.value[0] - '0')}, pre))
		case "subscription":
			r.apply(webhookBody("Update", "cs_subscription", row, ev.at,
				attrs{"cs_groupid": g.ID, "cs_subscribed": ev.value == "true", "cs_contactid": ref{"contact", contact}}, nil))
		default:
			r.t.Fatalf("unknown CRM change %q", ev.kind)
		}
	}
	if linkFirst {
		apply(events[0])
	}
	for _, ev := range seq {
		apply(ev)
	}
	if _, err := r.st.SetGroupCRMSync(ctx, "acme", g.ID, false); err != nil {
		r.t.Fatal(err) // later runs must not reach this group
	}
	s := r.sub(g.ID, email)
	return convergeState{Fields: s.Fields, Language: s.Language, State: s.SubscriptionState,
		OptIn: s.DoubleOptInStatus, Linked: s.CRMRecord != nil && s.CRMRecord.ID == contact, Stamps: s.Stamps}
}

// emsChange makes an eMS-side change through the store, at the store's clock.
func (r *rules) emsChange(groupID, email string, ev convergeEvent) {
	r.t.Helper()
	ctx := context.Background()
	in := store.SubscriberInput{Email: email}
	switch ev.kind {
	case "language":
		in.Language = &ev.value
	case "resubscribe":
		state := store.Subscribed
		in.SubscriptionState = &state
	case "city", "lastName", "salutation":
		in.Fields = map[string]any{ev.kind: ev.value}
	case "unsubscribe":
		if _, err := r.st.Unsubscribe(ctx, "acme", r.sub(groupID, email).ID); err != nil {
			r.t.Fatal(err)
		}
		return
	default:
		r.t.Fatalf("unknown eMS change %q", ev.kind)
	}
	if _, err := r.st.UpsertSubscribers(ctx, "acme", groupID, []store.SubscriberInput{in}); err != nil {
		r.t.Fatal(fmt.Errorf("eMS change %s: %w", ev.kind, err))
	}
}
