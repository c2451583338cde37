package webhook

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"crmsync/logctx"
	"crmsync/mail"
	"crmsync/store"
)

// The public sign-up form routes (contract.md, "HTTP" and "Forms"):
//
//	POST /forms/{formId}      a submission: application/x-www-form-urlencoded or
//	                          multipart/form-data (a plain HTML form) or JSON
//	OPTIONS /forms/{formId}   the CORS preflight of a cross-origin fetch
//	GET /forms/confirm        the double opt-in confirmation link (?token=…)
//	GET /forms/thanks         the built-in page after a submission (?status=…)
//
// A submission is answered in JSON when it is JSON or asks for JSON (Accept), else
// with a 303 redirect to the form's RedirectURL (or the built-in page), or a
// small page that says what was wrong. It goes through a short pipeline: the form
// → the Origin (a browser page of another origin needs the form's AllowedOrigins)
// → the rate per IP address (the visitor's, behind trusted proxies: ClientIP) →
// the body (64 KiB) → the honeypot → the fields → the engine (SignUps).

// FormStore is what the form routes read: the form a URL names.
type FormStore interface {
	FormByID(ctx context.Context, id string) (*store.Form, error)
}

// SignUps is what the form routes ask of the engine (engine.Forms).
type SignUps interface {
	// CanConfirm reports whether confirmation e-mails can be sent.
	CanConfirm() bool
	// Submit applies a checked submission; pending means a confirmation e-mail
	// went out. store.FieldErrors are refusals of the values.
	Submit(ctx context.Context, form *store.Form, in *store.Submission, ip, userAgent string) (pending bool, err error)
	// Confirm follows a confirmation link: mail.ErrBadToken, store.ErrTokenUsed
	// and store.ErrTokenExpired say why it does not work.
	Confirm(ctx context.Context, token, ip, userAgent string) (*store.Form, error)
}

