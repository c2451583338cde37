package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// syncPoll is how often sync-list looks at its run.
const syncPoll = 500 * time.Millisecond

// runState is a sync run as sync-list follows it.
type runState struct {
	ID, Status              string
	DryRun                  bool
	Added, Removed, Updated int
	Attempts                int
	Error                   *string
}

func (r *runState) changed() int { return r.Added + r.Removed + r.Updated }

const runStateFields = `id status dryRun added removed updated attempts error`

// syncListCommand starts a sync of a marketing list, follows its run until it
// ends, and prints the outcome (and, for a dry run, every change it would make).
// A FAILED run is an error.
func syncListCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sync-list", stderr)
	opUsage(fs, "crmsync sync-list <listId> [--dry-run] [--url URL] [--token T]")
	op := addOpFlags(fs, getenv)
	dry := fs.Bool("dry-run", false, "change nothing; list what a sync would change")
	pos, err := parseOpArgs(fs, args, "<listId>")
	if err != nil {
		return err
	}
	c, err := op.client()
	if err != nil {
		return fmt.Errorf("sync-list: %w", err)
	}
	listID := pos[0]
	var started struct{ SyncMarketingList runState }
	err = c.do(ctx, `mutation($l: ID!, $d: Boolean) { syncMarketingList(listId: $l, dryRun: $d) { `+runStateFields+` } }`,
		map[string]any{"l": listID, "d": *dry}, &started)
	if err != nil {
		return fmt.Errorf("sync-list: list %s: %w", listID, err)
	}
	run := &started.SyncMarketingList
	kind := "sync"
	if run.DryRun {
		kind = "dry run"
	}
	prog := newProgress(stderr, "changes", 0)
	prog.logf("%s of list %s started: run %s", kind, listID, run.ID)
	run, err = followRun(ctx, c, run, prog)
	prog.finish()
	if err != nil {
		return fmt.Errorf("sync-list: %w", err)
	}

	if run.DryRun {
		fmt.Fprintf(stdout, "run %s %s (dry run): would add %d, remove %d, update %d\n", run.ID, run.Status, run.Added, run.Removed, run.Updated)
		if err := printChanges(ctx, c, stdout, run.ID); err != nil {
			return fmt.Errorf("sync-list: %w", err)
		}
	} else {
		fmt.Fprintf(stdout, "run %s %s: added %d, removed %d, updated %d\n", run.ID, run.Status, run.Added, run.Removed, run.Updated)
	}
	if run.Status == "FAILED" {
		reason := "no reason given"
		if run.Error != nil {
			reason = *run.Error
		}
		return fmt.Errorf("sync-list: run %s FAILED after %s: %s", run.ID, plural(run.Attempts, "attempt", "attempts"), reason)
	}
	return nil
}

// syncPollMisses is how many polls in a row may go unanswered (the instance
// restarting, a network blip) before sync-list gives up following its run.
const syncPollMisses = 10

// followRun polls a run until it is no longer PENDING, showing its changes so far
// and each failed attempt the instance will retry.
func followRun(ctx context.Context, c *opClient, run *runState, prog *progress) (*runState, error) {
	attempts, misses := run.Attempts, 0
	for run.Status == "PENDING" {
		select {
		case <-ctx.Done():
		case <-time.After(syncPoll):
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("stopped waiting for run %s, which goes on in the instance: %w", run.ID, ctx.Err())
		}
		var now struct{ SyncRun *runState }
		err := c.do(ctx, `query($id: ID!) { syncRun(id: $id) { `+runStateFields+` } }`, map[string]any{"id": run.ID}, &now)
		var api apiError
		if err != nil && !errors.As(err, &api) && ctx.Err() == nil && misses < syncPollMisses {
			misses++
			prog.logf("%v; trying again", err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("follow run %s: %w", run.ID, err)
		}
		misses = 0
		if now.SyncRun == nil {
			return nil, errors.New("run " + run.ID + " is gone: the instance deleted it")
		}
		run = now.SyncRun
		if run.Status == "PENDING" && run.Attempts > attempts && run.Error != nil {
			prog.logf("attempt %d failed: %s; the instance tries again", run.Attempts, *run.Error)
		}
		attempts = run.Attempts
		prog.update(run.changed())
	}
	return run, nil
}

// printChanges lists a run's changes a page at a time: "ADD     a@example.de".
func printChanges(ctx context.Context, c *opClient, w io.Writer, runID string) error {
	var after any
	for {
		var page struct {
			SyncRun struct {
				Changes struct {
					PageInfo struct {
						HasNextPage bool
						EndCursor   string
					}
					Edges []struct {
						Node struct {
							Email, Action string
							Applied       bool
						}
					}
				}
			}
		}
		err := c.do(ctx, `query($id: ID!, $after: String) { syncRun(id: $id) {
			changes(first: 500, after: $after) { pageInfo { hasNextPage endCursor } edges { node { email action applied } } } } }`,
			map[string]any{"id": runID, "after": after}, &page)
		if err != nil {
			return fmt.Errorf("changes of run %s: %w", runID, err)
		}
		for _, e := range page.SyncRun.Changes.Edges {
			fmt.Fprintf(w, "  %-7s %s\n", e.Node.Action, e.Node.Email)
		}
		if !page.SyncRun.Changes.PageInfo.HasNextPage {
			return nil
		}
		after = page.SyncRun.Changes.PageInfo.EndCursor
	}
}
