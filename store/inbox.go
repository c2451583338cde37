package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	ID           string `bson:"_id"`
	Tenant       string `bson:"tenant"`
	ConnectionID string `bson:"connectionId"`
	Source       string `bson:"source"`
	Message      string `bson:"message"`
	Entity       string `bson:"entity"`
	RecordID     string `bson:"recordId"`
	Stage        int    `bson:"stage"`
	// CorrelationID ties the event to the work that caused it, for the logs:
	// Dataverse's CorrelationId, a reaction's webhook-id, or what an eMS-side
	// change was made under. Empty when nothing is known.
	CorrelationID string `bson:"correlationId,omitempty"`
	// Body is the call's body. It is kept in a collection of its own (inboxBodies)
	// so that scans of the inbox (the recovery sweep, the ledger) stay light; the
	// engine loads it with InboxEventBody.
	Body         string      `bson:"-"`
	SizeExceeded bool        `bson:"sizeExceeded,omitempty"`
	ReceivedAt   time.Time   `bson:"receivedAt"`
	Status       InboxStatus `bson:"status"`
	Attempts     int         `bson:"attempts"`
	LastError    string      `bson:"lastError,omitempty"`
	ProcessedAt  *time.Time  `bson:"processedAt,omitempty"`
}

// AddInboxEvents stores events durably in one write. dup[i] is true when an event
// with the id of evs[i] was stored before (by an earlier call, or earlier in evs);
// the stored one is then left as it is. An error means none of the events can be
// taken as stored (some may be, and their redelivery will find them).
func (s *Store) AddInboxEvents(ctx context.Context, evs []*InboxEvent) (dup []bool, err error) {
	dup = make([]bool, len(evs))
	if len(evs) == 0 {
		return dup, nil
	}
	docs := make([]any, len(evs))
	bodies := make([]any, len(evs))
	for i, ev := range evs {
		if ev.Status == "" {
			ev.Status = InboxPending
		}
		docs[i] = ev
		bodies[i] = inboxBody{ID: ev.ID, Body: ev.Body, ReceivedAt: ev.ReceivedAt}
	}
	// Bodies first: an event is visible to the engine only once its body is stored.
	// A duplicate's body is already there (the same id means the same body).
	if _, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colInboxBodies), bodies); err != nil {
		return nil, unavailable("store event bodies", err)
	}
	return insertManyIgnoringDuplicates(ctx, s.db.Collection(colInbox), docs)
}

// inboxBody is the body of an inbox event, under the event's id.
type inboxBody struct {
	ID         string    `bson:"_id"`
	Body       string    `bson:"body"`
	ReceivedAt time.Time `bson:"receivedAt"`
}

// InboxEventBody loads the body of an event.
func (s *Store) InboxEventBody(ctx context.Context, id string) (string, error) {
	var b inboxBody
	if err := s.findByID(ctx, colInboxBodies, id, &b); err != nil {
		return "", err
	}
	return b.Body, nil
}

// insertManyIgnoringDuplicates inserts docs unordered and reports which ones were
// duplicates of stored documents (or of earlier docs); any other failure is an error.
func insertManyIgnoringDuplicates(ctx context.Context, col *mongo.Collection, docs []any) ([]bool, error) {
	dup := make([]bool, len(docs))
	_, err := col.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return dup, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return nil, unavailable("insert "+col.Name(), err)
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 || we.Index < 0 || we.Index >= len(docs) {
			return nil, unavailable("insert "+col.Name(), err)
		}
		dup[we.Index] = true
	}
	return dup, nil
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

// PartitionKey is the record an event is about; events with the same key are
// handled by one worker at a time, in order.
func (ev *InboxEvent) PartitionKey() string {
	return ev.ConnectionID + "|" + ev.Entity + "|" + ev.RecordID
}

