package main

import (
	"context"
	"testing"
	"time"

	"crmsync/dataverse"
)

// TestChangeMakesOneRoundTrip runs the whole loop with the emulator's real webhooks
// registered back to crmsync: a subscriber added in the eMS becomes one contact in
// the CRM; the webhook of that create comes back and changes nothing, so crmsync
// writes nothing more; a person's change in the CRM right after reaches the
// subscriber and is not written back either.
func TestChangeMakesOneRoundTrip(t *testing.T) {
	t.Parallel()
	dv, user := startEmulator(t)
	ctx := context.Background()
	in := startInstance(t)
	admin := in.token("acme", "admin")
	connID := in.createCRMConnection(admin, dv.URL(), "crmsync@emulator.test")
	var conn struct{ WebhookURL string }
	in.mustGraphQL(admin, `query($c: ID!) { connection(id: $c) { webhookUrl } }`, map[string]any{"c": connID}, "connection", &conn)

	app, err := dataverse.NewClient(dataverse.Config{OrganizationURL: dv.URL(), TokenURL: dv.URL() + "/t/oauth2/v2.0/token",
		ClientID: "emulator", ClientSecret: "emulator-secret"})
	if err != nil {
		t.Fatal(err)
	}
	registerContactSteps(t, app, conn.WebhookURL, "emulator-webhook-key-123")

	var group struct{ ID string }
	in.mustGraphQL(admin, `mutation($c: ID!) { createSubscriberGroup(input: {name: "News", connectionId: $c, crmSync: true}) { id } }`,
		map[string]any{"c": connID}, "createSubscriberGroup", &group)
	var up struct{ Created int }
	in.mustGraphQL(admin, `mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [{email: "loop@example.de", fields: {firstName: "Lena", lastName: "One"}}]) { created } }`,
		map[string]any{"g": group.ID}, "upsertSubscribers", &up)
	sub := in.waitSubscriber(admin, group.ID, "loop@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	settle := func() {
		t.Helper()
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := dv.FlushWebhooks(fctx); err != nil {
			t.Fatal(err)
		}
		in.drain(connID)
	}
	settle()
	count := func(msg string) int {
		n := 0
		for _, d := range dv.Deliveries() {
			if d.MessageName == msg && d.EntityID == sub.CRMRecord.ID {
				n++
			}
		}
		return n
	}
	if c, u := count("Create"), count("Update"); c != 1 || u != 0 {
		t.Fatalf("after the create: %d Create and %d Update webhooks, want 1 and 0", c, u)
	}

	if err := user.Update(ctx, "contacts", sub.CRMRecord.ID, map[string]any{"lastname": "Two"}); err != nil {
		t.Fatal(err)
	}
	in.waitSubscriber(admin, group.ID, "loop@example.de", func(s subscriberView) bool { return s.Fields["lastName"] == "Two" })
	settle()
	if c, u := count("Create"), count("Update"); c != 1 || u != 1 {
		t.Errorf("after the person's change: %d Create and %d Update webhooks, want 1 and 1 (nothing written back)", c, u)
	}
}

// drain waits until the connection has no pending event.
func (in *instance) drain(connectionID string) {
	in.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := in.store.IngestStats(context.Background(), "acme", connectionID)
		if err == nil && st.Pending == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	in.t.Fatal("events still pending")
}

// registerContactSteps registers crmsync's webhook and its Create and Update steps on
// contact through the Web API, as `crmsync register` will, with a pre-image on Update.
func registerContactSteps(t *testing.T, c *dataverse.Client, url, key string) {
	t.Helper()
	steps := registerSteps(t, c, url, key, [2]string{"Create", "contact"}, [2]string{"Update", "contact"})
	if _, err := c.Create(context.Background(), "sdkmessageprocessingstepimages", map[string]any{
		"name": "PreImage", "entityalias": "PreImage", "imagetype": 0, "messagepropertyname": "Target",
		"attributes":                            "emailaddress1,firstname,lastname",
		"sdkmessageprocessingstepid@odata.bind": dataverse.Bind("sdkmessageprocessingsteps", steps[1]),
	}); err != nil {
		t.Fatal(err)
	}
}
