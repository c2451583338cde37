package dataverse

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// observed records what a client tells its Observer.
type observed struct {
	mu       sync.Mutex
	statuses []int
	waited   time.Duration
}

func (o *observed) WebAPIRequest(status int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.statuses = append(o.statuses, status)
}

func (o *observed) WebAPIRetryWait(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.waited += d
}

func TestObserverSeesEveryAttemptAndThrottlingWaits(t *testing.T) {
	t.Parallel()
	s := &scripted{answers: []func(http.ResponseWriter, *http.Request){
		status(429, "7", throttled), status(503, "", `{}`), ok,
	}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	clk := newFakeClock()
	obs := &observed{}
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token", ClientID: "c", ClientSecret: "s",
		Now: clk.Now, Sleep: clk.Sleep, Logger: testLogger(t), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(t.Context()); err != nil {
		t.Fatal(err)
	}

	obs.mu.Lock()
	defer obs.mu.Unlock()
	// The token request is not a Web API request.
	if want := []int{429, 503, 200}; !slices.Equal(obs.statuses, want) {
		t.Errorf("statuses = %v, want %v", obs.statuses, want)
	}
	// Only the 429's wait counts, not the backoff after the 503.
	if obs.waited < 7*time.Second || obs.waited > 7700*time.Millisecond {
		t.Errorf("throttling wait = %s, want the Retry-After of 7s (plus at most a tenth); sleeps were %v", obs.waited, clk.Sleeps())
	}
}

func TestObserverSeesNoAnswerAsStatusZero(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&scripted{answers: []func(http.ResponseWriter, *http.Request){hangUp}})
	t.Cleanup(srv.Close)
	obs := &observed{}
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token", ClientID: "c", ClientSecret: "s",
		MaxRetries: -1, Logger: testLogger(t), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(t.Context()); err == nil {
		t.Fatal("WhoAmI succeeded against a server that hangs up")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if want := []int{0}; !slices.Equal(obs.statuses, want) {
		t.Errorf("statuses = %v, want %v", obs.statuses, want)
	}
	if obs.waited != 0 {
		t.Errorf("throttling wait = %s without any 429", obs.waited)
	}
}
