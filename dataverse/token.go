package dataverse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tokenSource gets access tokens with the client-credentials grant (§4.2) and caches
// one until shortly before it expires. At most one token request is in flight:
// callers that need a token meanwhile wait for that request instead of sending
// their own.
type tokenSource struct {
	url, clientID, clientSecret, scope string
	http                               *http.Client
	now                                func() time.Time
	log                                *slog.Logger

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	inflight  *tokenCall
}

// tokenCall is one token request that several callers may be waiting for.
type tokenCall struct {
	done  chan struct{}
	token string
	err   error
}

// maxRefreshMargin is how long before expiry a token is replaced at most; tokens
// shorter than ten times this are replaced after nine tenths of their life.
const maxRefreshMargin = 5 * time.Minute

// get returns the cached token or waits for a fresh one. The request runs apart from
// the caller's context, so one caller giving up does not fail the others waiting.
func (s *tokenSource) get(ctx context.Context) (string, error) {
	s.mu.Lock()
	if s.token != "" && s.now().Before(s.refreshAt) {
		tok := s.token
		s.mu.Unlock()
		return tok, nil
	}
	call := s.inflight
	if call == nil {
		call = &tokenCall{done: make(chan struct{})}
		s.inflight = call
		go s.refresh(context.WithoutCancel(ctx), call)
	}
	s.mu.Unlock()
	select {
	case <-call.done:
		return call.token, call.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// invalidate drops tok if it is still the cached one, after the Web API refused it.
func (s *tokenSource) invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == tok {
		s.token = ""
	}
}

func (s *tokenSource) refresh(ctx context.Context, call *tokenCall) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := s.now()
	tok, lifetime, err := s.fetch(ctx)
	s.mu.Lock()
	if err == nil {
		s.token = tok
		s.refreshAt = start.Add(lifetime - min(maxRefreshMargin, lifetime/10))
	}
	s.inflight = nil
	s.mu.Unlock()
	call.token, call.err = tok, err
	close(call.done)
	if err == nil {
		s.log.DebugContext(ctx, "dataverse: got access token", slog.Duration("lifetime", lifetime))
	}
}

// tokenAnswer is a successful token response. expires_in is a number from the v2.0
// endpoint; older endpoints sent a string, so both are read.
type tokenAnswer struct {
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
	AccessToken string          `json:"access_token"`
}

// tokenFailure is Entra ID's error answer.
type tokenFailure struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// fetch sends one token request.
func (s *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.clientID},
		"client_secret": {s.clientSecret},
		"scope":         {s.scope},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("get token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("get token: %w", &transportError{err})
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, fmt.Errorf("get token: %w", &transportError{err})
	}
	if resp.StatusCode != http.StatusOK {
		ae := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), s.now())}
		var f tokenFailure
		if json.Unmarshal(body, &f) == nil && f.Error != "" {
			ae.Code, ae.Message = f.Error, f.Description
		} else {
			ae.Message = snippet(body)
		}
		return "", 0, fmt.Errorf("get token: %w", ae)
	}
	var a tokenAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.AccessToken == "" {
		return "", 0, fmt.Errorf("get token: answer without access_token: %s", snippet(body))
	}
	if a.TokenType != "" && !strings.EqualFold(a.TokenType, "Bearer") {
		return "", 0, fmt.Errorf("get token: token_type %q, want Bearer", a.TokenType)
	}
	secs, err := strconv.ParseInt(strings.Trim(string(a.ExpiresIn), `"`), 10, 64)
	if err != nil || secs < 0 {
		return "", 0, fmt.Errorf("get token: bad expires_in %s", a.ExpiresIn)
	}
	return a.AccessToken, time.Duration(secs) * time.Second, nil
}

// snippet shows the start of a body that is not the expected JSON, for error
// messages.
func snippet(b []byte) string {
	const n = 200
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
