package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source shared by an emulator and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testBundle is an emulator behind an httptest server with a token for the
// application user.
type testBundle struct {
	e     *Emulator
	srv   *httptest.Server
	clock *clock
	token string
}

func setup(t *testing.T, cfg Config) *testBundle {
	t.Helper()
	clk := newClock()
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := New(cfg)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	b := &testBundle{e: e, srv: srv, clock: clk}
	b.token = b.getToken(t, DefaultClientID, DefaultClientSecret)
	return b
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (b *testBundle) getToken(t *testing.T, id, secret string) string {
	t.Helper()
	status, body := b.tokenRequest(t, url.Values{
		"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {b.srv.URL + "/.default"},
	})
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

func (b *testBundle) tokenRequest(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := b.srv.Client().PostForm(b.srv.URL+"/5f8e4a3c-tenant/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("token answer is not JSON: %v", err)
	}
	return resp.StatusCode, m
}

// answer is a Web API response with its body decoded.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// rawBody is sent as is, for bodies that are not JSON.
type rawBody string

// call sends a Web API request as the application user; headers come in pairs.
func (b *testBundle) call(t *testing.T, method, path string, body any, headers ...string) answer {
	t.Helper()
	return b.callAs(t, b.token, method, path, body, headers...)
}

func (b *testBundle) callAs(t *testing.T, token, method, path string, body any, headers ...string) answer {
	t.Helper()
	var rd io.Reader
	if raw, ok := body.(rawBody); ok {
		rd = strings.NewReader(string(raw))
	} else if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	u := path
	if !strings.HasPrefix(u, "http") {
		u = b.srv.URL + "/api/data/v9.2/" + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	// The server's own client: parallel tests closing their servers call
	// CloseIdleConnections on http.DefaultTransport, which breaks requests in flight.
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&a.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v\n%s", method, path, err, raw)
		}
	}
	return a
}

// query encodes query options given in pairs, spaces as %20.
func query(pairs ...string) string {
	var parts []string
	for i := 0; i+1 < len(pairs); i += 2 {
		parts = append(parts, pairs[i]+"="+strings.ReplaceAll(url.QueryEscape(pairs[i+1]), "+", "%20"))
	}
	return strings.Join(parts, "&")
}

// mustCreate creates a row through the Web API and returns its id.
func (b *testBundle) mustCreate(t *testing.T, set string, row map[string]any) string {
	t.Helper()
	a := b.call(t, http.MethodPost, set, row)
	if a.status != http.StatusNoContent {
		t.Fatalf("create %s: %d %s", set, a.status, a.raw)
	}
	loc := a.header.Get("OData-EntityId")
	i := strings.LastIndexByte(loc, '(')
	return loc[i+1 : len(loc)-1]
}

// errorOf returns code and message of a Dataverse error body, failing when the body
// does not have that shape.
func (a answer) errorOf(t *testing.T) (string, string) {
	t.Helper()
	e, ok := a.body["error"].(map[string]any)
	if !ok || len(a.body) != 1 {
		t.Fatalf("want {\"error\":{…}}, got %d %s", a.status, a.raw)
	}
	code, _ := e["code"].(string)
	msg, _ := e["message"].(string)
	if _, ok := e["code"].(string); !ok || msg == "" {
		t.Fatalf("error without code or message: %s", a.raw)
	}
	return code, msg
}

func (a answer) wantError(t *testing.T, status int, code, msgPart string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d: %s", a.status, status, a.raw)
	}
	gotCode, msg := a.errorOf(t)
	if code != "" && gotCode != code {
		t.Errorf("code %q, want %q (message %q)", gotCode, code, msg)
	}
	if !strings.Contains(msg, msgPart) {
		t.Errorf("message %q does not contain %q", msg, msgPart)
	}
}

