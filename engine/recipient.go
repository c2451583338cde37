package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"crmsync/dataverse"
	"crmsync/store"
)

// RecipientStore is what the recipient steps need from the store.
type RecipientStore interface {
	SyncedGroups(ctx context.Context, tenant, connectionID string) ([]*store.Group, error)
	Group(ctx context.Context, tenant, id string) (*store.Group, error)
	SubscriberByEmail(ctx context.Context, tenant, groupID, email string) (*store.Subscriber, error)
	SubscriberByCRMRecord(ctx context.Context, tenant, groupID string, ref store.CRMRecordRef) (*store.Subscriber, error)
	SaveSubscriber(ctx context.Context, sub *store.Subscriber) error
	RemoveCRMLink(ctx context.Context, tenant, groupID string, ref store.CRMRecordRef) error
	ChangeEmail(ctx context.Context, sub *store.Subscriber, newEmail string) (mergedID string, err error)
	SavePendingSubscription(ctx context.Context, tenant, groupID string, ref store.CRMRecordRef, state store.SubscriptionState, at time.Time) error
	AppendConsent(ctx context.Context, evs ...*store.ConsentEvent) error
}

// registerRecipientSteps registers the CRM → eMS steps for recipient tables and for
// the per-group subscription rows. Their Web API reads (lookups, rows of events
// over 256 KB) use clients made from the store's sealed client secrets.
func registerRecipientSteps(r *Registry, st RecipientStore, now func() time.Time) {
	addRecipientSteps(r, st, storeClients(st), now)
}

// addRecipientSteps registers the CRM → eMS steps, reading through api.
func addRecipientSteps(r *Registry, st RecipientStore, api webAPI, now func() time.Time) {
	changed := recipientChanged(st, api, now)
	removed := recipientRemoved(st, now)
	for _, entity := range []string{"contact", "lead", "account"} {
		for _, msg := range []string{dataverse.MessageCreate, dataverse.MessageUpdate, dataverse.MessageAssign} {
			r.Handle(StepKey{Message: msg, Entity: entity, Stage: dataverse.StagePostOperation}, changed)
		}
		r.Handle(StepKey{Message: dataverse.MessageDelete, Entity: entity, Stage: dataverse.StagePostOperation}, removed)
		for _, msg := range []string{dataverse.MessageSetState, dataverse.MessageSetStateDynamicEntity} {
			r.Handle(StepKey{Message: msg, Entity: entity, Stage: dataverse.StagePostOperation}, removed)
		}
	}
	sub := subscriptionChanged(st, api, now)
	for _, msg := range []string{dataverse.MessageCreate, dataverse.MessageUpdate} {
		r.Handle(StepKey{Message: msg, Entity: "cs_subscription", Stage: dataverse.StagePostOperation}, sub)
	}
}

// Reasons a subscriber is unlinked from its CRM record.
const (
	reasonDeleted     = "the record was deleted in the CRM"
	reasonDeactivated = "the record was deactivated in the CRM"
	reasonQualified   = "the lead was qualified in the CRM"
)

// recipientChanged applies a created or updated CRM recipient to its subscriber in
// every CRM-synced group of the connection: the link, the mapped fields (which
// belong to the CRM), the language, the double opt-in status and the consent flags.
// Each field changes only when the CRM's change is not older than the field's last
// change, so events that arrive late or twice change nothing. An event without the
// row (over 256 KB) is applied with the row read back through the Web API; LOOKUP
// mappings read their related rows there too.
func recipientChanged(st RecipientStore, api webAPI, now func() time.Time) StepFunc {
	return func(ctx context.Context, ev *Event) error {
		ec := ev.Context
		rt, _ := store.RecipientTypeOf(ec.PrimaryEntityName)
		row, changed, err := eventRow(ctx, ev, api)
		if err != nil || row == nil {
			return err
		}
		at := changeTime(ev, row)
		ref := store.CRMRecordRef{Entity: rt, ID: strings.ToLower(ec.PrimaryEntityID)}
		email := ""
		if raw, ok := row.String("emailaddress1"); ok {
			email, _ = store.NormalizeEmail(raw)
		}
		reason := inactiveReason(rt, row)

		groups, err := st.SyncedGroups(ctx, ev.Connection.Tenant, ev.Connection.ID)
		if err != nil {
			return err
		}
		resolved := false // the lookups are read once, for the first subscriber to apply them to
		for _, g := range groups {
			sub, byLink, err := findSubscriber(ctx, st, g, email, ref)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if reason != "" {
				if err := unlink(ctx, st, sub, ref, reason, now); err != nil {
					return err
				}
				continue
			}
			before := sub.SubscriptionState
			if sub.CRMRecord != nil && *sub.CRMRecord != ref {
				ev.Warn(fmt.Sprintf("subscriber %s is linked to %s %s already; %s %s was not applied to it",
					sub.ID, strings.ToLower(string(sub.CRMRecord.Entity)), sub.CRMRecord.ID, ec.PrimaryEntityName, ref.ID))
				continue
			}
			if byLink && email != "" && email != sub.Email && changed("emailaddress1") && !at.Before(sub.Stamp("email").At) {
				merged, err := st.ChangeEmail(ctx, sub, email)
				if err != nil {
					return err
				}
				sub.SetStamp("email", at, store.SideCRM)
				if merged != "" {
					ev.Warn(fmt.Sprintf("the new address %s was held by subscriber %s, which was merged into %s", email, merged, sub.ID))
				}
			}
			if !resolved {
				if err := resolveLookups(ctx, ev, api, row, changed); err != nil {
					return err
				}
				resolved = true
			}
			applyMappings(ev, sub, ev.Connection.FieldMappings, ec.PrimaryEntityName, row, changed, at)
			applyLanguage(ev, sub, ev.Connection, ec, row, changed, at)
			applyConsent(sub, row, changed, at)
			sub.CRMRecord = &ref
			sub.CRMUnlinkedReason = nil
			if at.After(sub.CRMModifiedOn) {
				sub.CRMModifiedOn = at
			}
			sub.UpdatedAt = now().UTC()
			if err := st.SaveSubscriber(ctx, sub); err != nil {
				return err
			}
			if err := recordCRMConsent(ctx, st, ev, sub, before, ec.PrimaryEntityName+" "+ref.ID); err != nil {
				return err
			}
		}
		return nil
	}
}

