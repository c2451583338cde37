package embedded_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"crmsync/store"
	"crmsync/store/embedded"
)

// TestEmbeddedIDIndexIsUsed proves that FerretDB's lookups by _id in the embedded
// store search an index instead of scanning: SQLite's plan for the exact statement
// FerretDB runs for updateOne/deleteOne/find by _id names our index.
func TestEmbeddedIDIndexIsUsed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	srv, err := embedded.Start(ctx, embedded.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	s, err := store.Open(ctx, store.Config{URI: srv.URI(), Embedded: srv, Database: "plan", SecretKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "store", "plan.sqlite")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var table string
	if err := db.QueryRow(`SELECT table_name FROM _ferretdb_collections WHERE name = 'inbox'`).Scan(&table); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		fmt.Sprintf(`UPDATE %q SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`, table),
		fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table),
	} {
		rows, err := db.Query("EXPLAIN QUERY PLAN "+stmt, "{}", "x")
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "; "); !strings.Contains(p, "USING INDEX "+table+"_crmsync_id") {
			t.Errorf("plan for %q is %q: the _id lookup scans", stmt, p)
		}
	}
}

// BenchmarkEmbeddedUpdateByID measures updateOne by _id in a 20,000-document
// collection of the embedded store, as the design notes quote it.
func BenchmarkEmbeddedUpdateByID(b *testing.B) {
	for _, without := range []bool{false, true} {
		name := "indexed"
		if without {
			name = "FerretDB-only"
		}
		b.Run(name, func(b *testing.B) { benchmarkUpdateByID(b, without) })
	}
}

func benchmarkUpdateByID(b *testing.B, withoutIndex bool) {
	dir := b.TempDir()
	ctx := context.Background()
	e, err := embedded.Start(ctx, embedded.Config{DataDir: dir, WithoutIDIndex: withoutIndex})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Stop()
	client, err := mongo.Connect(options.Client().ApplyURI(e.URI()).SetMaxPoolSize(1))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(ctx)
	col := client.Database("bench").Collection("docs")
	const n = 20000
	docs := make([]any, 0, 1000)
	for i := range n {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("doc-%05d", i)}, {Key: "v", Value: i}})
		if len(docs) == cap(docs) {
			if _, err := col.InsertMany(ctx, docs); err != nil {
				b.Fatal(err)
			}
			docs = docs[:0]
		}
	}
	if err := e.IndexNow(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		_, err := col.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("doc-%05d", (i*7919)%n)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: -i}}}})
		if err != nil {
			b.Fatal(err)
		}
	}
}
