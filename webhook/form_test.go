package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"crmsync/mail"
	"crmsync/queue"
	"crmsync/queue/queuetest"
	"crmsync/store"
	"crmsync/webhook"
)

// fakeSignUps stands in for the store and the engine behind the form routes.
type fakeSignUps struct {
	mu         sync.Mutex
	forms      map[string]*store.Form
	noSMTP     bool
	submitErr  error
	submitted  []*store.Submission
	from       []string // ip|user agent of each submission
	confirmErr map[string]error
	confirmed  []string
	confirmIPs []string
}

func (f *fakeSignUps) FormByID(_ context.Context, id string) (*store.Form, error) {
	if form, ok := f.forms[id]; ok {
		return form, nil
	}
	return nil, store.ErrNotFound
}

func (f *fakeSignUps) CanConfirm() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.noSMTP
}

// set changes the fake while the server may read it.
func (f *fakeSignUps) set(change func(*fakeSignUps)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeSignUps) Submit(_ context.Context, form *store.Form, in *store.Submission, ip, ua string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.submitErr != nil {
		return false, f.submitErr
	}
	f.submitted = append(f.submitted, in)
	f.from = append(f.from, ip+"|"+ua)
	return form.DoubleOptIn, nil
}

func (f *fakeSignUps) Confirm(_ context.Context, token, ip, _ string) (*store.Form, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, ok := f.confirmErr[token]; ok {
		return nil, err
	}
	f.confirmed = append(f.confirmed, token)
	f.confirmIPs = append(f.confirmIPs, ip)
	return f.forms[token], nil
}

func (f *fakeSignUps) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.submitted)
}

const publicURL = "https://crmsync.test"

func testForm(id string) *store.Form {
	return &store.Form{ID: id, Tenant: "acme", GroupID: "g1", DoubleOptIn: true, PendingHours: 72,
		AllowedOrigins: []string{"https://shop.example"},
		Fields: []store.FormField{
			{Name: "email", Type: store.FieldEmail, Required: true, SubscriberField: "email"},
			{Name: "firstName", Type: store.FieldText, MaxLength: 10, SubscriberField: "fields.firstName"},
			{Name: "consent", Type: store.FieldCheckbox, Required: true},
		}}
}

// formServer serves the form routes as cmd/crmsync wires them.
func formServer(t *testing.T, limiter webhook.Limiter) (*httptest.Server, *fakeSignUps) {
	t.Helper()
	return formServerWith(t, webhook.FormsConfig{Limiter: limiter})
}

// formServerWith is formServer with cfg's Limiter and ClientIP.
func formServerWith(t *testing.T, cfg webhook.FormsConfig) (*httptest.Server, *fakeSignUps) {
	t.Helper()
	fake := &fakeSignUps{forms: map[string]*store.Form{"f1": testForm("f1")}, confirmErr: map[string]error{}}
	redirected := testForm("f2")
	redirected.RedirectURL, redirected.DoubleOptIn = "https://shop.example/thanks", false
	fake.forms["f2"] = redirected
	cfg.Store, cfg.SignUps, cfg.PublicURL = fake, fake, publicURL
	h, err := webhook.NewForms(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /forms/{formId}", h.Submit())
	mux.Handle("OPTIONS /forms/{formId}", h.Preflight())
	mux.Handle("GET /forms/confirm", h.Confirm())
	mux.Handle("GET /forms/thanks", h.Thanks())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, fake
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("answer %d is not JSON: %q", a.status, a.body)
	}
	return v
}

