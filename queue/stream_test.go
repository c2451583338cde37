package queue_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"crmsync/queue"
	"crmsync/queue/queuetest"
)

func all(s *queue.Stream) []int {
	out := make([]int, s.Partitions())
	for i := range out {
		out[i] = i
	}
	return out
}

func TestStreamPublishReadAckClaim(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	ctx := context.Background()
	s := queue.NewEventStream(r.Client, keys, 4)
	if err := s.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureGroup(ctx); err != nil {
		t.Fatalf("second EnsureGroup: %v", err)
	}
	// One record's events share a partition, in order.
	entries := []queue.Entry{{EventID: "e1", Key: "rec-a"}, {EventID: "e2", Key: "rec-a"}, {EventID: "e3", Key: "rec-a"}}
	if err := s.Publish(ctx, entries...); err != nil {
		t.Fatal(err)
	}
	part := s.PartitionOf("rec-a")
	got, err := s.Read(ctx, "a", []int{part}, 2, 100*time.Millisecond)
	if err != nil || len(got) != 2 || got[0].EventID != "e1" || got[1].EventID != "e2" || got[0].Partition != part {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if err := s.Ack(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Len(ctx); err != nil || n != 2 {
		t.Errorf("Len = %d, %v; want 2 (one pending, one unread)", n, err)
	}
	// Consumer a "dies" with e2 unacknowledged; b reads the rest, then claims e2.
	rest, err := s.Read(ctx, "b", all(s), 10, 100*time.Millisecond)
	if err != nil || len(rest) != 1 || rest[0].EventID != "e3" {
		t.Fatalf("Read b = %+v, %v", rest, err)
	}
	time.Sleep(20 * time.Millisecond)
	claimed, err := s.Claim(ctx, part, "b", 10*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range claimed {
		ids = append(ids, m.EventID)
	}
	if !slices.Equal(ids, []string{"e2", "e3"}) {
		t.Errorf("claimed %v, want [e2 e3] (b's own idle e3 too)", ids)
	}
	if err := s.Ack(ctx, claimed...); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Len(ctx); err != nil || n != 0 {
		t.Errorf("Len after acks = %d, %v", n, err)
	}
}

func TestPartitionsSpreadKeys(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	s := queue.NewEventStream(r.Client, keys, 16)
	seen := map[int]bool{}
	for i := range 200 {
		p := s.PartitionOf(string(rune('a'+i%26)) + string(rune('A'+i/26)))
		if p < 0 || p >= 16 {
			t.Fatalf("partition %d out of range", p)
		}
		seen[p] = true
	}
	if len(seen) < 12 {
		t.Errorf("200 keys used only %d of 16 partitions", len(seen))
	}
}

func TestReadRecreatesLostGroup(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	ctx := context.Background()
	s := queue.NewEventStream(r.Client, keys, 2)
	// No group yet, as after Redis lost everything.
	if got, err := s.Read(ctx, "a", all(s), 1, 10*time.Millisecond); err != nil || len(got) != 0 {
		t.Fatalf("Read without group = %v, %v", got, err)
	}
	if err := s.Publish(ctx, queue.Entry{EventID: "e1", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(ctx, "a", all(s), 1, 100*time.Millisecond)
	if err != nil || len(got) != 1 {
		t.Fatalf("Read after recreate = %v, %v", got, err)
	}
}

func TestLeases(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	ctx := context.Background()
	l := queue.NewLeases(r.Client, keys, 200*time.Millisecond)
	if ok, err := l.Acquire(ctx, 3, "a"); err != nil || !ok {
		t.Fatalf("a acquires: %v %v", ok, err)
	}
	if ok, _ := l.Acquire(ctx, 3, "b"); ok {
		t.Fatal("b acquired a held lease")
	}
	if ok, _ := l.Renew(ctx, 3, "b"); ok {
		t.Fatal("b renewed a's lease")
	}
	if ok, _ := l.Renew(ctx, 3, "a"); !ok {
		t.Fatal("a could not renew")
	}
	if err := l.Release(ctx, 3, "b"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.Acquire(ctx, 3, "b"); ok {
		t.Fatal("b's release freed a's lease")
	}
	time.Sleep(300 * time.Millisecond) // a stops renewing: the lease expires
	if ok, _ := l.Acquire(ctx, 3, "b"); !ok {
		t.Fatal("b could not take the expired lease")
	}
	if ok, _ := l.Renew(ctx, 3, "a"); ok {
		t.Fatal("a renewed a lease it lost")
	}

	now := time.Now()
	if n, _ := l.Heartbeat(ctx, "a", now); n != 1 {
		t.Errorf("members = %d", n)
	}
	if n, _ := l.Heartbeat(ctx, "b", now); n != 2 {
		t.Errorf("members = %d", n)
	}
	if n, _ := l.Heartbeat(ctx, "b", now.Add(time.Second)); n != 1 {
		t.Errorf("a's old heartbeat still counts: %d", n)
	}
	l.Leave(ctx, "b")
	if n, _ := l.Heartbeat(ctx, "c", now.Add(time.Second)); n != 1 {
		t.Errorf("after leave: %d", n)
	}
}
