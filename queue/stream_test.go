package queue_test

import (
	"context"
	"testing"
	"time"

	"crmsync/queue"
	"crmsync/queue/queuetest"
)

func TestStreamPublishReadAckClaim(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	ctx := context.Background()
	s := queue.NewEventStream(r.Client, keys)
	if err := s.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureGroup(ctx); err != nil {
		t.Fatalf("second EnsureGroup: %v", err)
	}
	if err := s.Publish(ctx, "e1", "e2", "e3"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(ctx, "a", 2, 100*time.Millisecond)
	if err != nil || len(got) != 2 || got[0].EventID != "e1" || got[1].EventID != "e2" {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if err := s.Ack(ctx, got[0].ID); err != nil {
		t.Fatal(err)
	}
	// Consumer a "crashes" with e2 unacknowledged; b reads the rest, then claims e2.
	rest, err := s.Read(ctx, "b", 10, 100*time.Millisecond)
	if err != nil || len(rest) != 1 || rest[0].EventID != "e3" {
		t.Fatalf("Read b = %+v, %v", rest, err)
	}
	time.Sleep(20 * time.Millisecond)
	claimed, err := s.Claim(ctx, "b", 10*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range claimed {
		ids = append(ids, m.EventID)
	}
	if len(ids) != 2 || ids[0] != "e2" || ids[1] != "e3" {
		t.Errorf("claimed %v, want [e2 e3] (b's own idle e3 too)", ids)
	}
	empty, err := s.Read(ctx, "b", 10, 10*time.Millisecond)
	if err != nil || len(empty) != 0 {
		t.Errorf("Read on drained stream = %+v, %v", empty, err)
	}
}

func TestReadRecreatesLostGroup(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	ctx := context.Background()
	s := queue.NewEventStream(r.Client, keys)
	// No group yet, as after Redis lost everything.
	if got, err := s.Read(ctx, "a", 1, 10*time.Millisecond); err != nil || len(got) != 0 {
		t.Fatalf("Read without group = %v, %v", got, err)
	}
	if err := s.Publish(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(ctx, "a", 1, 100*time.Millisecond)
	if err != nil || len(got) != 1 {
		t.Fatalf("Read after recreate = %v, %v", got, err)
	}
}