func call(t *testing.T, method, u, contentType, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

const urlencoded = "application/x-www-form-urlencoded"

func TestFormSubmissionAnswersJSONOrRedirect(t *testing.T) {
	t.Parallel()
	srv, fake := formServer(t, nil)
	good := url.Values{"email": {"Ann@Example.de"}, "firstName": {"Ann"}, "consent": {"on"}}.Encode()

	a := call(t, http.MethodPost, srv.URL+"/forms/f1", urlencoded, good, "User-Agent", "Firefox/140")
	if a.status != http.StatusSeeOther || a.header.Get("Location") != publicURL+"/forms/thanks?status=pending" {
		t.Errorf("plain form: %d to %q", a.status, a.header.Get("Location"))
	}
	a = call(t, http.MethodPost, srv.URL+"/forms/f2", urlencoded, good)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "https://shop.example/thanks" {
		t.Errorf("plain form with a redirect URL: %d to %q", a.status, a.header.Get("Location"))
	}
	a = call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", `{"email":"ann@example.de","consent":true}`)
	if v := a.json(t); a.status != http.StatusOK || v["ok"] != true || v["status"] != "PENDING" {
		t.Errorf("JSON: %d %s", a.status, a.body)
	}
	a = call(t, http.MethodPost, srv.URL+"/forms/f2", urlencoded, good, "Accept", "application/json")
	if v := a.json(t); a.status != http.StatusOK || v["status"] != "SUBSCRIBED" {
		t.Errorf("form data asking for JSON: %d %s", a.status, a.body)
	}
	if fake.calls() != 4 {
		t.Fatalf("%d submissions, want 4", len(fake.submitted))
	}
	if s := fake.submitted[0]; s.Email != "ann@example.de" || s.Fields["firstName"] != "Ann" || fake.from[0] != "127.0.0.1|Firefox/140" {
		t.Errorf("first submission %+v from %s", s, fake.from[0])
	}
	if a := call(t, http.MethodGet, srv.URL+"/forms/thanks?status=pending", "", ""); a.status != http.StatusOK || !strings.Contains(a.body, "confirm") {
		t.Errorf("thank-you page: %d %s", a.status, a.body)
	}
}

func TestFormFieldErrorsAre422PerField(t *testing.T) {
	t.Parallel()
	srv, fake := formServer(t, nil)
	a := call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", `{"firstName":"Maximilian-Alexander"}`)
	v := a.json(t)
	fields, _ := v["fields"].(map[string]any)
	if a.status != http.StatusUnprocessableEntity || v["error"] != "invalid" || len(fields) != 3 ||
		fields["email"] != "is required" || fields["firstName"] != "must be at most 10 characters" || fields["consent"] != "must be checked" {
		t.Errorf("missing and oversized fields: %d %s", a.status, a.body)
	}
	a = call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", `{"email":"ann@@example","consent":"on"}`)
	if v := a.json(t); a.status != http.StatusUnprocessableEntity || v["fields"].(map[string]any)["email"] != "not a valid e-mail address" {
		t.Errorf("bad address: %d %s", a.status, a.body)
	}
	a = call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", `{"email":"ann@example.de","consent":true,"firstName":{"x":1}}`)
	if a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, `"firstName"`) {
		t.Errorf("an object as a value: %d %s", a.status, a.body)
	}
	a = call(t, http.MethodPost, srv.URL+"/forms/f1", urlencoded, "email=nope")
	if a.status != http.StatusUnprocessableEntity || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(a.body, "not a valid e-mail address") || !strings.Contains(a.body, "must be checked") {
		t.Errorf("plain form with errors: %d %s", a.status, a.body)
	}
	fake.set(func(f *fakeSignUps) { f.submitErr = store.FieldErrors{"email": "this address does not accept e-mail"} })
	a = call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", `{"email":"gone@example.de","consent":true}`)
	if a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, "does not accept e-mail") {
		t.Errorf("an address the engine refuses: %d %s", a.status, a.body)
	}
	fake.set(func(f *fakeSignUps) { f.submitErr = nil })
	if n := fake.calls(); n != 0 {
		t.Errorf("%d invalid submissions reached the engine", n)
	}
}

func TestFormHoneypotLooksAcceptedAndStoresNothing(t *testing.T) {
	t.Parallel()
	srv, fake := formServer(t, nil)
	body := url.Values{"email": {"bot@example.de"}, "consent": {"on"}, "website": {"https://spam.example"}}.Encode()
	a := call(t, http.MethodPost, srv.URL+"/forms/f1", urlencoded, body)
	if a.status != http.StatusSeeOther || !strings.HasSuffix(a.header.Get("Location"), "status=pending") {
		t.Errorf("honeypot, plain form: %d %q", a.status, a.header.Get("Location"))
	}
	a = call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", `{"email":"bot@example.de","website":"x"}`)
	if v := a.json(t); a.status != http.StatusOK || v["status"] != "PENDING" {
		t.Errorf("honeypot, JSON: %d %s", a.status, a.body)
	}
	if n := fake.calls(); n != 0 {
		t.Errorf("%d honeypot submissions reached the engine", n)
	}
}

func TestFormRateLimitAnswers429(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	srv, fake := formServer(t, queue.NewRateLimiter(r.Client, keys, 2, time.Minute))
	body := `{"email":"ann@example.de","consent":true}`
	for i := range 2 {
		if a := call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", body); a.status != http.StatusOK {
			t.Fatalf("submission %d: %d %s", i+1, a.status, a.body)
		}
	}
	a := call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", body)
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" || a.json(t)["error"] != "too many requests" {
		t.Errorf("third submission: %d, Retry-After %q, %s", a.status, a.header.Get("Retry-After"), a.body)
	}
	if a := call(t, http.MethodPost, srv.URL+"/forms/f2", "application/json", body); a.status != http.StatusOK {
		t.Errorf("another form has its own limit: %d", a.status)
	}
	if n := fake.calls(); n != 3 {
		t.Errorf("%d submissions reached the engine, want 3", n)
	}
}

