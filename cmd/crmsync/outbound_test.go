package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
)

// TestSubscribersReachTheCRM: subscribers added through GraphQL to a CRM-synced group
// are matched in the CRM (the emulator, over its Web API) by e-mail address — Contact
// first, then Account, then Lead, never a qualified lead — or created as the
// connection's recipient type, owned by the owner login, with their mapped fields.
func TestSubscribersReachTheCRM(t *testing.T) {
	t.Parallel()
	dv, user := startEmulator(t)
	ctx := context.Background()
	known, err := user.Create(ctx, "contacts", map[string]any{"lastname": "Known", "emailaddress1": "Known@Example.de"})
	if err != nil {
		t.Fatal(err)
	}
	account, err := user.Create(ctx, "accounts", map[string]any{"name": "Acme", "emailaddress1": "acct@example.de"})
	if err != nil {
		t.Fatal(err)
	}
	lead, err := user.Create(ctx, "leads", map[string]any{"subject": "Fair", "lastname": "Lead", "emailaddress1": "lead@example.de"})
	if err != nil {
		t.Fatal(err)
	}
	if err := user.Update(ctx, "leads", lead, map[string]any{"statecode": 1, "statuscode": 3}); err != nil {
		t.Fatal(err)
	}

	in := startInstance(t)
	admin := in.token("acme", "admin")
	connID := in.createCRMConnection(admin, dv.URL(), "crmsync@emulator.test")
	var group struct{ ID string }
	in.mustGraphQL(admin, `mutation($c: ID!) { createSubscriberGroup(input: {name: "News", connectionId: $c, crmSync: true}) { id } }`,
		map[string]any{"c": connID}, "createSubscriberGroup", &group)
	var up struct{ Created int }
	in.mustGraphQL(admin, `mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [
		{email: "known@example.de"}, {email: "acct@example.de"}, {email: "lead@example.de"},
		{email: "new@example.de", fields: {firstName: "Neu", lastName: "Person"}}]) { created } }`,
		map[string]any{"g": group.ID}, "upsertSubscribers", &up)
	if up.Created != 4 {
		t.Fatalf("created %d", up.Created)
	}

	linked := func(email string) subscriberView {
		return in.waitSubscriber(admin, group.ID, email, func(s subscriberView) bool { return s.CRMRecord != nil })
	}
	if s := linked("known@example.de"); s.CRMRecord.Entity != "CONTACT" || s.CRMRecord.ID != known {
		t.Errorf("known contact: linked to %+v, want contact %s", s.CRMRecord, known)
	}
	if s := linked("acct@example.de"); s.CRMRecord.Entity != "ACCOUNT" || s.CRMRecord.ID != account {
		t.Errorf("account: linked to %+v, want account %s", s.CRMRecord, account)
	}
	if s := linked("lead@example.de"); s.CRMRecord.Entity != "CONTACT" || s.CRMRecord.ID == lead {
		t.Errorf("qualified lead: linked to %+v, want a new contact", s.CRMRecord)
	}
	s := linked("new@example.de")
	if s.CRMRecord.Entity != "CONTACT" {
		t.Fatalf("new: %+v", s.CRMRecord)
	}
	row, err := user.Get(ctx, "contacts", s.CRMRecord.ID, []string{"firstname", "lastname", "emailaddress1", "_ownerid_value"})
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := row.Lookup("ownerid")
	if f, _ := row.String("firstname"); f != "Neu" || owner != dv.ApplicationUserID() {
		t.Errorf("created contact %v, owner %s (want %s)", row, owner, dv.ApplicationUserID())
	}
	// Nothing was created for the three that matched or the lead: two new contacts in all.
	rows := user.Query(ctx, "contacts", dataverse.Query{Select: []string{"contactid"}})
	n := 0
	for rows.Next(ctx) {
		n++
	}
	if n != 3 {
		t.Errorf("%d contacts in the CRM, want 3 (one known, two created)", n)
	}
}

// TestUnknownOwnerLoginFailsClearly: a login that resolves to no systemuser fails the
// subscriber's trip to the CRM with that reason instead of picking some owner.
func TestUnknownOwnerLoginFailsClearly(t *testing.T) {
	t.Parallel()
	dv, _ := startEmulator(t)
	in := startInstance(t)
	admin := in.token("acme", "admin")
	connID := in.createCRMConnection(admin, dv.URL(), "nobody@emulator.test")
	var group struct{ ID string }
	in.mustGraphQL(admin, `mutation($c: ID!) { createSubscriberGroup(input: {name: "News", connectionId: $c, crmSync: true}) { id } }`,
		map[string]any{"c": connID}, "createSubscriberGroup", &group)
	var up struct{ Created int }
	in.mustGraphQL(admin, `mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [{email: "x@example.de"}]) { created } }`,
		map[string]any{"g": group.ID}, "upsertSubscribers", &up)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var events struct {
			Edges []struct {
				Node struct{ Status, Detail string }
			}
		}
		in.mustGraphQL(admin, `{ syncEvents(status: FAILED) { edges { node { status detail } } } }`, nil, "syncEvents", &events)
		if len(events.Edges) == 1 {
			if !strings.Contains(events.Edges[0].Node.Detail, `"nobody@emulator.test" resolves to no systemuser`) {
				t.Errorf("detail = %q", events.Edges[0].Node.Detail)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the event did not fail")
}

func (in *instance) createCRMConnection(token, orgURL, owner string) string {
	in.t.Helper()
	var conn struct{ ID string }
	in.mustGraphQL(token, `mutation($in: CreateConnectionInput!) { createConnection(input: $in) { id } }`, map[string]any{"in": map[string]any{
		"name": "Emulator", "organizationUrl": orgURL, "tokenUrl": orgURL + "/tenant/oauth2/v2.0/token",
		"clientId": "emulator", "clientSecret": "emulator-secret", "ownerLogin": owner, "recipientType": "CONTACT",
		"webhookAuth": map[string]any{"mode": "WEBHOOK_KEY", "value": "emulator-webhook-key-123"},
	}}, "createConnection", &conn)
	return conn.ID
}

// startEmulator runs a Dataverse emulator for the test and returns a client acting
// as its human user (admin@emulator.test), whose changes are not crmsync's own.
func startEmulator(t *testing.T) (*emulator.Emulator, *dataverse.Client) {
	t.Helper()
	dv := emulator.New(emulator.Config{})
	if err := dv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dv.Close() })
	user, err := dataverse.NewClient(dataverse.Config{OrganizationURL: dv.URL(), TokenURL: dv.URL() + "/t/oauth2/v2.0/token",
		ClientID: "emulator-user", ClientSecret: "emulator-user-secret"})
	if err != nil {
		t.Fatal(err)
	}
	return dv, user
}
