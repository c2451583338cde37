package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"crmsync/dataverse"
)

type registrationView struct {
	EndpointID                               *string
	StepsCreated, StepsUpdated, StepsRemoved int
	Warnings                                 []string
	RegisteredAt                             *string
}

const registrationFields = `endpointId stepsCreated stepsUpdated stepsRemoved warnings registeredAt`

// crmsyncRows counts what crmsync registered in the emulator: its endpoints, the
// steps on them and their images.
func crmsyncRows(t *testing.T, c *dataverse.Client) (endpoints, steps, images int) {
	t.Helper()
	ctx := context.Background()
	count := func(set, pk, filter string) (ids []string) {
		rows := c.Query(ctx, set, dataverse.Query{Select: []string{pk}, Filter: filter})
		for rows.Next(ctx) {
			id, _ := rows.Row().String(pk)
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	eps := count("serviceendpoints", "serviceendpointid", "startswith(name, 'crmsync ')")
	for _, ep := range eps {
		for _, st := range count("sdkmessageprocessingsteps", "sdkmessageprocessingstepid", "_eventhandler_value eq "+ep) {
			steps++
			images += len(count("sdkmessageprocessingstepimages", "sdkmessageprocessingstepimageid", "_sdkmessageprocessingstepid_value eq "+st))
		}
	}
	// Steps left without an endpoint would be crmsync's too.
	steps += len(count("sdkmessageprocessingsteps", "sdkmessageprocessingstepid", "startswith(name, 'crmsync: ') and _eventhandler_value eq null"))
	return len(eps), steps, images
}

// TestRegisterWebhooksThenTheLoopRunsThroughThem is issue #11's proof: a dry run
// changes nothing; registering creates the endpoint and steps; a contact changed by
// the CRM's human user then reaches crmsync through them; registering again
// changes nothing, a new mapping updates the filtering attributes, and
// `register --remove` leaves no crmsync rows in the CRM.
func TestRegisterWebhooksThenTheLoopRunsThroughThem(t *testing.T) {
	t.Parallel()
	dv, user := startEmulator(t)
	env := testEnv(t)
	in := startInstanceEnv(t, env)
	admin := in.token("acme", "admin")
	connID := in.createCRMConnection(admin, dv.URL(), "crmsync@emulator.test")
	register := func(dry bool) registrationView {
		t.Helper()
		var reg registrationView
		in.mustGraphQL(admin, `mutation($c: ID!, $d: Boolean) { registerWebhooks(connectionId: $c, dryRun: $d) { `+registrationFields+` } }`,
			map[string]any{"c": connID, "d": dry}, "registerWebhooks", &reg)
		return reg
	}

	plan := register(true)
	if plan.StepsCreated < 15 || plan.EndpointID != nil || plan.RegisteredAt != nil {
		t.Fatalf("dry run = %+v", plan)
	}
	if eps, steps, _ := crmsyncRows(t, user); eps != 0 || steps != 0 {
		t.Fatalf("a dry run wrote %d endpoints and %d steps", eps, steps)
	}
	first := register(false)
	// The one warning here: the emulator reaches 127.0.0.1, Dataverse in the cloud would not.
	if first.StepsCreated != plan.StepsCreated || first.EndpointID == nil || len(first.Warnings) != 1 || !strings.Contains(first.Warnings[0], "is local") {
		t.Fatalf("register = %+v, planned %+v", first, plan)
	}
	var shown struct{ Registration registrationView }
	in.mustGraphQL(admin, `query($c: ID!) { connection(id: $c) { registration { `+registrationFields+` } } }`, map[string]any{"c": connID}, "connection", &shown)
	if r := shown.Registration; r.EndpointID == nil || *r.EndpointID != *first.EndpointID || r.StepsCreated != first.StepsCreated || r.RegisteredAt == nil {
		t.Errorf("the connection shows registration %+v", r)
	}
	eps, steps, images := crmsyncRows(t, user)
	if eps != 1 || steps != first.StepsCreated || images != 6 {
		t.Fatalf("the CRM has %d endpoints, %d steps, %d images; want 1, %d, 6 (Create and Update of three tables)", eps, steps, images, first.StepsCreated)
	}

	// The loop, through the registered webhook only: a subscriber goes to the CRM,
	// the CRM's user renames the contact, and the subscriber follows.
	group := in.syncedGroup(admin, connID, "Registered")
	in.upsert(admin, group, []map[string]any{{"email": "reg@example.de", "fields": map[string]any{"firstName": "Reg"}}})
	var contactID string
	waitUntil(t, func() bool {
		rows := user.Query(context.Background(), "contacts", dataverse.Query{Select: []string{"contactid"}, Filter: "emailaddress1 eq 'reg@example.de'"})
		if rows.Next(context.Background()) {
			contactID, _ = rows.Row().String("contactid")
		}
		return contactID != ""
	})
	if err := user.Update(context.Background(), "contacts", contactID, map[string]any{"firstname": "Regina"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		sub, err := in.store.SubscriberByEmail(context.Background(), "acme", group, "reg@example.de")
		return err == nil && sub.Fields["firstName"] == "Regina"
	})

	if again := register(false); again.StepsCreated != 0 || again.StepsUpdated != 0 || again.StepsRemoved != 0 || *again.EndpointID != *first.EndpointID {
		t.Errorf("registering again = %+v, want no change", again)
	}
	in.mustGraphQL(admin, `mutation($c: ID!) { setFieldMappings(connectionId: $c, mappings: [
		{crmEntity: "contact", crmAttribute: "emailaddress1", subscriberField: "email", kind: SIMPLE},
		{crmEntity: "contact", crmAttribute: "firstname", subscriberField: "fields.firstName", kind: SIMPLE},
		{crmEntity: "contact", crmAttribute: "jobtitle", subscriberField: "fields.jobTitle", kind: SIMPLE}]) { id } }`,
		map[string]any{"c": connID}, "setFieldMappings", &[]struct{ ID string }{})
	if changed := register(false); changed.StepsUpdated != 2 || changed.StepsCreated != 0 {
		t.Errorf("after a new contact mapping = %+v, want the contact's Create and Update steps updated", changed)
	}
	rows := user.Query(context.Background(), "sdkmessageprocessingsteps", dataverse.Query{Select: []string{"filteringattributes"}, Filter: "name eq 'crmsync: Update of contact'"})
	if !rows.Next(context.Background()) {
		t.Fatal("the contact's Update step is gone")
	}
	if f, _ := rows.Row().String("filteringattributes"); !strings.Contains(f, "jobtitle") || strings.Contains(f, "modifiedon") {
		t.Errorf("filtering attributes %q", f)
	}

	// The command: a dry run of a removal, then the removal.
	env["CRMSYNC_PUBLIC_URL"] = in.base
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"register", "--connection", connID, "--dry-run", "--remove"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("register --dry-run --remove: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "would create 0, update 0, remove "+strconv.Itoa(first.StepsCreated)) {
		t.Errorf("dry run of the removal printed:\n%s", out.String())
	}
	if eps, _, _ := crmsyncRows(t, user); eps != 1 {
		t.Fatal("the dry run removed the endpoint")
	}
	out.Reset()
	if err := run(context.Background(), []string{"register", "--connection", connID, "--remove"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("register --remove: %v\n%s", err, errOut.String())
	}
	if eps, steps, images := crmsyncRows(t, user); eps != 0 || steps != 0 || images != 0 {
		t.Errorf("after --remove the CRM still has %d endpoints, %d steps, %d images", eps, steps, images)
	}
	if err := run(context.Background(), []string{"register"}, getenv, &out, &errOut); err == nil {
		t.Error("register without --connection succeeded")
	}
	if err := run(context.Background(), []string{"register", "--connection", "no-such-connection"}, getenv, &out, &errOut); err == nil || !strings.Contains(err.Error(), "no connection") {
		t.Errorf("register of an unknown connection: %v", err)
	}
}
