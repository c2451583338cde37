package emulator

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRequestLimitAnswers429WithRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{LimitRequests: 3})
	for i := range 3 {
		a := b.call(t, http.MethodGet, "WhoAmI", nil)
		if a.status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, a.status, a.raw)
		}
		if got, want := a.header.Get("x-ms-ratelimit-burst-remaining-xrm-requests"), []string{"2", "1", "0"}[i]; got != want {
			t.Errorf("request %d: burst remaining %q, want %q", i, got, want)
		}
		if a.header.Get("x-ms-dop-hint") != "4" {
			t.Errorf("x-ms-dop-hint %q, want 4", a.header.Get("x-ms-dop-hint"))
		}
		b.clock.Add(10 * time.Second)
	}
	// The three requests came at 0 s, 10 s and 20 s; at 30 s the fourth has to wait
	// until the first leaves the window at 300 s.
	a := b.call(t, http.MethodGet, "WhoAmI", nil)
	a.wantError(t, http.StatusTooManyRequests, "0x80072322", "Number of requests exceeded the limit of 3 over time window of 300 seconds.")
	if ra := a.header.Get("Retry-After"); ra != "270" {
		t.Errorf("Retry-After %q, want 270", ra)
	}
	if a.header.Get("x-ms-dop-hint") != "4" {
		t.Error("a 429 lacks x-ms-dop-hint")
	}
	// Refused requests do not count, and the token endpoint is not limited.
	b.clock.Add(268*time.Second + 500*time.Millisecond)
	b.getToken(t, DefaultClientID, DefaultClientSecret)
	a = b.call(t, http.MethodGet, "WhoAmI", nil)
	if ra := a.header.Get("Retry-After"); a.status != http.StatusTooManyRequests || ra != "2" {
		t.Errorf("1.5 s before the window frees: %d, Retry-After %q, want 429 and 2 (rounded up)", a.status, ra)
	}
	// Another user has a window of their own.
	admin := b.getToken(t, DefaultUserClientID, DefaultUserClientSecret)
	if a := b.callAs(t, admin, http.MethodGet, "WhoAmI", nil); a.status != http.StatusOK {
		t.Errorf("the admin was throttled with the application user: %d", a.status)
	}
	b.clock.Add(1500 * time.Millisecond)
	if a := b.call(t, http.MethodGet, "WhoAmI", nil); a.status != http.StatusOK {
		t.Errorf("after Retry-After: %d %s", a.status, a.raw)
	}
}

func TestExecutionTimeLimit(t *testing.T) {
	t.Parallel()
	// 1 ms of handling per five minutes, and every request takes at least 2 ms.
	b := setup(t, Config{LimitExecSeconds: 0.001, Latency: 2 * time.Millisecond})
	if a := b.call(t, http.MethodGet, "WhoAmI", nil); a.status != http.StatusOK {
		t.Fatalf("first request: %d", a.status)
	}
	b.clock.Add(time.Minute)
	a := b.call(t, http.MethodGet, "WhoAmI", nil)
	a.wantError(t, http.StatusTooManyRequests, "0x80072321",
		"Combined execution time of incoming requests exceeded limit of 1 milliseconds over time window of 300 seconds. Decrease number of concurrent requests")
	if ra := a.header.Get("Retry-After"); ra != "240" {
		t.Errorf("Retry-After %q, want 240", ra)
	}
	b.clock.Add(240 * time.Second)
	if a := b.call(t, http.MethodGet, "WhoAmI", nil); a.status != http.StatusOK {
		t.Errorf("after the window: %d %s", a.status, a.raw)
	}
}

func TestExecutionTimeMessageHasDataverseWording(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)
	th := newThrottle(Config{LimitExecSeconds: DefaultLimitExecSeconds})
	if _, err := th.admit("u", now); err != nil {
		t.Fatal(err)
	}
	th.done("u", now, 20*time.Minute)
	_, err := th.admit("u", now.Add(time.Second))
	ae, ok := err.(*apiError)
	if !ok || ae.code != codeLimitExecTime || ae.retryAfter != 299 || !strings.Contains(ae.message, "exceeded limit of 1,200,000 milliseconds over time window of 300 seconds.") {
		t.Errorf("err = %v", err)
	}
}

func TestConcurrencyLimitFailsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{LimitConcurrent: 2, Latency: time.Nanosecond})
	entered, release := make(chan struct{}, 2), make(chan struct{})
	b.e.wait = func(ctx context.Context, _ time.Duration) error {
		entered <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if a := b.call(t, http.MethodGet, "WhoAmI", nil); a.status != http.StatusOK {
				t.Errorf("held request: %d", a.status)
			}
		})
	}
	<-entered
	<-entered
	a := b.call(t, http.MethodGet, "WhoAmI", nil)
	a.wantError(t, http.StatusTooManyRequests, "0x80072326", "Number of concurrent requests exceeded the limit of 2.")
	if ra := a.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	close(release)
	wg.Wait()
	b.e.wait = sleepContext
	if a := b.call(t, http.MethodGet, "WhoAmI", nil); a.status != http.StatusOK {
		t.Errorf("after the others finished: %d", a.status)
	}
}

func TestLimitsCanBeTurnedOff(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{LimitRequests: -1, LimitExecSeconds: -1, LimitConcurrent: -1, DOPHint: -1})
	for range 20 {
		a := b.call(t, http.MethodGet, "WhoAmI", nil)
		if a.status != http.StatusOK {
			t.Fatalf("%d %s", a.status, a.raw)
		}
		for _, h := range []string{"x-ms-dop-hint", "x-ms-ratelimit-burst-remaining-xrm-requests", "x-ms-ratelimit-time-remaining-xrm-requests"} {
			if v := a.header.Get(h); v != "" {
				t.Fatalf("%s: %q, want none", h, v)
			}
		}
	}
}

func TestGroupThousands(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1200000: "1,200,000", 12345678: "12,345,678"} {
		if got := groupThousands(n); got != want {
			t.Errorf("groupThousands(%d) = %q, want %q", n, got, want)
		}
	}
}