func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	good := func(mod func(url.Values)) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {DefaultClientID},
			"client_secret": {DefaultClientSecret}, "scope": {b.srv.URL + "/.default"}}
		if mod != nil {
			mod(v)
		}
		return v
	}
	localhost := strings.Replace(b.srv.URL, "127.0.0.1", "localhost", 1)
	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
		wantError  string // Entra's "error"; "" for success
		wantAADSTS string
	}{
		{name: "application user", form: good(nil), wantStatus: 200},
		{name: "human user", form: good(func(v url.Values) {
			v.Set("client_id", DefaultUserClientID)
			v.Set("client_secret", DefaultUserClientSecret)
		}), wantStatus: 200},
		{name: "scope names localhost", form: good(func(v url.Values) { v.Set("scope", localhost+"/.default") }), wantStatus: 200},
		{name: "scope with trailing slash on the resource", form: good(func(v url.Values) { v.Set("scope", b.srv.URL+"//.default") }), wantStatus: 200},
		{name: "wrong secret", form: good(func(v url.Values) { v.Set("client_secret", "nope") }), wantStatus: 401, wantError: "invalid_client", wantAADSTS: "AADSTS7000215"},
		{name: "user id with app secret", form: good(func(v url.Values) { v.Set("client_id", DefaultUserClientID) }), wantStatus: 401, wantError: "invalid_client"},
		{name: "missing secret", form: good(func(v url.Values) { v.Del("client_secret") }), wantStatus: 401, wantError: "invalid_client", wantAADSTS: "AADSTS7000218"},
		{name: "unknown client", form: good(func(v url.Values) { v.Set("client_id", "stranger") }), wantStatus: 400, wantError: "unauthorized_client", wantAADSTS: "AADSTS700016"},
		{name: "scope without /.default", form: good(func(v url.Values) { v.Set("scope", b.srv.URL+"/user_impersonation") }), wantStatus: 400, wantError: "invalid_scope", wantAADSTS: "AADSTS1002012"},
		{name: "scope of another resource", form: good(func(v url.Values) { v.Set("scope", "https://contoso.crm4.dynamics.com/.default") }), wantStatus: 400, wantError: "invalid_resource", wantAADSTS: "AADSTS500011"},
		{name: "scope on another port", form: good(func(v url.Values) { v.Set("scope", "http://127.0.0.1:1/.default") }), wantStatus: 400, wantError: "invalid_resource"},
		{name: "missing scope", form: good(func(v url.Values) { v.Del("scope") }), wantStatus: 400, wantError: "invalid_request", wantAADSTS: "AADSTS900144"},
		{name: "password grant", form: good(func(v url.Values) { v.Set("grant_type", "password") }), wantStatus: 400, wantError: "unsupported_grant_type", wantAADSTS: "AADSTS70003"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := b.tokenRequest(t, tt.form)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %v", status, tt.wantStatus, body)
			}
			if tt.wantError == "" {
				if body["token_type"] != "Bearer" || body["expires_in"] != float64(3599) || body["access_token"] == "" {
					t.Errorf("token answer %v, want Bearer, 3599 and a token", body)
				}
				return
			}
			if body["error"] != tt.wantError {
				t.Errorf("error %v, want %s", body["error"], tt.wantError)
			}
			desc, _ := body["error_description"].(string)
			if !strings.HasPrefix(desc, tt.wantAADSTS) {
				t.Errorf("error_description %q, want it to start with %q", desc, tt.wantAADSTS)
			}
			if _, ok := body["error_codes"].([]any); !ok {
				t.Errorf("no error_codes in %v", body)
			}
		})
	}
}

func TestTokenEndpointTakesBasicAuthAndOnlyPOST(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {b.srv.URL + "/.default"}}
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/common/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(DefaultClientID, DefaultClientSecret)
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("client_secret_basic: status %d, want 200", resp.StatusCode)
	}
	resp, err = b.srv.Client().Get(b.srv.URL + "/common/oauth2/v2.0/token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}
}

