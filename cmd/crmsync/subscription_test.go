package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"crmsync/auth"
)

// wsMessage is a message of the graphql-transport-ws protocol.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// subscribe opens a websocket to the instance's /graphql with the token and starts
// a subscription; it returns the connection for reading.
func (in *instance) subscribe(ctx context.Context, token, query string) *websocket.Conn {
	in.t.Helper()
	url := strings.Replace(in.base, "http://", "ws://", 1) + "/graphql"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		in.t.Fatal(err)
	}
	in.t.Cleanup(func() { _ = conn.CloseNow() })
	init, _ := json.Marshal(map[string]string{"Authorization": "Bearer " + token})
	if err := wsjson.Write(ctx, conn, wsMessage{Type: "connection_init", Payload: init}); err != nil {
		in.t.Fatal(err)
	}
	var ack wsMessage
	if err := wsjson.Read(ctx, conn, &ack); err != nil || ack.Type != "connection_ack" {
		in.t.Fatalf("connection_init answered %+v, %v", ack, err)
	}
	payload, _ := json.Marshal(map[string]string{"query": query})
	if err := wsjson.Write(ctx, conn, wsMessage{ID: "1", Type: "subscribe", Payload: payload}); err != nil {
		in.t.Fatal(err)
	}
	return conn
}

// TestSyncEventsSubscriptionAcrossInstances: a subscriber on one instance sees the
// outcome of a webhook taken by another, and only its own tenant's events; the
// connection ends when its token expires.
func TestSyncEventsSubscriptionAcrossInstances(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	a := startInstanceEnv(t, env)
	b := startInstanceEnv(t, env)
	admin := a.token("acme", "admin")
	var conn struct{ ID string }
	a.mustGraphQL(admin, `mutation($in: CreateConnectionInput!) { createConnection(input: $in) { id } }`, map[string]any{"in": map[string]any{
		"name": "Acme CRM", "organizationUrl": "https://acme.crm4.dynamics.com", "recipientType": "CONTACT",
		"webhookAuth": map[string]any{"mode": "WEBHOOK_KEY", "value": webhookKey},
	}}, "createConnection", &conn)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mine := b.subscribe(ctx, b.token("acme", "viewer"), `subscription { syncEvents { id status message entity recordId } }`)
	other := b.subscribe(ctx, b.token("globex", "viewer"), `subscription { syncEvents { id } }`)

	if status, _ := a.postWebhook(conn.ID, "?code="+webhookKey, readFixture(t, "contact_create.json")); status != http.StatusAccepted {
		t.Fatalf("webhook answered %d", status)
	}
	var next wsMessage
	if err := wsjson.Read(ctx, mine, &next); err != nil || next.Type != "next" {
		t.Fatalf("subscription sent %+v, %v", next, err)
	}
	var data struct {
		Data struct {
			SyncEvents struct{ ID, Status, Message, Entity string }
		}
	}
	if err := json.Unmarshal(next.Payload, &data); err != nil {
		t.Fatal(err)
	}
	if ev := data.Data.SyncEvents; ev.Status != "APPLIED" || ev.Message != "Create" || ev.Entity != "contact" {
		t.Errorf("event = %+v", ev)
	}
	readCtx, stop := context.WithTimeout(ctx, 500*time.Millisecond)
	var leaked wsMessage
	if err := wsjson.Read(readCtx, other, &leaked); err == nil {
		t.Errorf("another tenant's subscription got %+v", leaked)
	}
	stop()

	// A token that expires in a few seconds: the subscription works until then, and
	// the connection ends then.
	tok, err := auth.Mint(b.cfg.JWTSecret, "test", "acme", []string{"viewer"}, 3*time.Second, "", "")
	if err != nil {
		t.Fatal(err)
	}
	short := b.subscribe(ctx, tok, `subscription { syncEvents { id } }`)
	if status, _ := a.postWebhook(conn.ID, "?code="+webhookKey, readFixture(t, "contact_update.json")); status != http.StatusAccepted {
		t.Fatalf("webhook answered %d", status)
	}
	live := false
	for {
		var m wsMessage
		if err := wsjson.Read(ctx, short, &m); err != nil {
			if ctx.Err() != nil {
				t.Fatal("the connection outlived its token")
			}
			break // closed
		}
		live = live || m.Type == "next"
	}
	if !live {
		t.Error("the subscription with the short token delivered nothing before it closed")
	}
}
