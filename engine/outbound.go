package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"crmsync/dataverse"
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
}

// SubscribersChanged queues the given subscribers of a group for the CRM, when the
// group is CRM-synced. The events are stored before this returns; a failed publish
// is made good by the recovery sweep.
func (o *Outbox) SubscribersChanged(ctx context.Context, tenant, groupID string, ids []string) error {
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
	evs := make([]*store.InboxEvent, len(ids))
	entries := make([]queue.Entry, len(ids))
	for i, id := range ids {
		evs[i] = &store.InboxEvent{
			ID: "ems-" + uuid.Must(uuid.NewV7()).String(), Tenant: tenant, ConnectionID: g.ConnectionID, Source: SourceEMS,
			Message: MessageSubscriberChanged, Entity: EntitySubscriber, RecordID: id, Stage: dataverse.StagePostOperation,
			Body: "{}", ReceivedAt: now().UTC(),
		}
		entries[i] = queue.Entry{EventID: evs[i].ID, Key: evs[i].PartitionKey()}
	}
	if _, err := o.Store.AddInboxEvents(ctx, evs); err != nil {
		return err
	}
	_ = o.Publisher.Publish(ctx, entries...)
	return nil
}

// subscriberToCRM brings a subscriber changed in the eMS to the CRM: a linked one
// gets its e-mail address written when the eMS changed it last; an unlinked one is
// matched by e-mail address (Contact, then Account, then Lead; qualified leads never;
// a deactivated match reactivated only when the connection says so) or created as
// the connection's recipient type, owned by the connection's owner login, with its
// mapped fields (sent to the CRM once, at creation).
func subscriberToCRM(st OutboundStore, clients *CRMClients, now func() time.Time) StepFunc {
	return func(ctx context.Context, ev *Event) error {
		conn := ev.Connection
		sub, err := st.Subscriber(ctx, conn.Tenant, ev.Context.PrimaryEntityID)
		if errors.Is(err, store.ErrNotFound) {
			return nil // deleted since
		}
		if err != nil {
			return err
		}
		g, err := st.Group(ctx, conn.Tenant, sub.GroupID)
		if err != nil {
			return err
		}
		switch {
		case !g.CRMSync || g.ConnectionID != conn.ID:
			ev.Warn("the group is not CRM-synced with this connection (any more)")
			return nil
		case !conn.Bidirectional:
			ev.Warn("the connection syncs CRM → eMS only")
			return nil
		case sub.DoubleOptInStatus == store.OptInPending:
			ev.Warn("the subscriber has not confirmed the double opt-in yet")
			return nil
		}
		client, err := clients.For(conn)
		if err != nil {
			return Permanent(err)
		}
		if sub.CRMRecord != nil {
			if st := sub.Stamp("email"); st.Side == store.SideEMS {
				err := client.Update(ctx, entitySet(sub.CRMRecord.Entity), sub.CRMRecord.ID, map[string]any{"emailaddress1": sub.Email})
				return crmError(err)
			}
			return nil
		}
		ref, why, err := matchRecord(ctx, client, conn, sub.Email)
		if err != nil {
			return crmError(err)
		}
		if why != "" {
			ev.Warn(why)
		}
		if ref == nil {
			if ref, err = createRecord(ctx, client, conn, sub); err != nil {
				return err
			}
		}
		sub.CRMRecord = ref
		sub.CRMUnlinkedReason = nil
		sub.UpdatedAt = now().UTC()
		return st.SaveSubscriber(ctx, sub)
	}
}

// matchOrder is the order in which an e-mail address is looked for in the CRM.
var matchOrder = []store.RecipientType{store.RecipientContact, store.RecipientAccount, store.RecipientLead}

// matchRecord finds the CRM record for an address; why explains a match passed over.
func matchRecord(ctx context.Context, client *dataverse.Client, conn *store.Connection, email string) (ref *store.CRMRecordRef, why string, err error) {
	for _, rt := range matchOrder {
		pk := rt.Entity() + "id"
		rows := client.Query(ctx, entitySet(rt), dataverse.Query{
			Select: []string{pk, "statecode"}, Filter: "emailaddress1 eq " + dataverse.QuoteString(email), OrderBy: []string{"createdon asc"}, Top: 10,
		})
		for rows.Next(ctx) {
			row := rows.Row()
			id, _ := row.String(pk)
			state, _ := row.Int("statecode")
			switch {
			case rt == store.RecipientLead && state == 1:
				why = "a qualified lead with this address was passed over"
				continue
			case state != 0 && !conn.ReactivateRecords:
				why = fmt.Sprintf("a deactivated %s with this address was not reactivated (the connection does not reactivate records)", rt.Entity())
				continue
			case state != 0:
				status := 1 // the default active status of contact and account, and New for lead
				if err := client.Update(ctx, entitySet(rt), id, map[string]any{"statecode": 0, "statuscode": status}); err != nil {
					return nil, "", err
				}
			}
			return &store.CRMRecordRef{Entity: rt, ID: strings.ToLower(id)}, why, nil
		}
		if err := rows.Err(); err != nil {
			return nil, "", err
		}
	}
	return nil, why, nil
}

// createRecord creates a record of the connection's recipient type for a subscriber.
func createRecord(ctx context.Context, client *dataverse.Client, conn *store.Connection, sub *store.Subscriber) (*store.CRMRecordRef, error) {
	rt := conn.RecipientType
	row := map[string]any{"emailaddress1": sub.Email}
	for _, m := range conn.FieldMappings {
		name, ok := strings.CutPrefix(m.SubscriberField, "fields.")
		if !ok || m.CRMEntity != rt.Entity() || m.Kind != store.MappingSimple {
			continue
		}
		if v, ok := sub.Fields[name]; ok && v != nil {
			row[m.CRMAttribute] = v
		}
	}
	switch rt {
	case store.RecipientAccount:
		if _, ok := row["name"]; !ok {
			row["name"] = sub.Email
		}
	case store.RecipientLead:
		row["subject"] = "crmsync: " + sub.Email
	}
	if conn.OwnerLogin != nil && *conn.OwnerLogin != "" {
		owner, err := resolveOwner(ctx, client, *conn.OwnerLogin)
		if err != nil {
			return nil, err
		}
		row["ownerid@odata.bind"] = dataverse.Bind("systemusers", owner)
	}
	id, err := client.Create(ctx, entitySet(rt), row)
	if err != nil {
		return nil, crmError(err)
	}
	return &store.CRMRecordRef{Entity: rt, ID: strings.ToLower(id)}, nil
}

// resolveOwner finds the systemuser whose domainname is the login (an e-mail online,
// DOMAIN\user on premises). A login that resolves to nobody fails the event with
// that reason, rather than falling back to some default owner.
func resolveOwner(ctx context.Context, client *dataverse.Client, login string) (string, error) {
	rows := client.Query(ctx, "systemusers", dataverse.Query{
		Select: []string{"systemuserid"}, Filter: "domainname eq " + dataverse.QuoteString(login), Top: 2,
	})
	if rows.Next(ctx) {
		id, _ := rows.Row().String("systemuserid")
		return id, nil
	}
	if err := rows.Err(); err != nil {
		return "", crmError(err)
	}
	return "", Permanent(fmt.Errorf("the connection's owner login %q resolves to no systemuser in the CRM", login))
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

func entitySet(rt store.RecipientType) string {
	switch rt {
	case store.RecipientAccount:
		return "accounts"
	case store.RecipientLead:
		return "leads"
	}
	return "contacts"
}
