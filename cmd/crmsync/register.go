package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"crmsync/engine"
	"crmsync/store"
)

// registerCommand registers (or removes) crmsync's webhook endpoint and steps in
// a connection's Dataverse, through the connection's Web API credentials, and
// prints what it did (or, with --dry-run, what it would do).
func registerCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("register", stderr)
	connID := fs.String("connection", "", "the connection's id (required)")
	dry := fs.Bool("dry-run", false, "print the plan and change nothing")
	remove := fs.Bool("remove", false, "take away everything register created, and nothing else")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *connID == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("register: --connection ID is required")
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, closeStore, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	conn, err := st.ConnectionForWebhook(ctx, *connID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("register: no connection %s in this store", *connID)
	}
	if err != nil {
		return err
	}
	publicURL := cfg.PublicURL
	if publicURL == "" {
		publicURL = "http://" + cfg.Addr
	}
	r := &engine.Registrar{Store: st, CRM: &engine.CRMClients{Secret: st.CRMClientSecret, Logger: logger}, PublicURL: publicURL}
	plan, err := r.Register(ctx, conn, engine.RegisterOptions{DryRun: *dry, Remove: *remove})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	printPlan(stdout, plan, *dry)
	return nil
}

// printPlan writes one line for the endpoint and one per step, then the counts.
func printPlan(w io.Writer, p *engine.RegistrationPlan, dry bool) {
	verb := map[bool]string{true: "would", false: "did"}[dry]
	fmt.Fprintf(w, "endpoint %s %s: %s\n", p.WebhookURL, verb, p.EndpointAction)
	for _, s := range p.Steps {
		line := fmt.Sprintf("step %-45s %s", s.Name, s.Action)
		if s.FilteringAttributes != "" {
			line += "  filtering " + s.FilteringAttributes
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	for _, warn := range p.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
	fmt.Fprintf(w, "%s create %d, update %d, remove %d, keep %d steps\n", verb, p.Count(engine.ActionCreate), p.Count(engine.ActionUpdate), p.Count(engine.ActionRemove), p.Count(engine.ActionKeep))
}
