package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"crmsync/store"
)

// migrateEnv is testEnv with a cleanup that drops the test's database; it also
// answers the newest schema version this binary knows.
func migrateEnv(t *testing.T) (env map[string]string, db *mongo.Database, known int) {
	t.Helper()
	ctx := context.Background()
	env = testEnv(t)
	st, err := store.Open(ctx, store.Config{URI: env["MONGODB_URI"], Database: env["MONGODB_DATABASE"], SecretKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.DropDatabase(ctx)
		_ = st.Close(ctx)
	})
	status, err := st.SchemaStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(env["MONGODB_URI"]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(ctx) })
	return env, client.Database(env["MONGODB_DATABASE"]), status.Known
}

// runMigrate runs `crmsync migrate args…` and returns what it printed on stderr.
func runMigrate(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"migrate"}, args...), func(k string) string { return env[k] }, &stdout, &stderr)
	if stdout.Len() > 0 {
		t.Errorf("migrate wrote on stdout: %q", stdout.String())
	}
	return stderr.String(), err
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestMigrateStatusThenMigrate(t *testing.T) {
	t.Parallel()
	env, _, known := migrateEnv(t)
	env["CRMSYNC_INBOX_RETENTION"] = "72h"
	newest := fmt.Sprintf("the newest this crmsync knows is %d", known)

	out, err := runMigrate(t, env, "--status")
	if err != nil {
		t.Fatalf("migrate --status: %v\n%s", err, out)
	}
	wantLines(t, out, "schema version 0; "+newest, "pending: v0001 subscriber-updated-at",
		"pending: v0002 campaign-send-claimed-to", "retention: none recorded yet (CRMSYNC_INBOX_RETENTION here: 72h0m0s)")

	out, err = runMigrate(t, env)
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	wantLines(t, out, "migrate: indexes are in place", "migrate: applied v0001 subscriber-updated-at: 0 documents in the old shape, took ",
		"migrate: applied v0002 campaign-send-claimed-to: 0 documents in the old shape, took ", fmt.Sprintf("migrate: schema version %d (%s)", known, newest),
		"migrate: retention 72h0m0s recorded; removed 0 processed inbox events and 0 finished list sync runs")

	out, err = runMigrate(t, env)
	if err != nil {
		t.Fatalf("second migrate: %v\n%s", err, out)
	}
	wantLines(t, out, "migrate: no data migration was pending", fmt.Sprintf("migrate: schema version %d (", known))

	out, err = runMigrate(t, env, "--dry-run")
	if err != nil {
		t.Fatalf("migrate --dry-run: %v\n%s", err, out)
	}
	wantLines(t, out, fmt.Sprintf("schema version %d; %s", known, newest), "pending: none", "retention: 72h0m0s, recorded ")
}

// TestMigrateRefusesANewerSchema: migrate fails with the reason, and --status
// still reports (and says so) without failing.
func TestMigrateRefusesANewerSchema(t *testing.T) {
	t.Parallel()
	env, db, known := migrateEnv(t)
	if _, err := db.Collection("schemaMigrations").InsertOne(context.Background(), bson.D{{Key: "_id", Value: "v0099"}, {Key: "version", Value: 99}, {Key: "name", Value: "from-a-newer-crmsync"}}); err != nil {
		t.Fatal(err)
	}
	tooNew := fmt.Sprintf("the store's schema is at version 99, newer than this crmsync knows (%d)", known)
	out, err := runMigrate(t, env)
	if err == nil || !strings.Contains(err.Error(), tooNew) {
		t.Fatalf("migrate = %v; want the newer schema refused\n%s", err, out)
	}
	out, err = runMigrate(t, env, "--status")
	if err != nil {
		t.Fatalf("migrate --status: %v\n%s", err, out)
	}
	wantLines(t, out, fmt.Sprintf("schema version 0; the newest this crmsync knows is %d", known), "migrate and serve refuse to run: "+tooNew)
}

func TestMigrateSaysWhenTheStoreIsUnreachable(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	env["MONGODB_URI"] = "mongodb://127.0.0.1:1/?connectTimeoutMS=200"
	out, err := runMigrate(t, env)
	if err == nil || !strings.Contains(err.Error(), "migrate: open store: ping mongodb://127.0.0.1:1") {
		t.Fatalf("migrate = %v; want the unreachable store named\n%s", err, out)
	}
}