func TestFormBehindTrustedProxyCountsAndRecordsEachVisitor(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	limiter := queue.NewRateLimiter(r.Client, keys, 2, time.Minute)
	trustLocal, err := webhook.NewClientIP("127.0.0.1,::1")
	if err != nil {
		t.Fatal(err)
	}
	srv, fake := formServerWith(t, webhook.FormsConfig{Limiter: limiter, ClientIP: trustLocal})
	body := `{"email":"ann@example.de","consent":true}`
	submit := func(xff string) int {
		return call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", body, "X-Forwarded-For", xff, "User-Agent", "Firefox/140").status
	}
	for i := range 2 {
		if got := submit("spoof, 203.0.113.1"); got != http.StatusOK {
			t.Fatalf("first visitor's submission %d: %d", i+1, got)
		}
	}
	if got := submit("203.0.113.1"); got != http.StatusTooManyRequests {
		t.Errorf("first visitor's third submission: %d, want 429", got)
	}
	if got := submit("203.0.113.2"); got != http.StatusOK {
		t.Errorf("second visitor behind the same proxy: %d, want its own limit", got)
	}
	if a := call(t, http.MethodGet, srv.URL+"/forms/confirm?token=f1", "", "", "X-Forwarded-For", "198.51.100.4"); a.status != http.StatusOK {
		t.Errorf("confirmation: %d %s", a.status, a.body)
	}
	want := []string{"203.0.113.1|Firefox/140", "203.0.113.1|Firefox/140", "203.0.113.2|Firefox/140"}
	fake.set(func(f *fakeSignUps) {
		if strings.Join(f.from, " ") != strings.Join(want, " ") || strings.Join(f.confirmIPs, " ") != "198.51.100.4" {
			t.Errorf("ledger: submissions from %q, want %q; confirmation from %q", f.from, want, f.confirmIPs)
		}
	})

	// A sender that is not a trusted proxy sets the header in vain: it is counted
	// and recorded by its own address.
	trustOther, err := webhook.NewClientIP("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	srv, fake = formServerWith(t, webhook.FormsConfig{Limiter: limiter, ClientIP: trustOther})
	for i, xff := range []string{"203.0.113.5", "203.0.113.6"} {
		if got := submit(xff); got != http.StatusOK {
			t.Fatalf("untrusted submission %d: %d", i+1, got)
		}
	}
	if got := submit("203.0.113.7"); got != http.StatusTooManyRequests {
		t.Errorf("untrusted sender's third submission with yet another XFF: %d, want 429", got)
	}
	fake.set(func(f *fakeSignUps) {
		if len(f.from) != 2 || f.from[0] != "127.0.0.1|Firefox/140" || f.from[1] != f.from[0] {
			t.Errorf("ledger of an untrusted sender: %q, want its own address", f.from)
		}
	})
}

func TestFormOriginsAndCORS(t *testing.T) {
	t.Parallel()
	srv, fake := formServer(t, nil)
	pre := call(t, http.MethodOptions, srv.URL+"/forms/f1", "", "", "Origin", "https://shop.example", "Access-Control-Request-Method", "POST")
	if pre.status != http.StatusNoContent || pre.header.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Headers"), "Content-Type") || pre.header.Get("Access-Control-Allow-Methods") != "POST" {
		t.Errorf("preflight of an allowed origin: %d %v", pre.status, pre.header)
	}
	pre = call(t, http.MethodOptions, srv.URL+"/forms/f1", "", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	if pre.status != http.StatusForbidden || pre.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight of another origin: %d %v", pre.status, pre.header)
	}
	if pre := call(t, http.MethodOptions, srv.URL+"/forms/nope", "", "", "Origin", "https://shop.example"); pre.status != http.StatusNotFound {
		t.Errorf("preflight of an unknown form: %d", pre.status)
	}
	body := `{"email":"ann@example.de","consent":true}`
	a := call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", body, "Origin", "https://evil.example")
	if a.status != http.StatusForbidden || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("POST from another origin: %d %v", a.status, a.header)
	}
	a = call(t, http.MethodPost, srv.URL+"/forms/f1", urlencoded, "email=ann%40example.de&consent=on", "Origin", "null")
	if a.status != http.StatusForbidden {
		t.Errorf("POST from an opaque origin: %d", a.status)
	}
	if n := fake.calls(); n != 0 {
		t.Fatalf("%d refused submissions reached the engine", n)
	}
	a = call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", body, "Origin", "https://shop.example")
	if a.status != http.StatusOK || a.header.Get("Access-Control-Allow-Origin") != "https://shop.example" || !strings.Contains(a.header.Get("Vary"), "Origin") {
		t.Errorf("POST from the allowed origin: %d %v", a.status, a.header)
	}
	for _, origin := range []string{"", publicURL} {
		if a := call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", body, "Origin", origin); a.status != http.StatusOK {
			t.Errorf("POST with Origin %q: %d", origin, a.status)
		}
	}
}

