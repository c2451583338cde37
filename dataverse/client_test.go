package dataverse

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"crmsync/dataverse/emulator"
)

// fakeClock is a settable clock; sleeping on it advances it, so retries and token
// expiry run without waiting.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Sleep records d and moves the clock on by it.
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	return nil
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// testBundle is a client talking to an in-process emulator.
type testBundle struct {
	e      *emulator.Emulator
	srv    *httptest.Server
	clock  *fakeClock
	client *Client
}

// setup starts an emulator and a client for its application user; mod may change
// either configuration first.
func setup(t testing.TB, mod func(*emulator.Config, *Config)) *testBundle {
	t.Helper()
	clk := newFakeClock()
	ecfg := emulator.Config{Now: clk.Now, Logger: testLogger(t)}
	ccfg := Config{ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret,
		Now: clk.Now, Sleep: clk.Sleep, Logger: testLogger(t)}
	if mod != nil {
		mod(&ecfg, &ccfg)
	}
	e := emulator.New(ecfg)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	if ccfg.OrganizationURL == "" {
		ccfg.OrganizationURL = srv.URL
	}
	if ccfg.TokenURL == "" {
		ccfg.TokenURL = srv.URL + "/8c1b5a3e-0000-4000-8000-000000000001/oauth2/v2.0/token"
	}
	c, err := NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{e: e, srv: srv, clock: clk, client: c}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// wantAPIError checks that err wraps an *APIError with the status and a code, and
// returns it.
func wantAPIError(t *testing.T, err error, status int, code string) *APIError {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want an *APIError", err)
	}
	if ae.Status != status || (code != "" && ae.Code != code) {
		t.Fatalf("APIError %d %q (%s), want %d %q", ae.Status, ae.Code, ae.Message, status, code)
	}
	return ae
}

func TestNewClientValidates(t *testing.T) {
	t.Parallel()
	good := func() Config {
		return Config{OrganizationURL: "https://contoso.crm4.dynamics.com/", TenantID: "t1", ClientID: "id", ClientSecret: "s"}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" for success
	}{
		{name: "complete", mod: func(*Config) {}},
		{name: "token URL instead of tenant", mod: func(c *Config) { c.TenantID, c.TokenURL = "", "http://127.0.0.1:8090/x/oauth2/v2.0/token" }},
		{name: "no organization", mod: func(c *Config) { c.OrganizationURL = "" }, want: "OrganizationURL is required"},
		{name: "organization not a URL", mod: func(c *Config) { c.OrganizationURL = "contoso" }, want: "OrganizationURL"},
		{name: "organization with API path", mod: func(c *Config) { c.OrganizationURL = "https://contoso.crm4.dynamics.com/api/data/v9.2" }, want: "without a path"},
		{name: "no tenant", mod: func(c *Config) { c.TenantID = "" }, want: "TenantID or TokenURL"},
		{name: "bad token URL", mod: func(c *Config) { c.TokenURL = "login" }, want: "TokenURL"},
		{name: "no client id", mod: func(c *Config) { c.ClientID = "" }, want: "ClientID"},
		{name: "no secret", mod: func(c *Config) { c.ClientSecret = "" }, want: "ClientSecret"},
		{name: "backoff bounds", mod: func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Minute, time.Second }, want: "MaxBackoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := good()
			tt.mod(&cfg)
			c, err := NewClient(cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to name %q", err, tt.want)
			}
			if c != nil {
				t.Error("client returned with an error")
			}
		})
	}
	c, err := NewClient(good())
	if err != nil {
		t.Fatal(err)
	}
	if c.tokens.url != "https://login.microsoftonline.com/t1/oauth2/v2.0/token" || c.tokens.scope != "https://contoso.crm4.dynamics.com/.default" ||
		c.api != "https://contoso.crm4.dynamics.com/api/data/v9.2/" || c.retry.max != DefaultMaxRetries {
		t.Errorf("defaults: token %s, scope %s, api %s, retries %d", c.tokens.url, c.tokens.scope, c.api, c.retry.max)
	}
}

func TestCreateGetUpdateDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	c := b.client

	id, err := c.Create(ctx, "contacts", map[string]any{"firstname": "Anna", "lastname": "Schmidt", "emailaddress1": "anna@example.de", "donotbulkemail": true})
	if err != nil {
		t.Fatal(err)
	}
	row, err := c.Get(ctx, "contacts", id, []string{"fullname", "emailaddress1", "donotbulkemail", "statecode", "createdon", "_ownerid_value"})
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := row.String("fullname"); s != "Anna Schmidt" {
		t.Errorf("fullname %q", s)
	}
	if v, ok := row.Bool("donotbulkemail"); !v || !ok {
		t.Errorf("donotbulkemail %v %v", v, ok)
	}
	if n, ok := row.Int("statecode"); n != 0 || !ok {
		t.Errorf("statecode %d %v", n, ok)
	}
	if tm, _ := row.Time("createdon"); !tm.Equal(b.clock.Now()) {
		t.Errorf("createdon %v, want %v", tm, b.clock.Now())
	}
	if owner, _ := row.Lookup("ownerid"); owner != b.e.ApplicationUserID() || row.LookupTable("ownerid") != "systemuser" {
		t.Errorf("owner %q (%q)", owner, row.LookupTable("ownerid"))
	}
	if _, ok := row["lastname"]; ok {
		t.Error("$select ignored")
	}

	if err := c.Update(ctx, "contacts", id, map[string]any{"emailaddress1": "anna.neu@example.de"}); err != nil {
		t.Fatal(err)
	}
	row, _ = c.Get(ctx, "contacts", id, []string{"emailaddress1"})
	if s, _ := row.String("emailaddress1"); s != "anna.neu@example.de" {
		t.Errorf("after update: %q", s)
	}

	const missing = "6d81597f-0f9f-e711-8122-000d3aa2331c"
	err = c.Update(ctx, "contacts", missing, map[string]any{"lastname": "x"})
	if !errors.Is(err, ErrNotFound) || !strings.HasPrefix(err.Error(), "update contacts("+missing+"): ") {
		t.Errorf("update of a missing row: %v", err)
	}
	wantAPIError(t, err, http.StatusNotFound, "0x80040217")

	if err := c.Delete(ctx, "contacts", id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "contacts", id, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if err := c.Delete(ctx, "contacts", id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if got := b.clock.Sleeps(); len(got) != 0 {
		t.Errorf("4xx answers were retried: sleeps %v", got)
	}
}

func TestUpsertAndCreateOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	c := b.client
	const id = "0f8fad5b-d9cb-469f-a165-70867728950e"

	created, err := c.Upsert(ctx, "contacts", id, map[string]any{"lastname": "First"})
	if err != nil || !created {
		t.Fatalf("first upsert: created %v, %v", created, err)
	}
	created, err = c.Upsert(ctx, "contacts", id, map[string]any{"lastname": "Second"})
	if err != nil || created {
		t.Fatalf("second upsert: created %v, %v", created, err)
	}
	row, _ := c.Get(ctx, "contacts", id, []string{"lastname"})
	if s, _ := row.String("lastname"); s != "Second" {
		t.Errorf("lastname %q", s)
	}
	// An upsert with only a lookup has no column to $select; it still works.
	acc, _ := c.Create(ctx, "accounts", map[string]any{"name": "Contoso"})
	if created, err := c.Upsert(ctx, "contacts", id, map[string]any{"parentcustomerid_account@odata.bind": Bind("accounts", acc)}); err != nil || created {
		t.Errorf("bind-only upsert: created %v, %v", created, err)
	}

	err = c.CreateOnly(ctx, "contacts", id, map[string]any{"lastname": "Again"})
	if !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("create-only of an existing row: %v", err)
	}
	wantAPIError(t, err, http.StatusPreconditionFailed, "0x80040237")
	const other = "1f8fad5b-d9cb-469f-a165-70867728950e"
	if err := c.CreateOnly(ctx, "contacts", other, map[string]any{"lastname": "New"}); err != nil {
		t.Fatalf("create-only of a new row: %v", err)
	}
}

func TestUpdateIfMatch(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	c := b.client
	id, _ := c.Create(ctx, "contacts", map[string]any{"lastname": "Etag"})
	row, _ := c.Get(ctx, "contacts", id, []string{"lastname"})
	etag := row.ETag()
	if !strings.HasPrefix(etag, `W/"`) {
		t.Fatalf("etag %q", etag)
	}
	if err := c.UpdateIfMatch(ctx, "contacts", id, etag, map[string]any{"firstname": "Fresh"}); err != nil {
		t.Fatalf("update with the current etag: %v", err)
	}
	err := c.UpdateIfMatch(ctx, "contacts", id, etag, map[string]any{"firstname": "Stale"})
	if !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("update with a stale etag: %v", err)
	}
	ae := wantAPIError(t, err, http.StatusPreconditionFailed, "0x80060882")
	if ae.Retryable() {
		t.Error("412 is retryable")
	}
	if err := c.UpdateIfMatch(ctx, "contacts", id, "", nil); err == nil {
		t.Error("empty etag accepted")
	}
}

