package queue_test

import (
	"context"
	"testing"
	"time"

	"crmsync/queue"
	"crmsync/queue/queuetest"
)

func TestJobLeaseFencingTokensGrow(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	ctx := context.Background()
	jobs := queue.NewJobs(r.Client, keys, 200*time.Millisecond)

	t1, ok, err := jobs.Acquire(ctx, "list:a", "one")
	if err != nil || !ok || t1 <= 0 {
		t.Fatalf("first Acquire = %d, %v, %v", t1, ok, err)
	}
	if _, ok, err := jobs.Acquire(ctx, "list:a", "two"); err != nil || ok {
		t.Fatalf("Acquire of a held job = %v, %v; want refused", ok, err)
	}
	if _, ok, err := jobs.Acquire(ctx, "list:b", "two"); err != nil || !ok {
		t.Fatalf("another job is free: %v, %v", ok, err)
	}
	if ok, err := jobs.Renew(ctx, "list:a", "one", t1); err != nil || !ok {
		t.Fatalf("Renew by the holder = %v, %v", ok, err)
	}
	if ok, err := jobs.Renew(ctx, "list:a", "two", t1); err != nil || ok {
		t.Fatalf("Renew by another owner = %v, %v; want false", ok, err)
	}

	// "one" pauses past its lease; "two" takes over with a larger token, and "one"
	// can neither renew nor release the lease it lost.
	time.Sleep(300 * time.Millisecond)
	t2, ok, err := jobs.Acquire(ctx, "list:a", "two")
	if err != nil || !ok || t2 <= t1 {
		t.Fatalf("takeover Acquire = %d, %v, %v; want a token above %d", t2, ok, err, t1)
	}
	if ok, err := jobs.Renew(ctx, "list:a", "one", t1); err != nil || ok {
		t.Fatalf("stale Renew = %v, %v; want false", ok, err)
	}
	if err := jobs.Release(ctx, "list:a", "one", t1); err != nil {
		t.Fatal(err)
	}
	if ok, err := jobs.Renew(ctx, "list:a", "two", t2); err != nil || !ok {
		t.Fatalf("a stale Release must not free the new holder's lease: %v, %v", ok, err)
	}
	if err := jobs.Release(ctx, "list:a", "two", t2); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := jobs.Acquire(ctx, "list:a", "three"); err != nil || !ok {
		t.Fatalf("Acquire after Release = %v, %v", ok, err)
	}
}
