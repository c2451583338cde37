package logctx

import (
	"context"
	"log/slog"
	"slices"
)

// NewHandler wraps h so that every record logged with a context carries that
// context's attributes (With), at the top level of the line, before the record's
// own. An attribute of a key the record already has at the top level — from the
// call, or from the logger's With outside any group — is left out: what the call
// says explicitly wins. Records without context attributes reach h unchanged.
func NewHandler(h slog.Handler) slog.Handler {
	return &handler{flat: h, full: h}
}

// handler keeps h twice: flat has only the attributes given before any group,
// full has every WithAttrs and WithGroup applied. A record without context
// attributes goes to full as it is; one with them goes to flat, with the groups
// and the attributes given inside them rebuilt as nested group attributes, so
// the context's attributes stay outside the groups.
type handler struct {
	flat, full slog.Handler
	// top holds the keys given with WithAttrs before any group.
	top []string
	// groups are the open groups, outermost first, each with the attributes
	// given inside it.
	groups []group
}

type group struct {
	name  string
	attrs []slog.Attr
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.full.Enabled(ctx, level)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	c := *h
	c.full = h.full.WithAttrs(attrs)
	if len(h.groups) == 0 {
		c.flat = c.full
		c.top = appendKeys(slices.Clip(h.top), attrs)
		return &c
	}
	c.groups = slices.Clone(h.groups)
	last := &c.groups[len(c.groups)-1]
	last.attrs = append(slices.Clip(last.attrs), attrs...)
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.full = h.full.WithGroup(name)
	c.groups = append(slices.Clip(h.groups), group{name: name})
	return &c
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	attrs := fromContext(ctx)
	if len(attrs) == 0 {
		return h.full.Handle(ctx, r)
	}
	own := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		own = append(own, a)
		return true
	})
	given := h.top
	if len(h.groups) == 0 {
		given = appendKeys(slices.Clip(h.top), own) // the record's own are at the top level too
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	for _, a := range attrs {
		if !slices.Contains(given, a.Key) {
			out.AddAttrs(a)
		}
	}
	// Rebuild the groups around the record's attributes, innermost first.
	for i := len(h.groups) - 1; i >= 0; i-- {
		g := h.groups[i]
		own = []slog.Attr{{Key: g.name, Value: slog.GroupValue(append(slices.Clip(g.attrs), own...)...)}}
	}
	out.AddAttrs(own...)
	return h.flat.Handle(ctx, out)
}

// appendKeys appends the keys attrs put at their level: a group without a key
// puts its attributes' keys there.
func appendKeys(keys []string, attrs []slog.Attr) []string {
	for _, a := range attrs {
		if a.Key == "" && a.Value.Kind() == slog.KindGroup {
			keys = appendKeys(keys, a.Value.Group())
			continue
		}
		keys = append(keys, a.Key)
	}
	return keys
}