func TestFormBodyLimitAndUnknownForms(t *testing.T) {
	t.Parallel()
	srv, fake := formServer(t, nil)
	big := "email=ann%40example.de&consent=on&firstName=" + strings.Repeat("x", webhook.DefaultFormBodyBytes)
	for _, tc := range []struct {
		path, contentType, body string
		status                  int
	}{
		{"/forms/f1", urlencoded, big, http.StatusRequestEntityTooLarge},
		{"/forms/f1", "text/plain", "email=ann@example.de", http.StatusUnsupportedMediaType},
		{"/forms/f1", "application/json", `["email"]`, http.StatusBadRequest},
		{"/forms/nope", urlencoded, "email=ann%40example.de", http.StatusNotFound},
	} {
		if a := call(t, http.MethodPost, srv.URL+tc.path, tc.contentType, tc.body, "Accept", "application/json"); a.status != tc.status || a.json(t)["error"] == "" {
			t.Errorf("%s %s: %d %s, want %d", tc.path, tc.contentType, a.status, a.body, tc.status)
		}
	}
	mp := "--b\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nann@example.de\r\n--b\r\nContent-Disposition: form-data; name=\"consent\"\r\n\r\non\r\n--b--\r\n"
	if a := call(t, http.MethodPost, srv.URL+"/forms/f1", "multipart/form-data; boundary=b", mp); a.status != http.StatusSeeOther {
		t.Errorf("multipart form: %d %s", a.status, a.body)
	}
	fake.set(func(f *fakeSignUps) { f.noSMTP = true })
	a := call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", `{"email":"ann@example.de","consent":true}`)
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "e-mail delivery is not configured") {
		t.Errorf("double opt-in without SMTP: %d %s", a.status, a.body)
	}
	if a := call(t, http.MethodPost, srv.URL+"/forms/f2", "application/json", `{"email":"ann@example.de","consent":true}`); a.status != http.StatusOK {
		t.Errorf("a form without double opt-in needs no SMTP: %d", a.status)
	}
	fake.set(func(f *fakeSignUps) { f.noSMTP, f.submitErr = false, errors.New("store down") })
	if a := call(t, http.MethodPost, srv.URL+"/forms/f1", "application/json", `{"email":"ann@example.de","consent":true}`); a.status != http.StatusServiceUnavailable || strings.Contains(a.body, "store down") {
		t.Errorf("engine failure: %d %s (internals must not leak)", a.status, a.body)
	}
	if n := fake.calls(); n != 2 {
		t.Errorf("%d submissions reached the engine, want 2", n)
	}
}

func TestConfirmRouteAnswersEachToken(t *testing.T) {
	t.Parallel()
	srv, fake := formServer(t, nil)
	withURL := testForm("good")
	withURL.ConfirmedURL = "https://shop.example/welcome"
	fake.forms["good"], fake.forms["plain"] = withURL, testForm("plain")
	fake.confirmErr["forged"] = mail.ErrBadToken
	fake.confirmErr["used"] = store.ErrTokenUsed
	fake.confirmErr["expired"] = store.ErrTokenExpired
	fake.confirmErr["down"] = errors.New("store down")
	for _, tc := range []struct {
		token  string
		status int
		text   string
	}{
		{"good", http.StatusSeeOther, ""},
		{"plain", http.StatusOK, "Your subscription is confirmed"},
		{"forged", http.StatusBadRequest, "not valid"},
		{"used", http.StatusGone, "used already"},
		{"expired", http.StatusGone, "expired"},
		{"down", http.StatusServiceUnavailable, "try"},
	} {
		a := call(t, http.MethodGet, srv.URL+"/forms/confirm?token="+tc.token, "", "")
		if a.status != tc.status || !strings.Contains(a.body, tc.text) || a.header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: %d %q", tc.token, a.status, a.body)
		}
	}
	if a := call(t, http.MethodGet, srv.URL+"/forms/confirm?token=good", "", ""); a.header.Get("Location") != "https://shop.example/welcome" {
		t.Errorf("redirect to %q", a.header.Get("Location"))
	}
	confirmed := func() int {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return len(fake.confirmed)
	}
	before := confirmed()
	if a := call(t, http.MethodHead, srv.URL+"/forms/confirm?token=plain", "", ""); a.status != http.StatusOK || confirmed() != before {
		t.Errorf("HEAD (a link checker) confirmed: %d, %d confirmations", a.status, confirmed()-before)
	}
}
