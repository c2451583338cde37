package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"crmsync/store"
	"crmsync/store/embedded"
)

// storeServerCommand runs the embedded MongoDB-compatible server on its own, so that
// several crmsync processes (or test binaries) can share one.
func storeServerCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("store-server", stderr)
	addr := fs.String("addr", "127.0.0.1:27017", "TCP address to listen on (port 0 picks a free one)")
	dataDir := fs.String("data-dir", cmp.Or(getenv("CRMSYNC_DATA_DIR"), "./data"), "where the SQLite files are kept")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := embedded.Start(ctx, embedded.Config{Addr: *addr, DataDir: *dataDir})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening on %s\n", e.URI())
	<-ctx.Done()
	e.Stop()
	return nil
}

// migrateCommand brings the store to this binary's schema (indexes, then the
// pending data migrations), records the inbox retention in effect and applies it
// once, and says what it did on stderr. serve runs the same migrations at start;
// this command lets an operator run them, and the first retention pass, ahead of
// a deployment. --status only reports where the store stands.
func migrateCommand(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	status := fs.Bool("status", false, "print the schema version, the newest this crmsync knows and the pending migrations; change nothing")
	fs.BoolVar(status, "dry-run", false, "the same as --status")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	st, closeStore, err := openStore(ctx, cfg, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer closeStore()
	if *status {
		return printSchemaStatus(ctx, st, cfg.InboxRetention, stderr)
	}
	rep, err := st.MigrateWithReport(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "migrate: indexes are in place")
	for _, m := range rep.Applied {
		fmt.Fprintf(stderr, "migrate: applied %s: %d documents in the old shape, took %v\n", m, m.Documents, m.Duration.Round(time.Microsecond))
	}
	if len(rep.Applied) == 0 {
		fmt.Fprintln(stderr, "migrate: no data migration was pending")
	}
	fmt.Fprintf(stderr, "migrate: schema version %d (the newest this crmsync knows is %d)\n", rep.Version, rep.Known)
	removed, err := st.ApplyRetention(ctx, cfg.InboxRetention)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(stderr, "migrate: retention %v recorded; removed %d processed inbox events and %d finished list sync runs older than that\n",
		cfg.InboxRetention, removed.Events, removed.Runs)
	return nil
}

// printSchemaStatus says where the store stands against this binary, and the
// retention last recorded beside the one configured here.
func printSchemaStatus(ctx context.Context, st *store.Store, retention time.Duration, w io.Writer) error {
	s, err := st.SchemaStatus(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(w, "schema version %d; the newest this crmsync knows is %d\n", s.Version, s.Known)
	if s.Newest > s.Known {
		fmt.Fprintf(w, "migrate and serve refuse to run: %v\n", &store.SchemaTooNewError{Recorded: s.Newest, Known: s.Known})
	}
	if len(s.Pending) == 0 {
		fmt.Fprintln(w, "pending: none")
	}
	for _, m := range s.Pending {
		fmt.Fprintf(w, "pending: %s\n", m)
	}
	rec, err := st.Retention(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fmt.Fprintf(w, "retention: none recorded yet (CRMSYNC_INBOX_RETENTION here: %v)\n", retention)
	case err != nil:
		return fmt.Errorf("migrate: %w", err)
	default:
		fmt.Fprintf(w, "retention: %v, recorded %s by %s (CRMSYNC_INBOX_RETENTION here: %v)\n",
			rec.Inbox, rec.RecordedAt.Format(time.RFC3339), rec.RecordedBy, retention)
	}
	return nil
}
