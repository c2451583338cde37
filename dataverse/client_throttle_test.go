package dataverse

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crmsync/dataverse/emulator"
)

// arrival is one Web API request as the server saw it.
type arrival struct {
	at         time.Time
	status     int // 0: the connection was cut
	retryAfter time.Duration
	code       string
}

// recorder sits in front of an emulator and logs every Web API request with the
// emulator's clock.
type recorder struct {
	e     *emulator.Emulator
	clock func() time.Time
	mu    sync.Mutex
	log   []arrival
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		rec.e.ServeHTTP(w, r)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	at := rec.clock()
	defer func() {
		a := arrival{at: at, status: sw.status}
		if s := sw.Header().Get("Retry-After"); s != "" {
			n, _ := time.ParseDuration(s + "s")
			a.retryAfter = n
		}
		a.code = sw.code
		rec.mu.Lock()
		rec.log = append(rec.log, a)
		rec.mu.Unlock()
	}()
	rec.e.ServeHTTP(sw, r)
}

func (rec *recorder) arrivals() []arrival {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]arrival(nil), rec.log...)
}

// statusWriter notes the status and Dataverse error code of an answer and passes
// hijacking through, so the emulator can cut connections.
type statusWriter struct {
	http.ResponseWriter
	status int
	code   string
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.status >= 400 && s.code == "" {
		var e struct{ Error struct{ Code string } }
		if json.Unmarshal(p, &e) == nil {
			s.code = e.Error.Code
		}
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return s.ResponseWriter.(http.Hijacker).Hijack()
}

// recordedSetup is setup with a recorder between client and emulator.
func recordedSetup(t *testing.T, ecfg emulator.Config, mod func(*Config)) (*Client, *recorder, *fakeClock, *emulator.Emulator) {
	t.Helper()
	clk := newFakeClock()
	ecfg.Now, ecfg.Logger = clk.Now, testLogger(t)
	e := emulator.New(ecfg)
	t.Cleanup(func() { _ = e.Close() })
	rec := &recorder{e: e, clock: clk.Now}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	cfg := Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret,
		Now: clk.Now, Sleep: clk.Sleep, Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec, clk, e
}

// createAll creates n contacts with distinct addresses from workers goroutines.
func createAll(t *testing.T, c *Client, n, workers int) {
	t.Helper()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if _, err := c.Create(t.Context(), "contacts", map[string]any{"lastname": "Burst", "emailaddress1": fmt.Sprintf("p%04d@example.de", i)}); err != nil {
					t.Errorf("create %d: %v", i, err)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

// addresses reads every contact's e-mail address and fails on a duplicate.
func addresses(t *testing.T, c *Client) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	rows := c.Query(t.Context(), "contacts", Query{Select: []string{"emailaddress1"}, PageSize: 100})
	for rows.Next(t.Context()) {
		s, _ := rows.Row().String("emailaddress1")
		if seen[s] {
			t.Errorf("%s exists twice", s)
		}
		seen[s] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return seen
}

func TestThrottledBurstLosesNothingAndWaitsForRetryAfter(t *testing.T) {
	t.Parallel()
	c, rec, _, _ := recordedSetup(t, emulator.Config{LimitRequests: 10}, func(c *Config) { c.MaxRetries = 20 })
	const n = 40
	createAll(t, c, n, n)
	if got := len(addresses(t, c)); got != n {
		t.Errorf("%d contacts, want %d", got, n)
	}
	log := rec.arrivals()
	throttled := 0
	for i, a := range log {
		if a.status != http.StatusTooManyRequests {
			continue
		}
		throttled++
		if a.code != "0x80072322" || a.retryAfter < time.Second {
			t.Errorf("429 with code %q and Retry-After %v", a.code, a.retryAfter)
		}
		// Requests already on their way when the 429 was sent arrive at the same
		// instant (the fake clock moves only when someone waits); nothing may
		// arrive after it and before Retry-After has passed.
		for _, later := range log[i+1:] {
			if later.at.After(a.at) && later.at.Before(a.at.Add(a.retryAfter)) {
				t.Fatalf("a request arrived %v after a 429 that said to wait %v", later.at.Sub(a.at), a.retryAfter)
			}
		}
	}
	if throttled == 0 {
		t.Fatalf("the burst was never throttled: %d requests", len(log))
	}
	t.Logf("%d requests, %d throttled", len(log), throttled)
}

func TestFaultyServerGetsEveryCreateExactlyOnce(t *testing.T) {
	t.Parallel()
	c, rec, _, _ := recordedSetup(t, emulator.Config{FaultRate: 0.3, Rand: rand.NewPCG(3, 14)}, func(c *Config) { c.MaxRetries = 30 })
	const n = 500
	createAll(t, c, n, 16)
	got := addresses(t, c)
	for i := range n {
		if !got[fmt.Sprintf("p%04d@example.de", i)] {
			t.Errorf("contact %d missing", i)
		}
	}
	if len(got) != n {
		t.Errorf("%d contacts, want exactly %d", len(got), n)
	}
	kinds := map[string]int{}
	for _, a := range rec.arrivals() {
		switch {
		case a.status == 0:
			kinds["cut"]++
		case a.status == http.StatusServiceUnavailable:
			kinds["503"]++
		case a.code == "0x80040237":
			kinds["duplicate after a lost answer"]++
		}
	}
	for _, k := range []string{"cut", "503", "duplicate after a lost answer"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among %v: the test did not exercise it", k, kinds)
		}
	}
	t.Logf("faults: %v", kinds)
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("starts at four and queues the rest", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(52)
		var epochs []uint64
		for range 4 {
			ep, err := l.acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			epochs = append(epochs, ep)
		}
		got := make(chan struct{})
		go func() {
			if _, err := l.acquire(ctx); err == nil {
				close(got)
			}
		}()
		select {
		case <-got:
			t.Fatal("a fifth request got a slot")
		case <-time.After(20 * time.Millisecond):
		}
		l.release(epochs[0], outcomeAnswered)
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("the freed slot was not handed on")
		}
	})
	t.Run("grows by one per round, up to the ceiling", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(6)
		for range 100 {
			ep, _ := l.acquire(ctx)
			l.release(ep, outcomeAnswered)
		}
		if got := l.current(); got != 6 {
			t.Errorf("limit %d after 100 successes, want the ceiling 6", got)
		}
		// +1/limit per answer: a little under one more slot per round of 4.
		l = newLimiter(52)
		for i := range 5 {
			ep, _ := l.acquire(ctx)
			l.release(ep, outcomeAnswered)
			if want := []int{4, 4, 4, 4, 5}[i]; l.current() != want {
				t.Errorf("limit %d after %d successes, want %d", l.current(), i+1, want)
			}
		}
	})
	t.Run("a burst of 429s halves once", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(52)
		l.hint(16)
		var eps []uint64
		for range 16 {
			ep, _ := l.acquire(ctx)
			eps = append(eps, ep)
		}
		for _, ep := range eps {
			l.release(ep, outcomeThrottled)
		}
		if got := l.current(); got != 8 {
			t.Errorf("limit %d after 16 simultaneous 429s, want 8", got)
		}
		ep, _ := l.acquire(ctx) // sent after the cut: may cut again
		l.release(ep, outcomeThrottled)
		if got := l.current(); got != 4 {
			t.Errorf("limit %d after a later 429, want 4", got)
		}
		for range 10 {
			ep, _ := l.acquire(ctx)
			l.release(ep, outcomeThrottled)
		}
		if got := l.current(); got != 1 {
			t.Errorf("limit %d, want never below 1", got)
		}
		for range 10 { // 5xx and lost answers neither grow nor cut
			ep, _ := l.acquire(ctx)
			l.release(ep, outcomeNone)
		}
		if got := l.current(); got != 1 {
			t.Errorf("limit %d after failures, want 1", got)
		}
	})
	t.Run("the hint sets and caps", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(52)
		l.hint(100)
		if got := l.current(); got != 52 {
			t.Errorf("hint above MaxConcurrency: %d, want 52", got)
		}
		l.hint(3)
		if got := l.current(); got != 3 {
			t.Errorf("lower hint: %d, want 3", got)
		}
		for range 50 {
			ep, _ := l.acquire(ctx)
			l.release(ep, outcomeAnswered)
		}
		if got := l.current(); got != 3 {
			t.Errorf("grew past the hint: %d", got)
		}
		l.hint(0) // nonsense is ignored
		if got := l.current(); got != 3 {
			t.Errorf("hint 0: %d", got)
		}
	})
	t.Run("a waiter that gives up frees nothing it did not get", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(1)
		ep, _ := l.acquire(ctx)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		if _, err := l.acquire(wctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		l.release(ep, outcomeAnswered)
		ep, err := l.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l.release(ep, outcomeAnswered)
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.inflight != 0 || len(l.waiters) != 0 {
			t.Errorf("inflight %d, waiters %d", l.inflight, len(l.waiters))
		}
	})
}

