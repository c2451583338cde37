// Package storetest gives tests a store of their own: a fresh database on the server
// named by MONGODB_URI, or on one embedded server shared by the test binary.
package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"crmsync/store"
	embeddedsrv "crmsync/store/embedded"
)

var (
	embeddedOnce sync.Once
	embedded     *embeddedsrv.Server
	embeddedDir  string
	embeddedErr  error
)

// URI returns MONGODB_URI, or starts (once per test binary) an embedded server and
// returns its address.
func URI(tb testing.TB) string {
	tb.Helper()
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		return uri
	}
	embeddedOnce.Do(func() {
		embeddedDir, embeddedErr = os.MkdirTemp("", "crmsync-storetest-")
		if embeddedErr != nil {
			return
		}
		embedded, embeddedErr = embeddedsrv.Start(context.Background(), embeddedsrv.Config{DataDir: embeddedDir})
	})
	if embeddedErr != nil {
		tb.Fatalf("start embedded store: %v", embeddedErr)
	}
	return embedded.URI()
}

// Main runs the package's tests and then stops the embedded server, if one was
// started, and removes its files. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if embedded != nil {
		embedded.Stop()
	}
	if embeddedDir != "" {
		_ = os.RemoveAll(embeddedDir)
	}
	os.Exit(code)
}

// Open returns a store on a database used by this test alone, dropped when it ends;
// opts adjust its configuration (a clock, a monitor).
func Open(tb testing.TB, opts ...func(*store.Config)) *store.Store {
	tb.Helper()
	cfg := Config(tb)
	for _, o := range opts {
		o(&cfg)
	}
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.DropDatabase(ctx); err != nil {
			tb.Logf("drop test database: %v", err)
		}
		_ = s.Close(ctx)
	})
	if err := s.Migrate(context.Background()); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return s
}

// Config returns a store configuration with its own database name and secret key,
// for tests that start components which open the store themselves.
func Config(tb testing.TB) store.Config {
	tb.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg := store.Config{URI: URI(tb), Database: DatabaseName(tb), SecretKey: key}
	if embedded != nil && cfg.URI == embedded.URI() {
		cfg.Embedded = embedded
	}
	return cfg
}

// DatabaseName derives a short unique database name from the test's name.
func DatabaseName(tb testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, tb.Name())
	if len(name) > 30 {
		name = name[:30]
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	return fmt.Sprintf("t_%s_%x", name, suffix)
}
