package webhook

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"crmsync/dataverse"
	"crmsync/logctx"
	"crmsync/queue"
	"crmsync/store"
)

// Inbox is the durable store the handler writes to.
type Inbox interface {
	ConnectionForWebhook(ctx context.Context, id string) (*store.Connection, error)
	WebhookCredentials(c *store.Connection) ([]store.WebhookCredential, error)
	AddInboxEvents(ctx context.Context, evs []*store.InboxEvent) (dup []bool, err error)
}

// Publisher hands stored event ids to the engine.
type Publisher interface {
	Publish(ctx context.Context, entries ...queue.Entry) error
}

// Config configures the Dataverse webhook handler.
type Config struct {
	// Inbox stores accepted events; required.
	Inbox Inbox
	// Publisher announces stored events to the engine; required. A failed publish
	// does not fail the call: the event is stored, and the recovery sweep
	// publishes it again.
	Publisher Publisher
	// MaxBodyBytes is the largest body accepted (413 beyond); default 1 MiB.
	MaxBodyBytes int64
	// StoreTimeout bounds the inbox write, so Dataverse gets its 503 well inside its
	// 60-second timeout; default 10 s.
	StoreTimeout time.Duration
	// QueueSize is how many events may wait for the group commit; beyond it calls
	// are answered 503 at once. Default 4096.
	QueueSize int
	// MaxBatch is the most events one InsertMany stores; default 256.
	MaxBatch int
	// Metrics counts the calls by connection and status and records the group
	// commits' sizes; nil counts nothing.
	Metrics Metrics
	// ClientIP tells the client's address behind trusted proxies, for what the
	// tracking routes record (an unsubscribe by link); nil trusts no proxy.
	ClientIP *ClientIP
	// Logger receives one line per refused or failed call; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DefaultMaxBodyBytes is the default body limit of webhook calls.
const DefaultMaxBodyBytes = 1 << 20

// Accepted is the 202 answer: the event's id and whether it had been stored before.
type Accepted struct {
	EventID   string `json:"eventId"`
	Duplicate bool   `json:"duplicate"`
}

// Gateway is the ingest side of crmsync: it owns the group commit that its
// handlers share. Start it before serving and stop it after the HTTP server.
type Gateway struct {
	cfg    Config
	commit *committer
}

// New validates cfg and returns a gateway that has not started.
func New(cfg Config) (*Gateway, error) {
	if cfg.Inbox == nil || cfg.Publisher == nil {
		return nil, errors.New("webhook: Inbox and Publisher are required")
	}
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, DefaultMaxBodyBytes)
	cfg.StoreTimeout = cmp.Or(cfg.StoreTimeout, 10*time.Second)
	cfg.QueueSize = cmp.Or(cfg.QueueSize, 4096)
	cfg.MaxBatch = cmp.Or(cfg.MaxBatch, 256)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	commit := newCommitter(cfg.Inbox, cfg.Publisher, cfg.QueueSize, cfg.MaxBatch, cfg.StoreTimeout, cfg.Logger)
	commit.metrics = cfg.Metrics
	return &Gateway{cfg: cfg, commit: commit}, nil
}

// Start launches the group commit.
func (g *Gateway) Start(context.Context) error {
	go g.commit.run()
	return nil
}

// Stop refuses new events (503), stores those already queued and waits for that.
func (g *Gateway) Stop(ctx context.Context) error { return g.commit.shutdown(ctx) }

// Queued is how many events wait for the group commit now.
func (g *Gateway) Queued() int { return len(g.commit.queue) }

// Dataverse returns the handler for POST /webhooks/dataverse/{connectionId}.
func (g *Gateway) Dataverse() http.Handler {
	return metered(g.cfg.Metrics, RouteDataverse, &dataverseHandler{cfg: g.cfg, commit: g.commit})
}

type dataverseHandler struct {
	cfg    Config
	commit *committer
}