func TestWebAPIRequiresAToken(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{TokenTTL: time.Minute})
	tests := []struct {
		name  string
		token string
		hdr   string
	}{
		{name: "no Authorization header"},
		{name: "unknown token", token: "forged"},
		{name: "basic scheme", hdr: "Basic ZW11bGF0b3I6ZW11bGF0b3Itc2VjcmV0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var a answer
			if tt.hdr != "" {
				a = b.callAs(t, "", http.MethodGet, "contacts", nil, "Authorization", tt.hdr)
			} else {
				a = b.callAs(t, tt.token, http.MethodGet, "contacts", nil)
			}
			a.wantError(t, http.StatusUnauthorized, codeNotAuthenticated, "")
			if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer authorization_uri=") {
				t.Errorf("WWW-Authenticate = %q", a.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("expired token", func(t *testing.T) {
		b := setup(t, Config{TokenTTL: time.Minute})
		if a := b.call(t, http.MethodGet, "WhoAmI", nil); a.status != http.StatusOK {
			t.Fatalf("fresh token: %d %s", a.status, a.raw)
		}
		b.clock.Add(time.Minute)
		b.call(t, http.MethodGet, "WhoAmI", nil).wantError(t, http.StatusUnauthorized, codeNotAuthenticated, "expired")
	})
}

func TestWhoAmIAndSeed(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	a := b.call(t, http.MethodGet, "WhoAmI", nil)
	if a.status != http.StatusOK || a.body["UserId"] != b.e.ApplicationUserID() || a.body["BusinessUnitId"] != b.e.BusinessUnitID() {
		t.Fatalf("WhoAmI: %d %s", a.status, a.raw)
	}
	admin := b.getToken(t, DefaultUserClientID, DefaultUserClientSecret)
	if a := b.callAs(t, admin, http.MethodGet, "WhoAmI", nil); a.body["UserId"] != b.e.AdminUserID() {
		t.Errorf("WhoAmI as the user client: %s", a.raw)
	}
	for _, domain := range []string{AppUserDomainName, "ADMIN@emulator.test"} {
		a := b.call(t, http.MethodGet, "systemusers?"+query("$select", "systemuserid,domainname,_businessunitid_value", "$filter", "domainname eq '"+domain+"'"), nil)
		rows, _ := a.body["value"].([]any)
		if a.status != 200 || len(rows) != 1 {
			t.Fatalf("systemuser %s: %d %s", domain, a.status, a.raw)
		}
		if got := rows[0].(map[string]any)["_businessunitid_value"]; got != b.e.BusinessUnitID() {
			t.Errorf("systemuser %s: business unit %v, want %s", domain, got, b.e.BusinessUnitID())
		}
	}
	a = b.call(t, http.MethodGet, "businessunits?$select=name,_parentbusinessunitid_value", nil)
	if rows, _ := a.body["value"].([]any); len(rows) != 1 {
		t.Errorf("want one root business unit: %s", a.raw)
	}
}

func TestUnknownResources(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.call(t, http.MethodGet, "Contacts", nil).wantError(t, http.StatusNotFound, codeResourceNotFound, "Resource not found for the segment 'Contacts'.")
	b.call(t, http.MethodPut, "contacts", map[string]any{}).wantError(t, http.StatusMethodNotAllowed, "", "does not support http method 'PUT'")
	b.call(t, http.MethodGet, "contacts(not-a-guid)", nil).wantError(t, http.StatusBadRequest, codeODataBadRequest, "")
	b.call(t, http.MethodGet, "contacts(emailaddress1='a@b.de')", nil).wantError(t, http.StatusBadRequest, codeODataBadRequest, "alternate key")
	b.call(t, http.MethodPost, "$batch", nil).wantError(t, http.StatusBadRequest, codeODataBadRequest, "multipart/mixed")
	b.call(t, http.MethodGet, "$batch", nil).wantError(t, http.StatusMethodNotAllowed, "", "GET")
	b.call(t, http.MethodPost, "contacts/CreateMultiple", map[string]any{}).wantError(t, http.StatusBadRequest, codeODataBadRequest, "unresolved parameters")
	b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.Frobnicate", map[string]any{}).wantError(t, http.StatusNotImplemented, codeNotImplemented, "")
	b.call(t, http.MethodPost, "systemusers/Microsoft.Dynamics.CRM.CreateMultiple", map[string]any{"Targets": []any{}}).wantError(t, http.StatusBadRequest, codeInvalidArgument, "'CreateMultiple' method does not support entities of type 'systemuser'")
}

func TestStartURLClose(t *testing.T) {
	t.Parallel()
	e := New(Config{})
	if err := e.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL() = %q", e.URL())
	}
	resp, err := http.Get(e.URL() + "/api/data/v9.2/contacts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(e.URL() + "/api/data/v9.2/contacts"); err == nil {
		t.Error("still serving after Close")
	}
}
