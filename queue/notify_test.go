package queue_test

import (
	"context"
	"testing"
	"time"

	"crmsync/queue"
	"crmsync/queue/queuetest"
)

func TestNotifierReachesSubscribersOfTheTenantOnly(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	n := queue.NewNotifier(r.Client, keys)
	ctx, cancel := context.WithCancel(context.Background())
	acme, err := n.Subscribe(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	globex, err := n.Subscribe(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.EventFinished(ctx, "acme", "e1"); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-acme:
		if id != "e1" {
			t.Errorf("acme got %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notice")
	}
	select {
	case id := <-globex:
		t.Errorf("another tenant got %q", id)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case _, ok := <-acme:
		if ok {
			t.Error("channel still open after the context ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed")
	}
}
