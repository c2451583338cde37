package dataverse

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crmsync/dataverse/emulator"
)

func TestConcurrentCallersShareOneTokenRequest(t *testing.T) {
	t.Parallel()
	// The token endpoint is slowed down so that all callers arrive while the first
	// request is in flight.
	e := emulator.New(emulator.Config{})
	release := make(chan struct{})
	var tokenCalls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/token") && tokenCalls.Add(1) == 1 {
			<-release
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const callers = 24
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := c.WhoAmI(t.Context())
			errs <- err
		})
	}
	// Wait until the first token request is in flight, give the others time to
	// queue behind it, then let it finish.
	for tokenCalls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := e.TokenRequests(); n != 1 {
		t.Errorf("%d token requests for %d concurrent callers, want 1", n, callers)
	}
}

func TestTokenIsRenewedBeforeItExpires(t *testing.T) {
	t.Parallel()
	b := setup(t, nil) // emulator and client share one clock; tokens live 1h (expires_in 3599)
	ctx := t.Context()
	for range 3 {
		if _, err := b.client.WhoAmI(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.e.TokenRequests(); n != 1 {
		t.Fatalf("%d token requests before expiry, want 1 (cached)", n)
	}
	b.clock.Add(54 * time.Minute) // within the last five minutes of the token's life
	if _, err := b.client.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.e.TokenRequests(); n != 1 {
		t.Fatalf("renewed too early: %d token requests", n)
	}
	b.clock.Add(2 * time.Minute)
	for range 3 {
		if _, err := b.client.WhoAmI(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.e.TokenRequests(); n != 2 {
		t.Errorf("%d token requests after 56 minutes, want 2", n)
	}
}

func TestShortTokenTTLMidRun(t *testing.T) {
	t.Parallel()
	b := setup(t, func(e *emulator.Config, _ *Config) { e.TokenTTL = 30 * time.Second })
	ctx := t.Context()
	// Thirty writes 5 seconds apart: the 30-second tokens run out several times
	// while the run goes on, and no write notices.
	for i := range 30 {
		if _, err := b.client.Create(ctx, "contacts", map[string]any{"lastname": "tick"}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		b.clock.Add(5 * time.Second)
	}
	if n := b.e.TokenRequests(); n < 5 || n > 7 {
		t.Errorf("%d token requests over 150 s with 30 s tokens, want about 6", n)
	}
}

func TestRefusedTokenIsRenewedOnce(t *testing.T) {
	t.Parallel()
	// The emulator's clock runs ahead of the client's, so the client believes a token
	// is fresh that the server has already let expire.
	serverClock := newFakeClock()
	b := setup(t, func(e *emulator.Config, _ *Config) { e.Now = serverClock.Now })
	ctx := t.Context()
	if _, err := b.client.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	serverClock.Add(2 * time.Hour)
	if _, err := b.client.WhoAmI(ctx); err != nil {
		t.Fatalf("after the server expired the token: %v", err)
	}
	if n := b.e.TokenRequests(); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}

	// A server that refuses every token gets exactly one renewal, then the 401.
	var apiCalls atomic.Int64
	e := emulator.New(emulator.Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			apiCalls.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"0x80072560","message":"The user is not a member of the organization."}}`))
			return
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	clk := newFakeClock()
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.WhoAmI(ctx)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if apiCalls.Load() != 2 || e.TokenRequests() != 2 || len(clk.Sleeps()) != 0 {
		t.Errorf("%d API calls, %d token requests, sleeps %v; want 2, 2, none", apiCalls.Load(), e.TokenRequests(), clk.Sleeps())
	}
}

func TestTokenEndpointRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mod      func(b *testBundle, c *Config)
		status   int
		code     string
		sentinel error
	}{
		{name: "wrong secret", mod: func(_ *testBundle, c *Config) { c.ClientSecret = "guess" }, status: 401, code: "invalid_client", sentinel: ErrUnauthorized},
		{name: "unknown client", mod: func(_ *testBundle, c *Config) { c.ClientID = "stranger" }, status: 400, code: "unauthorized_client"},
		{name: "scope of another environment", mod: func(_ *testBundle, c *Config) { c.OrganizationURL = "https://contoso.crm4.dynamics.com" }, status: 400, code: "invalid_resource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			cfg := Config{OrganizationURL: b.srv.URL, TokenURL: b.srv.URL + "/t/oauth2/v2.0/token",
				ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret, Now: b.clock.Now, Sleep: b.clock.Sleep}
			tt.mod(b, &cfg)
			c, err := NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.WhoAmI(t.Context())
			ae := wantAPIError(t, err, tt.status, tt.code)
			if !strings.HasPrefix(ae.Message, "AADSTS") || !strings.Contains(err.Error(), "get token: ") {
				t.Errorf("error %v", err)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.sentinel)
			}
			if len(b.clock.Sleeps()) != 0 || b.e.TokenRequests() != 1 {
				t.Errorf("refused token request was retried: sleeps %v, %d requests", b.clock.Sleeps(), b.e.TokenRequests())
			}
		})
	}
}

func TestTokenRequestShape(t *testing.T) {
	t.Parallel()
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got = r
		w.Header().Set("Content-Type", "application/json")
		// Older endpoints send expires_in as a string.
		_, _ = w.Write([]byte(`{"token_type":"Bearer","expires_in":"3599","access_token":"tok"}`))
	}))
	t.Cleanup(srv.Close)
	s := &tokenSource{url: srv.URL + "/tenant/oauth2/v2.0/token", clientID: "app", clientSecret: "s3cr=t&", scope: "https://contoso.crm4.dynamics.com/.default",
		http: srv.Client(), now: time.Now, log: testLogger(t)}
	tok, lifetime, err := s.fetch(t.Context())
	if err != nil || tok != "tok" || lifetime != 3599*time.Second {
		t.Fatalf("fetch = %q, %v, %v", tok, lifetime, err)
	}
	want := map[string]string{"grant_type": "client_credentials", "client_id": "app", "client_secret": "s3cr=t&", "scope": "https://contoso.crm4.dynamics.com/.default"}
	for k, v := range want {
		if got.PostForm.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got.PostForm.Get(k), v)
		}
	}
	if got.Method != http.MethodPost || got.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("%s with %q", got.Method, got.Header.Get("Content-Type"))
	}
}
