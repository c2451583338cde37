package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"

	"crmsync/logctx"
	"crmsync/mail"
	"crmsync/store"
)

// The tracking routes of campaign messages (contract.md, "HTTP"):
//
//	GET /t/o/{token}       the open pixel: records an open, answers a 1×1 GIF
//	GET /t/c/{token}       a click: records it, redirects to the message's link
//	GET /u/{token}         a page with a button that unsubscribes (link scanners
//	                       follow GET links, so GET never unsubscribes)
//	POST /u/{token}        unsubscribes: the button, and mail clients' one-click
//	                       unsubscribe (RFC 8058, List-Unsubscribe-Post)
//
// A token is signed (mail.Tokens) and carries only the message's random id and,
// for a click, the index of a link of that message: a forged or altered token
// answers 404 and records nothing, and a click redirects only to a URL that was in
// the message. Reactions go into the inbox as events, like the reaction webhook's,
// with ids that make repeats within store.ReactionWindow one event.

// TrackingStore is what the tracking routes read: the message a token names and
// its send.
type TrackingStore interface {
	Message(ctx context.Context, id string) (*store.CampaignMessage, error)
	SendByID(ctx context.Context, id string) (*store.CampaignSend, error)
}

// Tracking serves the tracking and unsubscribe routes.
type Tracking struct {
	g      *Gateway
	tokens *mail.Tokens
	st     TrackingStore
}

// Tracking returns the tracking routes, which store reactions through the
// gateway's group commit.
func (g *Gateway) Tracking(tokens *mail.Tokens, st TrackingStore) *Tracking {
	return &Tracking{g: g, tokens: tokens, st: st}
}

// pixel is a transparent 1×1 GIF.
var pixel = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// Open serves GET /t/o/{token}. A mail client shows the pixel whatever happens;
// an open the store cannot take now is lost (and logged), not retried.
func (t *Tracking) Open() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _, ok := t.message(w, r, mail.KindOpen)
		if !ok {
			return
		}
		_ = t.record(r, m, store.ReactionOpen, "", false) // lost, and logged, when it fails
		w.Header().Set("Content-Type", "image/gif")
		w.Header().Set("Cache-Control", "no-store, max-age=0")
		_, _ = w.Write(pixel)
	})
}

// Click serves GET /t/c/{token}: the redirect goes to the link the token names
// among the message's own links, never to a URL from the request.
func (t *Tracking) Click() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, link, ok := t.message(w, r, mail.KindClick)
		if !ok {
			return
		}
		cs, err := t.st.SendByID(r.Context(), m.SendID)
		if err != nil || cs.Tenant != m.Tenant || link >= len(cs.Links) {
			t.notFound(w, r, err)
			return
		}
		url := cs.Links[link]
		_ = t.record(r, m, store.ReactionClick, url, false) // lost, and logged, when it fails
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, url, http.StatusFound)
	})
}

var unsubscribePage = template.Must(template.New("u").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>Unsubscribe</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:3em auto">
{{if .Done}}<h1>You are unsubscribed</h1><p>{{.Email}} will get no more e-mails of this kind.</p>
{{else}}<h1>Unsubscribe</h1><p>Stop e-mails like this one to {{.Email}}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>{{end}}
</body></html>`))

// Unsubscribe serves GET and POST /u/{token}. An unsubscribe the store cannot
// take now answers 503, so that the mail client or the person tries again: it
// must not be lost.
func (t *Tracking) Unsubscribe() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			writeError(w, http.StatusMethodNotAllowed, "method not allowed", "")
			return
		}
		m, _, ok := t.message(w, r, mail.KindUnsubscribe)
		if !ok {
			return
		}
		done := r.Method == http.MethodPost
		if done {
			r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
			_ = r.ParseForm() // the one-click body is List-Unsubscribe=One-Click; nothing in it matters
			if err := t.record(r, m, store.ReactionUnsubscribe, "", true); err != nil {
				writeError(w, http.StatusServiceUnavailable, "unavailable", "the unsubscribe could not be recorded now; try again")
				return
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = unsubscribePage.Execute(w, struct {
			Done  bool
			Email string
		}{done, m.Email})
	})
}

// message verifies the request's token for kind and loads its message; it has
// answered 404 when that fails.
func (t *Tracking) message(w http.ResponseWriter, r *http.Request, kind mail.Kind) (*store.CampaignMessage, int, bool) {
	k, id, link, err := t.tokens.Verify(r.PathValue("token"))
	if err != nil || k != kind {
		t.notFound(w, r, nil)
		return nil, 0, false
	}
	m, err := t.st.Message(r.Context(), mail.FormatMessageID(id))
	if err != nil {
		t.notFound(w, r, err)
		return nil, 0, false
	}
	return m, link, true
}

// notFound answers a bad or unknown token; a store failure is a 503.
func (t *Tracking) notFound(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.log(r).WarnContext(r.Context(), "tracking lookup failed", slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "try again later")
		return
	}
	writeError(w, http.StatusNotFound, "not found", "this link is not valid")
}

func (t *Tracking) log(r *http.Request) *slog.Logger {
	return t.g.cfg.Logger.With(slog.String("route", r.URL.Path[:min(len(r.URL.Path), 4)]))
}

// record stores a reaction of r's message's recipient as an inbox event; repeats
// within the reaction window share the event's id and are stored once. A consent
// change (an unsubscribe) keeps the request's IP address and user agent for the
// consent ledger. A failure is logged here, about the event: as an error for a
// consent change, which must not be lost.
func (t *Tracking) record(r *http.Request, m *store.CampaignMessage, typ store.ReactionType, url string, consent bool) error {
	now := t.g.cfg.Now().UTC()
	re := store.ReactionEvent{
		Type: string(typ), CampaignSendID: m.SendID, SubscriberID: m.SubscriberID, OccurredAt: now, URL: url, Message: m.ID,
	}
	if consent {
		re.IP, re.UserAgent = clientIP(r), userAgent(r)
	}
	sum := sha256.Sum256([]byte(store.ReactionID(m.ID, typ, url, now)))
	ev := &store.InboxEvent{
		ID: "t" + base64.RawURLEncoding.EncodeToString(sum[:15]), Tenant: m.Tenant, ConnectionID: m.ConnectionID,
		Source: SourceReaction, Message: string(typ), Entity: "reaction", RecordID: m.SubscriberID, ReceivedAt: now,
	}
	ctx := logctx.With(r.Context(), eventAttrs(ev)...)
	body, err := json.Marshal(re)
	if err == nil {
		ev.Body = string(body)
		storeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.g.cfg.StoreTimeout)
		defer cancel()
		_, err = t.g.commit.submit(storeCtx, ev)
	}
	if err != nil {
		level := slog.LevelWarn
		if consent {
			level = slog.LevelError
		}
		t.log(r).LogAttrs(ctx, level, strings.ToLower(string(typ))+" not recorded", slog.String("error", err.Error()))
	}
	return err
}
