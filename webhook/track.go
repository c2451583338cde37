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
// answers 404 and records nothing, and a click redirects only to a link of the
// message, personalised for its recipient (mail.LinkURL). Reactions go into the
// inbox as events, like the reaction webhook's, with ids that make repeats within
// store.ReactionWindow one event.

// TrackingStore is what the tracking routes read, each by _id: the message a
// token names, its send, and its recipient's fields for a link that has them.
type TrackingStore interface {
	Message(ctx context.Context, id string) (*store.CampaignMessage, error)
	SendByID(ctx context.Context, id string) (*store.CampaignSend, error)
	Recipient(ctx context.Context, id string) (*store.CampaignRecipient, error)
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
// among the message's own links, with its placeholders filled for the message's
// recipient, never to a URL from the request. The click is recorded with the link
// as the template wrote it: reactions, statistics and CRM campaign responses count
// clicks per link and carry no recipient's values.
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
		target, err := t.linkTarget(r.Context(), m, cs.Links[link])
		if err != nil {
			t.notFound(w, r, err)
			return
		}
		_ = t.record(r, m, store.ReactionClick, cs.Links[link], false) // lost, and logged, when it fails
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, target, http.StatusFound)
	})
}

// linkTarget is where a click on link goes for m's recipient: link with its
// placeholders filled as mail.LinkURL fills them, from the message's address and
// the fields its recipient was sent with. The recipient is read only for a link
// that names fields; one that is gone leaves them empty. A link that is no
// absolute http(s) URL even without its placeholders (never stored, since
// mail.Links leaves such links out) answers store.ErrNotFound, the 404 of a bad
// token. Placeholders other than {{email}} and {{fields.<name>}} are empty here:
// {{unsubscribeUrl}} is filled only where it stands alone in an href, which is
// not tracked and so is filled when the message is made.
func (t *Tracking) linkTarget(ctx context.Context, m *store.CampaignMessage, link string) (string, error) {
	var fields map[string]any
	if strings.Contains(link, "{{") && strings.Contains(link, "fields.") {
		rc, err := t.st.Recipient(ctx, m.Recipient)
		switch {
		case err == nil && rc.Tenant == m.Tenant:
			fields = rc.Fields
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return "", err
		}
	}
	target, ok := mail.LinkURL(link, mail.RecipientValues(m.Email, fields, nil))
	if !ok {
		return "", store.ErrNotFound
	}
	return target, nil
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
		re.IP, re.UserAgent = t.g.cfg.ClientIP.Of(r), userAgent(r)
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