func TestBindsAndLookups(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	c := b.client
	acc, err := c.Create(ctx, "accounts", map[string]any{"name": "Contoso"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Create(ctx, "contacts", map[string]any{
		"lastname":                            "Linked",
		"parentcustomerid_account@odata.bind": Bind("accounts", acc),
		"ownerid@odata.bind":                  Bind("systemusers", b.e.AdminUserID()),
	})
	if err != nil {
		t.Fatal(err)
	}
	row, err := c.Get(ctx, "contacts", id, []string{"_parentcustomerid_value", "_ownerid_value"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := row.Lookup("parentcustomerid"); got != acc || row.LookupTable("_parentcustomerid_value") != "account" {
		t.Errorf("parentcustomerid = %q (%q)", got, row.LookupTable("parentcustomerid"))
	}
	if got, _ := row.Lookup("ownerid"); got != b.e.AdminUserID() {
		t.Errorf("ownerid = %q", got)
	}
	// A bind to a row that does not exist fails like Dataverse: 404 naming the row.
	_, err = c.Create(ctx, "contacts", map[string]any{"parentcustomerid_account@odata.bind": Bind("accounts", "6d81597f-0f9f-e711-8122-000d3aa2331c")})
	if ae := wantAPIError(t, err, http.StatusNotFound, "0x80040217"); !strings.Contains(ae.Message, "account With Id = 6d81597f") {
		t.Errorf("message %q", ae.Message)
	}
	// Clearing a lookup.
	if err := c.Update(ctx, "contacts", id, map[string]any{"parentcustomerid_account@odata.bind": nil}); err != nil {
		t.Fatal(err)
	}
	row, _ = c.Get(ctx, "contacts", id, []string{"_parentcustomerid_value"})
	if got, ok := row.Lookup("parentcustomerid"); ok {
		t.Errorf("after clearing: %q", got)
	}
}

func TestDataverseRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	c := b.client

	_, err := c.Create(ctx, "contacts", map[string]any{"lastname": "X", "shoesize": 44})
	ae := wantAPIError(t, err, http.StatusBadRequest, "0x80060888")
	if ae.Message != "Invalid property 'shoesize' was found in entity 'Microsoft.Dynamics.CRM.contact'." || ae.Retryable() {
		t.Errorf("unknown column: %q, retryable %v", ae.Message, ae.Retryable())
	}
	if !strings.HasPrefix(err.Error(), "create contacts: dataverse: 400 Bad Request: 0x80060888: Invalid property") {
		t.Errorf("error text %q", err)
	}

	lead, err := c.Create(ctx, "leads", map[string]any{"lastname": "Lead", "subject": "Interest"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, "leads", lead, map[string]any{"statecode": 1, "statuscode": 3}); err != nil {
		t.Fatalf("qualify: %v", err)
	}
	err = c.Update(ctx, "leads", lead, map[string]any{"emailaddress1": "lead@example.de"})
	if ae := wantAPIError(t, err, http.StatusBadRequest, "0x80040265"); !strings.Contains(ae.Message, "qualified") {
		t.Errorf("qualified lead: %q", ae.Message)
	}
	err = c.Update(ctx, "contacts", "not-a-guid", map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "invalid id") {
		t.Errorf("bad id: %v", err)
	}
	if _, err := c.Create(ctx, "contacts(x)/y", nil); err == nil || !strings.Contains(err.Error(), "invalid entity set") {
		t.Errorf("bad set: %v", err)
	}
	if got := b.clock.Sleeps(); len(got) != 0 {
		t.Errorf("refusals were retried: %v", got)
	}
}

func TestWhoAmI(t *testing.T) {
	t.Parallel()
	b := setup(t, func(_ *emulator.Config, c *Config) {
		c.ClientID, c.ClientSecret = emulator.DefaultUserClientID, emulator.DefaultUserClientSecret
	})
	id, err := b.client.WhoAmI(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != b.e.AdminUserID() || id.BusinessUnitID != b.e.BusinessUnitID() || id.OrganizationID != b.e.OrganizationID() {
		t.Errorf("WhoAmI = %+v", id)
	}
}

func TestRequestHeaders(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]http.Header{}
	e := emulator.New(emulator.Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method+" "+strings.SplitN(r.URL.Path, "(", 2)[0]] = r.Header.Clone()
		mu.Unlock()
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	id, err := c.Create(ctx, "contacts", map[string]any{"lastname": "H"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "contacts", id, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	post, get := seen["POST /api/data/v9.2/contacts"], seen["GET /api/data/v9.2/contacts"]
	for name, want := range map[string]string{"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"} {
		if post.Get(name) != want || get.Get(name) != want {
			t.Errorf("%s: POST %q, GET %q, want %q", name, post.Get(name), get.Get(name), want)
		}
	}
	if !strings.HasPrefix(post.Get("Content-Type"), "application/json") || get.Get("Content-Type") != "" {
		t.Errorf("Content-Type: POST %q, GET %q", post.Get("Content-Type"), get.Get("Content-Type"))
	}
	if get.Get("If-None-Match") != "null" || post.Get("If-None-Match") != "" {
		t.Errorf("If-None-Match: GET %q, POST %q", get.Get("If-None-Match"), post.Get("If-None-Match"))
	}
	if !strings.HasPrefix(get.Get("Authorization"), "Bearer ") {
		t.Errorf("Authorization %q", get.Get("Authorization"))
	}
}
