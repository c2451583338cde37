package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"crmsync/dataverse"
	"crmsync/store"
)

// RecipientStore is what the recipient steps need from the store.
type RecipientStore interface {
	SyncedGroups(ctx context.Context, tenant, connectionID string) ([]*store.Group, error)
	SubscriberByEmail(ctx context.Context, tenant, groupID, email string) (*store.Subscriber, error)
	SubscriberByCRMRecord(ctx context.Context, tenant, groupID string, ref store.CRMRecordRef) (*store.Subscriber, error)
	SaveSubscriber(ctx context.Context, sub *store.Subscriber) error
}

// registerRecipientSteps registers the CRM → eMS steps for recipient tables.
func registerRecipientSteps(r *Registry, st RecipientStore, now func() time.Time) {
	step := recipientChanged(st, now)
	for _, entity := range []string{"contact", "lead", "account"} {
		for _, msg := range []string{dataverse.MessageCreate, dataverse.MessageUpdate} {
			r.Handle(StepKey{Message: msg, Entity: entity, Stage: dataverse.StagePostOperation}, step)
		}
	}
}

// recipientChanged links a created or updated CRM recipient to the subscriber with its
// e-mail address in every CRM-synced group of the connection, and copies the mapped
// fields to it. A change older than the last one applied is skipped, so events that
// arrive late or twice change nothing.
func recipientChanged(st RecipientStore, now func() time.Time) StepFunc {
	return func(ctx context.Context, ev *Event) error {
		ec := ev.Context
		rt, ok := store.RecipientTypeOf(ec.PrimaryEntityName)
		if !ok {
			return nil
		}
		if ec.NeedsReread() {
			return Permanent(errors.New("the event does not carry the row (body over 256 KB); re-reading it through the Web API is not available yet"))
		}
		row := ec.Merged()
		changedAt := changeTime(ev, row)
		ref := store.CRMRecordRef{Entity: rt, ID: strings.ToLower(ec.PrimaryEntityID)}
		email := ""
		if raw, ok := row.String("emailaddress1"); ok {
			email, _ = store.NormalizeEmail(raw)
		}

		groups, err := st.SyncedGroups(ctx, ev.Connection.Tenant, ev.Connection.ID)
		if err != nil {
			return err
		}
		for _, g := range groups {
			sub, err := findSubscriber(ctx, st, g, email, ref)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if changedAt.Before(sub.CRMModifiedOn) {
				continue
			}
			applyMappings(sub, ev.Connection.FieldMappings, ec.PrimaryEntityName, row)
			sub.CRMRecord = &ref
			sub.CRMUnlinkedReason = nil
			sub.CRMModifiedOn = changedAt
			sub.UpdatedAt = now().UTC()
			if err := st.SaveSubscriber(ctx, sub); err != nil {
				return err
			}
		}
		return nil
	}
}

// findSubscriber finds the group's subscriber for a CRM row: by its e-mail address,
// else by an earlier link to the row (an Update carries only changed columns).
func findSubscriber(ctx context.Context, st RecipientStore, g *store.Group, email string, ref store.CRMRecordRef) (*store.Subscriber, error) {
	if email != "" {
		sub, err := st.SubscriberByEmail(ctx, g.Tenant, g.ID, email)
		if !errors.Is(err, store.ErrNotFound) {
			return sub, err
		}
	}
	return st.SubscriberByCRMRecord(ctx, g.Tenant, g.ID, ref)
}

// changeTime is when the CRM changed the row: its modifiedon, else when the operation
// was created, else when the event was received.
func changeTime(ev *Event, row *dataverse.Entity) time.Time {
	if t, ok := row.Time("modifiedon"); ok {
		return t
	}
	if !ev.Context.OperationCreatedOn.IsZero() {
		return ev.Context.OperationCreatedOn
	}
	return ev.Inbox.ReceivedAt
}
