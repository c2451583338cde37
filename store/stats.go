package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Statistics of a connection's sync events (the API's syncStats and
// CrmConnection.health), read from the inbox, where every sync event is kept
// (syncevent.go).
//
// Each query that reads events names the three statuses and a lower bound on
// receivedAt, so that real MongoDB serves it from the inbox's index
// status_1_receivedAt_1 and reads only the window's events (an index
// tenant_1_connectionId_1_receivedAt_1 would narrow that to the connection's).
// The embedded store filters the inbox in Go (design.md), a scan whose size the
// inbox retention bounds; at most MaxStatsEvents events are read either way.

// SyncDirection is which way a sync event carries a change.
type SyncDirection string

// The directions, named as the API names them.
const (
	CRMToEMS SyncDirection = "CRM_TO_EMS"
	EMSToCRM SyncDirection = "EMS_TO_CRM"
)

// Direction is the way the event's change travels: changes made in the eMS
// (source "ems", engine.SourceEMS) and campaign reactions from the sending engine
// ("reaction") go to the CRM; Dataverse's webhooks and the anti-entropy sweep
// bring changes from it.
func (ev *InboxEvent) Direction() SyncDirection { return directionOf(ev.Source) }

func directionOf(source string) SyncDirection {
	switch source {
	case "ems", "reaction":
		return EMSToCRM
	}
	return CRMToEMS
}

// statusRank orders statuses as an event goes through them.
var statusRank = map[InboxStatus]int{InboxPending: 0, InboxProcessed: 1, InboxFailed: 2}

// inboxStatuses are every status an inbox event can have; naming them lets real
// MongoDB use the status_1_receivedAt_1 index for a range of receivedAt.
var inboxStatuses = bson.A{InboxPending, InboxProcessed, InboxFailed}

// Bounds of the statistics.
const (
	// MaxStatsSpan is how far back syncStats reaches.
	MaxStatsSpan = 24 * time.Hour
	// MaxStatsEvents is the most events one statistic reads; a window with more
	// is answered from the first MaxStatsEvents found, and says so.
	MaxStatsEvents = 200_000
	// statsClockSlack forgives the difference between the caller's clock and
	// ours at both ends of a statistic's span.
	statsClockSlack = time.Minute
)

// SyncStatsBucket counts a connection's events of one minute, direction and
// status.
type SyncStatsBucket struct {
	Minute    time.Time
	Direction SyncDirection
	Status    InboxStatus
	Count     int
}

// SyncStats counts a connection's sync events per minute since a time, by when
// they were received and where they stand now.
type SyncStats struct {
	// Since is the start of the first minute counted; Until is when the
	// statistic was taken.
	Since, Until time.Time
	// Buckets are the non-empty ones, by minute, then direction, then status
	// (pending, processed, failed).
	Buckets []SyncStatsBucket
	// Total is the sum of the buckets.
	Total int
	// Truncated is set when more than MaxStatsEvents events matched, so only
	// some of them are counted.
	Truncated bool
}

// SyncStats counts a tenant's connection's events received since the minute of
// since, which may reach back MaxStatsSpan and not lie ahead. The caller has
// checked that the connection is the tenant's.
func (s *Store) SyncStats(ctx context.Context, tenant, connectionID string, since time.Time) (*SyncStats, error) {
	now := s.now().UTC()
	switch {
	case since.After(now.Add(statsClockSlack)):
		return nil, invalid("since", "lies in the future")
	case since.Before(now.Add(-MaxStatsSpan - statsClockSlack)):
		return nil, invalid("since", "reaches back more than %s; ask for a later time", MaxStatsSpan)
	}
	since = since.UTC().Truncate(time.Minute)
	type bucketKey struct {
		minute    int64
		direction SyncDirection
		status    InboxStatus
	}
	counts := map[bucketKey]int{}
	truncated, err := s.scanEvents(ctx, tenant, []string{connectionID}, since, func(ev *eventTally) {
		counts[bucketKey{ev.ReceivedAt.Unix() / 60, directionOf(ev.Source), ev.Status}]++
	})
	if err != nil {
		return nil, err
	}
	st := &SyncStats{Since: since, Until: now, Buckets: make([]SyncStatsBucket, 0, len(counts)), Truncated: truncated}
	for k, n := range counts {
		st.Buckets = append(st.Buckets, SyncStatsBucket{Minute: time.Unix(k.minute*60, 0).UTC(), Direction: k.direction, Status: k.status, Count: n})
		st.Total += n
	}
	slices.SortFunc(st.Buckets, func(a, b SyncStatsBucket) int {
		return cmp.Or(a.Minute.Compare(b.Minute), cmp.Compare(a.Direction, b.Direction), cmp.Compare(statusRank[a.Status], statusRank[b.Status]))
	})
	return st, nil
}

