package queue_test

import (
	"context"
	"testing"
	"time"

	"crmsync/queue"
	"crmsync/queue/queuetest"
)

func TestStreamPending(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	ctx := context.Background()
	s := queue.NewEventStream(r.Client, keys, 4)

	// Before the group exists (a fresh Redis, or one that lost its data) nothing is pending.
	if n, err := s.Pending(ctx); err != nil || n != 0 {
		t.Fatalf("Pending without a group = %d, %v; want 0", n, err)
	}
	if err := s.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, queue.Entry{EventID: "e1", Key: "rec-a"}, queue.Entry{EventID: "e2", Key: "rec-b"}, queue.Entry{EventID: "e3", Key: "rec-c"}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Pending(ctx); err != nil || n != 0 {
		t.Errorf("Pending before any read = %d, %v; want 0", n, err)
	}
	got, err := s.Read(ctx, "a", all(s), 10, 100*time.Millisecond)
	if err != nil || len(got) != 3 {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if n, err := s.Pending(ctx); err != nil || n != 3 {
		t.Errorf("Pending after the read = %d, %v; want 3", n, err)
	}
	if err := s.Ack(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Pending(ctx); err != nil || n != 2 {
		t.Errorf("Pending after one ack = %d, %v; want 2", n, err)
	}
}
