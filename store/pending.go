package store

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// A cs_subscription row may arrive before its record is linked to a subscriber of
// the group (the record's webhook, a list sync or the outbox links it later). The
// row's state is kept as a pending subscription under the link's id and applied
// when the link is written, the later change winning as always — so the order in
// which the two arrive does not change the outcome.

// pendingSubscription is the CRM's subscription state for a record not linked yet.
type pendingSubscription struct {
	ID     string            `bson:"_id"` // the CRM link's id: tenant|group|entity|record
	Tenant string            `bson:"tenant"`
	State  SubscriptionState `bson:"state"`
	At     time.Time         `bson:"at"`
}

// SavePendingSubscription keeps a subscription state for a group's record that no
// subscriber is linked to yet; a newer pending state replaces an older one.
func (s *Store) SavePendingSubscription(ctx context.Context, tenant, groupID string, ref CRMRecordRef, state SubscriptionState, at time.Time) error {
	id := crmLinkID(tenant, groupID, ref)
	var prev pendingSubscription
	switch err := s.findByID(ctx, colPending, id, &prev); {
	case err == nil && prev.At.After(at):
		return nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	return s.replaceByID(ctx, colPending, id, &pendingSubscription{ID: id, Tenant: tenant, State: state, At: at.UTC()})
}

// takePending applies the pending subscription states of links being written to
// their subscribers (when not older than the subscriber's own last change) and
// forgets them. subs maps link ids to the subscribers being linked.
func (s *Store) takePending(ctx context.Context, subs map[string]*Subscriber) error {
	if len(subs) == 0 {
		return nil
	}
	ids := make(bson.A, 0, len(subs))
	for id := range subs {
		ids = append(ids, id)
	}
	var found []pendingSubscription
	if err := s.findIn(ctx, colPending, ids, &found); err != nil || len(found) == 0 {
		return err
	}
	done := bson.A{}
	for _, p := range found {
		sub := subs[p.ID]
		if !p.At.Before(sub.Stamp("subscriptionState").At) {
			sub.SubscriptionState = p.State
			sub.SetStamp("subscriptionState", p.At, SideCRM)
		}
		done = append(done, p.ID)
	}
	if _, err := s.db.Collection(colPending).DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: done}}}}); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return unavailable("forget pending subscriptions", err)
	}
	return nil
}
