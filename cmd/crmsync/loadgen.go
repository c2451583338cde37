package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"time"

	"crmsync/loadgen"
)

// loadgenCommand prepares a connection and group on a running instance, posts
// realistic webhook bodies at it, waits for the engine to drain and prints the
// throughput, the latencies and the delivery ledger.
func loadgenCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("loadgen", stderr)
	url := fs.String("url", cmp.Or(getenv("CRMSYNC_URL"), "http://127.0.0.1:8080"), "base URL of the instance (CRMSYNC_URL)")
	token := fs.String("token", getenv("CRMSYNC_TOKEN"), "an admin token of the instance (CRMSYNC_TOKEN)")
	workers := fs.Int("workers", 8, "requests in flight at once")
	rate := fs.Float64("rate", 0, "events per second; 0 is as fast as possible")
	count := fs.Int("count", 10000, "events to send")
	records := fs.Int("records", 1000, "distinct contacts the events are about")
	redeliver := fs.Float64("redeliver", 0.01, "share of events delivered twice, as Dataverse's retry does")
	drain := fs.Duration("drain-timeout", 5*time.Minute, "how long to wait for the engine to apply everything")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *token == "" {
		return fmt.Errorf("loadgen: --token (or CRMSYNC_TOKEN) is required: an admin token, from `crmsync token --role admin`")
	}
	client := &loadgen.Client{BaseURL: *url, Token: *token}
	target, err := client.Setup(ctx, "loadgen "+time.Now().UTC().Format(time.RFC3339), *records, loadgen.DefaultEmail)
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	fmt.Fprintf(stdout, "connection %s, group %s with %d subscribers; sending %d events over %d workers\n",
		target.ConnectionID, target.GroupID, *records, *count, *workers)
	res, err := loadgen.Run(ctx, loadgen.Config{
		URL: target.WebhookURL, Workers: *workers, Rate: *rate, Count: *count, Records: *records, Redeliver: *redeliver,
	})
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	drainCtx, cancel := context.WithTimeout(ctx, *drain)
	defer cancel()
	ledger, err := client.Drain(drainCtx, target.ConnectionID)
	loadgen.Report(stdout, res, ledger)
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	if !res.Balanced() || ledger.Processed+ledger.Failed < res.Accepted {
		return fmt.Errorf("loadgen: the ledger does not balance")
	}
	return nil
}
