package main

import (
	"context"
	"log/slog"

	"crmsync/store"
	"crmsync/store/embedded"
)

// openStore connects to MONGODB_URI, or starts the embedded server under the data dir
// when it is unset. The returned func closes the store and stops that server.
func openStore(ctx context.Context, cfg *config, logger *slog.Logger) (*store.Store, func(), error) {
	scfg := store.Config{URI: cfg.MongoURI, Database: cfg.MongoDatabase, SecretKey: cfg.SecretKey, KeyGrace: cfg.KeyGrace, Logger: logger}
	var srv *embedded.Server
	if cfg.MongoURI == "" {
		var err error
		srv, err = embedded.Start(ctx, embedded.Config{DataDir: cfg.DataDir})
		if err != nil {
			return nil, nil, err
		}
		scfg.URI, scfg.Embedded = srv.URI(), srv
	}
	st, err := store.Open(ctx, scfg)
	if err != nil {
		if srv != nil {
			srv.Stop()
		}
		return nil, nil, err
	}
	return st, func() {
		_ = st.Close(context.WithoutCancel(ctx))
		if srv != nil {
			srv.Stop()
		}
	}, nil
}