// recipientRemoved unlinks the subscribers of a deleted record, or of a record whose
// state changed to inactive (SetState); they stay, with the reason.
func recipientRemoved(st RecipientStore, now func() time.Time) StepFunc {
	return func(ctx context.Context, ev *Event) error {
		ec := ev.Context
		rt, _ := store.RecipientTypeOf(ec.PrimaryEntityName)
		target, ok := ec.TargetReference()
		id := ec.PrimaryEntityID
		if ok && target.ID != "" {
			id = target.ID
		}
		reason := reasonDeleted
		if ec.MessageName != dataverse.MessageDelete {
			state, ok := ec.InputParameters[dataverse.ParamState].(dataverse.OptionSetValue)
			if !ok || state.Value == 0 {
				return nil // reactivated: the next change of the record links it again
			}
			reason = reasonDeactivated
			if rt == store.RecipientLead && state.Value == 1 {
				reason = reasonQualified
			}
		}
		ref := store.CRMRecordRef{Entity: rt, ID: strings.ToLower(id)}
		groups, err := st.SyncedGroups(ctx, ev.Connection.Tenant, ev.Connection.ID)
		if err != nil {
			return err
		}
		for _, g := range groups {
			sub, err := st.SubscriberByCRMRecord(ctx, g.Tenant, g.ID, ref)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if err := unlink(ctx, st, sub, ref, reason, now); err != nil {
				return err
			}
		}
		return nil
	}
}

func unlink(ctx context.Context, st RecipientStore, sub *store.Subscriber, ref store.CRMRecordRef, reason string, now func() time.Time) error {
	if err := st.RemoveCRMLink(ctx, sub.Tenant, sub.GroupID, ref); err != nil {
		return err
	}
	if sub.CRMRecord == nil || *sub.CRMRecord != ref {
		return nil // linked elsewhere, or not at all: nothing to undo on the subscriber
	}
	sub.CRMRecord = nil
	sub.CRMUnlinkedReason = &reason
	sub.UpdatedAt = now().UTC()
	return st.SaveSubscriber(ctx, sub)
}

// inactiveReason says why a record must not be linked: deactivated, or a qualified
// lead (never matched, updated or reactivated). "" for an active record.
func inactiveReason(rt store.RecipientType, row *dataverse.Entity) string {
	state, ok := row.Int("statecode")
	if !ok || state == 0 {
		return ""
	}
	if rt == store.RecipientLead && state == 1 {
		return reasonQualified
	}
	return reasonDeactivated
}

// findSubscriber finds the group's subscriber for a CRM row: by its link to the row
// first (the address may have changed in the CRM), else by the e-mail address.
func findSubscriber(ctx context.Context, st RecipientStore, g *store.Group, email string, ref store.CRMRecordRef) (sub *store.Subscriber, byLink bool, err error) {
	sub, err = st.SubscriberByCRMRecord(ctx, g.Tenant, g.ID, ref)
	if err == nil {
		return sub, true, nil
	}
	if !errors.Is(err, store.ErrNotFound) || email == "" {
		return nil, false, err
	}
	sub, err = st.SubscriberByEmail(ctx, g.Tenant, g.ID, email)
	return sub, false, err
}

// changedColumns reports whether the event changed a column: every column of a
// Create; the Target's columns of an Update (images carry unchanged ones too).
func changedColumns(ec *dataverse.ExecutionContext) func(string) bool {
	target, ok := ec.Target()
	if ec.MessageName == dataverse.MessageCreate || !ok {
		return func(string) bool { return true }
	}
	return func(col string) bool {
		_, ok := target.Attributes[col]
		return ok
	}
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
