package queue_test

import (
	"context"
	"testing"
	"time"

	"crmsync/queue"
	"crmsync/queue/queuetest"
)

// TestRateLimiterAllowsTheLimitPerWindowAndKey: the limit holds per key, the event
// beyond it says how long to wait, and a new window allows again.
func TestRateLimiterAllowsTheLimitPerWindowAndKey(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	ctx := context.Background()
	l := queue.NewRateLimiter(r.Client, keys, 3, 300*time.Millisecond)
	for i := range 3 {
		if ok, _, err := l.Allow(ctx, "form:a|1.2.3.4"); err != nil || !ok {
			t.Fatalf("event %d: ok %v, %v", i+1, ok, err)
		}
	}
	ok, wait, err := l.Allow(ctx, "form:a|1.2.3.4")
	if err != nil || ok {
		t.Fatalf("fourth event: ok %v, %v; want refused", ok, err)
	}
	if wait <= 0 || wait > 300*time.Millisecond {
		t.Errorf("retry after %v, want within the window", wait)
	}
	if ok, _, err := l.Allow(ctx, "form:a|5.6.7.8"); err != nil || !ok {
		t.Fatalf("another key: ok %v, %v", ok, err)
	}
	time.Sleep(wait + 50*time.Millisecond)
	if ok, _, err := l.Allow(ctx, "form:a|1.2.3.4"); err != nil || !ok {
		t.Fatalf("next window: ok %v, %v", ok, err)
	}
}