// eventTally is what the statistics read of an inbox event.
type eventTally struct {
	ConnectionID string      `bson:"connectionId"`
	Source       string      `bson:"source"`
	Status       InboxStatus `bson:"status"`
	ReceivedAt   time.Time   `bson:"receivedAt"`
}

// scanEvents calls fn with each of the tenant's connections' events received
// since the given time, up to MaxStatsEvents of them; truncated says more matched.
func (s *Store) scanEvents(ctx context.Context, tenant string, connectionIDs []string, since time.Time, fn func(*eventTally)) (truncated bool, err error) {
	filter := bson.D{
		{Key: "tenant", Value: tenant},
		{Key: "connectionId", Value: bson.D{{Key: "$in", Value: connectionIDs}}},
		{Key: "status", Value: bson.D{{Key: "$in", Value: inboxStatuses}}},
		{Key: "receivedAt", Value: bson.D{{Key: "$gte", Value: since}}},
	}
	cur, err := s.db.Collection(colInbox).Find(ctx, filter, options.Find().SetLimit(MaxStatsEvents+1).
		SetProjection(bson.D{{Key: "_id", Value: 0}, {Key: "connectionId", Value: 1}, {Key: "source", Value: 1}, {Key: "status", Value: 1}, {Key: "receivedAt", Value: 1}}))
	if err != nil {
		return false, unavailable("sync statistics", err)
	}
	defer cur.Close(ctx)
	n := 0
	for cur.Next(ctx) {
		if n++; n > MaxStatsEvents {
			return true, nil
		}
		var ev eventTally
		if err := cur.Decode(&ev); err != nil {
			return false, fmt.Errorf("decode inbox event: %w", err)
		}
		fn(&ev)
	}
	if err := cur.Err(); err != nil {
		return false, unavailable("sync statistics", err)
	}
	return false, nil
}

// ActivityWindow is how far back ConnectionActivity looks at events' outcomes.
const ActivityWindow = time.Hour

// ConnectionActivity is what the store knows of a connection's recent work, from
// which the API judges its health.
type ConnectionActivity struct {
	// LastEventAt is when its newest kept event was received; nil when none is.
	LastEventAt *time.Time
	// DeadLetters are its failed events, waiting for a replay.
	DeadLetters int
	// Applied, Failed and Pending count the events received in the last
	// ActivityWindow by where they stand now.
	Applied, Failed, Pending int
	// OldestPendingAt is when the oldest of those still pending was received.
	OldestPendingAt *time.Time
	// LastCheck is the outcome of its newest connection test; nil if never tested.
	LastCheck *ConnectionCheck
}

// ConnectionActivity answers the activity of several of a tenant's connections
// (the caller has checked they are the tenant's), with a constant number of
// queries but one for each connection without an event in the last
// ActivityWindow (the newest event of each).
func (s *Store) ConnectionActivity(ctx context.Context, tenant string, ids []string) (map[string]*ConnectionActivity, error) {
	out := make(map[string]*ConnectionActivity, len(ids))
	for _, id := range ids {
		out[id] = &ConnectionActivity{}
	}
	if len(ids) == 0 {
		return out, nil
	}
	_, err := s.scanEvents(ctx, tenant, ids, s.now().UTC().Add(-ActivityWindow), func(ev *eventTally) {
		a := out[ev.ConnectionID]
		if a == nil {
			return
		}
		switch ev.Status {
		case InboxProcessed:
			a.Applied++
		case InboxFailed:
			a.Failed++
		case InboxPending:
			a.Pending++
			a.OldestPendingAt = earlier(a.OldestPendingAt, ev.ReceivedAt)
		}
		if a.LastEventAt == nil || ev.ReceivedAt.After(*a.LastEventAt) {
			a.LastEventAt = &ev.ReceivedAt
		}
	})
	if err != nil {
		return nil, err
	}
	if err := s.countDeadLetters(ctx, tenant, ids, out); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if a := out[id]; a.LastEventAt == nil {
			if a.LastEventAt, err = s.newestEventAt(ctx, tenant, id); err != nil {
				return nil, err
			}
		}
	}
	checks, err := s.connectionChecks(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, c := range checks {
		if a := out[c.ConnectionID]; a != nil && c.Tenant == tenant {
			a.LastCheck = c
		}
	}
	return out, nil
}

