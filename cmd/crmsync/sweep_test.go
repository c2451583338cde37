package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
	"crmsync/engine"
	"crmsync/queue"
	"crmsync/store"
)

// TestSweepHealsDroppedWebhooks: with the emulator's webhooks registered back to
// crmsync, a person changes one contact and deletes another while every webhook is
// dropped in transit. The anti-entropy sweep reads both changes through change
// tracking and the engine applies them; a second sweep with nothing changed finds
// and queues nothing.
func TestSweepHealsDroppedWebhooks(t *testing.T) {
	t.Parallel()
	var drop atomic.Bool
	dv := emulator.New(emulator.Config{DropWebhooks: func(string) bool { return drop.Load() }})
	if err := dv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dv.Close() })
	user, err := dataverse.NewClient(dataverse.Config{OrganizationURL: dv.URL(), TokenURL: dv.URL() + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultUserClientID, ClientSecret: emulator.DefaultUserClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	app, err := dataverse.NewClient(dataverse.Config{OrganizationURL: dv.URL(), TokenURL: dv.URL() + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	env := testEnv(t)
	env["CRMSYNC_SWEEP_INTERVAL"] = "1h" // the test sweeps by hand; serve's own sweep stays out of the way
	in := startInstanceEnv(t, env)
	admin := in.token("acme", "admin")
	connID := in.createCRMConnection(admin, dv.URL(), emulator.AppUserDomainName)
	var conn struct{ WebhookURL string }
	in.mustGraphQL(admin, `query($c: ID!) { connection(id: $c) { webhookUrl } }`, map[string]any{"c": connID}, "connection", &conn)
	registerContactSteps(t, app, conn.WebhookURL, "emulator-webhook-key-123")

	var group struct{ ID string }
	in.mustGraphQL(admin, `mutation($c: ID!) { createSubscriberGroup(input: {name: "News", connectionId: $c, crmSync: true}) { id } }`,
		map[string]any{"c": connID}, "createSubscriberGroup", &group)
	var up struct{ Created int }
	in.mustGraphQL(admin, `mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [
		{email: "heal@example.de", fields: {lastName: "Before"}}, {email: "gone@example.de"}]) { created } }`,
		map[string]any{"g": group.ID}, "upsertSubscribers", &up)
	linked := func(email string) string {
		return in.waitSubscriber(admin, group.ID, email, func(s subscriberView) bool { return s.CRMRecord != nil }).CRMRecord.ID
	}
	healID, goneID := linked("heal@example.de"), linked("gone@example.de")
	settle := func() { in.settle(dv, connID) }
	settle()

	rdb, err := queue.Open(in.cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	sweeper, err := engine.NewSweeper(engine.SweepConfig{
		Store: in.store, Publisher: queue.NewEventStream(rdb.Client, queue.NewKeys(in.cfg.RedisPrefix), queue.DefaultPartitions),
		CRM: &engine.CRMClients{Secret: in.store.CRMClientSecret},
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := in.store.ConnectionForWebhook(ctx, connID)
	if err != nil {
		t.Fatal(err)
	}
	sweep := func() engine.SweepResult {
		t.Helper()
		res, err := sweeper.SweepConnection(ctx, stored)
		if err != nil {
			t.Fatal(err)
		}
		settle()
		return res
	}
	// The first sweep reads every table for what changed since the connection was
	// made: only the two contacts crmsync created, untouched since, which it skips.
	if res := sweep(); res.Read != 0 {
		t.Errorf("first sweep: %+v, want nothing (crmsync's own untouched records)", res)
	}

	drop.Store(true)
	if err := user.Update(ctx, "contacts", healID, map[string]any{"lastname": "Healed"}); err != nil {
		t.Fatal(err)
	}
	if err := user.Delete(ctx, "contacts", goneID); err != nil {
		t.Fatal(err)
	}
	settle()
	dropped := 0
	for _, d := range dv.Deliveries() {
		if d.Dropped {
			dropped++
		}
	}
	if s := in.subscriber(group.ID, "heal@example.de"); dropped != 1 || s.Fields["lastName"] != "Before" {
		t.Fatalf("%d webhooks dropped, lastName %v: want the update's webhook lost", dropped, s.Fields["lastName"])
	}

	if res := sweep(); res.Read != 2 || res.Queued != 2 {
		t.Errorf("second sweep: %+v, want the update and the deletion", res)
	}
	if s := in.subscriber(group.ID, "heal@example.de"); s.Fields["lastName"] != "Healed" {
		t.Errorf("after the sweep: lastName %v, want Healed", s.Fields["lastName"])
	}
	if s := in.subscriber(group.ID, "gone@example.de"); s.CRMRecord != nil || s.CRMUnlinkedReason == nil {
		t.Errorf("after the sweep: the deleted contact's subscriber is linked to %+v", s.CRMRecord)
	}

	if res := sweep(); res != (engine.SweepResult{}) {
		t.Errorf("sweep with nothing changed: %+v, want nothing read or queued", res)
	}
}

// settle waits until the emulator has sent its webhooks and the connection has no
// pending event.
func (in *instance) settle(dv *emulator.Emulator, connectionID string) {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dv.FlushWebhooks(ctx); err != nil {
		in.t.Fatal(err)
	}
	in.drain(connectionID)
}

// subscriber reads a subscriber straight from the store, with what the API does
// not show.
func (in *instance) subscriber(groupID, email string) *store.Subscriber {
	in.t.Helper()
	s, err := in.store.SubscriberByEmail(context.Background(), "acme", groupID, email)
	if err != nil {
		in.t.Fatal(err)
	}
	return s
}
