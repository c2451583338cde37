package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"crmsync/dataverse"
)

// Writes to the CRM travel in bulk requests (reference/dataverse.md §7.1):
// CreateMultiple for new rows, UpdateMultiple for rows whose id is known,
// UpsertMultiple for rows named by an alternate key. A bulk request is atomic, so
// one bad row refuses all of them; its rows are then sent again in one $batch with
// continue-on-error, each row an operation of its own (the smallest change set),
// so each row gets its own answer and the good ones are written. As Microsoft advises, the number of
// rows per request shrinks after a failure and grows back while requests succeed.

// DefaultMaxBulkRows is how many rows one bulk request carries at most: the top of
// Microsoft's guidance of 100 to 1,000 rows for standard tables.
const DefaultMaxBulkRows = 1000

// minBulkRows is the floor the rows per request shrink to after failures.
const minBulkRows = 10

// bulkKind is the bulk message a write uses.
type bulkKind int

const (
	bulkCreate bulkKind = iota
	bulkUpdate
	bulkUpsert
)

func (k bulkKind) String() string {
	switch k {
	case bulkCreate:
		return "create"
	case bulkUpdate:
		return "update"
	}
	return "upsert"
}

// bulkRow is one row to write: for an update, Ref is the row's id; for an upsert,
// its alternate-key reference (dataverse.AlternateKey); a create has none. Body
// holds the columns.
type bulkRow struct {
	Ref  string
	Body map[string]any
}

// bulkSizes remembers, per connection, how many rows the next bulk request
// carries: half as many after a request failed, twice as many after one
// succeeded, between minBulkRows and max.
type bulkSizes struct {
	mu sync.Mutex
	by map[string]int
}

func (s *bulkSizes) get(conn string, maxRows int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.by[conn]; ok {
		return min(n, maxRows)
	}
	return maxRows
}

func (s *bulkSizes) adjust(conn string, maxRows int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[string]int{}
	}
	n, known := s.by[conn]
	if !known {
		n = maxRows
	}
	if ok {
		n = min(2*n, maxRows)
	} else {
		n = max(n/2, min(minBulkRows, maxRows))
	}
	s.by[conn] = n
}

// bulkWrite writes rows of one table and gives each row's outcome: ids[i] is the
// id of the row rows[i] created (creates only), errs[i] why rows[i] was not
// written.
func (w *OutboxWriter) bulkWrite(ctx context.Context, client *dataverse.Client, connID string, kind bulkKind, set string, rows []bulkRow) (ids []string, errs []error) {
	ids, errs = make([]string, len(rows)), make([]error, len(rows))
	maxRows := w.maxBulkRows()
	for start := 0; start < len(rows); {
		chunk := rows[start:min(len(rows), start+w.sizes.get(connID, maxRows))]
		got, err := sendBulk(ctx, client, kind, set, chunk)
		w.sizes.adjust(connID, maxRows, err == nil)
		var api *dataverse.APIError
		switch {
		case err == nil:
			copy(ids[start:], got)
		case errors.As(err, &api) && !api.Retryable():
			// Refused as a whole, nothing written: find the rows at fault.
			got, rowErrs := sendEach(ctx, client, kind, set, chunk)
			copy(ids[start:], got)
			copy(errs[start:], rowErrs)
		default:
			for i := range chunk {
				errs[start+i] = err
			}
		}
		start += len(chunk)
	}
	return ids, errs
}

// sendBulk writes rows in one bulk request.
func sendBulk(ctx context.Context, client *dataverse.Client, kind bulkKind, set string, rows []bulkRow) ([]string, error) {
	targets := make([]map[string]any, len(rows))
	for i, r := range rows {
		t := maps.Clone(r.Body)
		if t == nil {
			t = map[string]any{}
		}
		switch kind {
		case bulkUpdate:
			t[primaryKeyOf(set)] = r.Ref
		case bulkUpsert:
			t["@odata.id"] = r.Ref
		}
		targets[i] = t
	}
	switch kind {
	case bulkCreate:
		return client.CreateMultiple(ctx, set, targets)
	case bulkUpdate:
		return nil, client.UpdateMultiple(ctx, set, targets)
	}
	return nil, client.UpsertMultiple(ctx, set, targets)
}

// sendEach writes rows in one $batch, each row its own operation, so that every
// row succeeds or fails on its own.
func sendEach(ctx context.Context, client *dataverse.Client, kind bulkKind, set string, rows []bulkRow) (ids []string, errs []error) {
	ids, errs = make([]string, len(rows)), make([]error, len(rows))
	ops := make([]dataverse.BatchOp, len(rows))
	for i, r := range rows {
		switch kind {
		case bulkCreate:
			ops[i] = dataverse.BatchCreate(set, r.Body)
		case bulkUpdate:
			ops[i] = dataverse.BatchUpdate(set, r.Ref, r.Body)
		default:
			// A PATCH of an alternate key without If-Match creates the row when missing.
			ops[i] = dataverse.BatchOp{Method: http.MethodPatch, Path: r.Ref, Body: r.Body}
		}
	}
	results, err := client.BatchContinueOnError(ctx, ops)
	if len(results) != len(rows) {
		if err == nil {
			err = fmt.Errorf("%d answers for %d operations", len(results), len(rows))
		}
		for i := range errs {
			errs[i] = fmt.Errorf("%s %s one by one: %w", kind, set, err)
		}
		return ids, errs
	}
	for i, res := range results {
		if res.Err != nil {
			errs[i] = fmt.Errorf("%s %s: %w", kind, set, res.Err)
			continue
		}
		id := res.ID
		if body, ok := ops[i].Body.(map[string]any); ok && id == "" && kind == bulkCreate {
			id, _ = body[primaryKeyOf(set)].(string) // the id BatchCreate chose
		}
		ids[i] = strings.ToLower(id)
	}
	return ids, errs
}

// primaryKeyOf is the primary-key column of the tables the outbox writes:
// contacts → contactid, cs_subscriptions → cs_subscriptionid.
func primaryKeyOf(set string) string { return strings.TrimSuffix(set, "s") + "id" }

// tableRows gathers the rows of a bulk write by entity set, each row written once
// for all the subscribers that need it.
type tableRows map[string]*pendingRows

// pendingRows are the rows of one table and, for each, the subscribers waiting on it.
type pendingRows struct {
	rows  []bulkRow
	items [][]*item
	index map[string]int // row key → position
}

// add queues a row under key, or adds it to the row already queued there.
func (t tableRows) add(set, key string, it *item, row func() bulkRow) {
	p := t[set]
	if p == nil {
		p = &pendingRows{index: map[string]int{}}
		t[set] = p
	}
	if i, ok := p.index[key]; ok {
		p.items[i] = append(p.items[i], it)
		return
	}
	p.index[key] = len(p.rows)
	p.rows = append(p.rows, row())
	p.items = append(p.items, []*item{it})
}

// write sends every table's rows and hands each subscriber its row's outcome:
// a failure, or done with the id the row got (creates).
func (w *OutboxWriter) write(ctx context.Context, client *dataverse.Client, connID string, kind bulkKind, t tableRows, done func(it *item, set, id string)) {
	for _, set := range slices.Sorted(maps.Keys(t)) {
		p := t[set]
		ids, errs := w.bulkWrite(ctx, client, connID, kind, set, p.rows)
		for i, its := range p.items {
			for _, it := range its {
				if errs[i] != nil {
					it.fail(crmError(errs[i]))
				} else if done != nil {
					done(it, set, ids[i])
				}
			}
		}
	}
}
