package main

import (
	"strings"
	"testing"
)

// TestConnectionTestReportsWhatItFound: testConnection proves the credentials
// against the CRM (the emulator) and answers who the connection acts as; wrong
// credentials and an unreachable CRM are ok: false with the reason, not errors.
func TestConnectionTestReportsWhatItFound(t *testing.T) {
	t.Parallel()
	dv, _ := startEmulator(t)
	in := startInstance(t)
	admin := in.token("acme", "admin")
	test := func(connID string) (ok bool, detail string) {
		t.Helper()
		var res struct {
			Ok        bool
			Detail    string
			LatencyMs int
		}
		in.mustGraphQL(admin, `mutation($c: ID!) { testConnection(id: $c) { ok detail latencyMs } }`, map[string]any{"c": connID}, "testConnection", &res)
		return res.Ok, res.Detail
	}
	good := in.createCRMConnection(admin, dv.URL(), "crmsync@emulator.test")
	if ok, detail := test(good); !ok || !strings.Contains(detail, dv.ApplicationUserID()) {
		t.Errorf("good connection: ok %v, %q; want ok naming the application user %s", ok, detail, dv.ApplicationUserID())
	}

	var conn struct{ ID string }
	create := func(url, secret string) string {
		in.mustGraphQL(admin, `mutation($in: CreateConnectionInput!) { createConnection(input: $in) { id } }`, map[string]any{"in": map[string]any{
			"name": "Other", "organizationUrl": url, "tokenUrl": url + "/t/oauth2/v2.0/token", "clientId": "emulator", "clientSecret": secret,
			"recipientType": "CONTACT", "webhookAuth": map[string]any{"mode": "WEBHOOK_KEY", "value": "emulator-webhook-key-123"},
		}}, "createConnection", &conn)
		return conn.ID
	}
	if ok, detail := test(create(dv.URL(), "wrong-secret")); ok || !strings.Contains(detail, "refused the connection's client credentials") {
		t.Errorf("wrong secret: ok %v, %q", ok, detail)
	}
	if ok, detail := test(create("http://127.0.0.1:1", "emulator-secret")); ok || detail == "" {
		t.Errorf("unreachable CRM: ok %v, %q", ok, detail)
	}
	res := in.graphql(in.token("globex", "admin"), `mutation($c: ID!) { testConnection(id: $c) { ok } }`, map[string]any{"c": good})
	if len(res.Errors) != 1 || res.Errors[0].Extensions["code"] != "NOT_FOUND" {
		t.Errorf("another tenant's connection: %+v", res)
	}
}
