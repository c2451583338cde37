package store

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The sync events of the API are, for changes coming from the CRM, the inbox events
// themselves: each accepted webhook call with what became of it. Reading them from
// the inbox costs no extra write per event.

// SyncEventFilter narrows a listing of sync events; zero values match everything.
type SyncEventFilter struct {
	// RecordID is the CRM row the events are about.
	RecordID string
	// Status is the inbox status to match.
	Status InboxStatus
}

func (f SyncEventFilter) bson(tenant string) bson.D {
	q := bson.D{{Key: "tenant", Value: tenant}}
	if f.RecordID != "" {
		q = append(q, bson.E{Key: "recordId", Value: f.RecordID})
	}
	if f.Status != "" {
		q = append(q, bson.E{Key: "status", Value: f.Status})
	}
	return q
}

// EventPosition is where a page of sync events continues: after the event received
// at At with id ID, newest first.
type EventPosition struct {
	At time.Time
	ID string
}

// SyncEventsPage lists a tenant's events newest first, up to first of them after the
// given position (zero: from the newest), and whether more follow.
func (s *Store) SyncEventsPage(ctx context.Context, tenant string, f SyncEventFilter, after EventPosition, first int) ([]*InboxEvent, bool, error) {
	q := f.bson(tenant)
	if after.ID != "" {
		q = append(q, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "receivedAt", Value: bson.D{{Key: "$lt", Value: after.At}}}},
			bson.D{{Key: "receivedAt", Value: after.At}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: after.ID}}}},
		}})
	}
	return findPage[InboxEvent](ctx, s.db.Collection(colInbox), "sync events", q, bson.D{{Key: "receivedAt", Value: -1}, {Key: "_id", Value: -1}}, first)
}

// CountSyncEvents counts a tenant's events that match f.
func (s *Store) CountSyncEvents(ctx context.Context, tenant string, f SyncEventFilter) (int, error) {
	n, err := s.db.Collection(colInbox).CountDocuments(ctx, f.bson(tenant))
	if err != nil {
		return 0, unavailable("count sync events", err)
	}
	return int(n), nil
}

// MaxReplay bounds how many events one replay re-queues.
const MaxReplay = 10000

// ResetForReplay sets the tenant's events that match f back to pending with no
// attempts, and returns them so the caller can publish them again.
func (s *Store) ResetForReplay(ctx context.Context, tenant string, f SyncEventFilter) ([]*InboxEvent, error) {
	cur, err := s.db.Collection(colInbox).Find(ctx, f.bson(tenant), options.Find().SetLimit(MaxReplay).
		SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "connectionId", Value: 1}, {Key: "entity", Value: 1}, {Key: "recordId", Value: 1}}))
	if err != nil {
		return nil, unavailable("replay", err)
	}
	var evs []*InboxEvent
	if err := cur.All(ctx, &evs); err != nil {
		return nil, unavailable("replay", err)
	}
	for _, ev := range evs {
		_, err := s.db.Collection(colInbox).UpdateOne(ctx, bson.D{{Key: "_id", Value: ev.ID}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "status", Value: InboxPending}, {Key: "attempts", Value: 0}, {Key: "lastError", Value: ""},
		}}, {Key: "$unset", Value: bson.D{{Key: "processedAt", Value: ""}}}})
		if err != nil {
			return nil, unavailable("replay", err)
		}
	}
	return evs, nil
}
