package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The consent ledger: every change of a subscriber's consent — a sign-up, its
// confirmation, an unsubscribe from a link, the CRM, a reaction or an operator —
// is appended as a ConsentEvent and never changed afterwards, so the ledger can
// answer when and how an address consented and when it stopped. Consent starts
// with CONFIRMED (double opt-in) or SUBSCRIBED and stops with UNSUBSCRIBED,
// COMPLAINED, BOUNCED or EXPIRED.
//
// The one exception is erasure: DeleteSubscriber removes the address, IP address
// and user agent from the subscriber's entries (GDPR), which keep the rest — the
// times, sources, forms, tokens and text versions — as proof without personal
// data. An export by address (ConsentByEmail) then finds nothing for it.

// ConsentAction is what happened to a subscriber's consent.
type ConsentAction string

// The consent actions.
const (
	// ConsentRequested is a form sign-up that waits for its confirmation.
	ConsentRequested    ConsentAction = "REQUESTED"
	ConsentConfirmed    ConsentAction = "CONFIRMED"
	ConsentSubscribed   ConsentAction = "SUBSCRIBED"
	ConsentUnsubscribed ConsentAction = "UNSUBSCRIBED"
	// ConsentExpired is a sign-up whose confirmation did not come in time.
	ConsentExpired    ConsentAction = "EXPIRED"
	ConsentBounced    ConsentAction = "BOUNCED"
	ConsentComplained ConsentAction = "COMPLAINED"
)

// ConsentSource is where a consent change came from.
type ConsentSource string

// The consent sources.
const (
	SourceForm            ConsentSource = "FORM"
	SourceConfirmation    ConsentSource = "CONFIRMATION"
	SourceUnsubscribeLink ConsentSource = "UNSUBSCRIBE_LINK"
	SourceCRM             ConsentSource = "CRM"
	SourceReaction        ConsentSource = "REACTION"
	SourceOperator        ConsentSource = "OPERATOR"
)

// ConsentEvent is one entry of the consent ledger. IP, UserAgent, FormID, TokenID,
// TextVersion, Actor and Detail are set where known.
type ConsentEvent struct {
	ID           string        `bson:"_id"`
	Tenant       string        `bson:"tenant"`
	SubscriberID string        `bson:"subscriberId"`
	GroupID      string        `bson:"groupId"`
	Email        string        `bson:"email"`
	Action       ConsentAction `bson:"action"`
	Source       ConsentSource `bson:"source"`
	At           time.Time     `bson:"at"`
	IP           string        `bson:"ip,omitempty"`
	UserAgent    string        `bson:"userAgent,omitempty"`
	FormID       string        `bson:"formId,omitempty"`
	// TokenID is the random id of the link that carried the change: a
	// confirmation token, or the campaign message of an unsubscribe link.
	TokenID     string `bson:"tokenId,omitempty"`
	TextVersion string `bson:"textVersion,omitempty"`
	// Actor is who made the change, when a person did: an operator's subject, a
	// CRM user id.
	Actor  string `bson:"actor,omitempty"`
	Detail string `bson:"detail,omitempty"`
}

// AppendConsent adds entries to the ledger. Their ids are made here and grow with
// time, so the ledger reads in the order it was written; At defaults to now.
func (s *Store) AppendConsent(ctx context.Context, evs ...*ConsentEvent) error {
	if len(evs) == 0 {
		return nil
	}
	docs := make([]any, len(evs))
	now := s.now().UTC()
	for i, ev := range evs {
		ev.ID = uuid.Must(uuid.NewV7()).String()
		if ev.At.IsZero() {
			ev.At = now
		}
		ev.At = ev.At.UTC()
		docs[i] = ev
	}
	if _, err := s.db.Collection(colConsent).InsertMany(ctx, docs, options.InsertMany().SetOrdered(true)); err != nil {
		return unavailable("append consent", err)
	}
	return nil
}

// ConsentHistory lists up to first ledger entries of a subscriber after the given
// entry id, oldest first, and whether more follow.
func (s *Store) ConsentHistory(ctx context.Context, tenant, subscriberID, afterID string, first int) ([]*ConsentEvent, bool, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}, {Key: "subscriberId", Value: subscriberID}}
	if afterID != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: afterID}}})
	}
	return findPage[ConsentEvent](ctx, s.db.Collection(colConsent), "consent history", filter, byID, first)
}

// CountConsent counts a subscriber's ledger entries.
func (s *Store) CountConsent(ctx context.Context, tenant, subscriberID string) (int, error) {
	return count(ctx, s.db.Collection(colConsent), "consent history", bson.D{{Key: "tenant", Value: tenant}, {Key: "subscriberId", Value: subscriberID}})
}

// ConsentByEmail lists every ledger entry of an address in all the tenant's
// groups, oldest first: the consent part of a data-access request. An address
// that is not valid has none.
func (s *Store) ConsentByEmail(ctx context.Context, tenant, email string) ([]*ConsentEvent, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return []*ConsentEvent{}, nil
	}
	out, err := findAll[ConsentEvent](ctx, s.db.Collection(colConsent), "consent export",
		bson.D{{Key: "tenant", Value: tenant}, {Key: "email", Value: e}}, options.Find().SetSort(byID))
	if out == nil && err == nil {
		out = []*ConsentEvent{}
	}
	return out, err
}

