// Package logctxtest records JSON log lines, for tests that check what the lines
// about a piece of work say.
package logctxtest

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"crmsync/logctx"
)

// Recorder keeps the JSON lines a logger writes, from any goroutine.
type Recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Logger returns a logger that writes to r the way the service logs: JSON through
// logctx.NewHandler, from level up.
func (r *Recorder) Logger(level slog.Level) *slog.Logger {
	return slog.New(logctx.NewHandler(slog.NewJSONHandler(r, &slog.HandlerOptions{Level: level})))
}

// Write adds log output.
func (r *Recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

// String is everything written so far, for a failing test to show.
func (r *Recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// Lines parses the lines written so far; one that is not JSON fails tb.
func (r *Recorder) Lines(tb testing.TB) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for line := range strings.Lines(r.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("not a JSON line: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// Line returns the first line written with msg, or nil.
func (r *Recorder) Line(tb testing.TB, msg string) map[string]any {
	tb.Helper()
	for _, l := range r.Lines(tb) {
		if l[slog.MessageKey] == msg {
			return l
		}
	}
	return nil
}
