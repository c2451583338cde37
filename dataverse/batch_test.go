package dataverse

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// count is how many rows of set a filter finds.
func count(t *testing.T, c *Client, set, filter string) int {
	t.Helper()
	rows := c.Query(t.Context(), set, Query{Select: []string{primaryKey(set)}, Filter: filter})
	n := 0
	for rows.Next(t.Context()) {
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %s: %v", set, err)
	}
	return n
}

func TestBatchStopsAtTheFailedOperationAndSaysWhich(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	missing := "00000000-0000-4000-8000-0000000000aa"
	ops := []BatchOp{
		BatchCreate("contacts", map[string]any{"lastname": "Batch-1"}),
		BatchUpdate("contacts", missing, map[string]any{"lastname": "nobody"}),
		BatchCreate("contacts", map[string]any{"lastname": "Batch-3"}),
	}
	results, err := b.client.Batch(ctx, ops)
	var be *BatchError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *BatchError", err)
	}
	if be.Index != 1 || be.Method != http.MethodPatch || be.Err.Status != http.StatusNotFound || !errors.Is(err, ErrNotFound) {
		t.Errorf("BatchError %+v (%v)", be, be.Err)
	}
	if !strings.Contains(err.Error(), "batch operation 1 (PATCH contacts("+missing+"))") {
		t.Errorf("message %q does not name the operation", err)
	}
	if len(results) != 1 || results[0].Status != http.StatusNoContent || results[0].ID != ops[0].Body.(map[string]any)["contactid"] {
		t.Fatalf("results %+v", results)
	}
	if n := count(t, b.client, "contacts", "startswith(lastname,'Batch-')"); n != 1 {
		t.Errorf("%d contacts after the batch, want 1: it stops at the failure", n)
	}
}

func TestBatchChangeSetIsAllOrNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	missing := "00000000-0000-4000-8000-0000000000bb"
	set := func(fail bool) []BatchOp {
		acc := BatchOp{Method: http.MethodPost, Path: "accounts", Body: map[string]any{"name": "CS Account"}, ChangeSet: "cs", ContentID: "acc"}
		con := BatchOp{Method: http.MethodPost, Path: "contacts", ChangeSet: "cs",
			Body: map[string]any{"lastname": "CS Contact", "parentcustomerid_account@odata.bind": "$acc"}}
		upd := BatchOp{Method: http.MethodPatch, Path: "$acc", Body: map[string]any{"telephone1": "+49 1"}, ChangeSet: "cs"}
		if fail {
			upd.Path = "accounts(" + missing + ")"
			upd.Header = http.Header{"If-Match": {"*"}}
		}
		before := BatchOp{Method: http.MethodPost, Path: "contacts", Body: map[string]any{"lastname": "Before"}}
		return []BatchOp{before, acc, con, upd}
	}

	results, err := b.client.Batch(ctx, set(true))
	var be *BatchError
	if !errors.As(err, &be) || be.Index != 3 || be.ChangeSet != "cs" || be.Err.Status != http.StatusNotFound {
		t.Fatalf("err = %v (%+v), want operation 3 of change set cs, 404", err, be)
	}
	if len(results) != 1 {
		t.Errorf("%d results, want the one before the change set", len(results))
	}
	if n := count(t, b.client, "accounts", "name eq 'CS Account'") + count(t, b.client, "contacts", "lastname eq 'CS Contact'"); n != 0 {
		t.Errorf("%d rows of the failed change set exist; it must leave nothing", n)
	}
	if n := count(t, b.client, "contacts", "lastname eq 'Before'"); n != 1 {
		t.Errorf("the operation before the change set: %d rows", n)
	}

	// The same change set without the failure: Content-ID references resolve in
	// the URL and in @odata.bind.
	results, err = b.client.Batch(ctx, set(false))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 4 {
		t.Fatalf("%d results", len(results))
	}
	accID, conID := results[1].ID, results[2].ID
	con, err := b.client.Get(ctx, "contacts", conID, []string{"_parentcustomerid_value"})
	if err != nil {
		t.Fatal(err)
	}
	if parent, _ := con.Lookup("parentcustomerid"); parent != accID || accID == "" {
		t.Errorf("contact's parent %q, account %q", parent, accID)
	}
	acc, err := b.client.Get(ctx, "accounts", accID, []string{"telephone1"})
	if err != nil {
		t.Fatal(err)
	}
	if phone, _ := acc.String("telephone1"); phone != "+49 1" {
		t.Errorf("PATCH $acc did not reach the account: %v", acc)
	}
}

