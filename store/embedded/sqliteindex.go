package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself uses; registers "sqlite"
)

// The embedded store's _id index.
//
// FerretDB v1 looks documents up by _id (finds, updates and deletes) with the SQLite
// expression _ferretdb_sjson->'$._id', while the unique index it creates is on
// _ferretdb_sjson->"_id". SQLite cannot use the one for the other, so every lookup by
// _id scans its table: about 34 ms per updateOne at 20,000 documents (design.md).
// An expression index on exactly FerretDB's expression makes those lookups use an
// index (~0.3 ms). This file is the one place that adds it, for the embedded store
// only: real MongoDB indexes _id by itself.
//
// FerretDB creates a table per collection when a collection is first written, in
// one SQLite file per database, and lists the tables in _ferretdb_collections. The
// indexer looks at every database file periodically and indexes new tables. FerretDB
// keeps working with the tables as before (the index is invisible to it); dropping a
// collection drops its table and with it the index.

// idExpr is FerretDB's _id expression (metadata.IDColumn in FerretDB v1.24).
const idExpr = `_ferretdb_sjson->'$._id'`

const idIndexSuffix = "_crmsync_id"

// idIndexer adds the _id expression index to every collection table under dir.
type idIndexer struct {
	dir    string
	logger *slog.Logger
}

// run indexes new tables every interval until ctx ends.
func (x *idIndexer) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := x.indexAll(ctx); err != nil && ctx.Err() == nil {
			x.logger.Warn("embedded store: cannot add _id indexes", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// indexAll indexes the tables of every database file that lack the index.
func (x *idIndexer) indexAll(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := indexFile(ctx, f); err != nil {
			if _, statErr := os.Stat(f); os.IsNotExist(statErr) {
				continue // the database was dropped meanwhile
			}
			return fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
	}
	return nil
}

// indexFile opens one database file briefly (a dropped database's file is removed,
// so no handle is kept) and indexes its unindexed collection tables.
func indexFile(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rw&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	tables, err := queryStrings(ctx, db, `SELECT table_name FROM _ferretdb_collections`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil // a database FerretDB is still creating
		}
		return err
	}
	indexes, err := queryStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'index'`)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, name := range indexes {
		have[name] = true
	}
	for _, table := range tables {
		name := table + idIndexSuffix
		if have[name] {
			continue
		}
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (%s)`, name, table, idExpr)
		if _, err := db.ExecContext(ctx, q); err != nil && !strings.Contains(err.Error(), "no such table") {
			return err
		}
	}
	return nil
}

func queryStrings(ctx context.Context, db *sql.DB, q string) ([]string, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