// Limiter counts events per key and says when one is over the limit
// (queue.RateLimiter).
type Limiter interface {
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// FormsConfig configures the sign-up form routes.
type FormsConfig struct {
	// Store finds the forms; required.
	Store FormStore
	// SignUps applies submissions and confirmations; required.
	SignUps SignUps
	// Limiter bounds the submissions per form and IP address; nil is no limit.
	// When it cannot count (Redis is down), submissions are let through.
	Limiter Limiter
	// ClientIP finds the visitor's address behind trusted reverse proxies, for
	// the rate limit and the consent ledger (CRMSYNC_TRUSTED_PROXIES); nil trusts
	// no forwarding header.
	ClientIP *ClientIP
	// PublicURL is this service's public address (CRMSYNC_PUBLIC_URL): its origin
	// may always post, and the built-in pages live under it; required.
	PublicURL string
	// MaxBodyBytes is the largest submission; default 64 KiB.
	MaxBodyBytes int64
	// Timeout bounds the work of one submission or confirmation, which goes on
	// when the browser leaves; default 30 s.
	Timeout time.Duration
	// Logger receives one line per failed call; default slog.Default().
	Logger *slog.Logger
}

// DefaultFormBodyBytes is the default body limit of form submissions.
const DefaultFormBodyBytes = 64 << 10

// Forms serves the sign-up form routes.
type Forms struct {
	cfg FormsConfig
	// self is the origin of PublicURL.
	self string
}

// NewForms validates cfg and returns the form routes.
func NewForms(cfg FormsConfig) (*Forms, error) {
	u, err := url.Parse(cfg.PublicURL)
	if cfg.Store == nil || cfg.SignUps == nil || err != nil || u.Host == "" {
		return nil, errors.New("webhook: forms need Store, SignUps and an absolute PublicURL")
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, DefaultFormBodyBytes)
	cfg.Timeout = cmp.Or(cfg.Timeout, 30*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Forms{cfg: cfg, self: strings.ToLower(u.Scheme + "://" + u.Host)}, nil
}

// Submit serves POST /forms/{formId}.
func (h *Forms) Submit() http.Handler { return http.HandlerFunc(h.submit) }

func (h *Forms) submit(w http.ResponseWriter, r *http.Request) {
	asJSON := wantsJSON(r)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.cfg.Timeout)
	defer cancel()
	w.Header().Add("Vary", "Origin")
	ip := h.cfg.ClientIP.Of(r)
	form, no := h.form(ctx, r)
	if no == nil {
		no = h.checkOrigin(w, r, form)
	}
	if no == nil {
		no = h.checkRate(ctx, w, ip, form)
	}
	var values map[string]string
	if no == nil {
		values, no = h.readValues(w, r)
	}
	if no != nil {
		no.write(w, asJSON)
		return
	}
	// The engine's lines about the sign-up carry these too.
	ctx = logctx.With(ctx, slog.String(logctx.Tenant, form.Tenant), slog.String("form", form.ID))
	if values[store.HoneypotField] != "" {
		// A bot: it is told what a person would be, and nothing is stored.
		h.cfg.Logger.InfoContext(ctx, "form submission with a filled honeypot dropped", slog.String("ip", ip))
		h.accepted(w, form, form.DoubleOptIn, asJSON)
		return
	}
	in, errs := form.Check(values)
	if len(errs) > 0 {
		invalidValues(errs).write(w, asJSON)
		return
	}
	if form.DoubleOptIn && !h.cfg.SignUps.CanConfirm() {
		unavailableRefusal("this form cannot send its confirmation e-mail: e-mail delivery is not configured here").write(w, asJSON)
		return
	}
	pending, err := h.cfg.SignUps.Submit(ctx, form, in, ip, userAgent(r))
	var fe store.FieldErrors
	switch {
	case errors.As(err, &fe):
		invalidValues(fe).write(w, asJSON)
	case errors.Is(err, store.ErrNotFound):
		formNotFound.write(w, asJSON) // its group is gone
	case err != nil:
		h.cfg.Logger.ErrorContext(ctx, "form submission failed", slog.String("error", err.Error()))
		unavailableRefusal("the sign-up could not be completed now; please try again in a moment").write(w, asJSON)
	default:
		h.accepted(w, form, pending, asJSON)
	}
}

// accepted answers a taken submission: JSON, or a redirect to where the browser
// goes next.
func (h *Forms) accepted(w http.ResponseWriter, form *store.Form, pending, asJSON bool) {
	status := "SUBSCRIBED"
	if pending {
		status = "PENDING"
	}
	if asJSON {
		writeJSON(w, http.StatusOK, struct {
			OK     bool   `json:"ok"`
			Status string `json:"status"`
		}{true, status})
		return
	}
	next := form.RedirectURL
	if next == "" {
		next = h.cfg.PublicURL + "/forms/thanks?status=" + strings.ToLower(status)
	}
	w.Header().Set("Location", next)
	w.WriteHeader(http.StatusSeeOther)
}

// form loads the form the URL names.
func (h *Forms) form(ctx context.Context, r *http.Request) (*store.Form, *refusal) {
	form, err := h.cfg.Store.FormByID(ctx, r.PathValue("formId"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, formNotFound
	}
	if err != nil {
		h.cfg.Logger.WarnContext(ctx, "form lookup failed", slog.String("error", err.Error()))
		return nil, unavailableRefusal("the form cannot be read now; please try again in a moment")
	}
	return form, nil
}

// checkOrigin lets through calls without an Origin (not from a browser page), from
// this service's own origin, and from the form's allowed origins, which also get
// the CORS header that lets their scripts read the answer.
func (h *Forms) checkOrigin(w http.ResponseWriter, r *http.Request, form *store.Form) *refusal {
	origin := r.Header.Get("Origin")
	if origin == "" || strings.EqualFold(origin, h.self) {
		return nil
	}
	if !form.AllowsOrigin(origin) {
		return &refusal{status: http.StatusForbidden, code: "forbidden", title: "Not allowed here",
			detail: "this form takes no submissions from pages of " + origin}
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	return nil
}

// checkRate counts the submission against the form's limit for its IP address.
func (h *Forms) checkRate(ctx context.Context, w http.ResponseWriter, ip string, form *store.Form) *refusal {
	if h.cfg.Limiter == nil {
		return nil
	}
	ok, wait, err := h.cfg.Limiter.Allow(ctx, "form:"+form.ID+"|"+rateKey(ip))
	if err != nil {
		h.cfg.Logger.WarnContext(ctx, "form rate not counted; the submission is let through", slog.String("error", err.Error()))
		return nil
	}
	if ok {
		return nil
	}
	secs := max(1, int((wait+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return &refusal{status: http.StatusTooManyRequests, code: "too many requests", title: "Too many sign-ups",
		detail: "too many submissions from your address; please try again in " + strconv.Itoa(secs) + " seconds"}
}

// readValues reads the body and gives one value per field name.
func (h *Forms) readValues(w http.ResponseWriter, r *http.Request) (map[string]string, *refusal) {
	body, status := readBody(w, r, h.cfg.MaxBodyBytes)
	switch status {
	case http.StatusRequestEntityTooLarge:
		return nil, &refusal{status: status, code: "body too large", title: "Too much data", detail: "the limit is " + byteSize(h.cfg.MaxBodyBytes)}
	case http.StatusBadRequest:
		return nil, badBody("the request body could not be read to its end")
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	values := map[string]string{}
	switch mt {
	case "application/x-www-form-urlencoded":
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, badBody("the body is not URL-encoded form data")
		}
		for k, vs := range q {
			values[k] = vs[0]
		}
	case "multipart/form-data":
		mf, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(int64(len(body)) + 1)
		if err != nil {
			return nil, badBody("the body is not multipart form data")
		}
		defer mf.RemoveAll()
		for k, vs := range mf.Value {
			values[k] = vs[0]
		}
	case "application/json":
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil || raw == nil {
			return nil, badBody("the body must be a JSON object of field names and values")
		}
		errs := store.FieldErrors{}
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				values[k] = v
			case bool:
				values[k] = strconv.FormatBool(v)
			case json.Number:
				values[k] = v.String()
			case nil:
			default:
				errs[k] = "must be text, a number or true/false"
			}
		}
		if len(errs) > 0 {
			return nil, invalidValues(errs)
		}
	default:
		return nil, &refusal{status: http.StatusUnsupportedMediaType, code: "unsupported media type", title: "Unsupported form data",
			detail: "send application/x-www-form-urlencoded, multipart/form-data or application/json"}
	}
	return values, nil
}

// Preflight serves OPTIONS /forms/{formId}: an allowed origin's fetch may POST
// with the headers a JSON call needs; any other origin gets no CORS headers.
func (h *Forms) Preflight() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
		defer cancel()
		w.Header().Add("Vary", "Origin")
		form, no := h.form(ctx, r)
		if no != nil {
			no.write(w, true)
			return
		}
		origin := r.Header.Get("Origin")
		if origin == "" || !form.AllowsOrigin(origin) {
			writeError(w, http.StatusForbidden, "forbidden", "this form takes no cross-origin calls from "+cmp.Or(origin, "an unnamed origin"))
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Accept")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

// Confirm serves GET /forms/confirm?token=…: the link of a confirmation e-mail. A
// HEAD (a link checker's) changes nothing.
func (h *Forms) Confirm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Referrer-Policy", "no-referrer") // the token is in the URL
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.cfg.Timeout)
		defer cancel()
		form, err := h.cfg.SignUps.Confirm(ctx, r.URL.Query().Get("token"), h.cfg.ClientIP.Of(r), userAgent(r))
		switch {
		case errors.Is(err, mail.ErrBadToken):
			(&refusal{status: http.StatusBadRequest, code: "invalid token", title: "This link is not valid",
				detail: "Please open the link exactly as it is in the e-mail; copied links sometimes lose a part."}).write(w, false)
		case errors.Is(err, store.ErrTokenUsed):
			(&refusal{status: http.StatusGone, code: "used token", title: "This link was used already",
				detail: "It confirmed the sign-up when it was first opened; nothing more is needed."}).write(w, false)
		case errors.Is(err, store.ErrTokenExpired):
			(&refusal{status: http.StatusGone, code: "expired token", title: "This link has expired",
				detail: "The sign-up was not confirmed in time. Please sign up again to receive a new link."}).write(w, false)
		case err != nil:
			h.cfg.Logger.ErrorContext(ctx, "confirmation failed", slog.String("error", err.Error()))
			unavailableRefusal("the confirmation could not be recorded now; please open the link again in a moment").write(w, false)
		case form.ConfirmedURL != "":
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, form.ConfirmedURL, http.StatusSeeOther)
		default:
			writePage(w, http.StatusOK, page{Title: "Thank you", Message: "Your subscription is confirmed."})
		}
	})
}

