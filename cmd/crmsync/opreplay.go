package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// syncStatuses are the values of the GraphQL enum SyncStatus.
var syncStatuses = []string{"PENDING", "APPLIED", "SKIPPED", "FAILED"}

// replayCommand re-queues sync events (by default the failed ones, optionally of one
// record) through replayEvents, and prints how many.
func replayCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", stderr)
	opUsage(fs, "crmsync replay [--status S] [--record ID] [--url URL] [--token T]")
	op := addOpFlags(fs, getenv)
	status := fs.String("status", "FAILED", "which events to re-queue: "+strings.Join(syncStatuses, ", "))
	record := fs.String("record", "", "only the events of this CRM row or subscriber id")
	if _, err := parseOpArgs(fs, args); err != nil {
		return err
	}
	s := strings.ToUpper(strings.TrimSpace(*status))
	if !slices.Contains(syncStatuses, s) {
		return fmt.Errorf("replay: --status %q is none of %s", *status, strings.Join(syncStatuses, ", "))
	}
	c, err := op.client()
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	vars := map[string]any{"s": s, "r": nil}
	if *record != "" {
		vars["r"] = *record
	}
	var out struct{ ReplayEvents int }
	if err := c.do(ctx, `mutation($r: ID, $s: SyncStatus) { replayEvents(recordId: $r, status: $s) }`, vars, &out); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	n := out.ReplayEvents
	what := plural(n, strings.ToLower(s)+" event", strings.ToLower(s)+" events")
	if *record != "" {
		what += " of record " + *record
	}
	if n == 0 {
		fmt.Fprintf(stdout, "nothing to replay: %s\n", what)
		return nil
	}
	fmt.Fprintf(stdout, "re-queued %s; `crmsync status` shows those that fail again\n", what)
	return nil
}
