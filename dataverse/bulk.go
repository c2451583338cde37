package dataverse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Bulk messages (reference/dataverse.md §7.1): CreateMultiple, UpdateMultiple and
// UpsertMultiple write many rows of one table per request, each request atomic on
// standard tables and counted once against the request limit. Dataverse raises the
// ordinary Create or Update event per row, so webhook steps see them as single
// writes. A call with more rows than Config.BulkSize is split into requests of
// that size; each request is all or nothing, the call as a whole is not.
// DeleteMultiple exists only for elastic tables; delete standard rows with a
// Batch of BatchDelete.

// CreateMultiple inserts rows into entitySet and returns their ids in the same
// order. Like Create, the client puts a new GUID into every row's primary-key
// column that has none, so a request is safe to retry: when an attempt that may
// have gone through is followed by DuplicateRecord, the rows were made (the
// request is atomic). On an error, ids holds the rows of the requests that were
// made before it.
func (c *Client) CreateMultiple(ctx context.Context, entitySet string, rows []map[string]any) (ids []string, err error) {
	u, err := c.setURL(entitySet)
	if err != nil {
		return nil, fmt.Errorf("create multiple %s: %w", entitySet, err)
	}
	pk := primaryKey(entitySet)
	targets, err := bulkTargets(entitySet, rows, func(i int, row map[string]any) error {
		id, _ := row[pk].(string)
		switch {
		case id == "":
			row[pk] = uuid.NewString()
		case !isGUID(id):
			return fmt.Errorf("row %d: invalid id %q in %s: want a GUID", i, id, pk)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create multiple %s: %w", entitySet, err)
	}
	ids = make([]string, 0, len(rows))
	for start := 0; start < len(targets); start += c.bulk {
		chunk := targets[start:min(start+c.bulk, len(targets))]
		body, err := jsonBody(map[string]any{"Targets": chunk})
		if err != nil {
			return ids, fmt.Errorf("create multiple %s: %w", entitySet, err)
		}
		var answer struct {
			IDs []string `json:"Ids"`
		}
		_, err = c.do(ctx, &request{method: http.MethodPost, url: u + "/Microsoft.Dynamics.CRM.CreateMultiple", body: body, create: true,
			decode: func(r io.Reader) error { answer.IDs = nil; return decodeJSON(r, &answer) }})
		sent := make([]string, len(chunk))
		for i, row := range chunk {
			sent[i] = strings.ToLower(row[pk].(string))
		}
		switch {
		case errors.Is(err, errCreatedEarlier):
			answer.IDs = sent
		case err != nil:
			return ids, fmt.Errorf("create multiple %s (rows %d to %d): %w", entitySet, start, start+len(chunk)-1, err)
		case len(answer.IDs) != len(chunk):
			return ids, fmt.Errorf("create multiple %s (rows %d to %d): %d ids in the answer for %d rows", entitySet, start, start+len(chunk)-1, len(answer.IDs), len(chunk))
		}
		for _, id := range answer.IDs {
			ids = append(ids, strings.ToLower(id))
		}
	}
	return ids, nil
}

// UpdateMultiple changes rows of entitySet, each named by its primary-key column
// (alternate keys are not supported by the Web API form, §7.1); send only the
// changed columns. A row named twice in one request is updated once, with the
// first one's values. On an error, the requests before it were applied.
func (c *Client) UpdateMultiple(ctx context.Context, entitySet string, rows []map[string]any) error {
	u, err := c.setURL(entitySet)
	if err != nil {
		return fmt.Errorf("update multiple %s: %w", entitySet, err)
	}
	pk := primaryKey(entitySet)
	targets, err := bulkTargets(entitySet, rows, func(i int, row map[string]any) error {
		if id, _ := row[pk].(string); !isGUID(id) {
			return fmt.Errorf("row %d: %s is %q, want the row's GUID", i, pk, row[pk])
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update multiple %s: %w", entitySet, err)
	}
	return c.sendBulk(ctx, "update multiple", entitySet, u+"/Microsoft.Dynamics.CRM.UpdateMultiple", targets)
}

// UpsertMultiple creates or updates rows of entitySet, each named by an alternate
// key in "@odata.id" (see AlternateKey): rows that exist are updated, the others
// created with the key's values. The answer does not say which happened, and two
// rows with the same key fail the request (§7.1). On an error, the requests
// before it were applied.
func (c *Client) UpsertMultiple(ctx context.Context, entitySet string, rows []map[string]any) error {
	u, err := c.setURL(entitySet)
	if err != nil {
		return fmt.Errorf("upsert multiple %s: %w", entitySet, err)
	}
	targets, err := bulkTargets(entitySet, rows, func(i int, row map[string]any) error {
		if ref, _ := row["@odata.id"].(string); !strings.HasPrefix(ref, entitySet+"(") {
			return fmt.Errorf("row %d: @odata.id is %q, want an alternate key of %s (AlternateKey)", i, row["@odata.id"], entitySet)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("upsert multiple %s: %w", entitySet, err)
	}
	return c.sendBulk(ctx, "upsert multiple", entitySet, u+"/Microsoft.Dynamics.CRM.UpsertMultiple", targets)
}

// sendBulk posts targets in requests of BulkSize that answer 204.
func (c *Client) sendBulk(ctx context.Context, verb, entitySet, u string, targets []map[string]any) error {
	for start := 0; start < len(targets); start += c.bulk {
		chunk := targets[start:min(start+c.bulk, len(targets))]
		body, err := jsonBody(map[string]any{"Targets": chunk})
		if err != nil {
			return fmt.Errorf("%s %s: %w", verb, entitySet, err)
		}
		resp, err := c.do(ctx, &request{method: http.MethodPost, url: u, body: body})
		if err != nil {
			return fmt.Errorf("%s %s (rows %d to %d): %w", verb, entitySet, start, start+len(chunk)-1, err)
		}
		drain(resp)
	}
	return nil
}

// bulkTargets copies rows (the caller's maps are left alone), adds the
// "@odata.type" every target needs and lets check inspect or complete each copy.
func bulkTargets(entitySet string, rows []map[string]any, check func(i int, row map[string]any) error) ([]map[string]any, error) {
	typ := "Microsoft.Dynamics.CRM." + logicalName(entitySet)
	out := make([]map[string]any, len(rows))
	for i, row := range rows {
		t := make(map[string]any, len(row)+2)
		maps.Copy(t, row)
		t["@odata.type"] = typ
		if err := check(i, t); err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// AlternateKey is the "@odata.id" of a row named by an alternate key, for
// UpsertMultiple: AlternateKey("cs_subscriptions", map[string]any{"cs_groupid":
// "g1", "_cs_contactid_value": id}) is
// "cs_subscriptions(_cs_contactid_value=<id>,cs_groupid='g1')". Lookup columns
// are named by their property (_<name>_value) and take a GUID; other strings are
// quoted; numbers and booleans are written as they are. Characters that would end
// the URL's path early are percent-encoded.
func AlternateKey(entitySet string, key map[string]any) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(key)) {
		var lit string
		switch v := key[name].(type) {
		case string:
			if strings.HasPrefix(name, "_") && strings.HasSuffix(name, "_value") {
				lit = v
			} else {
				lit = QuoteString(v)
			}
		case bool:
			lit = strconv.FormatBool(v)
		case int:
			lit = strconv.Itoa(v)
		case int64:
			lit = strconv.FormatInt(v, 10)
		default:
			lit = fmt.Sprint(v)
		}
		parts = append(parts, name+"="+keyEscaper.Replace(lit))
	}
	return entitySet + "(" + strings.Join(parts, ",") + ")"
}

// keyEscaper percent-encodes what would end a URL path inside a key literal.
var keyEscaper = strings.NewReplacer("%", "%25", "#", "%23", "?", "%3F", "/", "%2F")

// logicalName is the table behind an entity set by Dataverse's plural naming
// (contacts → contact, campaignactivities → campaignactivity), for @odata.type.
func logicalName(entitySet string) string {
	switch {
	case strings.HasSuffix(entitySet, "ies"):
		return strings.TrimSuffix(entitySet, "ies") + "y"
	case strings.HasSuffix(entitySet, "sses"), strings.HasSuffix(entitySet, "xes"):
		return strings.TrimSuffix(entitySet, "es")
	}
	return strings.TrimSuffix(entitySet, "s")
}

// jsonBody encodes a request body.
func jsonBody(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode body: %w", err)
	}
	return b, nil
}