// eraseConsentAddress removes the personal data from a deleted subscriber's ledger
// entries; the entries stay.
func (s *Store) eraseConsentAddress(ctx context.Context, tenant, subscriberID string) error {
	_, err := s.db.Collection(colConsent).UpdateMany(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "subscriberId", Value: subscriberID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "email", Value: ""}}}, {Key: "$unset", Value: bson.D{{Key: "ip", Value: ""}, {Key: "userAgent", Value: ""}}}})
	if err != nil {
		return unavailable("erase consent history", err)
	}
	return nil
}

// Suppressed is an address of a connection's groups that must not be mailed, and why.
type Suppressed struct {
	Email        string
	SubscriberID string
	GroupID      string
	// Reason is UNSUBSCRIBED, BOUNCED or COMPLAINED.
	Reason ConsentAction
	At     time.Time
}

// SuppressionPage lists up to first subscribers of the connection's groups that
// are unsubscribed or whose address is invalid, after the given subscriber id in
// id order, and whether more follow. The reason and its time come from the
// subscriber's latest ledger entry that explains the state, else from the state
// itself.
func (s *Store) SuppressionPage(ctx context.Context, tenant, connectionID, afterID string, first int) ([]*Suppressed, bool, error) {
	filter, err := s.suppressionFilter(ctx, tenant, connectionID)
	if err != nil || filter == nil {
		return []*Suppressed{}, false, err
	}
	if afterID != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: afterID}}})
	}
	subs, more, err := findPage[Subscriber](ctx, s.db.Collection(colSubscribers), "suppressed subscribers", filter, byID, first)
	if err != nil {
		return nil, false, err
	}
	ids := make(bson.A, len(subs))
	for i, sub := range subs {
		ids[i] = sub.ID
	}
	// Oldest first, so the last entry read of each subscriber is its latest.
	evs, err := findAll[ConsentEvent](ctx, s.db.Collection(colConsent), "consent history", bson.D{
		{Key: "tenant", Value: tenant}, {Key: "subscriberId", Value: bson.D{{Key: "$in", Value: ids}}},
		{Key: "action", Value: bson.D{{Key: "$in", Value: bson.A{ConsentSubscribed, ConsentConfirmed, ConsentUnsubscribed, ConsentBounced, ConsentComplained}}}},
	}, options.Find().SetSort(byID))
	if err != nil {
		return nil, false, err
	}
	latest := make(map[string]*ConsentEvent, len(subs))
	for _, ev := range evs {
		latest[ev.SubscriberID] = ev
	}
	out := make([]*Suppressed, len(subs))
	for i, sub := range subs {
		out[i] = suppression(sub, latest[sub.ID])
	}
	return out, more, nil
}

// suppression says why a subscriber is suppressed: its latest ledger entry when
// that entry explains the state it is in, else the state.
func suppression(sub *Subscriber, ev *ConsentEvent) *Suppressed {
	out := &Suppressed{Email: sub.Email, SubscriberID: sub.ID, GroupID: sub.GroupID}
	unsubscribed := sub.SubscriptionState == Unsubscribed
	if ev != nil && (ev.Action == ConsentBounced && sub.AddressInvalid ||
		(ev.Action == ConsentUnsubscribed || ev.Action == ConsentComplained) && unsubscribed) {
		out.Reason, out.At = ev.Action, ev.At
		return out
	}
	if unsubscribed {
		out.Reason, out.At = ConsentUnsubscribed, sub.Stamp("subscriptionState").At
	} else {
		out.Reason = ConsentBounced
	}
	if out.At.IsZero() {
		out.At = sub.UpdatedAt
	}
	return out
}

// CountSuppressed counts what SuppressionPage lists.
func (s *Store) CountSuppressed(ctx context.Context, tenant, connectionID string) (int, error) {
	filter, err := s.suppressionFilter(ctx, tenant, connectionID)
	if err != nil || filter == nil {
		return 0, err
	}
	return count(ctx, s.db.Collection(colSubscribers), "suppressed subscribers", filter)
}

// suppressionFilter selects the unsubscribed and invalid subscribers of the
// connection's groups; nil when the connection has no group.
func (s *Store) suppressionFilter(ctx context.Context, tenant, connectionID string) (bson.D, error) {
	groups, err := findAll[Group](ctx, s.db.Collection(colGroups), "groups of a connection",
		bson.D{{Key: "tenant", Value: tenant}, {Key: "connectionId", Value: connectionID}})
	if err != nil || len(groups) == 0 {
		return nil, err
	}
	ids := make(bson.A, len(groups))
	for i, g := range groups {
		ids[i] = g.ID
	}
	return bson.D{
		{Key: "tenant", Value: tenant}, {Key: "groupId", Value: bson.D{{Key: "$in", Value: ids}}},
		{Key: "$or", Value: bson.A{bson.D{{Key: "subscriptionState", Value: Unsubscribed}}, bson.D{{Key: "addressInvalid", Value: true}}}},
	}, nil
}
