// Package logctx carries log attributes in a context.Context, so that every line
// logged about a piece of work (a webhook call, an event the engine handles)
// names it — its tenant, connection, event and correlation id — however deep in
// the call the line is written, and by whichever component's logger.
//
// Attributes are added with With where the work is identified, and a handler
// made by NewHandler adds them to each record logged with that context
// (InfoContext, WarnContext, Log, LogAttrs).
package logctx

import (
	"context"
	"log/slog"
	"slices"
)

// The keys of the attributes that identify what a line is about, the same in
// every package, so logs can be searched by them.
const (
	// Tenant is the tenant the work belongs to.
	Tenant = "tenant"
	// Connection is the id of the CRM connection an event came through or goes to.
	Connection = "connection"
	// Event is the id of an inbox event.
	Event = "event"
	// Correlation ties an event to the work that caused it: Dataverse's
	// CorrelationId, a reaction's webhook-id, the change an eMS-side event records.
	Correlation = "correlation"
	// Message is the message an event carries (Create, Update, SubscriberChanged…).
	Message = "message"
	// Entity is the table or kind of record an event is about.
	Entity = "entity"
)

// EventAttrs are the attributes of the lines about one event, in the keys above.
func EventAttrs(tenant, connection, event, correlation, message, entity string) []slog.Attr {
	return []slog.Attr{
		slog.String(Tenant, tenant), slog.String(Connection, connection),
		slog.String(Event, event), slog.String(Correlation, correlation),
		slog.String(Message, message), slog.String(Entity, entity),
	}
}

// ctxKey is the context key of the attributes.
type ctxKey struct{}

// With returns a context that carries attrs on top of those ctx carries already;
// an attribute replaces one of the same key. Attributes without a key are
// dropped, except a group without a key, whose attributes are added one by one.
func With(ctx context.Context, attrs ...slog.Attr) context.Context {
	if len(attrs) == 0 {
		return ctx
	}
	// A new slice each time: contexts derived from ctx keep seeing theirs.
	merged := slices.Clone(fromContext(ctx))
	merged = merge(merged, attrs)
	return context.WithValue(ctx, ctxKey{}, merged)
}

func merge(dst, attrs []slog.Attr) []slog.Attr {
	for _, a := range attrs {
		if a.Key == "" {
			if a.Value.Kind() == slog.KindGroup {
				dst = merge(dst, a.Value.Group())
			}
			continue
		}
		if i := slices.IndexFunc(dst, func(b slog.Attr) bool { return b.Key == a.Key }); i >= 0 {
			dst[i] = a
		} else {
			dst = append(dst, a)
		}
	}
	return dst
}

// Lookup returns the value ctx carries under key, so work started on behalf of
// other work (an event queued while another is handled) can take over its
// correlation id.
func Lookup(ctx context.Context, key string) (slog.Value, bool) {
	for _, a := range fromContext(ctx) {
		if a.Key == key {
			return a.Value, true
		}
	}
	return slog.Value{}, false
}

// fromContext returns the attributes ctx carries; callers must not change them.
func fromContext(ctx context.Context) []slog.Attr {
	if ctx == nil {
		return nil
	}
	attrs, _ := ctx.Value(ctxKey{}).([]slog.Attr)
	return attrs
}
