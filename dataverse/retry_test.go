package dataverse

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scripted is a fake Dataverse whose Web API answers come from a script, one per
// request (the last one repeats); its token endpoint always succeeds.
type scripted struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter, r *http.Request)
	calls   int
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"token_type":"Bearer","expires_in":3599,"access_token":"t"}`))
		return
	}
	s.mu.Lock()
	i := min(s.calls, len(s.answers)-1)
	s.calls++
	s.mu.Unlock()
	s.answers[i](w, r)
}

func (s *scripted) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func status(code int, retryAfter, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func ok(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"UserId":"u","BusinessUnitId":"b","OrganizationId":"o"}`))
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

const throttled = `{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}`

func scriptedClient(t *testing.T, maxRetries int, answers ...func(http.ResponseWriter, *http.Request)) (*Client, *scripted, *fakeClock) {
	t.Helper()
	s := &scripted{answers: answers}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	clk := newFakeClock()
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token", ClientID: "c", ClientSecret: "s",
		Now: clk.Now, Sleep: clk.Sleep, MaxRetries: maxRetries, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c, s, clk
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		maxRetries int
		answers    []func(http.ResponseWriter, *http.Request)
		wantCalls  int
		wantErr    error // nil: success
		// checkSleeps sees the waits between attempts.
		checkSleeps func(t *testing.T, sleeps []time.Duration)
	}{
		{
			name:    "429 waits Retry-After, never less",
			answers: []func(http.ResponseWriter, *http.Request){status(429, "7", throttled), ok}, wantCalls: 2,
			checkSleeps: func(t *testing.T, s []time.Duration) {
				if len(s) != 1 || s[0] < 7*time.Second || s[0] > 7700*time.Millisecond {
					t.Errorf("sleeps %v, want one between 7s and 7.7s", s)
				}
			},
		},
		{
			name:    "429 with a decimal Retry-After",
			answers: []func(http.ResponseWriter, *http.Request){status(429, "0.5", throttled), ok}, wantCalls: 2,
			checkSleeps: func(t *testing.T, s []time.Duration) {
				if len(s) != 1 || s[0] < 500*time.Millisecond {
					t.Errorf("sleeps %v", s)
				}
			},
		},
		{
			name:    "429 without Retry-After backs off",
			answers: []func(http.ResponseWriter, *http.Request){status(429, "", throttled), ok}, wantCalls: 2,
			checkSleeps: func(t *testing.T, s []time.Duration) {
				if len(s) != 1 || s[0] < 500*time.Millisecond || s[0] > time.Second {
					t.Errorf("sleeps %v, want one backoff of 0.5–1s", s)
				}
			},
		},
		{
			name:       "still throttled after the retries",
			maxRetries: 2,
			answers:    []func(http.ResponseWriter, *http.Request){status(429, "3", throttled)}, wantCalls: 3, wantErr: ErrThrottled,
			checkSleeps: func(t *testing.T, s []time.Duration) {
				if len(s) != 2 || s[0] < 3*time.Second || s[1] < 3*time.Second {
					t.Errorf("sleeps %v", s)
				}
			},
		},
		{
			name:    "5xx backs off exponentially with jitter",
			answers: []func(http.ResponseWriter, *http.Request){status(503, "", ""), status(502, "", ""), status(500, "", `{"error":{"code":"0x80040216","message":"An unexpected error occurred."}}`), status(504, "", ""), ok}, wantCalls: 5,
			checkSleeps: func(t *testing.T, s []time.Duration) {
				if len(s) != 4 {
					t.Fatalf("sleeps %v", s)
				}
				for i, d := range s {
					hi := time.Second << i
					if d < hi/2 || d > hi {
						t.Errorf("sleep %d = %v, want between %v and %v", i, d, hi/2, hi)
					}
				}
			},
		},
		{
			name:    "503 honours a longer Retry-After",
			answers: []func(http.ResponseWriter, *http.Request){status(503, "30", ""), ok}, wantCalls: 2,
			checkSleeps: func(t *testing.T, s []time.Duration) {
				if len(s) != 1 || s[0] != 30*time.Second {
					t.Errorf("sleeps %v, want [30s]", s)
				}
			},
		},
		{name: "408 is retried", answers: []func(http.ResponseWriter, *http.Request){status(408, "", ""), ok}, wantCalls: 2},
		{name: "a dropped connection is retried", answers: []func(http.ResponseWriter, *http.Request){hangUp, hangUp, ok}, wantCalls: 3},
		{
			name: "a body cut short is retried",
			answers: []func(http.ResponseWriter, *http.Request){func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Length", "100")
				_, _ = w.Write([]byte(`{"UserId":`))
			}, ok}, wantCalls: 2,
		},
		{name: "400 fails at once", answers: []func(http.ResponseWriter, *http.Request){status(400, "", `{"error":{"code":"0x80060888","message":"bad"}}`), ok}, wantCalls: 1, wantErr: errors.New("400")},
		{name: "403 fails at once", answers: []func(http.ResponseWriter, *http.Request){status(403, "", ""), ok}, wantCalls: 1, wantErr: errors.New("403")},
		{name: "501 fails at once", answers: []func(http.ResponseWriter, *http.Request){status(501, "", ""), ok}, wantCalls: 1, wantErr: errors.New("501")},
		{name: "retries can be turned off", maxRetries: -1, answers: []func(http.ResponseWriter, *http.Request){status(503, "", ""), ok}, wantCalls: 1, wantErr: errors.New("503")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, s, clk := scriptedClient(t, tt.maxRetries, tt.answers...)
			_, err := c.WhoAmI(t.Context())
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("err = %v", err)
			case tt.wantErr != nil && err == nil:
				t.Fatal("no error")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error()):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if s.Calls() != tt.wantCalls {
				t.Errorf("%d calls, want %d", s.Calls(), tt.wantCalls)
			}
			if tt.checkSleeps != nil {
				tt.checkSleeps(t, clk.Sleeps())
			}
		})
	}
}

