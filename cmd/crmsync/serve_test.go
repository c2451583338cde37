package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"crmsync/auth"
	"crmsync/queue/queuetest"
	"crmsync/store"
	"crmsync/store/storetest"
)

func TestMain(m *testing.M) {
	// The fault tests run crmsync serve as a child process (so it can be killed);
	// that child is this test binary with CRMSYNC_TEST_SERVE set.
	if os.Getenv("CRMSYNC_TEST_SERVE") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, []string{"serve"}, os.Getenv, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "crmsync:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	storetest.Main(m)
}

// instance is a running crmsync serve, wired exactly as the binary wires it, on the
// test's own database and Redis key prefix.
type instance struct {
	t     testing.TB
	base  string
	cfg   *config
	store *store.Store
}

// testEnv is the environment of an instance on the test's own database, Redis key
// prefix and data dir (whose secrets every instance of the test shares).
func testEnv(t testing.TB) map[string]string {
	return map[string]string{
		"CRMSYNC_ADDR":               "127.0.0.1:0",
		"CRMSYNC_DATA_DIR":           t.TempDir(),
		"MONGODB_URI":                storetest.URI(t),
		"MONGODB_DATABASE":           storetest.DatabaseName(t),
		"REDIS_URL":                  queuetest.URL(t),
		"CRMSYNC_REDIS_PREFIX":       queuetest.Prefix(t),
		"CRMSYNC_LEASE_TTL":          "2s",
		"CRMSYNC_RECOVERY_INTERVAL":  "500ms",
		"CRMSYNC_SCHEDULER_INTERVAL": "200ms",
	}
}

func startInstance(t testing.TB) *instance {
	t.Helper()
	return startInstanceEnv(t, testEnv(t))
}

// startInstanceEnv runs serve in this process; it stops when the test ends.
func startInstanceEnv(t testing.TB, env map[string]string) *instance {
	t.Helper()
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- serve(ctx, cfg, logger, io.Discard, ready) }()
	var base string
	select {
	case base = <-ready:
	case err := <-done:
		t.Fatalf("serve ended before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not become ready")
	}
	// A second handle on the same database lets the test look at the inbox.
	st, err := store.Open(ctx, store.Config{URI: cfg.MongoURI, Database: cfg.MongoDatabase, SecretKey: cfg.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v on shutdown", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not shut down")
		}
		_ = st.DropDatabase(context.Background())
		_ = st.Close(context.Background())
	})
	return &instance{t: t, base: base, cfg: cfg, store: st}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (in *instance) token(tenant, role string) string {
	tok, err := auth.Mint(in.cfg.JWTSecret, "test", tenant, []string{role}, time.Hour, "", "")
	if err != nil {
		in.t.Fatal(err)
	}
	return tok
}

type gqlResponse struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func (in *instance) graphql(token, query string, vars map[string]any) gqlResponse {
	in.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, in.base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		in.t.Fatalf("graphql status %d", resp.StatusCode)
	}
	var out gqlResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		in.t.Fatal(err)
	}
	return out
}

// mustGraphQL runs a query that must succeed and decodes its data field into out.
func (in *instance) mustGraphQL(token, query string, vars map[string]any, field string, out any) {
	in.t.Helper()
	res := in.graphql(token, query, vars)
	if len(res.Errors) > 0 {
		in.t.Fatalf("graphql errors: %+v", res.Errors)
	}
	if err := json.Unmarshal(res.Data[field], out); err != nil {
		in.t.Fatalf("decode %s: %v", field, err)
	}
}

func (in *instance) postWebhook(connID, query string, body []byte) (int, map[string]any) {
	in.t.Helper()
	resp, err := http.Post(in.base+"/webhooks/dataverse/"+connID+query, "application/json; charset=utf-8", bytes.NewReader(body))
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		in.t.Fatalf("webhook answer is not JSON: %v", err)
	}
	return resp.StatusCode, out
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const webhookKey = "k3y-for-the-end-to-end-test"

type subscriberView struct {
	ID        string         `json:"id"`
	Email     string         `json:"email"`
	Fields    map[string]any `json:"fields"`
	CRMRecord *struct {
		Entity string `json:"entity"`
		ID     string `json:"id"`
	} `json:"crmRecord"`
	Group struct {
		Name       string `json:"name"`
		Connection struct {
			Name string `json:"name"`
		} `json:"connection"`
	} `json:"group"`
}

const subscriberQuery = `query($g: ID!, $e: String!) { subscriberByEmail(groupId: $g, email: $e) {
	id email fields crmRecord { entity id } group { name connection { name } } } }`

