// Package embedded runs FerretDB, a MongoDB wire-protocol server on SQLite files, in
// this process: the store of `crmsync serve` when MONGODB_URI is unset, of
// `crmsync store-server`, and of the tests. It is a package of its own because it
// is large (FerretDB and a pure-Go SQLite), and code that only uses the store's
// types should not carry it.
package embedded

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Config configures the in-process MongoDB-compatible server.
type Config struct {
	// Addr is the TCP address to listen on; "127.0.0.1:0" (the default) picks a free port.
	Addr string
	// DataDir holds the SQLite files, one per database; it is created when missing.
	DataDir string
	// Logger receives the server's own warnings; nil discards them below error level.
	Logger *slog.Logger
	// WithoutIDIndex leaves out the _id index of sqliteindex.go; only benchmarks that
	// measure what the index is worth set it.
	WithoutIDIndex bool
}

// Server is a FerretDB server running in this process, speaking the MongoDB wire
// protocol over TCP so that the official driver (and other processes) can use it.
type Server struct {
	uri     string
	dir     string
	cancel  context.CancelFunc
	done    chan struct{}
	indexer *idIndexer
	// withoutIndex is Config.WithoutIDIndex.
	withoutIndex bool
}

// Start starts FerretDB on SQLite files under cfg.DataDir and returns once it
// accepts connections.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("start embedded store: DataDir is required")
	}
	dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "store"))
	if err != nil {
		return nil, fmt.Errorf("start embedded store: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start embedded store: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: cmp.Or(cfg.Addr, "127.0.0.1:0")},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("start embedded store: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &Server{dir: dir, cancel: cancel, done: make(chan struct{}), indexer: &idIndexer{dir: dir, logger: logger}, withoutIndex: cfg.WithoutIDIndex}
	indexed := make(chan struct{})
	go func() {
		defer close(e.done)
		_ = f.Run(runCtx)
		<-indexed
	}()
	go func() {
		defer close(indexed)
		if !cfg.WithoutIDIndex {
			e.indexer.run(runCtx, 500*time.Millisecond)
		}
	}()
	// MongoDBURI waits until the listener is bound, which is why Run starts first.
	e.uri = f.MongoDBURI()
	return e, nil
}

// URI is the mongodb:// address of the running server.
func (e *Server) URI() string { return e.uri }

// IndexNow adds the _id index (see sqliteindex.go) to tables created since the last
// pass, without waiting for the next one.
func (e *Server) IndexNow(ctx context.Context) error {
	if e.withoutIndex {
		return nil
	}
	return e.indexer.indexAll(ctx)
}

// Stop closes the listener and every connection, then the SQLite files.
func (e *Server) Stop() {
	e.cancel()
	<-e.done
}
