package queue

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Notifier tells every instance what became of events, over Redis pub/sub, so a
// GraphQL subscription on any instance sees the outcomes of events applied on any
// other. Notifications are a live view only: one missed while Redis was away is
// still in the store (syncEvents).
type Notifier struct {
	rdb  redis.UniversalClient
	keys Keys
}

// NewNotifier returns the notifier under keys.
func NewNotifier(rdb redis.UniversalClient, keys Keys) *Notifier {
	return &Notifier{rdb: rdb, keys: keys}
}

// EventFinished announces that a tenant's event has a new outcome.
func (n *Notifier) EventFinished(ctx context.Context, tenant, eventID string) error {
	if err := n.rdb.Publish(ctx, n.keys.EventNotices(tenant), eventID).Err(); err != nil {
		return fmt.Errorf("announce event: %w", err)
	}
	return nil
}

// Subscribe delivers the ids of the tenant's events as their outcomes are
// announced, until ctx ends; the channel is closed then. It returns once the
// subscription is in place, so no announcement after it is missed.
func (n *Notifier) Subscribe(ctx context.Context, tenant string) (<-chan string, error) {
	sub := n.rdb.Subscribe(ctx, n.keys.EventNotices(tenant))
	if _, err := sub.Receive(ctx); err != nil {
		_ = sub.Close()
		return nil, fmt.Errorf("subscribe to events: %w", err)
	}
	out := make(chan string, 64)
	go func() {
		defer close(out)
		defer sub.Close()
		msgs := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- m.Payload:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
