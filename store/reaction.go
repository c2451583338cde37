package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// ReactionType is what a recipient did with a message.
type ReactionType string

// The reaction types.
const (
	ReactionOpen        ReactionType = "OPEN"
	ReactionClick       ReactionType = "CLICK"
	ReactionBounce      ReactionType = "BOUNCE"
	ReactionUnsubscribe ReactionType = "UNSUBSCRIBE"
	ReactionComplaint   ReactionType = "COMPLAINT"
)

// Valid reports whether t is one of the reaction types.
func (t ReactionType) Valid() bool {
	switch t {
	case ReactionOpen, ReactionClick, ReactionBounce, ReactionUnsubscribe, ReactionComplaint:
		return true
	}
	return false
}

// ReactionWindow is how close two reactions of one message, type and URL must be
// to count once (a mail client loading the pixel twice, a double click).
const ReactionWindow = time.Hour

// Reaction is one counted reaction of a recipient to a send's message. Its _id is
// the message, type, URL and window, so a duplicate is an insert that loses.
type Reaction struct {
	ID           string       `bson:"_id"`
	Tenant       string       `bson:"tenant"`
	SendID       string       `bson:"sendId"`
	Message      string       `bson:"message"`
	SubscriberID string       `bson:"subscriberId"`
	Email        string       `bson:"email"`
	Type         ReactionType `bson:"type"`
	URL          string       `bson:"url,omitempty"`
	BounceType   string       `bson:"bounceType,omitempty"`
	OccurredAt   time.Time    `bson:"occurredAt"`
	// Applied is set once the reaction's effects (unsubscribe, bounce count) are
	// done; a reaction stored but not applied is applied when its event is retried.
	Applied bool `bson:"applied"`
	// CRMResponseID is the campaignresponse row written for it, once written.
	CRMResponseID *string `bson:"crmResponseId,omitempty"`
}

// ReactionEvent is the body of a reaction in the inbox: the reaction webhook's
// body as contract.md gives it, or one a tracking route made (Message set, the
// random id its token carried).
type ReactionEvent struct {
	Type           string    `json:"type"`
	CampaignSendID string    `json:"campaignSendId"`
	Email          string    `json:"email,omitempty"`
	SubscriberID   string    `json:"subscriberId,omitempty"`
	OccurredAt     time.Time `json:"occurredAt"`
	URL            string    `json:"url,omitempty"`
	BounceType     string    `json:"bounceType,omitempty"`
	Message        string    `json:"message,omitempty"`
	// IP and UserAgent are the browser's that unsubscribed through a link, for
	// the consent ledger.
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
}

// ReactionID is the deduplication key of a reaction: the same message, type and
// URL within one ReactionWindow are one reaction.
func ReactionID(message string, t ReactionType, url string, at time.Time) string {
	id := message + "|" + string(t) + "|" + strconv.FormatInt(at.UTC().Unix()/int64(ReactionWindow/time.Second), 10)
	if url != "" {
		h := sha256.Sum256([]byte(url))
		id += "|" + hex.EncodeToString(h[:8])
	}
	return id
}

// AddReaction stores a reaction; when one with its id (a duplicate within the
// window) is stored already, it answers that one and added false.
func (s *Store) AddReaction(ctx context.Context, r *Reaction) (stored *Reaction, added bool, err error) {
	if r.ID == "" {
		r.ID = ReactionID(r.Message, r.Type, r.URL, r.OccurredAt)
	}
	dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colReactions), []any{r})
	if err != nil {
		return nil, false, err
	}
	if !dup[0] {
		return r, true, nil
	}
	var old Reaction
	if err := s.findByID(ctx, colReactions, r.ID, &old); err != nil {
		return nil, false, err
	}
	return &old, false, nil
}

// MarkReactionApplied records that a reaction's effects are done.
func (s *Store) MarkReactionApplied(ctx context.Context, id string) error {
	if _, err := s.db.Collection(colReactions).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "applied", Value: true}}}}); err != nil {
		return unavailable("record reaction", err)
	}
	return nil
}

// ClaimFirstResponse claims the CRM response of a message and reaction type for
// the given reaction: it answers true for the first reaction of each pair (and
// again for that reaction, so a retry of its event still writes the response) —
// for connections that write one response per recipient and type.
func (s *Store) ClaimFirstResponse(ctx context.Context, message string, t ReactionType, reactionID string) (bool, error) {
	id := message + "|" + string(t)
	dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colResponseClaims), []any{bson.D{{Key: "_id", Value: id}, {Key: "reaction", Value: reactionID}}})
	if err != nil {
		return false, err
	}
	if !dup[0] {
		return true, nil
	}
	var claim struct {
		Reaction string `bson:"reaction"`
	}
	if err := s.findByID(ctx, colResponseClaims, id, &claim); err != nil {
		return false, err
	}
	return claim.Reaction == reactionID, nil
}

// SetCRMResponses records the campaignresponse rows written for reactions, by
// reaction id.
func (s *Store) SetCRMResponses(ctx context.Context, ids map[string]string) error {
	if len(ids) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, 0, len(ids))
	for id, resp := range ids {
		models = append(models, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "crmResponseId", Value: resp}}}}))
	}
	return s.bulkWrite(ctx, colReactions, "record campaign responses", models)
}

// ReactionsPage lists a send's reactions in id order, optionally of one type.
func (s *Store) ReactionsPage(ctx context.Context, tenant, sendID string, t *ReactionType, afterID string, first int) ([]*Reaction, bool, error) {
	filter := reactionFilter(tenant, sendID, t)
	if afterID != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: afterID}}})
	}
	return findPage[Reaction](ctx, s.db.Collection(colReactions), "reactions", filter, byID, first)
}

// CountReactions counts a send's reactions, optionally of one type.
func (s *Store) CountReactions(ctx context.Context, tenant, sendID string, t *ReactionType) (int, error) {
	n, err := s.db.Collection(colReactions).CountDocuments(ctx, reactionFilter(tenant, sendID, t))
	if err != nil {
		return 0, unavailable("count reactions", err)
	}
	return int(n), nil
}

func reactionFilter(tenant, sendID string, t *ReactionType) bson.D {
	filter := bson.D{{Key: "tenant", Value: tenant}, {Key: "sendId", Value: sendID}}
	if t != nil {
		filter = append(filter, bson.E{Key: "type", Value: *t})
	}
	return filter
}

// ReactionCounts counts a send's reactions by type in one query. The counts are
// counts of stored reactions, each inserted once, so concurrent reactions never
// race on a counter.
func (s *Store) ReactionCounts(ctx context.Context, tenant, sendID string) (map[ReactionType]int, error) {
	cur, err := s.db.Collection(colReactions).Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: reactionFilter(tenant, sendID, nil)}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$type"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	})
	if err != nil {
		return nil, unavailable("count reactions", err)
	}
	var rows []struct {
		Type ReactionType `bson:"_id"`
		N    int          `bson:"n"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, unavailable("count reactions", err)
	}
	out := make(map[ReactionType]int, len(rows))
	for _, r := range rows {
		out[r.Type] = r.N
	}
	return out, nil
}
