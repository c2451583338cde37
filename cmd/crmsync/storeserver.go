package main

import (
	"cmp"
	"context"
	"fmt"
	"io"

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

// migrateCommand creates the store's indexes and exits.
func migrateCommand(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	st, closeStore, err := openStore(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "migrate: indexes are in place")
	return nil
}
