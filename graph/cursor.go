package graph

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"crmsync/graph/model"
	"crmsync/store"
)

// MaxPageSize is the largest `first` a connection field accepts.
const MaxPageSize = 500

// pageSize checks a connection's `first` argument.
func pageSize(first *int) (int, error) {
	n := 50
	if first != nil {
		n = *first
	}
	switch {
	case n < 0:
		return 0, &Error{Code: CodeBadUserInput, Message: "first must not be negative", Field: "first"}
	case n > MaxPageSize:
		return 0, &Error{Code: CodeTooComplex, Message: "first must be at most 500", Field: "first"}
	}
	return n, nil
}

// Cursors are opaque to clients: base64 of a version tag and the position.
const cursorPrefix = "c1:"

func encodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + id))
}

func decodeCursor(after *string) (string, error) {
	if after == nil || *after == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(*after)
	if err != nil || !strings.HasPrefix(string(b), cursorPrefix) {
		return "", &Error{Code: CodeBadUserInput, Message: "after is not a cursor of this list", Field: "after"}
	}
	return strings.TrimPrefix(string(b), cursorPrefix), nil
}

func encodeEventCursor(ev *store.InboxEvent) string {
	return encodeCursor(strconv.FormatInt(ev.ReceivedAt.UnixNano(), 10) + "|" + ev.ID)
}

func decodeEventCursor(after *string) (store.EventPosition, error) {
	raw, err := decodeCursor(after)
	if err != nil || raw == "" {
		return store.EventPosition{}, err
	}
	ns, id, ok := strings.Cut(raw, "|")
	n, perr := strconv.ParseInt(ns, 10, 64)
	if !ok || perr != nil || id == "" {
		return store.EventPosition{}, &Error{Code: CodeBadUserInput, Message: "after is not a cursor of this list", Field: "after"}
	}
	return store.EventPosition{At: time.Unix(0, n).UTC(), ID: id}, nil
}

// page is one page of a Relay connection, ready for its edges.
type page[T any] struct {
	items []T
	more  bool
	total int
}

// edges builds a connection's edges and page info from a page.
func edges[T any, E any](p page[T], cursor func(T) string, edge func(string, T) E) ([]E, *model.PageInfo) {
	out := make([]E, len(p.items))
	info := &model.PageInfo{HasNextPage: p.more}
	for i, item := range p.items {
		c := cursor(item)
		out[i] = edge(c, item)
		if i == len(p.items)-1 {
			info.EndCursor = &c
		}
	}
	return out, info
}

// idPage reads a page of items ordered by id: first and after as the connection
// field got them, list and count from the store.
func idPage[T any](first *int, after *string, list func(afterID string, n int) ([]T, bool, error), count func() (int, error)) (page[T], error) {
	n, err := pageSize(first)
	if err != nil {
		return page[T]{}, err
	}
	afterID, err := decodeCursor(after)
	if err != nil {
		return page[T]{}, err
	}
	items, more, err := list(afterID, n)
	if err != nil {
		return page[T]{}, err
	}
	total, err := count()
	if err != nil {
		return page[T]{}, err
	}
	return page[T]{items: items, more: more, total: total}, nil
}

// idEdges reads a page of items ordered by id, as idPage does, and makes its edges:
// what a Relay connection field answers, in one call.
func idEdges[T any, E any](first *int, after *string, list func(afterID string, n int) ([]T, bool, error), count func() (int, error),
	id func(T) string, edge func(string, T) E) ([]E, *model.PageInfo, int, error) {
	p, err := idPage(first, after, list, count)
	if err != nil {
		return nil, nil, 0, err
	}
	es, info := edges(p, func(item T) string { return encodeCursor(id(item)) }, edge)
	return es, info, p.total, nil
}