// TestWebhookToGraphQL crosses every layer: GraphQL creates the connection, group and
// subscriber; Dataverse webhooks go through the HTTP handler into the inbox, the
// stream and the engine; GraphQL reads the linked subscriber back.
func TestWebhookToGraphQL(t *testing.T) {
	t.Parallel()
	in := startInstance(t)
	admin := in.token("acme", "admin")

	var conn struct {
		ID         string `json:"id"`
		WebhookURL string `json:"webhookUrl"`
	}
	in.mustGraphQL(admin, `mutation($in: CreateConnectionInput!) { createConnection(input: $in) { id webhookUrl } }`,
		map[string]any{"in": map[string]any{
			"name": "Acme CRM", "organizationUrl": "https://acme.crm4.dynamics.com", "recipientType": "CONTACT",
			"webhookAuth": map[string]any{"mode": "WEBHOOK_KEY", "value": webhookKey},
		}}, "createConnection", &conn)
	if !strings.HasSuffix(conn.WebhookURL, "/webhooks/dataverse/"+conn.ID) {
		t.Errorf("webhookUrl = %q", conn.WebhookURL)
	}
	var group struct {
		ID string `json:"id"`
	}
	in.mustGraphQL(admin, `mutation($c: ID!) { createSubscriberGroup(input: {name: "Newsletter", connectionId: $c, crmSync: true}) { id } }`,
		map[string]any{"c": conn.ID}, "createSubscriberGroup", &group)
	var up struct{ Created int }
	in.mustGraphQL(admin, `mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [{email: "erika.mustermann@example.de", fields: {city: "Köln"}}]) { created } }`,
		map[string]any{"g": group.ID}, "upsertSubscribers", &up)
	if up.Created != 1 {
		t.Fatalf("created = %d", up.Created)
	}

	create := readFixture(t, "contact_create.json")
	before := in.inbox()

	// A wrong key, a missing key and another connection's id are all 401, and store nothing.
	for _, q := range []string{"?code=wrong-key-wrong-key", "", "?code=" + webhookKey + "x"} {
		if status, _ := in.postWebhook(conn.ID, q, create); status != http.StatusUnauthorized {
			t.Errorf("key %q: status %d, want 401", q, status)
		}
	}
	if status, _ := in.postWebhook("01a2261c-0000-7000-8000-000000000000", "?code="+webhookKey, create); status != http.StatusUnauthorized {
		t.Errorf("unknown connection: status %d, want 401", status)
	}
	// A body that is not JSON is 400 and stores nothing.
	status, answer := in.postWebhook(conn.ID, "?code="+webhookKey, []byte("<xml>not json</xml>"))
	if status != http.StatusBadRequest || answer["error"] == nil {
		t.Errorf("not JSON: status %d, answer %v", status, answer)
	}
	if got := in.inbox(); got != before {
		t.Fatalf("refused calls changed the inbox: %+v -> %+v", before, got)
	}

	// The Create is accepted once; its redelivery is a duplicate with the same id.
	status, first := in.postWebhook(conn.ID, "?code="+webhookKey, create)
	if status != http.StatusAccepted || first["duplicate"] != false || first["eventId"] == "" {
		t.Fatalf("create: status %d, answer %v", status, first)
	}
	status, again := in.postWebhook(conn.ID, "?code="+webhookKey, create)
	if status != http.StatusAccepted || again["duplicate"] != true || again["eventId"] != first["eventId"] {
		t.Fatalf("redelivery: status %d, answer %v", status, again)
	}

	sub := in.waitSubscriber(admin, group.ID, "erika.mustermann@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	if sub.CRMRecord.Entity != "CONTACT" || sub.CRMRecord.ID != "7f3c1a52-4b1e-4f0a-9a3e-2d5b6c7d8e9f" {
		t.Errorf("crmRecord = %+v", sub.CRMRecord)
	}
	if sub.Fields["firstName"] != "Erika" || sub.Fields["lastName"] != "Mustermann" || sub.Fields["city"] != "Köln" {
		t.Errorf("fields after create = %v", sub.Fields)
	}
	if sub.Group.Name != "Newsletter" || sub.Group.Connection.Name != "Acme CRM" {
		t.Errorf("group = %+v", sub.Group)
	}

	// The Update carries only the changed lastname; the e-mail is in its pre-image.
	if status, _ := in.postWebhook(conn.ID, "?code="+webhookKey, readFixture(t, "contact_update.json")); status != http.StatusAccepted {
		t.Fatalf("update: status %d", status)
	}
	sub = in.waitSubscriber(admin, group.ID, "erika.mustermann@example.de", func(s subscriberView) bool { return s.Fields["lastName"] == "Musterfrau" })
	if sub.Fields["firstName"] != "Erika" || sub.Fields["city"] != "Köln" {
		t.Errorf("fields after update = %v", sub.Fields)
	}
	// A late redelivery of the older Create changes nothing (and is a duplicate anyway).
	if counts := in.inbox(); counts.Processed != 2 || counts.Failed != 0 {
		t.Errorf("inbox = %+v, want 2 processed", counts)
	}

	// Another tenant sees none of it.
	other := in.token("globex", "admin")
	res := in.graphql(other, subscriberQuery, map[string]any{"g": group.ID, "e": "erika.mustermann@example.de"})
	if len(res.Errors) != 1 || res.Errors[0].Extensions["code"] != "NOT_FOUND" {
		t.Errorf("other tenant: %+v", res)
	}
}

func (in *instance) inbox() store.InboxCounts {
	in.t.Helper()
	c, err := in.store.CountInbox(context.Background())
	if err != nil {
		in.t.Fatal(err)
	}
	return c
}

// waitSubscriber polls until the engine has applied what the test waits for.
func (in *instance) waitSubscriber(token, groupID, email string, done func(subscriberView) bool) subscriberView {
	in.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var sub subscriberView
	for time.Now().Before(deadline) {
		in.mustGraphQL(token, subscriberQuery, map[string]any{"g": groupID, "e": email}, "subscriberByEmail", &sub)
		if done(sub) {
			return sub
		}
		time.Sleep(50 * time.Millisecond)
	}
	in.t.Fatalf("the engine did not apply the event; subscriber is %+v (inbox %+v)", sub, in.inbox())
	return sub
}

func TestServeReadiness(t *testing.T) {
	t.Parallel()
	in := startInstance(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(in.base + path)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || body["status"] != "ok" {
			t.Errorf("%s: %d %v", path, resp.StatusCode, body)
		}
	}
}