func TestFailedAnswerKeepsDataverseCodeAndMessage(t *testing.T) {
	t.Parallel()
	c, _, _ := scriptedClient(t, 0, status(429, "12", throttled))
	c.retry.max = 0
	_, err := c.WhoAmI(t.Context())
	ae := wantAPIError(t, err, 429, "0x80072322")
	if ae.RetryAfter != 12*time.Second || !strings.HasPrefix(ae.Message, "Number of requests exceeded") || !ae.Retryable() {
		t.Errorf("%+v", ae)
	}
	c, _, _ = scriptedClient(t, 0, status(502, "", "<html>Bad Gateway</html>"))
	c.retry.max = 0
	_, err = c.WhoAmI(t.Context())
	if ae := wantAPIError(t, err, 502, ""); ae.Message != "<html>Bad Gateway</html>" {
		t.Errorf("non-JSON body: %+v", ae)
	}
}

func TestThrottleHoldsBackOtherRequests(t *testing.T) {
	t.Parallel()
	c, _, clk := scriptedClient(t, 0, status(429, "20", throttled), ok)
	c.retry.max = 0
	if _, err := c.WhoAmI(t.Context()); !errors.Is(err, ErrThrottled) {
		t.Fatalf("err = %v", err)
	}
	// The 429 was final for that call, but it still closes the gate for the others:
	// they wait out the 20 seconds before sending anything.
	if _, err := c.WhoAmI(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := clk.Sleeps(); len(s) != 1 || s[0] != 20*time.Second {
		t.Errorf("sleeps %v, want [20s] before the next request", s)
	}
}

func TestRetryStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	s := &scripted{answers: []func(http.ResponseWriter, *http.Request){status(503, "", "")}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(t.Context())
	var sleeps atomic.Int64
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token", ClientID: "c", ClientSecret: "s",
		Sleep: func(ctx context.Context, d time.Duration) error {
			if sleeps.Add(1) == 2 {
				cancel()
			}
			return sleepContext(ctx, time.Millisecond)
		}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.WhoAmI(ctx)
	if !errors.Is(err, context.Canceled) || s.Calls() != 2 {
		t.Errorf("err = %v after %d calls, want context.Canceled after 2", err, s.Calls())
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		h    string
		want time.Duration
	}{
		{"", 0},
		{"5", 5 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"1.5", 1500 * time.Millisecond},
		{"0", 0},
		{"-3", 0},
		{"Sun, 29 Nov 2026 07:00:30 GMT", 30 * time.Second},
		{"Sun, 29 Nov 2026 06:00:00 GMT", 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.h, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestBackoffIsCapped(t *testing.T) {
	t.Parallel()
	r := retrier{max: 100, min: time.Second, cap: 10 * time.Second}
	for attempt := range 40 {
		d := r.backoff(attempt)
		if d < 500*time.Millisecond || d > 10*time.Second {
			t.Fatalf("backoff(%d) = %v", attempt, d)
		}
	}
	if _, again := r.delay(&net.OpError{Op: "dial", Err: errors.New("refused")}, 0); again {
		t.Error("a bare error that is neither an answer nor a transport failure was retried")
	}
	if _, again := r.delay(&transportError{errors.New("reset")}, 100); again {
		t.Error("retried past max")
	}
}
