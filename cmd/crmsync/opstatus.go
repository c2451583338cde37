package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// statusGroups is how many subscriber groups status lists.
const statusGroups = 100

// statusQuery reads what an operator looks at first: the tenant's connections, its
// groups, and the newest dead letters. The groups' subscriber counts, which take
// long to count on a large tenant, come in a query of their own.
const statusQuery = `query($groups: Int!, $failures: Int!) {
  connections { id name organizationUrl recipientType }
  subscriberGroups(first: $groups) { totalCount edges { node { id name crmSync connection { name } } } }
  syncEvents(status: FAILED, first: $failures) { totalCount edges { node { at direction message entity recordId detail } } }
}`

type statusView struct {
	Connections []struct {
		ID, Name, OrganizationURL, RecipientType string
	}
	SubscriberGroups struct {
		TotalCount int
		Edges      []struct {
			Node struct {
				ID, Name   string
				CrmSync    bool
				Connection *struct{ Name string }
			}
		}
	}
	SyncEvents struct {
		TotalCount int
		Edges      []struct {
			Node struct {
				At                         time.Time
				Direction, Message, Entity string
				RecordID, Detail           *string
			}
		}
	}
}

type ingestView struct {
	Pending, Processed, Failed int
	LatencyP95Ms               float64
}

// statusCommand prints the connections (with their webhook ledger), the subscriber
// groups and the recent failed sync events of the token's tenant.
func statusCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr)
	opUsage(fs, "crmsync status [--failures N] [--url URL] [--token T]")
	op := addOpFlags(fs, getenv)
	failures := fs.Int("failures", 10, "how many recent failed sync events to show (at most 500)")
	if _, err := parseOpArgs(fs, args); err != nil {
		return err
	}
	if err := inRange(fs, "failures", *failures, 1, 500); err != nil {
		return err
	}
	c, err := op.client()
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	var st statusView
	if err := c.do(ctx, statusQuery, map[string]any{"groups": statusGroups, "failures": *failures}, &st); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	var counts struct {
		SubscriberGroups struct {
			Edges []struct {
				Node struct {
					ID              string
					SubscriberCount int
				}
			}
		}
	}
	countsErr := c.do(ctx, `query($groups: Int!) { subscriberGroups(first: $groups) { edges { node { id subscriberCount } } } }`,
		map[string]any{"groups": statusGroups}, &counts)
	subscribers := map[string]string{}
	for _, e := range counts.SubscriberGroups.Edges {
		subscribers[e.Node.ID] = strconv.Itoa(e.Node.SubscriberCount)
	}
	ingest := make([]ingestView, len(st.Connections))
	for i, conn := range st.Connections {
		var out struct{ IngestStats ingestView }
		err := c.do(ctx, `query($c: ID!) { ingestStats(connectionId: $c) { pending processed failed latencyP95Ms } }`,
			map[string]any{"c": conn.ID}, &out)
		if err != nil {
			return fmt.Errorf("status: ingest stats of connection %s: %w", conn.ID, err)
		}
		ingest[i] = out.IngestStats
	}
	printStatus(stdout, c.base, &st, ingest, subscribers)
	if countsErr != nil {
		fmt.Fprintf(stdout, "\n(subscriber counts not shown: %v)\n", countsErr)
	}
	return nil
}

// printStatus writes the status as tables; a group without a count in subscribers
// shows "?".
func printStatus(w io.Writer, base string, st *statusView, ingest []ingestView, subscribers map[string]string) {
	fmt.Fprintf(w, "crmsync at %s\n\n", base)

	fmt.Fprintf(w, "Connections (%d)\n", len(st.Connections))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(st.Connections) > 0 {
		fmt.Fprintln(tw, "  ID\tNAME\tTYPE\tORGANIZATION\tWEBHOOK EVENTS pending/processed/failed\tp95")
	}
	for i, conn := range st.Connections {
		in := ingest[i]
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d/%d/%d\t%.0fms\n", conn.ID, conn.Name, conn.RecipientType, conn.OrganizationURL,
			in.Pending, in.Processed, in.Failed, in.LatencyP95Ms)
	}
	tw.Flush()

	groups := st.SubscriberGroups
	fmt.Fprintf(w, "\nSubscriber groups (%d)\n", groups.TotalCount)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(groups.Edges) > 0 {
		fmt.Fprintln(tw, "  ID\tNAME\tSUBSCRIBERS\tCONNECTION\tCRM SYNC")
	}
	for _, e := range groups.Edges {
		g := e.Node
		conn := "-"
		if g.Connection != nil {
			conn = g.Connection.Name
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", g.ID, g.Name, cmp.Or(subscribers[g.ID], "?"), conn, map[bool]string{true: "on", false: "off"}[g.CrmSync])
	}
	tw.Flush()
	if more := groups.TotalCount - len(groups.Edges); more > 0 {
		fmt.Fprintf(w, "  … and %d more\n", more)
	}

	failed := st.SyncEvents
	if failed.TotalCount == 0 {
		fmt.Fprintln(w, "\nNo failed sync events.")
		return
	}
	fmt.Fprintf(w, "\nFailed sync events (%d; newest %d shown; `crmsync replay` re-queues them)\n", failed.TotalCount, len(failed.Edges))
	for _, e := range failed.Edges {
		ev := e.Node
		record := ""
		if ev.RecordID != nil {
			record = " " + *ev.RecordID
		}
		fmt.Fprintf(w, "  %s  %s %s %s%s\n", ev.At.Local().Format(time.DateTime), ev.Direction, ev.Message, ev.Entity, record)
		if ev.Detail != nil && *ev.Detail != "" {
			fmt.Fprintf(w, "      %s\n", strings.Join(strings.Fields(*ev.Detail), " "))
		}
	}
}
