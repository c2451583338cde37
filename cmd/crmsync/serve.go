package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"crmsync/auth"
	"crmsync/dataverse"
	"crmsync/engine"
	"crmsync/graph"
	"crmsync/logctx"
	"crmsync/mail"
	"crmsync/queue"
	"crmsync/store"
	"crmsync/ui"
	"crmsync/webhook"
)

// serveCommand runs the service until ctx ends, then shuts down in order: HTTP first,
// then the engine, then Redis and the store.
func serveCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	demo := fs.Bool("demo", false, "also run the Dataverse emulator with a seeded demo tenant, connection and list, and print curl lines that show a change travelling each way")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	// Lines logged with an event's context carry its tenant, connection, event
	// and correlation ids (logctx).
	logger := slog.New(logctx.NewHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})))
	if *demo {
		return serveDemo(ctx, cfg, logger, stdout)
	}
	return serve(ctx, cfg, logger, stdout, nil)
}

// serve wires and runs everything; ready, when not nil, receives the base URL once
// the listener is bound.
func serve(ctx context.Context, cfg *config, logger *slog.Logger, stdout io.Writer, ready chan<- string) error {
	st, closeStore, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := st.Migrate(ctx); err != nil {
		return err
	}

	rdb, err := queue.Open(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := rdb.Ping(ctx); err != nil {
		logger.WarnContext(ctx, "Redis does not answer yet; webhooks are still accepted and published once it does", slog.String("error", err.Error()))
	}
	keys := queue.NewKeys(cfg.RedisPrefix)
	stream := queue.NewEventStream(rdb.Client, keys, queue.DefaultPartitions)
	notices := queue.NewNotifier(rdb.Client, keys)
	// One registry for GET /metrics, which every component reports to.
	reg := newMetrics(st, stream)
	// Every connection's Web API requests are counted in Redis, for the fleet's
	// view of Dataverse's service-protection budget (apiBudget); the last counts
	// are flushed after the engine stops.
	budget := queue.NewBudget(rdb.Client, keys, queue.BudgetConfig{Logger: logger})
	budget.Start(ctx)
	defer stopWithin(ctx, logger, 5*time.Second, "Web API request counts not flushed", budget.Stop)
	// One set of Web API clients, so every component shares the token caches.
	crm := &engine.CRMClients{Secret: st.CRMClientSecret, Logger: logger, Tune: func(c *dataverse.Config) { c.Observer = reg },
		Observe: func(connectionID string) dataverse.Observer { return budget.For(connectionID) }}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return &configError{"CRMSYNC_ADDR", err.Error()}
	}
	base := "http://" + ln.Addr().String()
	publicURL := cfg.PublicURL
	if publicURL == "" {
		publicURL = base
	}
	defer ln.Close()

	// Campaign sends go out under a fenced job lease per send, through SMTP or the
	// connection's sending engine; their links carry tokens signed with a key
	// derived from CRMSYNC_SECRET_KEY.
	tokens, err := mail.NewTokens(trackingKey(cfg.SecretKey))
	if err != nil {
		return err
	}
	var smtp mail.Sender
	if cfg.SMTP != nil {
		pool := mail.NewSMTP(*cfg.SMTP)
		defer pool.Close()
		smtp = pool
	}
	campaigns, err := engine.NewCampaigns(engine.CampaignsConfig{
		Store: st, Jobs: queue.NewJobs(rdb.Client, keys, cfg.LeaseTTL), Tokens: tokens, PublicURL: publicURL, SMTP: smtp, CRM: crm,
		Publisher: stream, Interval: cfg.CampaignInterval, Metrics: reg, Logger: logger,
	})
	if err != nil {
		return err
	}
	eng, err := engine.New(engine.Config{
		Store: st, Stream: stream, Leases: queue.NewLeases(rdb.Client, keys, cfg.LeaseTTL), LeaseTTL: cfg.LeaseTTL,
		SweepInterval: cfg.RecoveryInterval, ClaimIdle: max(2*cfg.RecoveryInterval, time.Second),
		Retention: cfg.InboxRetention, CRM: crm, Notices: notices, Campaigns: campaigns, Metrics: reg, Logger: logger,
	})
	if err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer stopWithin(ctx, logger, 15*time.Second, "engine did not stop in time", eng.Stop)
	// The anti-entropy sweep applies the changes whose webhooks Dataverse dropped.
	sweeper, err := engine.NewSweeper(engine.SweepConfig{
		Store: st, Publisher: stream, Leases: queue.NewJobs(rdb.Client, keys, cfg.SweepInterval), Interval: cfg.SweepInterval,
		CRM: crm, Logger: logger,
	})
	if err != nil {
		return err
	}
	if err := sweeper.Start(ctx); err != nil {
		return err
	}
	defer stopWithin(ctx, logger, 15*time.Second, "sweep did not stop in time", sweeper.Stop)

	// List syncs run under a fenced job lease per list, once per due time in the fleet.
	lists := &engine.Lists{Store: st, API: crm, Now: time.Now}
	scheduler, err := engine.NewScheduler(engine.SchedulerConfig{
		Store: st, Jobs: queue.NewJobs(rdb.Client, keys, cfg.LeaseTTL), Seen: queue.NewRunSets(rdb.Client, keys), CRM: crm, Retention: cfg.InboxRetention, Interval: cfg.SchedulerInterval, Metrics: reg, Logger: logger,
	})
	if err != nil {
		return err
	}
	scheduler.Start(ctx)
	defer stopWithin(ctx, logger, 15*time.Second, "scheduler did not stop in time", scheduler.Stop)

	campaigns.Start(ctx)
	defer stopWithin(ctx, logger, 15*time.Second, "campaign sends did not stop in time", campaigns.Stop)

	// Sign-up forms send their confirmation e-mails through SMTP; unconfirmed
	// sign-ups expire under a job lease, on one instance at a time.
	forms, err := engine.NewForms(engine.FormsConfig{
		Store: st, Jobs: queue.NewJobs(rdb.Client, keys, cfg.LeaseTTL), Tokens: tokens, PublicURL: publicURL, Publisher: stream, SMTP: smtp, Logger: logger,
	})
	if err != nil {
		return err
	}
	forms.Start(ctx)
	defer stopWithin(ctx, logger, 15*time.Second, "form expiry did not stop in time", forms.Stop)
	formRoutes, err := webhook.NewForms(webhook.FormsConfig{
		Store: st, SignUps: forms, Limiter: queue.NewRateLimiter(rdb.Client, keys, cfg.FormRate, time.Minute), ClientIP: cfg.ClientIP, PublicURL: publicURL, Logger: logger,
	})
	if err != nil {
		return err
	}

	verifier, err := auth.NewVerifier(auth.Config{Secret: cfg.JWTSecret, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience})
	if err != nil {
		return err
	}

	gateway, err := webhook.New(webhook.Config{Inbox: st, Publisher: stream, Metrics: reg, ClientIP: cfg.ClientIP, Logger: logger})
	if err != nil {
		return err
	}
	if err := gateway.Start(ctx); err != nil {
		return err
	}
	// After the HTTP server: every accepted call's group is stored before this returns.
	defer stopWithin(ctx, logger, 15*time.Second, "ingest did not drain in time", gateway.Stop)

	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/dataverse/{connectionId}", gateway.Dataverse())
	mux.Handle("POST /webhooks/reactions/{connectionId}", gateway.Reactions())
	tracking := gateway.Tracking(tokens, st)
	mux.Handle("GET /t/o/{token}", tracking.Open())
	mux.Handle("GET /t/c/{token}", tracking.Click())
	mux.Handle("/u/{token}", tracking.Unsubscribe())
	mux.Handle("POST /forms/{formId}", formRoutes.Submit())
	mux.Handle("OPTIONS /forms/{formId}", formRoutes.Preflight())
	mux.Handle("GET /forms/confirm", formRoutes.Confirm())
	mux.Handle("GET /forms/thanks", formRoutes.Thanks())
	mux.Handle("/graphql", graph.NewHandler(graph.Config{
		Store: st, Verifier: verifier, Publisher: stream, Changes: &engine.Outbox{Store: st, Publisher: stream, Logger: logger}, Lists: lists, Tester: crm, Notices: notices, Campaigns: campaigns, Registrar: &engine.Registrar{Store: st, CRM: crm, PublicURL: publicURL}, Budget: budget,
		QueryCache: queue.NewQueryCache(rdb.Client, keys, 24*time.Hour), PublicURL: publicURL, Production: cfg.Production, Metrics: reg, Logger: logger,
	}))
	if !cfg.Production {
		mux.Handle("GET /graphiql", graph.GraphiQLHandler())
	}
	// The status dashboard: static files that call /graphql with the user's token.
	dashboard := ui.Handler()
	mux.Handle("/ui/", dashboard)
	mux.Handle("/ui", dashboard)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /readyz", readyHandler(st, rdb))
	mux.Handle("GET /metrics", reg.Handler())

	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	logger.InfoContext(ctx, "crmsync listening", slog.String("addr", ln.Addr().String()),
		slog.Bool("embeddedStore", st.Embedded()), slog.Bool("embeddedRedis", rdb.Embedded()))
	printWelcome(stdout, cfg, base, publicURL)
	if ready != nil {
		ready <- base
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("HTTP shutdown", slog.String("error", err.Error()))
	}
	return nil
}