func earlier(t *time.Time, u time.Time) *time.Time {
	if t == nil || u.Before(*t) {
		return &u
	}
	return t
}

// countDeadLetters sets the connections' failed events, counted by the server.
func (s *Store) countDeadLetters(ctx context.Context, tenant string, ids []string, out map[string]*ConnectionActivity) error {
	cur, err := s.db.Collection(colInbox).Aggregate(ctx, bson.A{
		bson.D{{Key: "$match", Value: bson.D{
			{Key: "tenant", Value: tenant},
			{Key: "connectionId", Value: bson.D{{Key: "$in", Value: ids}}},
			{Key: "status", Value: InboxFailed},
		}}},
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$connectionId"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	})
	if err != nil {
		return unavailable("count dead letters", err)
	}
	var groups []struct {
		ID string `bson:"_id"`
		N  int    `bson:"n"`
	}
	if err := cur.All(ctx, &groups); err != nil {
		return unavailable("count dead letters", err)
	}
	for _, g := range groups {
		if a := out[g.ID]; a != nil {
			a.DeadLetters = g.N
		}
	}
	return nil
}

// newestEventAt is when the connection's newest kept event was received; nil
// when none is kept.
func (s *Store) newestEventAt(ctx context.Context, tenant, connectionID string) (*time.Time, error) {
	var ev eventTally
	err := s.db.Collection(colInbox).FindOne(ctx,
		bson.D{{Key: "tenant", Value: tenant}, {Key: "connectionId", Value: connectionID}},
		options.FindOne().SetSort(bson.D{{Key: "receivedAt", Value: -1}}).SetProjection(bson.D{{Key: "receivedAt", Value: 1}})).Decode(&ev)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("newest event", err)
	}
	return &ev.ReceivedAt, nil
}

// ConnectionCheck is the outcome of a connection's newest test of its access to
// the CRM (the API's testConnection), kept for its health.
type ConnectionCheck struct {
	ID           string    `bson:"_id"` // connectionCheckID(ConnectionID)
	Tenant       string    `bson:"tenant"`
	ConnectionID string    `bson:"connectionId"`
	OK           bool      `bson:"ok"`
	Detail       string    `bson:"detail"`
	LatencyMs    int       `bson:"latencyMs"`
	At           time.Time `bson:"at"`
}

// connectionCheckID keys a connection's check in the health collection, beside
// the readiness probe's document.
func connectionCheckID(connectionID string) string { return "connection-check|" + connectionID }

// SaveConnectionCheck keeps the outcome of a connection's test, replacing the
// one before.
func (s *Store) SaveConnectionCheck(ctx context.Context, c *ConnectionCheck) error {
	c.ID = connectionCheckID(c.ConnectionID)
	c.At = c.At.UTC()
	return s.replaceByID(ctx, colHealth, c.ID, c)
}

// connectionChecks loads the newest checks of connections in one query: an $in
// on _id, which the embedded store answers with a scan of the health collection,
// small as it is (a document per tested connection, and the readiness probe's).
func (s *Store) connectionChecks(ctx context.Context, ids []string) ([]*ConnectionCheck, error) {
	keys := make(bson.A, len(ids))
	for i, id := range ids {
		keys[i] = connectionCheckID(id)
	}
	return findAll[ConnectionCheck](ctx, s.db.Collection(colHealth), "connection checks", bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}})
}
