package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// importBatch is how many rows one upsertSubscribers call of import carries; the
// API takes up to 10,000.
const importBatch = 1000

// importColumns says where a CSV file's header puts the subscriber's parts.
type importColumns struct {
	email, language, state int // -1: no such column
	fields                 map[int]string
	width                  int
}

// importRow is one CSV record as an upsertSubscribers row.
type importRow struct {
	line   int
	email  string
	input  map[string]any
	reject string // why the row is refused before it is sent; "" to send it
}

// rejectedRow is a row that was not imported, and why.
type rejectedRow struct {
	line          int
	email, reason string
}

// importTotals adds up what the batches of an import did.
type importTotals struct {
	group                             string // how the summary names the group
	rows, imported                    int    // sent; in batches the instance took
	created, updated, merged, ignored int
	rejected                          []rejectedRow
	failed                            []string
}

// importCommand upserts the rows of a CSV file into a subscriber group in batches,
// showing progress, and prints the totals and every rejected row with its reason.
// A malformed file is refused before anything is sent; a failed batch makes the
// command fail after the others (or at once when no further batch can succeed).
func importCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", stderr)
	opUsage(fs, "crmsync import <groupId> <file.csv> [--url URL] [--token T]\n\n"+
		"The file has a header row: email (required), language, subscriptionState (SUBSCRIBED or\n"+
		"UNSUBSCRIBED); every other column becomes fields.<column>. Empty cells are left out.")
	op := addOpFlags(fs, getenv)
	batch := fs.Int("batch", importBatch, "rows per upsertSubscribers call (1 to 10000)")
	pos, err := parseOpArgs(fs, args, "<groupId>", "<file.csv>")
	if err != nil {
		return err
	}
	if err := inRange(fs, "batch", *batch, 1, 10000); err != nil {
		return err
	}
	c, err := op.client()
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	groupID, path := pos[0], pos[1]
	// A first pass checks the whole file and counts its rows, so a malformed file
	// changes nothing and the progress has a total.
	total := 0
	if err := readImportCSV(path, func(importRow) error { total++; return nil }); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	var group struct{ SubscriberGroup *struct{ Name string } }
	err = c.do(ctx, `query($g: ID!) { subscriberGroup(id: $g) { name } }`, map[string]any{"g": groupID}, &group)
	var api apiError
	if (errors.As(err, &api) && api.code() == "NOT_FOUND") || (err == nil && group.SubscriberGroup == nil) {
		return fmt.Errorf("import: no subscriber group %s in the token's tenant", groupID)
	}
	if err != nil {
		return fmt.Errorf("import: group %s: %w", groupID, err)
	}

	prog := newProgress(stderr, "rows", total)
	sum := importTotals{group: fmt.Sprintf("%q (%s)", group.SubscriberGroup.Name, groupID)}
	var pending []importRow
	stoppedAt := 0
	flush := func() error {
		err := sum.send(ctx, c, groupID, pending)
		if err != nil {
			stoppedAt = pending[0].line
		}
		pending = pending[:0]
		prog.update(sum.rows)
		return err
	}
	err = readImportCSV(path, func(row importRow) error {
		if pending = append(pending, row); len(pending) == *batch {
			return flush()
		}
		return nil
	})
	if err == nil && len(pending) > 0 {
		err = flush()
	}
	prog.finish()

	sum.print(stdout, path)
	switch {
	case err != nil && sum.imported == 0:
		return fmt.Errorf("import: %w; nothing was imported", err)
	case err != nil:
		return fmt.Errorf("import: stopped at line %d: %w; the rows before it are imported, and importing the file again is safe", stoppedAt, err)
	case len(sum.failed) > 0:
		return fmt.Errorf("import: %s failed: %s", plural(len(sum.failed), "batch", "batches"), strings.Join(sum.failed, "; "))
	}
	return nil
}

// send upserts one batch and adds its outcome. It answers an error only when no
// later batch can succeed either (the instance unreachable, the token refused),
// and then adds nothing; a batch refused for its own rows is recorded and the
// import goes on.
func (t *importTotals) send(ctx context.Context, c *opClient, groupID string, batch []importRow) error {
	var inputs []map[string]any
	for _, row := range batch {
		if row.reject == "" {
			inputs = append(inputs, row.input)
		}
	}
	var out struct {
		UpsertSubscribers struct {
			Created, Updated, Merged int
			Rejected                 []struct{ Email, Reason string }
			Ignored                  []struct{ Email string }
		}
	}
	if len(inputs) > 0 {
		err := c.do(ctx, `mutation($g: ID!, $rows: [SubscriberInput!]!) { upsertSubscribers(groupId: $g, subscribers: $rows) {
		created updated merged rejected { email reason } ignored { email } } }`,
			map[string]any{"g": groupID, "rows": inputs}, &out)
		var api apiError
		if errors.As(err, &api) && slices.Contains([]string{"BAD_USER_INPUT", "CONFLICT"}, api.code()) {
			t.rows += len(batch)
			t.failed = append(t.failed, fmt.Sprintf("lines %d-%d: %v", batch[0].line, batch[len(batch)-1].line, err))
			return nil
		}
		if err != nil {
			return err
		}
	}
	for _, row := range batch {
		if row.reject != "" {
			t.rejected = append(t.rejected, rejectedRow{row.line, row.email, row.reject})
		}
	}
	t.rows += len(batch)
	res := out.UpsertSubscribers
	t.imported += len(batch)
	t.created += res.Created
	t.updated += res.Updated
	t.merged += res.Merged
	t.ignored += len(res.Ignored)
	// Rejected rows come back in the order they were sent: find each one's line.
	next := 0
	for _, r := range res.Rejected {
		line := 0
		for i := next; i < len(batch); i++ {
			if batch[i].reject == "" && batch[i].email == r.Email {
				line, next = batch[i].line, i+1
				break
			}
		}
		t.rejected = append(t.rejected, rejectedRow{line, r.Email, r.Reason})
	}
	return nil
}

