package logctx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"

	"crmsync/logctx"
)

// newLogger logs JSON lines without the time to buf, through logctx.NewHandler.
func newLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(logctx.NewHandler(slog.NewJSONHandler(buf, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})))
}

func TestHandlerAddsContextAttributes(t *testing.T) {
	t.Parallel()
	ctx := logctx.With(context.Background(), slog.String(logctx.Tenant, "acme"), slog.String(logctx.Event, "ev-1"))
	tests := []struct {
		name string
		log  func(l *slog.Logger)
		want string
	}{
		{"without a context's attributes the record is unchanged",
			func(l *slog.Logger) { l.InfoContext(context.Background(), "m", "a", 1) },
			`{"level":"INFO","msg":"m","a":1}`},
		{"without a context at all",
			func(l *slog.Logger) { l.Info("m", "a", 1) },
			`{"level":"INFO","msg":"m","a":1}`},
		{"context attributes come before the call's",
			func(l *slog.Logger) { l.WarnContext(ctx, "m", "a", 1) },
			`{"level":"WARN","msg":"m","tenant":"acme","event":"ev-1","a":1}`},
		{"the call's key wins, once",
			func(l *slog.Logger) { l.InfoContext(ctx, "m", slog.String(logctx.Event, "ev-2")) },
			`{"level":"INFO","msg":"m","tenant":"acme","event":"ev-2"}`},
		{"the logger's key wins, once",
			func(l *slog.Logger) { l.With(logctx.Tenant, "other").InfoContext(ctx, "m") },
			`{"level":"INFO","msg":"m","tenant":"other","event":"ev-1"}`},
		{"a key inside an inlined group of the call counts as given",
			func(l *slog.Logger) { l.InfoContext(ctx, "m", slog.Group("", slog.String(logctx.Event, "ev-3"))) },
			`{"level":"INFO","msg":"m","tenant":"acme","event":"ev-3"}`},
		{"Log and LogAttrs",
			func(l *slog.Logger) {
				l.Log(ctx, slog.LevelError, "m1")
				l.LogAttrs(ctx, slog.LevelInfo, "m2", slog.Int("n", 2))
			},
			`{"level":"ERROR","msg":"m1","tenant":"acme","event":"ev-1"}` + "\n" +
				`{"level":"INFO","msg":"m2","tenant":"acme","event":"ev-1","n":2}`},
		{"a disabled level logs nothing",
			func(l *slog.Logger) { l.DebugContext(ctx, "m") },
			``},
		{"context attributes stay outside the logger's groups",
			func(l *slog.Logger) { l.WithGroup("g").InfoContext(ctx, "m", "a", 1) },
			`{"level":"INFO","msg":"m","tenant":"acme","event":"ev-1","g":{"a":1}}`},
		{"a key inside a group is not the top level's",
			func(l *slog.Logger) { l.WithGroup("g").InfoContext(ctx, "m", slog.String(logctx.Event, "inner")) },
			`{"level":"INFO","msg":"m","tenant":"acme","event":"ev-1","g":{"event":"inner"}}`},
		{"attributes given inside groups stay in them",
			func(l *slog.Logger) {
				l.With("x", 1).WithGroup("g").With("y", 2).WithGroup("h").With(logctx.Tenant, "in-h").InfoContext(ctx, "m", "z", 3)
			},
			`{"level":"INFO","msg":"m","x":1,"tenant":"acme","event":"ev-1","g":{"y":2,"h":{"tenant":"in-h","z":3}}}`},
		{"empty groups are left out",
			func(l *slog.Logger) { l.WithGroup("g").WithGroup("h").InfoContext(ctx, "m") },
			`{"level":"INFO","msg":"m","tenant":"acme","event":"ev-1"}`},
		{"a logger's attributes outside groups are kept with groups open",
			func(l *slog.Logger) { l.With(logctx.Event, "bound").WithGroup("g").InfoContext(ctx, "m", "a", 1) },
			`{"level":"INFO","msg":"m","event":"bound","tenant":"acme","g":{"a":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			tt.log(newLogger(&buf))
			if got := strings.TrimSpace(buf.String()); got != tt.want {
				t.Errorf("logged\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestWithMerges checks that a later attribute replaces an earlier one of its key
// in place, and that the context With was given keeps its own.
func TestWithMerges(t *testing.T) {
	t.Parallel()
	parent := logctx.With(context.Background(), slog.String(logctx.Tenant, "acme"), slog.String(logctx.Event, "ev-1"))
	child := logctx.With(parent, slog.String(logctx.Event, "ev-2"), slog.String(logctx.Correlation, "c-1"),
		slog.String("", "dropped"), slog.Group("", slog.String(logctx.Connection, "conn-1")))
	sibling := logctx.With(parent, slog.String(logctx.Message, "Create"))

	var buf bytes.Buffer
	l := newLogger(&buf)
	l.InfoContext(parent, "parent")
	l.InfoContext(child, "child")
	l.InfoContext(sibling, "sibling")
	want := `{"level":"INFO","msg":"parent","tenant":"acme","event":"ev-1"}
{"level":"INFO","msg":"child","tenant":"acme","event":"ev-2","correlation":"c-1","connection":"conn-1"}
{"level":"INFO","msg":"sibling","tenant":"acme","event":"ev-1","message":"Create"}`
	if got := strings.TrimSpace(buf.String()); got != want {
		t.Errorf("logged\n%s\nwant\n%s", got, want)
	}

	if v, ok := logctx.Lookup(child, logctx.Correlation); !ok || v.String() != "c-1" {
		t.Errorf("Lookup(child, correlation) = %v, %t", v, ok)
	}
	if v, ok := logctx.Lookup(parent, logctx.Correlation); ok {
		t.Errorf("Lookup(parent, correlation) = %v, want none", v)
	}
	if logctx.With(parent) != parent {
		t.Error("With without attributes made a new context")
	}
}

// TestHandlerFollowsSlogRules runs the standard library's handler conformance
// tests, without context attributes (records pass through) and with them (the
// groups are rebuilt around the record's attributes).
func TestHandlerFollowsSlogRules(t *testing.T) {
	t.Parallel()
	for _, withCtx := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "with context attributes"}[withCtx], func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			slogtest.Run(t, func(*testing.T) slog.Handler {
				buf.Reset()
				h := logctx.NewHandler(slog.NewJSONHandler(&buf, nil))
				if withCtx {
					return ctxInjector{h}
				}
				return h
			}, func(t *testing.T) map[string]any {
				var m map[string]any
				if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
					t.Fatalf("%q: %v", buf.String(), err)
				}
				if withCtx {
					if m["ctx"] != "v" {
						t.Errorf("the context attribute is missing at the top level: %s", buf.String())
					}
					delete(m, "ctx")
				}
				return m
			})
		})
	}
}

// ctxInjector logs every record with a context that carries ctx=v.
type ctxInjector struct{ slog.Handler }

func (c ctxInjector) Handle(ctx context.Context, r slog.Record) error {
	return c.Handler.Handle(logctx.With(ctx, slog.String("ctx", "v")), r)
}

func (c ctxInjector) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ctxInjector{c.Handler.WithAttrs(attrs)}
}

func (c ctxInjector) WithGroup(name string) slog.Handler {
	return ctxInjector{c.Handler.WithGroup(name)}
}
