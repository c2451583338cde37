package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// What a form submission does to subscribers, and the double opt-in requests that
// wait for their confirmation. A new address on a double opt-in form becomes a
// PENDING subscriber: only a form sign-up sets PENDING, and only a confirmation or
// the expiry of its request ends it. An address the group has already keeps its
// state until the person confirms; the values the form carried wait in the
// Confirmation and are applied then.

// ErrTokenUsed and ErrTokenExpired are why a confirmation link no longer works.
var (
	ErrTokenUsed    = errors.New("the confirmation link was used already")
	ErrTokenExpired = errors.New("the confirmation link has expired")
)

// SignUp is what a form submission sets on a subscriber, as a change of the eMS.
// Empty State and OptIn keep the subscriber's.
type SignUp struct {
	Fields   map[string]any
	Language string
	State    SubscriptionState
	OptIn    DoubleOptInStatus
	// Verified clears the address's bounce record: a followed confirmation link
	// proves that mail reaches it.
	Verified bool
}

// AddSubscriber creates a subscriber of g with address email and the sign-up's
// values (the connection's default language when it has none). When another
// subscriber holds the address, nothing is stored and that subscriber is answered
// with existing true.
func (s *Store) AddSubscriber(ctx context.Context, g *Group, email string, in SignUp) (sub *Subscriber, existing bool, err error) {
	uc, err := s.upsertContext(ctx, g)
	if err != nil {
		return nil, false, err
	}
	now := s.now().UTC()
	sub = &Subscriber{ID: uuid.Must(uuid.NewV7()).String(), Tenant: g.Tenant, GroupID: g.ID, Email: email, Fields: map[string]any{},
		Language: uc.defaultLang, SubscriptionState: Subscribed, DoubleOptInStatus: OptInUnknown, CreatedAt: now, UpdatedAt: now}
	sub.SetStamp("email", now, SideEMS)
	in.applyTo(sub, now, uc)
	cid := claimID(g.Tenant, g.ID, email)
	for range 3 {
		_, err := s.db.Collection(colAddresses).InsertOne(ctx, addressClaim{ID: cid, Tenant: g.Tenant, GroupID: g.ID, SubscriberID: sub.ID})
		if err == nil {
			break
		}
		if !mongo.IsDuplicateKeyError(err) {
			return nil, false, unavailable("claim address", err)
		}
		var claim addressClaim
		if err := s.findByID(ctx, colAddresses, cid, &claim); errors.Is(err, ErrNotFound) {
			continue // released meanwhile: claim it again
		} else if err != nil {
			return nil, false, err
		}
		held, err := s.Subscriber(ctx, g.Tenant, claim.SubscriberID)
		if err == nil {
			return held, true, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, false, err
		}
		sub.ID = claim.SubscriberID // a claim left behind without its subscriber: take it
		break
	}
	if err := s.replaceByID(ctx, colSubscribers, sub.ID, sub); err != nil {
		return nil, false, err
	}
	return sub, false, nil
}

// ApplySignUp merges a sign-up into sub and stores it. Fields the CRM owns keep the
// CRM's values. A subscriber deleted meanwhile is not brought back: ErrNotFound.
func (s *Store) ApplySignUp(ctx context.Context, sub *Subscriber, in SignUp) error {
	g, err := s.Group(ctx, sub.Tenant, sub.GroupID)
	if err != nil {
		return err
	}
	uc, err := s.upsertContext(ctx, g)
	if err != nil {
		return err
	}
	in.applyTo(sub, s.now().UTC(), uc)
	res, err := s.db.Collection(colSubscribers).ReplaceOne(ctx, bson.D{{Key: "_id", Value: sub.ID}}, sub)
	if err != nil {
		return unavailable("save subscriber", err)
	}
	if res.MatchedCount == 0 {
		return ErrNotFound
	}
	return nil
}

func (in SignUp) applyTo(sub *Subscriber, now time.Time, uc *upsertCtx) {
	row := &upsertRow{email: sub.Email, fields: in.Fields}
	if in.Language != "" {
		row.lang = &in.Language
	}
	if in.State != "" && in.State != sub.SubscriptionState {
		row.state = &in.State
	}
	row.applyTo(sub, now, uc)
	if in.OptIn != "" && in.OptIn != sub.DoubleOptInStatus {
		sub.DoubleOptInStatus = in.OptIn
		sub.SetStamp("doubleOptInStatus", now, SideEMS)
	}
	if in.Verified {
		sub.AddressInvalid, sub.SoftBounces = false, 0
	}
	if in.State == Subscribed {
		sub.RemovedAt = nil // signing up brings back one that left the group with its CRM list
	}
}

// ExpireSubscriber removes a subscriber whose double opt-in is still PENDING, as
// DeleteSubscriber does but without a tombstone: it never consented. removed is
// false when it confirmed (or went) meanwhile.
func (s *Store) ExpireSubscriber(ctx context.Context, sub *Subscriber) (removed bool, err error) {
	removed, err = s.removeSubscriber(ctx, sub, bson.E{Key: "doubleOptInStatus", Value: OptInPending})
	if err != nil || !removed {
		return removed, err
	}
	return true, s.ForgetConfirmations(ctx, sub.Tenant, sub.ID)
}