// Thanks serves GET /forms/thanks, where a browser goes after a submission to a
// form without a RedirectURL.
func (h *Forms) Thanks() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := page{Title: "Thank you", Message: "You are signed up."}
		if r.URL.Query().Get("status") == "pending" {
			p = page{Title: "Almost done", Message: "We have sent you an e-mail. Please open the link in it to confirm your sign-up."}
		}
		writePage(w, http.StatusOK, p)
	})
}

// refusal is an answer to a call that was not taken: JSON for scripts, a small
// page for people.
type refusal struct {
	status int
	code   string
	title  string
	detail string
	fields store.FieldErrors
}

var formNotFound = &refusal{status: http.StatusNotFound, code: "not found", title: "Form not found", detail: "this form does not exist (any more)"}

func unavailableRefusal(detail string) *refusal {
	return &refusal{status: http.StatusServiceUnavailable, code: "unavailable", title: "Please try again", detail: detail}
}

func badBody(detail string) *refusal {
	return &refusal{status: http.StatusBadRequest, code: "bad request", title: "The form data could not be read", detail: detail}
}

func invalidValues(errs store.FieldErrors) *refusal {
	return &refusal{status: http.StatusUnprocessableEntity, code: "invalid", title: "Please check your entries",
		detail: "some fields need another value", fields: errs}
}

