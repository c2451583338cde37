package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
)

// countedCRM is an emulator served behind a request counter, and a client acting
// as its human user.
type countedCRM struct {
	*emulator.Emulator
	url     string
	counter *emulator.RequestCounter
	user    *dataverse.Client
}

func startCountedEmulator(t *testing.T) *countedCRM {
	t.Helper()
	dv := emulator.New(emulator.Config{})
	counter := emulator.NewRequestCounter(dv)
	srv := httptest.NewServer(counter)
	t.Cleanup(func() {
		srv.Close()
		_ = dv.Close()
	})
	user, err := dataverse.NewClient(dataverse.Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: "emulator-user", ClientSecret: "emulator-user-secret"})
	if err != nil {
		t.Fatal(err)
	}
	return &countedCRM{Emulator: dv, url: srv.URL, counter: counter, user: user}
}

// crmsyncRequests is how many Web API requests crmsync (the application user) sent.
func (c *countedCRM) crmsyncRequests() int64 { return c.counter.Requests(c.ApplicationUserID()) }

// rows reads the rows of a table that match a filter.
func (c *countedCRM) rows(t *testing.T, set string, sel []string, filter string) []dataverse.Row {
	t.Helper()
	ctx := context.Background()
	rows := c.user.Query(ctx, set, dataverse.Query{Select: sel, Filter: filter})
	var out []dataverse.Row
	for rows.Next(ctx) {
		out = append(out, rows.Row())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// syncedGroup creates a CRM-synced group of a connection.
func (in *instance) syncedGroup(token, connID, name string) string {
	in.t.Helper()
	var group struct{ ID string }
	in.mustGraphQL(token, `mutation($c: ID!, $n: String!) { createSubscriberGroup(input: {name: $n, connectionId: $c, crmSync: true}) { id } }`,
		map[string]any{"c": connID, "n": name}, "createSubscriberGroup", &group)
	return group.ID
}

// upsert adds subscribers to a group through GraphQL.
func (in *instance) upsert(token, groupID string, subscribers []map[string]any) {
	in.t.Helper()
	var up struct{ Created, Updated int }
	in.mustGraphQL(token, `mutation($g: ID!, $s: [SubscriberInput!]!) { upsertSubscribers(groupId: $g, subscribers: $s) { created updated } }`,
		map[string]any{"g": groupID, "s": subscribers}, "upsertSubscribers", &up)
}

// scenario is a crmsync instance with a connection to a counted emulator and a
// CRM-synced group of it.
type scenario struct {
	crm                  *countedCRM
	in                   *instance
	admin, connID, group string
}

func startScenario(t *testing.T) *scenario {
	t.Helper()
	crm := startCountedEmulator(t)
	in := startInstance(t)
	admin := in.token("acme", "admin")
	connID := in.createCRMConnection(admin, crm.url, "crmsync@emulator.test")
	return &scenario{crm: crm, in: in, admin: admin, connID: connID, group: in.syncedGroup(admin, connID, "News")}
}

type syncEventView struct {
	RecordID string `json:"recordId"`
	Status   string `json:"status"`
	Detail   string `json:"detail"`
}

// syncEvents lists up to 50 sync events, of one record when recordID is not empty.
func (in *instance) syncEvents(token, recordID string) []syncEventView {
	in.t.Helper()
	var events struct {
		Edges []struct{ Node syncEventView }
	}
	in.mustGraphQL(token, `query($r: ID) { syncEvents(recordId: $r) { edges { node { recordId status detail } } } }`,
		map[string]any{"r": recordID}, "syncEvents", &events)
	out := make([]syncEventView, len(events.Edges))
	for i, e := range events.Edges {
		out[i] = e.Node
	}
	return out
}

// TestImportReachesTheCRMInAFewBulkRequests: an import of 1,000 subscribers is
// matched with queries batched by the hundred and created with CreateMultiple of
// up to 1,000 rows, so it costs a few dozen Web API requests at most, not several
// per subscriber.
func TestImportReachesTheCRMInAFewBulkRequests(t *testing.T) {
	t.Parallel()
	sc := startScenario(t)
	crm, in, admin, connID, group := sc.crm, sc.in, sc.admin, sc.connID, sc.group
	const n = 1000
	subs := make([]map[string]any, n)
	for i := range subs {
		subs[i] = map[string]any{"email": fmt.Sprintf("import%04d@example.de", i), "fields": map[string]any{"lastName": fmt.Sprintf("Import %d", i)}}
	}
	before := crm.crmsyncRequests()
	in.upsert(admin, group, subs)
	// A large import takes longer than drain waits under the race detector; poll
	// gently, as each look scans the inbox.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		st, err := in.store.IngestStats(context.Background(), "acme", connID)
		if err == nil && st.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events still pending: %+v (%v)", st, err)
		}
	}

	if c := in.inbox(); c.Failed != 0 {
		t.Fatalf("inbox %+v, want no failed events", c)
	}
	if got := len(crm.rows(t, "contacts", []string{"contactid"}, "startswith(emailaddress1,'import')")); got != n {
		t.Errorf("%d contacts in the CRM, want %d", got, n)
	}
	used := crm.crmsyncRequests() - before
	t.Logf("%d subscribers reached the CRM in %d Web API requests", n, used)
	if used > n/50 {
		t.Errorf("%d Web API requests for %d subscribers, want at most %d", used, n, n/50)
	}
	s := in.waitSubscriber(admin, group, "import0999@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	row, err := crm.user.Get(context.Background(), "contacts", s.CRMRecord.ID, []string{"lastname", "emailaddress1"})
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := row.String("lastname"); last != "Import 999" {
		t.Errorf("subscriber import0999 is linked to %v", row)
	}
}

// TestRefusedRowFailsOnlyItsOwnEvent: when the CRM refuses one row of a bulk
// create, that subscriber's event fails with the CRM's reason and the others of
// the same batch reach the CRM.
func TestRefusedRowFailsOnlyItsOwnEvent(t *testing.T) {
	t.Parallel()
	sc := startScenario(t)
	crm, in, admin, connID, group := sc.crm, sc.in, sc.admin, sc.connID, sc.group
	in.upsert(admin, group, []map[string]any{
		{"email": "good1@example.de", "fields": map[string]any{"lastName": "Good"}},
		{"email": "bad@example.de", "fields": map[string]any{"lastName": strings.Repeat("x", 60)}},
		{"email": "good2@example.de", "fields": map[string]any{"lastName": "Good"}},
	})
	in.drain(connID)

	for _, email := range []string{"good1@example.de", "good2@example.de"} {
		in.waitSubscriber(admin, group, email, func(s subscriberView) bool { return s.CRMRecord != nil })
	}
	var bad subscriberView
	in.mustGraphQL(admin, subscriberQuery, map[string]any{"g": group, "e": "bad@example.de"}, "subscriberByEmail", &bad)
	if bad.CRMRecord != nil {
		t.Errorf("the refused subscriber is linked to %+v", bad.CRMRecord)
	}
	var failed []syncEventView
	for _, ev := range in.syncEvents(admin, "") {
		if ev.Status == "FAILED" {
			failed = append(failed, ev)
		}
	}
	if len(failed) != 1 || failed[0].RecordID != bad.ID ||
		!strings.Contains(failed[0].Detail, "The length of the 'lastname' attribute of the 'contact' entity exceeded the maximum allowed length") {
		t.Errorf("failed events %+v, want one for subscriber %s with the CRM's reason", failed, bad.ID)
	}
	if got := len(crm.rows(t, "contacts", []string{"contactid"}, "")); got != 2 {
		t.Errorf("%d contacts in the CRM, want 2", got)
	}
}

// TestUnsubscribeWritesTheGroupsSubscription: unsubscribing a linked subscriber in
// the eMS sets cs_subscribed to false on the cs_subscription row of its record and
// group, and subscribing again sets it back; no mapping is needed.
func TestUnsubscribeWritesTheGroupsSubscription(t *testing.T) {
	t.Parallel()
	sc := startScenario(t)
	crm, in, admin, group := sc.crm, sc.in, sc.admin, sc.group
	in.upsert(admin, group, []map[string]any{{"email": "reader@example.de"}})
	sub := in.waitSubscriber(admin, group, "reader@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })

	subscription := func(want bool) {
		t.Helper()
		filter := "cs_groupid eq " + dataverse.QuoteString(group) + " and _cs_contactid_value eq " + sub.CRMRecord.ID
		deadline := time.Now().Add(30 * time.Second)
		var rows []dataverse.Row
		for time.Now().Before(deadline) {
			rows = crm.rows(t, "cs_subscriptions", []string{"cs_subscribed", "cs_lastsyncedon"}, filter)
			if len(rows) == 1 {
				if got, _ := rows[0].Bool("cs_subscribed"); got == want {
					if _, ok := rows[0].Time("cs_lastsyncedon"); !ok {
						t.Errorf("cs_lastsyncedon is not set: %v", rows[0])
					}
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("cs_subscription rows %v, want one with cs_subscribed %v", rows, want)
	}
	var unsub struct{ SubscriptionState string }
	in.mustGraphQL(admin, `mutation($s: ID!) { unsubscribe(subscriberId: $s) { subscriptionState } }`,
		map[string]any{"s": sub.ID}, "unsubscribe", &unsub)
	subscription(false)
	in.upsert(admin, group, []map[string]any{{"email": "reader@example.de", "subscriptionState": "SUBSCRIBED"}})
	subscription(true)
}

// TestDeactivatedMatchIsReactivatedOnlyWhenTheConnectionSaysSo: a deactivated
// contact with the subscriber's address is reactivated and linked when the
// connection reactivates records; otherwise it stays deactivated, a new contact is
// created and the reason is recorded on the event.
func TestDeactivatedMatchIsReactivatedOnlyWhenTheConnectionSaysSo(t *testing.T) {
	t.Parallel()
	crm := startCountedEmulator(t)
	ctx := context.Background()
	deactivated := func(email string) string {
		id, err := crm.user.Create(ctx, "contacts", map[string]any{"lastname": "Former", "emailaddress1": email})
		if err != nil {
			t.Fatal(err)
		}
		if err := crm.user.Update(ctx, "contacts", id, map[string]any{"statecode": 1, "statuscode": 2}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	revived, kept := deactivated("revive@example.de"), deactivated("keep@example.de")

	in := startInstance(t)
	admin := in.token("acme", "admin")
	reactivating := in.createCRMConnection(admin, crm.url, "crmsync@emulator.test")
	notReactivating := in.createCRMConnection(admin, crm.url, "crmsync@emulator.test")
	var updated struct{ ReactivateRecords bool }
	in.mustGraphQL(admin, `mutation($c: ID!) { updateConnection(id: $c, input: {reactivateRecords: false}) { reactivateRecords } }`,
		map[string]any{"c": notReactivating}, "updateConnection", &updated)
	groupOn := in.syncedGroup(admin, reactivating, "On")
	groupOff := in.syncedGroup(admin, notReactivating, "Off")
	in.upsert(admin, groupOn, []map[string]any{{"email": "revive@example.de"}})
	in.upsert(admin, groupOff, []map[string]any{{"email": "keep@example.de"}})

	on := in.waitSubscriber(admin, groupOn, "revive@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	if on.CRMRecord.ID != revived {
		t.Errorf("with reactivation: linked to %+v, want contact %s", on.CRMRecord, revived)
	}
	if row, err := crm.user.Get(ctx, "contacts", revived, []string{"statecode", "statuscode"}); err != nil {
		t.Fatal(err)
	} else if state, _ := row.Int("statecode"); state != 0 {
		t.Errorf("the matched contact was not reactivated: %v", row)
	}

	off := in.waitSubscriber(admin, groupOff, "keep@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	if off.CRMRecord.ID == kept {
		t.Errorf("without reactivation: linked to the deactivated contact %s", kept)
	}
	if row, err := crm.user.Get(ctx, "contacts", kept, []string{"statecode"}); err != nil {
		t.Fatal(err)
	} else if state, _ := row.Int("statecode"); state != 1 {
		t.Errorf("the deactivated contact was changed: %v", row)
	}
	in.drain(notReactivating)
	events := in.syncEvents(admin, off.ID)
	if len(events) != 1 || events[0].Status != "APPLIED" ||
		!strings.Contains(events[0].Detail, "a deactivated contact with this address was not reactivated") {
		t.Errorf("events of the subscriber: %+v, want one applied with the reason", events)
	}
}

// TestOneAddressBecomesOneCRMRecord: the same new address twice in one group (merged
// into one subscriber) and once in another group of the connection becomes one
// contact, which all of them link to.
func TestOneAddressBecomesOneCRMRecord(t *testing.T) {
	t.Parallel()
	sc := startScenario(t)
	crm, in, admin, first := sc.crm, sc.in, sc.admin, sc.group
	second := in.syncedGroup(admin, sc.connID, "Second")
	var up struct{ Created, Merged int }
	in.mustGraphQL(admin, `mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [
		{email: "twice@example.de", fields: {firstName: "Tom"}}, {email: " Twice@Example.de ", fields: {lastName: "Twice"}}]) { created merged } }`,
		map[string]any{"g": first}, "upsertSubscribers", &up)
	if up.Created != 1 || up.Merged != 1 {
		t.Fatalf("upsert: %+v, want one created and one merged", up)
	}
	in.upsert(admin, second, []map[string]any{{"email": "twice@example.de"}})

	a := in.waitSubscriber(admin, first, "twice@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	b := in.waitSubscriber(admin, second, "twice@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	rows := crm.rows(t, "contacts", []string{"contactid", "firstname", "lastname"}, "emailaddress1 eq 'twice@example.de'")
	if len(rows) != 1 {
		t.Fatalf("%d contacts with the address, want 1", len(rows))
	}
	id, _ := rows[0].String("contactid")
	if a.CRMRecord.ID != id || b.CRMRecord.ID != id {
		t.Errorf("linked to %s and %s, want both to %s", a.CRMRecord.ID, b.CRMRecord.ID, id)
	}
	if first, _ := rows[0].String("firstname"); first != "Tom" {
		t.Errorf("the merged subscriber's fields did not reach the contact: %v", rows[0])
	}
}
