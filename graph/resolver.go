// Package graph serves crmsync's GraphQL API: resolvers over the store, scoped to the
// caller's tenant, with role checks on every root field.
package graph

//go:generate sh -c "cd .. && go tool gqlgen generate"

import (
	"context"
	"log/slog"
	"time"

	"crmsync/dataverse"
	"crmsync/queue"
	"crmsync/store"
)

// Publisher hands events to the engine again (replay).
type Publisher interface {
	Publish(ctx context.Context, entries ...queue.Entry) error
}

// SubscriberChanges takes eMS-side changes to the CRM: of subscribers (changed, or
// deleted, which ends their CRM list memberships), and of the names of groups
// (which name their CRM lists).
type SubscriberChanges interface {
	SubscribersChanged(ctx context.Context, tenant, groupID string, ids []string) error
	GroupRenamed(ctx context.Context, tenant, groupID string) error
	SubscriberDeleted(ctx context.Context, tenant, groupID, subscriberID string) error
}

// ListSync starts list syncs: engine.Lists is the one in use.
type ListSync interface {
	// SyncNow queues a run of a list — linking a list not synchronised yet, unless
	// the run is dry — and returns the pending run.
	SyncNow(ctx context.Context, tenant, listID string, dryRun bool) (*store.SyncRun, error)
}

// ConnectionTester checks a connection's access to the CRM: engine.CRMClients is the
// one in use.
type ConnectionTester interface {
	Test(ctx context.Context, conn *store.Connection) (dataverse.Identity, time.Duration, error)
}

// Notices delivers the ids of a tenant's events as their outcomes are recorded:
// queue.Notifier is the one in use.
type Notices interface {
	Subscribe(ctx context.Context, tenant string) (<-chan string, error)
}

// Campaigns creates campaign sends: engine.Campaigns is the one in use.
type Campaigns interface {
	// CreateSend validates a send request and stores the send, SCHEDULED (or
	// DRAFT); bad input is a *store.InvalidError naming the field.
	CreateSend(ctx context.Context, in SendRequest) (*store.CampaignSend, error)
}

// Registrar registers crmsync's webhook and steps in a connection's Dataverse:
// engine.Registrar is the one in use.
type Registrar interface {
	RegisterWebhooks(ctx context.Context, conn *store.Connection, dryRun bool) (*store.WebhookRegistration, error)
}

// Budget reads the fleet-wide counts of each connection's Web API requests:
// queue.Budget is the one in use.
type Budget interface {
	// Windows answers each connection's use of the current window.
	Windows(ctx context.Context, connectionIDs []string) (map[string]queue.BudgetUse, error)
	// Minutes answers a connection's use per minute since a time, oldest first.
	Minutes(ctx context.Context, connectionID string, since time.Time) ([]queue.BudgetMinute, error)
}

// SendRequest is a campaign send as the API asks for it.
type SendRequest = store.SendRequest

// DefaultSendPollInterval is how often the campaignSendProgress subscription reads
// its send.
const DefaultSendPollInterval = 500 * time.Millisecond

// Resolver holds what resolvers need; it is wiring only.
type Resolver struct {
	Store     *store.Store
	Publisher Publisher
	Changes   SubscriberChanges
	Lists     ListSync
	Tester    ConnectionTester
	Notices   Notices
	Campaigns Campaigns
	Registrar Registrar
	Budget    Budget
	// SendPollInterval is how often campaignSendProgress reads its send; 0 is
	// DefaultSendPollInterval.
	SendPollInterval time.Duration
	PublicURL        string
	Logger           *slog.Logger
}
