package engine

import (
	"context"
	"time"

	"crmsync/store"
)

// consentOf starts a consent ledger entry about sub.
func consentOf(sub *store.Subscriber, action store.ConsentAction, source store.ConsentSource, at time.Time) *store.ConsentEvent {
	return &store.ConsentEvent{
		Tenant: sub.Tenant, SubscriberID: sub.ID, GroupID: sub.GroupID, Email: sub.Email,
		Action: action, Source: source, At: at,
	}
}

// recordCRMConsent appends to the ledger a subscription state that a CRM event
// changed: sub's state differs from before and its last change is the CRM's. The
// entry is dated when the CRM made the change, names the CRM's user and says what
// in the CRM made it (detail).
func recordCRMConsent(ctx context.Context, st RecipientStore, ev *Event, sub *store.Subscriber, before store.SubscriptionState, detail string) error {
	stamp := sub.Stamp("subscriptionState")
	if sub.SubscriptionState == before || stamp.Side != store.SideCRM {
		return nil
	}
	action := store.ConsentUnsubscribed
	if sub.SubscriptionState == store.Subscribed {
		action = store.ConsentSubscribed
	}
	e := consentOf(sub, action, store.SourceCRM, stamp.At)
	e.Detail, e.Actor = detail, ev.Context.InitiatingUserID
	return st.AppendConsent(ctx, e)
}
