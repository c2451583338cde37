package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"crmsync/logctx"
	"crmsync/mail"
	"crmsync/store"
)

// Reaction webhooks come from a sending engine, signed as Standard Webhooks: headers
// webhook-id, webhook-timestamp and webhook-signature ("v1,<base64 HMAC-SHA256 of
// id.timestamp.body>", several space-separated during a key rotation), with the
// connection's reactionSecret ("whsec_" + base64 key).

// ReactionTolerance is how far webhook-timestamp may be from now, either way.
const ReactionTolerance = 5 * time.Minute

// Reaction is the body of a reaction webhook; the engine reads it from the inbox.
type Reaction = store.ReactionEvent

// ReactionSecrets is what the reactions handler needs beyond the inbox.
type ReactionSecrets interface {
	ReactionSecret(c *store.Connection) (string, error)
}

// Reactions returns the handler for POST /webhooks/reactions/{connectionId}. Its
// inbox must also provide the connection's reaction secret.
func (g *Gateway) Reactions() http.Handler {
	return metered(g.cfg.Metrics, RouteReactions, &reactionHandler{cfg: g.cfg, commit: g.commit})
}

type reactionHandler struct {
	cfg    Config
	commit *committer
}

func (h *reactionHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	connID := r.PathValue("connectionId")
	ctx := logctx.With(r.Context(), slog.String(logctx.Connection, connID))
	log := h.cfg.Logger.With(slog.String("webhookId", r.Header.Get("webhook-id")))
	body, ok := readBodyOrRefuse(w, r, h.cfg.MaxBodyBytes)
	if !ok {
		return
	}
	storeCtx, cancel := context.WithTimeout(ctx, h.cfg.StoreTimeout)
	defer cancel()
	conn, err := h.cfg.Inbox.ConnectionForWebhook(storeCtx, connID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		log.ErrorContext(ctx, "reaction connection lookup failed", slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the event store cannot take events now; retry")
		return
	}
	var secret string
	if conn != nil {
		if rs, ok := h.cfg.Inbox.(ReactionSecrets); ok {
			if secret, err = rs.ReactionSecret(conn); err != nil {
				log.ErrorContext(ctx, "reaction secret unreadable", slog.String("error", err.Error()))
			}
		}
	}
	id := r.Header.Get("webhook-id")
	if !verifySignature(secret, id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, h.cfg.Now()) {
		log.InfoContext(ctx, "reaction refused", slog.String("reason", "unknown connection, no secret, bad signature or stale timestamp"))
		writeError(w, http.StatusUnauthorized, "unauthorized", "")
		return
	}
	authenticated(w, conn.ID)
	re, field, reason := decodeReaction(body)
	if field != "" {
		writeError(w, http.StatusBadRequest, "invalid reaction", field+": "+reason)
		return
	}
	record := re.SubscriberID
	if record == "" {
		record, _ = store.NormalizeEmail(re.Email)
	}
	ev := &store.InboxEvent{
		ID:            reactionEventID(conn.ID, id),
		Tenant:        conn.Tenant,
		ConnectionID:  conn.ID,
		Source:        SourceReaction,
		Message:       re.Type,
		Entity:        "reaction",
		RecordID:      record,
		CorrelationID: id, // the sender's id of the message
		Body:          string(body),
		ReceivedAt:    h.cfg.Now().UTC(),
	}
	ctx = logctx.With(ctx, eventAttrs(ev)...)
	dup, err := h.commit.submit(storeCtx, ev)
	if err != nil {
		log.ErrorContext(ctx, "reaction not stored", slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the event store cannot take events now; retry")
		return
	}
	writeJSON(w, http.StatusAccepted, Accepted{EventID: ev.ID, Duplicate: dup})
}

// Sources of inbox events.
const (
	SourceDataverse = "dataverse"
	SourceReaction  = "reaction"
)

// verifySignature checks a Standard Webhooks signature; it fails closed.
func verifySignature(secret, id, ts, sigHeader string, body []byte, now time.Time) bool {
	if id == "" || sigHeader == "" {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	at := time.Unix(sec, 0)
	if at.Before(now.Add(-ReactionTolerance)) || at.After(now.Add(ReactionTolerance)) {
		return false
	}
	want, err := mail.Sign(secret, id, at, body) // "v1,<base64 HMAC-SHA256 of id.timestamp.body>"
	if err != nil {
		return false // no secret, or not a Standard Webhooks one
	}
	matched := false
	for _, sig := range strings.Fields(sigHeader) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			matched = true
		}
	}
	return matched
}

// decodeReaction parses and checks a reaction body; field names what is wrong.
func decodeReaction(body []byte) (r Reaction, field, reason string) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return r, "body", "not a JSON object"
	}
	if err := json.Unmarshal(body, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return r, te.Field, "wrong type"
		}
		var pe *time.ParseError
		if errors.As(err, &pe) {
			return r, "occurredAt", "must be an RFC 3339 time"
		}
		return r, "body", err.Error()
	}
	switch r.Type {
	case "open", "click", "bounce", "unsubscribe", "complaint":
	case "":
		return r, "type", "is required"
	default:
		return r, "type", "must be open, click, bounce, unsubscribe or complaint"
	}
	switch {
	case strings.TrimSpace(r.CampaignSendID) == "":
		return r, "campaignSendId", "is required"
	case r.Email == "" && r.SubscriberID == "":
		return r, "email", "email or subscriberId is required"
	case r.Email != "" && !validEmail(r.Email):
		return r, "email", "not a valid e-mail address"
	case r.OccurredAt.IsZero():
		return r, "occurredAt", "is required (RFC 3339)"
	case r.Type == "click" && r.URL == "":
		return r, "url", "is required for a click"
	case r.Type == "bounce" && r.BounceType != "hard" && r.BounceType != "soft":
		return r, "bounceType", "must be hard or soft for a bounce"
	}
	return r, "", ""
}

func validEmail(e string) bool {
	_, err := store.NormalizeEmail(e)
	return err == nil
}

func reactionEventID(connectionID, webhookID string) string {
	h := sha256.Sum256([]byte(connectionID + "\x00reaction\x00" + webhookID))
	return "r" + base64.RawURLEncoding.EncodeToString(h[:15])
}