func TestBatchContinueOnError(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	id, err := b.client.Create(ctx, "contacts", map[string]any{"lastname": "Read me"})
	if err != nil {
		t.Fatal(err)
	}
	ops := []BatchOp{
		BatchCreate("contacts", map[string]any{"lastname": strings.Repeat("x", 51)}), // too long
		{Method: http.MethodGet, Path: "contacts(" + id + ")?$select=lastname"},
		BatchDelete("contacts", id),
		{Method: http.MethodPost, Path: "contacts", ChangeSet: "a", Body: map[string]any{"lastname": "In A"}},
		{Method: http.MethodPost, Path: "contacts", ChangeSet: "a", Body: map[string]any{"parentcustomerid_contact@odata.bind": "$9"}},
	}
	results, err := b.client.BatchContinueOnError(ctx, ops)
	if len(results) != len(ops) {
		t.Fatalf("%d results for %d operations (err %v)", len(results), len(ops), err)
	}
	var failed []int
	for i, r := range results {
		if r.Err != nil {
			failed = append(failed, i)
		}
	}
	if fmt.Sprint(failed) != "[0 3 4]" {
		t.Errorf("failed operations %v, want [0 3 4]", failed)
	}
	var be *BatchError
	if !errors.As(err, &be) || be.Index != 0 || be.Err.Code != "0x80044331" {
		t.Errorf("first error %v", err)
	}
	if !strings.Contains(err.Error(), "'$9' does not exist") {
		t.Errorf("joined errors %q lack the undeclared Content-ID", err)
	}
	row, err := results[1].Row()
	if err != nil || row["lastname"] != "Read me" {
		t.Errorf("GET in a batch: %v %v", row, err)
	}
	if results[2].Status != http.StatusNoContent {
		t.Errorf("DELETE after a failure: %d", results[2].Status)
	}
	if n := count(t, b.client, "contacts", "lastname eq 'In A'"); n != 0 {
		t.Errorf("change set a failed but left %d rows", n)
	}
}

func TestBatchRefusesWhatDataverseRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	tooMany := make([]BatchOp, MaxBatchOps+1)
	for i := range tooMany {
		tooMany[i] = BatchCreate("contacts", nil)
	}
	if _, err := b.client.Batch(ctx, tooMany); err == nil || !strings.Contains(err.Error(), "at most 1000") {
		t.Errorf("1001 operations: %v", err)
	}
	get := BatchOp{Method: http.MethodGet, Path: "contacts", ChangeSet: "x"}
	if _, err := b.client.Batch(ctx, []BatchOp{get}); err == nil || !strings.Contains(err.Error(), "GET is not allowed") {
		t.Errorf("GET in a change set: %v", err)
	}
	if res, err := b.client.Batch(ctx, nil); res != nil || err != nil {
		t.Errorf("empty batch: %v %v", res, err)
	}
	// 1000 is fine and is one request.
	ops := make([]BatchOp, MaxBatchOps)
	for i := range ops {
		ops[i] = BatchCreate("contacts", map[string]any{"lastname": fmt.Sprintf("k%04d", i)})
	}
	results, err := b.client.Batch(ctx, ops)
	if err != nil || len(results) != MaxBatchOps {
		t.Fatalf("1000 operations: %d results, %v", len(results), err)
	}
}

func TestBatchIsNotRepeatedWhenItMayHaveRun(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request)
	}{
		{"502", status(http.StatusBadGateway, "", `{"error":{"code":"","message":"bad gateway"}}`)},
		{"no answer", hangUp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, s, _ := scriptedClient(t, 5, tt.answer)
			_, err := c.Batch(t.Context(), []BatchOp{BatchCreate("contacts", nil)})
			if !errors.Is(err, ErrOutcomeUnknown) || s.Calls() != 1 {
				t.Errorf("%d calls, err %v; want one call and ErrOutcomeUnknown", s.Calls(), err)
			}
		})
	}
	// Throttling happens before anything runs: that is retried.
	c, s, _ := scriptedClient(t, 5, status(http.StatusTooManyRequests, "1", throttled), status(http.StatusBadRequest, "", `{"error":{"code":"0x0","message":"no"}}`))
	if _, err := c.Batch(t.Context(), []BatchOp{BatchCreate("contacts", nil)}); s.Calls() != 2 || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("after a 429: %d calls, err %v", s.Calls(), err)
	}
}