// PendingInboxEvents lists up to limit events still pending that arrived before the
// given time, oldest first, for the recovery sweep; only their ids and partition
// keys are loaded.
func (s *Store) PendingInboxEvents(ctx context.Context, before time.Time, limit int) ([]*InboxEvent, error) {
	cur, err := s.db.Collection(colInbox).Find(ctx,
		bson.D{{Key: "status", Value: InboxPending}, {Key: "receivedAt", Value: bson.D{{Key: "$lt", Value: before}}}},
		options.Find().SetSort(bson.D{{Key: "receivedAt", Value: 1}}).SetLimit(int64(limit)).
			SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "connectionId", Value: 1}, {Key: "entity", Value: 1}, {Key: "recordId", Value: 1}}))
	if err != nil {
		return nil, unavailable("sweep inbox", err)
	}
	var docs []*InboxEvent
	if err := cur.All(ctx, &docs); err != nil {
		return nil, unavailable("sweep inbox", err)
	}
	return docs, nil
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

// IngestStats is the delivery ledger of one connection's inbox: how many accepted
// events stand at each status, and how long processed ones took from acceptance to
// their outcome.
type IngestStats struct {
	Pending, Processed, Failed int
	// Latency percentiles of receivedAt → processedAt over processed events.
	P50, P95, P99, Max time.Duration
}

// IngestStats computes the ledger of a tenant's connection.
func (s *Store) IngestStats(ctx context.Context, tenant, connectionID string) (*IngestStats, error) {
	cur, err := s.db.Collection(colInbox).Find(ctx,
		bson.D{{Key: "tenant", Value: tenant}, {Key: "connectionId", Value: connectionID}},
		options.Find().SetProjection(bson.D{{Key: "status", Value: 1}, {Key: "receivedAt", Value: 1}, {Key: "processedAt", Value: 1}}))
	if err != nil {
		return nil, unavailable("ingest stats", err)
	}
	defer cur.Close(ctx)
	st := &IngestStats{}
	var lat []time.Duration
	for cur.Next(ctx) {
		var ev struct {
			Status      InboxStatus `bson:"status"`
			ReceivedAt  time.Time   `bson:"receivedAt"`
			ProcessedAt *time.Time  `bson:"processedAt"`
		}
		if err := cur.Decode(&ev); err != nil {
			return nil, fmt.Errorf("decode inbox event: %w", err)
		}
		switch ev.Status {
		case InboxPending:
			st.Pending++
		case InboxProcessed:
			st.Processed++
			if ev.ProcessedAt != nil {
				lat = append(lat, ev.ProcessedAt.Sub(ev.ReceivedAt))
			}
		case InboxFailed:
			st.Failed++
		}
	}
	if err := cur.Err(); err != nil {
		return nil, unavailable("ingest stats", err)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		st.P50, st.P95, st.P99, st.Max = pct(0.50), pct(0.95), pct(0.99), lat[len(lat)-1]
	}
	return st, nil
}

// DeleteProcessedBefore removes up to limit processed events (and their bodies) whose
// outcome is older than before: the inbox's retention. Pending and failed events are
// kept, whatever their age, until they are processed or replayed. It returns how many
// were removed.
func (s *Store) DeleteProcessedBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	cur, err := s.db.Collection(colInbox).Find(ctx,
		bson.D{{Key: "status", Value: InboxProcessed}, {Key: "processedAt", Value: bson.D{{Key: "$lt", Value: before}}}},
		options.Find().SetLimit(int64(limit)).SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, unavailable("retention", err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return 0, unavailable("retention", err)
	}
	if len(docs) == 0 {
		return 0, nil
	}
	ids := make(bson.A, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	filter := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}
	// Events first: an event must never be left without its body.
	res, err := s.db.Collection(colInbox).DeleteMany(ctx, filter)
	if err != nil {
		return 0, unavailable("retention", err)
	}
	if _, err := s.db.Collection(colInboxBodies).DeleteMany(ctx, filter); err != nil {
		return 0, unavailable("retention", err)
	}
	return int(res.DeletedCount), nil
}