// stopWithin stops a component when serve returns, giving it d after ctx ended,
// and logs msg when it does not finish in that time.
func stopWithin(ctx context.Context, logger *slog.Logger, d time.Duration, msg string, stop func(context.Context) error) {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	defer cancel()
	if err := stop(stopCtx); err != nil {
		logger.Warn(msg, slog.String("error", err.Error()))
	}
}

// trackingKey derives the key of the tracking tokens from the secret key, so
// neither can stand in for the other.
func trackingKey(secretKey []byte) []byte {
	mac := hmac.New(sha256.New, secretKey)
	mac.Write([]byte("crmsync/tracking-tokens/v1"))
	return mac.Sum(nil)
}

// printWelcome tells a newcomer where things are and, in development, gives them an
// admin token for the "dev" tenant.
func printWelcome(w io.Writer, cfg *config, base, publicURL string) {
	fmt.Fprintf(w, "crmsync listening on %s\n", base)
	fmt.Fprintf(w, "GraphQL:  %s/graphql\n", base)
	if cfg.Production {
		return
	}
	fmt.Fprintf(w, "GraphiQL: %s/graphiql\n", base)
	fmt.Fprintf(w, "Webhooks: %s/webhooks/dataverse/<connectionId>\n", publicURL)
	tok, err := auth.Mint(cfg.JWTSecret, "dev-admin", "dev", []string{"admin"}, 24*time.Hour, cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "Development admin token (tenant \"dev\", valid 24h); send it as the header\n  Authorization: Bearer %s\n", tok)
}

// readyHandler answers 200 while the store accepts writes, and names each
// dependency's state; without Redis the service is degraded but still takes webhooks.
func readyHandler(st *store.Store, rdb *queue.Redis) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		body := map[string]string{"status": "ok", "store": "ok", "redis": "ok"}
		status := http.StatusOK
		if err := rdb.Ping(ctx); err != nil {
			body["redis"], body["status"] = "down", "degraded"
		}
		if err := st.CheckWritable(ctx); err != nil {
			body["store"], body["status"] = "down", "unavailable"
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, body)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
