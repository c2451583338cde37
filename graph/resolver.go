// Package graph serves crmsync's GraphQL API: resolvers over the store, scoped to the
// caller's tenant, with role checks on every root field.
package graph

//go:generate sh -c "cd .. && go tool gqlgen generate"

import (
	"context"
	"log/slog"

	"crmsync/queue"
	"crmsync/store"
)

// Publisher hands events to the engine again (replay).
type Publisher interface {
	Publish(ctx context.Context, entries ...queue.Entry) error
}

// SubscriberChanges takes eMS-side subscriber changes to the CRM.
type SubscriberChanges interface {
	SubscribersChanged(ctx context.Context, tenant, groupID string, ids []string) error
}

// Resolver holds what resolvers need; it is wiring only.
type Resolver struct {
	Store     *store.Store
	Publisher Publisher
	Changes   SubscriberChanges
	PublicURL string
	Logger    *slog.Logger
}