// Confirmation is a double opt-in request waiting for its link to be followed. Its
// id is the random id the link's signed token carries; what the form carried
// waits here until the confirmation applies it.
type Confirmation struct {
	ID           string         `bson:"_id"`
	Tenant       string         `bson:"tenant"`
	FormID       string         `bson:"formId"`
	GroupID      string         `bson:"groupId"`
	SubscriberID string         `bson:"subscriberId"`
	Email        string         `bson:"email"`
	Fields       map[string]any `bson:"fields,omitempty"`
	Language     string         `bson:"language,omitempty"`
	// TextVersion is the consent text's version the person saw.
	TextVersion string    `bson:"textVersion,omitempty"`
	CreatedAt   time.Time `bson:"createdAt"`
	ExpiresAt   time.Time `bson:"expiresAt"`
}

// confirmationUse makes a confirmation link single-use: inserting it is the use,
// and a second insert loses. It is kept until the link would have expired anyway.
type confirmationUse struct {
	ID        string    `bson:"_id"`
	Tenant    string    `bson:"tenant"`
	ExpiresAt time.Time `bson:"expiresAt"`
}

// AddConfirmation stores a double opt-in request.
func (s *Store) AddConfirmation(ctx context.Context, c *Confirmation) error {
	if _, err := s.db.Collection(colConfirmations).InsertOne(ctx, c); err != nil {
		return unavailable("add confirmation", err)
	}
	return nil
}

// Confirmation loads a waiting double opt-in request by its id.
func (s *Store) Confirmation(ctx context.Context, id string) (*Confirmation, error) {
	var c Confirmation
	if err := s.findByID(ctx, colConfirmations, id, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// UseConfirmation marks a request's link used; first is false when it was used before.
func (s *Store) UseConfirmation(ctx context.Context, c *Confirmation) (first bool, err error) {
	dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colConfirmationUses), []any{confirmationUse{ID: c.ID, Tenant: c.Tenant, ExpiresAt: c.ExpiresAt}})
	if err != nil {
		return false, err
	}
	return !dup[0], nil
}

// ReleaseConfirmation undoes UseConfirmation, for a confirmation that could not
// be applied: the person can follow the link again.
func (s *Store) ReleaseConfirmation(ctx context.Context, id string) error {
	if _, err := s.db.Collection(colConfirmationUses).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return unavailable("release confirmation", err)
	}
	return nil
}

// ConfirmationUsed reports whether the link of a request was used.
func (s *Store) ConfirmationUsed(ctx context.Context, id string) (bool, error) {
	var u confirmationUse
	err := s.findByID(ctx, colConfirmationUses, id, &u)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// DeleteConfirmation forgets one request.
func (s *Store) DeleteConfirmation(ctx context.Context, id string) error {
	if _, err := s.db.Collection(colConfirmations).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return unavailable("delete confirmation", err)
	}
	return nil
}

// ForgetConfirmations removes every waiting request of a subscriber: once it has
// confirmed one (the others' links then answer "no longer valid"), or when it is
// removed.
func (s *Store) ForgetConfirmations(ctx context.Context, tenant, subscriberID string) error {
	if _, err := s.db.Collection(colConfirmations).DeleteMany(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "subscriberId", Value: subscriberID}}); err != nil {
		return unavailable("forget confirmations", err)
	}
	return nil
}

// LiveConfirmations counts a subscriber's requests that have not expired at now.
func (s *Store) LiveConfirmations(ctx context.Context, tenant, subscriberID string, now time.Time) (int, error) {
	return count(ctx, s.db.Collection(colConfirmations), "confirmations", bson.D{
		{Key: "tenant", Value: tenant}, {Key: "subscriberId", Value: subscriberID}, {Key: "expiresAt", Value: bson.D{{Key: "$gt", Value: now.UTC()}}},
	})
}

// ExpiredConfirmations lists up to limit requests, of every tenant, that expired
// at now, the oldest first.
func (s *Store) ExpiredConfirmations(ctx context.Context, now time.Time, limit int) ([]*Confirmation, error) {
	return findAll[Confirmation](ctx, s.db.Collection(colConfirmations), "expired confirmations",
		bson.D{{Key: "expiresAt", Value: bson.D{{Key: "$lte", Value: now.UTC()}}}},
		options.Find().SetSort(bson.D{{Key: "expiresAt", Value: 1}}).SetLimit(int64(limit)))
}

// PruneConfirmationUses forgets the uses of links that have expired at now: such a
// link answers "expired" whether it was used or not.
func (s *Store) PruneConfirmationUses(ctx context.Context, now time.Time) error {
	if _, err := s.db.Collection(colConfirmationUses).DeleteMany(ctx, bson.D{{Key: "expiresAt", Value: bson.D{{Key: "$lte", Value: now.UTC()}}}}); err != nil {
		return unavailable("prune confirmation uses", err)
	}
	return nil
}