func (t *importTotals) print(w io.Writer, path string) {
	if t.rows == 0 {
		return
	}
	fmt.Fprintf(w, "%s into group %s: %d rows, created %d, updated %d, merged %d, rejected %d\n",
		path, t.group, t.rows, t.created, t.updated, t.merged, len(t.rejected))
	if len(t.rejected) > 0 {
		slices.SortStableFunc(t.rejected, func(a, b rejectedRow) int { return a.line - b.line })
		fmt.Fprintln(w, "rejected rows:")
		for _, r := range t.rejected {
			fmt.Fprintf(w, "  line %d  %q: %s\n", r.line, r.email, r.reason)
		}
	}
	if t.ignored > 0 {
		fmt.Fprintf(w, "%d values ignored: those fields are mapped from the CRM, which has set them\n", t.ignored)
	}
}

// readImportCSV reads a CSV file with a header row and calls fn with each record
// as a subscriber row. A malformed file is an error naming its line.
func readImportCSV(path string, fn func(importRow) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s is empty: want a header row with an email column", path)
	}
	if err != nil {
		return csvError(path, err)
	}
	cols, err := importHeader(header)
	if err != nil {
		return fmt.Errorf("%s line 1: %w", path, err)
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, csv.ErrFieldCount) {
			line, _ := r.FieldPos(0)
			return fmt.Errorf("%s line %d: %d columns, but the header has %d", path, line, len(rec), cols.width)
		}
		if err != nil {
			return csvError(path, err)
		}
		line, _ := r.FieldPos(0)
		if err := fn(cols.row(line, rec)); err != nil {
			return err
		}
	}
}

// csvError names the line of a malformed record.
func csvError(path string, err error) error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return fmt.Errorf("%s line %d: %v", path, pe.Line, pe.Err)
}

// importHeader reads the header row: email, language and subscriptionState (any
// case) go where their names say, "fields.x" and every other column into fields.
func importHeader(header []string) (*importColumns, error) {
	cols := &importColumns{email: -1, language: -1, state: -1, fields: map[int]string{}, width: len(header)}
	seen := map[string]bool{}
	for i, name := range header {
		name = strings.TrimSpace(strings.TrimPrefix(name, "\ufeff"))
		key := strings.ToLower(name)
		if name == "" {
			return nil, fmt.Errorf("column %d has no name", i+1)
		}
		if seen[key] {
			return nil, fmt.Errorf("column %q appears twice", name)
		}
		seen[key] = true
		switch key {
		case "email":
			cols.email = i
		case "language":
			cols.language = i
		case "subscriptionstate":
			cols.state = i
		default:
			cols.fields[i] = strings.TrimPrefix(name, "fields.")
		}
	}
	if cols.email < 0 {
		return nil, fmt.Errorf("no email column (the header has %s)", strings.Join(header, ", "))
	}
	return cols, nil
}

// row turns a record into a SubscriberInput; empty cells are left out.
func (cols *importColumns) row(line int, rec []string) importRow {
	row := importRow{line: line, email: rec[cols.email], input: map[string]any{"email": rec[cols.email]}}
	if cols.language >= 0 && rec[cols.language] != "" {
		row.input["language"] = strings.TrimSpace(rec[cols.language])
	}
	if cols.state >= 0 && rec[cols.state] != "" {
		state := strings.ToUpper(strings.TrimSpace(rec[cols.state]))
		if state != "SUBSCRIBED" && state != "UNSUBSCRIBED" {
			row.reject = fmt.Sprintf("subscriptionState %q is neither SUBSCRIBED nor UNSUBSCRIBED", rec[cols.state])
		}
		row.input["subscriptionState"] = state
	}
	fields := map[string]any{}
	for i, name := range cols.fields {
		if rec[i] != "" {
			fields[name] = rec[i]
		}
	}
	if len(fields) > 0 {
		row.input["fields"] = fields
	}
	return row
}