func (no *refusal) write(w http.ResponseWriter, asJSON bool) {
	if no.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	if asJSON {
		body := struct {
			Error  string            `json:"error"`
			Detail string            `json:"detail,omitempty"`
			Fields store.FieldErrors `json:"fields,omitempty"`
		}{Error: no.code, Fields: no.fields}
		if len(no.fields) == 0 {
			body.Detail = no.detail
		}
		writeJSON(w, no.status, body)
		return
	}
	writePage(w, no.status, page{Title: no.title, Message: no.detail, Fields: no.fields})
}

type page struct {
	Title   string
	Message string
	Fields  map[string]string
}

var formPage = template.Must(template.New("form").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{{.Title}}</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:3em auto">
<h1>{{.Title}}</h1><p>{{.Message}}</p>
{{if .Fields}}<ul>{{range $name, $reason := .Fields}}<li><strong>{{$name}}</strong>: {{$reason}}</li>{{end}}</ul>
<p>Please go back to the form and correct them.</p>{{end}}
</body></html>`))

func writePage(w http.ResponseWriter, status int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = formPage.Execute(w, p)
}

// wantsJSON reports whether the caller is a script: it sends JSON or asks for it.
func wantsJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

// rateKey is what the rate limit counts by: an IPv4 address, or the /64 network
// of an IPv6 address (one household or server gets a whole /64).
func rateKey(ip string) string {
	a := net.ParseIP(ip)
	if a == nil || a.To4() != nil {
		return ip
	}
	return a.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// userAgent is the caller's User-Agent, bounded for the consent ledger.
func userAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) > 500 {
		ua = ua[:500]
	}
	return strings.ToValidUTF8(ua, "")
}
