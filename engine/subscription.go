package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"crmsync/store"
)

// subscriptionChanged applies a cs_subscription row, the CRM's record of one
// person's subscription to one group: cs_subscribed sets the subscriber's state in
// that group, the later change winning (a tie goes to the CRM). An event without
// the row (over 256 KB) is applied with the row read back through the Web API.
func subscriptionChanged(st RecipientStore, api webAPI, now func() time.Time) StepFunc {
	return func(ctx context.Context, ev *Event) error {
		row, _, err := eventRow(ctx, ev, api)
		if err != nil || row == nil {
			return err
		}
		groupID, _ := row.String("cs_groupid")
		subscribed, ok := row.Bool("cs_subscribed")
		if groupID == "" || !ok {
			ev.Warn("the subscription row has no cs_groupid or cs_subscribed; nothing to apply")
			return nil
		}
		var ref store.CRMRecordRef
		for _, col := range []string{"cs_contactid", "cs_leadid", "cs_accountid"} {
			if r, ok := row.Reference(col); ok && r.ID != "" {
				if rt, ok := store.RecipientTypeOf(r.LogicalName); ok {
					ref = store.CRMRecordRef{Entity: rt, ID: strings.ToLower(r.ID)}
				}
			}
		}
		if ref.ID == "" {
			ev.Warn("the subscription row names no contact, lead or account")
			return nil
		}
		g, err := st.Group(ctx, ev.Connection.Tenant, groupID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (g.ConnectionID != ev.Connection.ID || !g.CRMSync)) {
			ev.Warn("cs_groupid " + groupID + " is not a CRM-synced group of this connection")
			return nil
		}
		if err != nil {
			return err
		}
		at := changeTime(ev, row)
		state := store.Unsubscribed
		if subscribed {
			state = store.Subscribed
		}
		sub, err := st.SubscriberByCRMRecord(ctx, g.Tenant, g.ID, ref)
		if errors.Is(err, store.ErrNotFound) {
			// Kept until a subscriber of the group is linked to the record.
			ev.Warn("no subscriber of the group is linked to " + strings.ToLower(string(ref.Entity)) + " " + ref.ID + " yet; the state applies when one is")
			return st.SavePendingSubscription(ctx, g.Tenant, g.ID, ref, state, at)
		}
		if err != nil {
			return err
		}
		if at.Before(sub.Stamp("subscriptionState").At) {
			return nil
		}
		before := sub.SubscriptionState
		sub.SubscriptionState = state
		sub.SetStamp("subscriptionState", at, store.SideCRM)
		sub.UpdatedAt = now().UTC()
		if err := st.SaveSubscriber(ctx, sub); err != nil {
			return err
		}
		return recordCRMConsent(ctx, st, ev, sub, before, "cs_subscription of "+ref.Entity.Entity()+" "+ref.ID)
	}
}