// hinted answers WhoAmI with an x-ms-dop-hint.
func hinted(hint string, status int, retryAfter string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-ms-dop-hint", hint)
		if status != http.StatusOK {
			status429 := status
			w.Header().Set("Retry-After", retryAfter)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status429)
			_, _ = w.Write([]byte(throttled))
			return
		}
		ok(w, r)
	}
}

func TestServerHintAndThrottlingSetConcurrency(t *testing.T) {
	t.Parallel()
	c, _, _ := scriptedClient(t, 0, hinted("8", 200, ""), hinted("8", 429, "1"), hinted("8", 200, ""))
	if got := c.Concurrency(); got != initialConcurrency {
		t.Errorf("before any answer: %d, want %d", got, initialConcurrency)
	}
	if _, err := c.WhoAmI(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := c.Concurrency(); got != 8 {
		t.Errorf("after x-ms-dop-hint 8: %d", got)
	}
	if _, err := c.WhoAmI(t.Context()); err != nil { // 429, then success
		t.Fatal(err)
	}
	if got := c.Concurrency(); got != 4 {
		t.Errorf("after a 429: %d, want 4", got)
	}
}

func TestDOPHintBoundsRequestsInFlight(t *testing.T) {
	t.Parallel()
	var inflight, most atomic.Int64
	s := &scripted{answers: []func(http.ResponseWriter, *http.Request){func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		inflight.Add(-1)
		hinted("2", 200, "")(w, r)
	}}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token", ClientID: "c", ClientSecret: "s", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(t.Context()); err != nil {
		t.Fatal(err)
	}
	most.Store(0)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := c.WhoAmI(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > 2 {
		t.Errorf("%d requests in flight at once, the server recommended 2", m)
	}
}

// idServer answers creates from a script and notes the contactid of each body.
type idServer struct {
	mu  sync.Mutex
	ids []string
}

func (s *idServer) read(r *http.Request) string {
	var row map[string]any
	_ = json.NewDecoder(r.Body).Decode(&row)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, fmt.Sprint(row["contactid"]))
	return s.ids[len(s.ids)-1]
}

