package store

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// InboxStatus is where an ingested event stands.
type InboxStatus string

// The inbox statuses.
const (
	InboxPending   InboxStatus = "pending"
	InboxProcessed InboxStatus = "processed"
	InboxFailed    InboxStatus = "failed"
)

// InboxEvent is an accepted webhook call, stored before it is answered. Its _id is
// the event id derived from the call, so a redelivery finds the same document.
type InboxEvent struct {
	ID           string      `bson:"_id"`
	Tenant       string      `bson:"tenant"`
	ConnectionID string      `bson:"connectionId"`
	Source       string      `bson:"source"`
	Message      string      `bson:"message"`
	Entity       string      `bson:"entity"`
	RecordID     string      `bson:"recordId"`
	Stage        int         `bson:"stage"`
	Body         string      `bson:"body"`
	SizeExceeded bool        `bson:"sizeExceeded,omitempty"`
	ReceivedAt   time.Time   `bson:"receivedAt"`
	Status       InboxStatus `bson:"status"`
	Attempts     int         `bson:"attempts"`
	LastError    string      `bson:"lastError,omitempty"`
	ProcessedAt  *time.Time  `bson:"processedAt,omitempty"`
}

// AddInboxEvent stores an event durably. duplicate is true when an event with the
// same id was stored before; the stored one is then left as it is.
func (s *Store) AddInboxEvent(ctx context.Context, ev *InboxEvent) (duplicate bool, err error) {
	if ev.Status == "" {
		ev.Status = InboxPending
	}
	_, err = s.db.Collection(colInbox).InsertOne(ctx, ev)
	if mongo.IsDuplicateKeyError(err) {
		return true, nil
	}
	if err != nil {
		return false, unavailable("store event", err)
	}
	return false, nil
}

// InboxEvent loads an event by id; the engine's read, not scoped to a tenant.
func (s *Store) InboxEvent(ctx context.Context, id string) (*InboxEvent, error) {
	var ev InboxEvent
	if err := s.findByID(ctx, colInbox, id, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// FinishInboxEvent records the outcome of processing an event.
func (s *Store) FinishInboxEvent(ctx context.Context, id string, status InboxStatus, attempts int, lastErr string) error {
	now := s.now().UTC()
	set := bson.D{{Key: "status", Value: status}, {Key: "attempts", Value: attempts}, {Key: "lastError", Value: lastErr}}
	if status != InboxPending {
		set = append(set, bson.E{Key: "processedAt", Value: now})
	}
	_, err := s.db.Collection(colInbox).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return unavailable("finish event", err)
	}
	return nil
}

// PendingInboxEventIDs lists up to limit events still pending that arrived before
// the given time, oldest first, for the recovery sweep.
func (s *Store) PendingInboxEventIDs(ctx context.Context, before time.Time, limit int) ([]string, error) {
	cur, err := s.db.Collection(colInbox).Find(ctx,
		bson.D{{Key: "status", Value: InboxPending}, {Key: "receivedAt", Value: bson.D{{Key: "$lt", Value: before}}}},
		options.Find().SetSort(bson.D{{Key: "receivedAt", Value: 1}}).SetLimit(int64(limit)).SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, unavailable("sweep inbox", err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, unavailable("sweep inbox", err)
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return ids, nil
}

// InboxCounts says how many stored events stand at each status: the inbox side of
// the delivery ledger (accepted = processed + failed + pending).
type InboxCounts struct {
	Pending, Processed, Failed int
}

// CountInbox counts the inbox's events by status.
func (s *Store) CountInbox(ctx context.Context) (InboxCounts, error) {
	var c InboxCounts
	for status, dst := range map[InboxStatus]*int{InboxPending: &c.Pending, InboxProcessed: &c.Processed, InboxFailed: &c.Failed} {
		n, err := s.db.Collection(colInbox).CountDocuments(ctx, bson.D{{Key: "status", Value: status}})
		if err != nil {
			return InboxCounts{}, unavailable("count inbox", err)
		}
		*dst = int(n)
	}
	return c, nil
}