func (h *dataverseHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	connID := r.PathValue("connectionId")
	ctx := logctx.With(r.Context(), slog.String(logctx.Connection, connID))
	log := h.cfg.Logger.With(slog.String("request", r.Header.Get("x-request-id")))

	body, ok := readBodyOrRefuse(w, r, h.cfg.MaxBodyBytes)
	if !ok {
		return
	}
	conn, status := h.authenticate(ctx, r, connID, log)
	if status != 0 {
		if status == http.StatusUnauthorized {
			writeError(w, status, "unauthorized", "")
		} else {
			writeError(w, status, "unavailable", "the event store cannot take events now; retry")
		}
		return
	}
	authenticated(w, conn.ID)
	ctx = logctx.With(ctx, slog.String(logctx.Tenant, conn.Tenant))
	ec, err := dataverse.Decode(body)
	if err != nil {
		log.InfoContext(ctx, "webhook refused", slog.String("reason", err.Error()))
		writeError(w, http.StatusBadRequest, "not a RemoteExecutionContext", err.Error())
		return
	}
	if r.Header.Get(dataverse.HeaderSizeExceeded) != "" {
		ec.MarkSizeExceeded()
	}
	ev := &store.InboxEvent{
		ID:            EventID(conn.ID, ec, body),
		Tenant:        conn.Tenant,
		ConnectionID:  conn.ID,
		Source:        SourceDataverse,
		Message:       ec.MessageName,
		Entity:        ec.PrimaryEntityName,
		RecordID:      ec.PrimaryEntityID,
		Stage:         ec.Stage,
		CorrelationID: ec.CorrelationID,
		Body:          string(body),
		SizeExceeded:  ec.NeedsReread(),
		ReceivedAt:    h.cfg.Now().UTC(),
	}
	ctx = logctx.With(ctx, eventAttrs(ev)...)

	storeCtx, cancel := context.WithTimeout(ctx, h.cfg.StoreTimeout)
	defer cancel()
	dup, err := h.commit.submit(storeCtx, ev)
	if err != nil {
		log.ErrorContext(ctx, "webhook not stored", slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the event store cannot take events now; retry")
		return
	}
	writeJSON(w, http.StatusAccepted, Accepted{EventID: ev.ID, Duplicate: dup})
}

// eventAttrs are the log attributes of the lines about an inbox event.
func eventAttrs(ev *store.InboxEvent) []slog.Attr {
	return logctx.EventAttrs(ev.Tenant, ev.ConnectionID, ev.ID, ev.CorrelationID, ev.Message, ev.Entity)
}

// authenticate loads the connection and checks the call's credential. An unknown
// connection and a wrong key get the same 401; a store that cannot answer gets 503.
func (h *dataverseHandler) authenticate(ctx context.Context, r *http.Request, connID string, log *slog.Logger) (*store.Connection, int) {
	storeCtx, cancel := context.WithTimeout(ctx, h.cfg.StoreTimeout)
	defer cancel()
	conn, err := h.cfg.Inbox.ConnectionForWebhook(storeCtx, connID)
	if errors.Is(err, store.ErrNotFound) {
		log.InfoContext(ctx, "webhook refused", slog.String("reason", "unknown connection"))
		return nil, http.StatusUnauthorized
	}
	if err != nil {
		log.ErrorContext(ctx, "webhook connection lookup failed", slog.String("error", err.Error()))
		return nil, http.StatusServiceUnavailable
	}
	creds, err := h.cfg.Inbox.WebhookCredentials(conn)
	if err != nil {
		log.ErrorContext(ctx, "webhook secret unreadable", slog.String("error", err.Error()))
		return nil, http.StatusUnauthorized
	}
	if !authenticate(r, creds) {
		log.InfoContext(ctx, "webhook refused", slog.String("reason", "missing or wrong key"))
		return nil, http.StatusUnauthorized
	}
	return conn, 0
}