func (s *idServer) created(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("OData-EntityId", "http://x/api/data/v9.2/contacts("+s.read(r)+")")
	w.WriteHeader(http.StatusNoContent)
}

func (s *idServer) lostAnswer(w http.ResponseWriter, r *http.Request) { s.read(r); hangUp(w, r) }

func (s *idServer) unavailable(w http.ResponseWriter, r *http.Request) {
	s.read(r)
	status(503, "", "")(w, r)
}

func (s *idServer) duplicate(w http.ResponseWriter, r *http.Request) {
	s.read(r)
	status(412, "", `{"error":{"code":"0x80040237","message":"Cannot insert duplicate key."}}`)(w, r)
}

func TestCreateIsSafeToRetry(t *testing.T) {
	t.Parallel()
	type answer = func(*idServer) func(http.ResponseWriter, *http.Request)
	created := func(s *idServer) func(http.ResponseWriter, *http.Request) { return s.created }
	lost := func(s *idServer) func(http.ResponseWriter, *http.Request) { return s.lostAnswer }
	unavailable := func(s *idServer) func(http.ResponseWriter, *http.Request) { return s.unavailable }
	duplicate := func(s *idServer) func(http.ResponseWriter, *http.Request) { return s.duplicate }
	tests := []struct {
		name    string
		answers []answer
		wantErr bool
	}{
		{"plain", []answer{created}, false},
		{"answer lost, retry finds the row", []answer{lost, duplicate}, false},
		{"503, retry finds the row", []answer{unavailable, duplicate}, false},
		{"lost twice, then made", []answer{lost, lost, created}, false},
		{"duplicate at the first try is a real conflict", []answer{duplicate}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ids := &idServer{}
			var script []func(http.ResponseWriter, *http.Request)
			for _, a := range tt.answers {
				script = append(script, a(ids))
			}
			c, s, _ := scriptedClient(t, 0, script...)
			id, err := c.Create(t.Context(), "contacts", map[string]any{"lastname": "Once"})
			if tt.wantErr {
				if !errors.Is(err, ErrPreconditionFailed) {
					t.Fatalf("err = %v, want ErrPreconditionFailed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ids.mu.Lock()
			defer ids.mu.Unlock()
			if len(ids.ids) != s.Calls() || !isGUID(id) {
				t.Fatalf("id %q, bodies %v", id, ids.ids)
			}
			for _, sent := range ids.ids {
				if sent != id {
					t.Errorf("attempts sent ids %v, returned %q: every attempt must carry the same id", ids.ids, id)
				}
			}
		})
	}
	// A caller's own id is used as is, and the caller's map is left alone.
	c, _, _ := scriptedClient(t, 0, (&idServer{}).created)
	row := map[string]any{"lastname": "Mine", "contactid": "6d81597f-0f9f-e711-8122-000d3aa2331c"}
	if id, err := c.Create(t.Context(), "contacts", row); err != nil || id != "6d81597f-0f9f-e711-8122-000d3aa2331c" {
		t.Errorf("own id: %q %v", id, err)
	}
	row = map[string]any{"lastname": "Untouched"}
	if _, err := c.Create(t.Context(), "contacts", row); err != nil || len(row) != 1 {
		t.Errorf("the caller's row was changed: %v %v", row, err)
	}
	if _, err := c.Create(t.Context(), "contacts", map[string]any{"contactid": "nope"}); err == nil || !strings.Contains(err.Error(), "invalid id") {
		t.Errorf("bad own id: %v", err)
	}
}

func TestPrimaryKey(t *testing.T) {
	t.Parallel()
	for set, want := range map[string]string{
		"contacts": "contactid", "accounts": "accountid", "leads": "leadid", "lists": "listid", "listmembers": "listmemberid",
		"campaigns": "campaignid", "campaignactivities": "activityid", "campaignresponses": "activityid", "emails": "activityid",
		"cs_subscriptions": "cs_subscriptionid", "systemusers": "systemuserid", "businessunits": "businessunitid",
		"transactioncurrencies": "transactioncurrencyid", "serviceendpoints": "serviceendpointid",
		"sdkmessageprocessingsteps": "sdkmessageprocessingstepid", "sdkmessageprocessingstepimages": "sdkmessageprocessingstepimageid",
		"customeraddresses": "customeraddressid",
	} {
		if got := primaryKey(set); got != want {
			t.Errorf("primaryKey(%q) = %q, want %q", set, got, want)
		}
	}
}

// Interface checks for the test helpers.
var (
	_ http.Hijacker = (*statusWriter)(nil)
	_ io.Writer     = (*statusWriter)(nil)
)
