package engine

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"crmsync/dataverse"
	"crmsync/logctx"
	"crmsync/queue"
	"crmsync/store"
)

// Changes made in the eMS travel to the CRM as events of their own: stored in the
// inbox (source "ems") and handled by the same workers, partitions, retries, dead
// letters and replay as the CRM's webhooks. A change the connector wrote to the CRM
// comes back as a webhook and is applied to the subscriber it came from, where it
// changes nothing; nothing on the CRM → eMS side writes to the CRM, so no change
// ping-pongs.

// SourceEMS marks inbox events that carry an eMS-side change to the CRM.
const SourceEMS = "ems"

// Message and entity of eMS-side subscriber changes, as the step registry sees them.
const (
	MessageSubscriberChanged = "SubscriberChanged"
	EntitySubscriber         = "subscriber"
)

// OutboundStore is what the eMS → CRM side needs from the store.
type OutboundStore interface {
	RecipientStore
	Subscriber(ctx context.Context, tenant, id string) (*store.Subscriber, error)
	ConnectionForWebhook(ctx context.Context, id string) (*store.Connection, error)
	AddInboxEvents(ctx context.Context, evs []*store.InboxEvent) ([]bool, error)
}

// Outbox queues eMS-side subscriber changes for the CRM.
type Outbox struct {
	Store     OutboundStore
	Publisher interface {
		Publish(ctx context.Context, entries ...queue.Entry) error
	}
	Now func() time.Time
	// Logger hears when a publish fails (the recovery sweep publishes the events
	// later); default slog.Default().
	Logger *slog.Logger
}

// SubscribersChanged queues the given subscribers of a group for the CRM, when the
// group is CRM-synced. The events are stored before this returns; a failed publish
// is made good by the recovery sweep.
func (o *Outbox) SubscribersChanged(ctx context.Context, tenant, groupID string, ids []string) error {
	return o.queue(ctx, tenant, groupID, MessageSubscriberChanged, EntitySubscriber, ids)
}

// queue stores one eMS-side event per record id (message on entity) of a group
// that is CRM-synced with a connection that writes to the CRM, and publishes them.
func (o *Outbox) queue(ctx context.Context, tenant, groupID, message, entity string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	g, err := o.Store.Group(ctx, tenant, groupID)
	if err != nil {
		return err
	}
	if !g.CRMSync || g.ConnectionID == "" {
		return nil
	}
	conn, err := o.Store.ConnectionForWebhook(ctx, g.ConnectionID)
	if err != nil {
		return err
	}
	if conn.ClientID == "" || len(conn.ClientSecret) == 0 || !conn.Bidirectional {
		return nil // this connection only receives from the CRM
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	// The events of one change are correlated with the work it was made in (an
	// event being handled, a request that put its id in ctx), else with the
	// change's first event.
	var corr string
	if v, ok := logctx.Lookup(ctx, logctx.Correlation); ok {
		corr = v.String()
	}
	evs := make([]*store.InboxEvent, len(ids))
	entries := make([]queue.Entry, len(ids))
	for i, id := range ids {
		evID := "ems-" + uuid.Must(uuid.NewV7()).String()
		corr = cmp.Or(corr, evID)
		evs[i] = &store.InboxEvent{
			ID: evID, Tenant: tenant, ConnectionID: g.ConnectionID, Source: SourceEMS,
			Message: message, Entity: entity, RecordID: id, Stage: dataverse.StagePostOperation,
			CorrelationID: corr, Body: "{}", ReceivedAt: now().UTC(),
		}
		entries[i] = queue.Entry{EventID: evs[i].ID, Key: evs[i].PartitionKey()}
	}
	if _, err := o.Store.AddInboxEvents(ctx, evs); err != nil {
		return err
	}
	if err := o.Publisher.Publish(ctx, entries...); err != nil {
		cmp.Or(o.Logger, slog.Default()).WarnContext(ctx, "eMS changes stored but not published; the recovery sweep will publish them",
			slog.Int("count", len(entries)), slog.String("error", err.Error()))
	}
	return nil
}

// subscriberToCRM is the step that brings subscribers changed in the eMS to the
// CRM, many events at once (OutboxWriter).
func subscriberToCRM(st OutboundStore, clients *CRMClients, now func() time.Time) *OutboxWriter {
	return &OutboxWriter{Store: st, Clients: clients, Now: now}
}

// crmError marks Dataverse refusals that retrying cannot fix as permanent.
func crmError(err error) error {
	if err == nil {
		return nil
	}
	var api *dataverse.APIError
	if errors.As(err, &api) && !api.Retryable() {
		return Permanent(err)
	}
	return err
}

func entitySet(rt store.RecipientType) string { return tableSet(rt.Entity()) }
