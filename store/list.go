package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ListType says whether a marketing list holds its members (static) or computes
// them from a query (dynamic).
type ListType string

// The list types, spelled as in the GraphQL API.
const (
	ListStatic  ListType = "STATIC"
	ListDynamic ListType = "DYNAMIC"
)

// SyncInterval is how often a list with periodic sync reconciles.
type SyncInterval string

// The sync intervals, in the order of the CRM's cs_syncinterval choice (1…4).
const (
	IntervalHourly      SyncInterval = "HOURLY"
	IntervalDaily       SyncInterval = "DAILY"
	IntervalWeekly      SyncInterval = "WEEKLY"
	IntervalPointInTime SyncInterval = "POINT_IN_TIME"
)

// Valid reports whether i is one of the intervals.
func (i SyncInterval) Valid() bool {
	switch i {
	case IntervalHourly, IntervalDaily, IntervalWeekly, IntervalPointInTime:
		return true
	}
	return false
}

// period is the time between two runs; zero for a point in time.
func (i SyncInterval) period() time.Duration {
	switch i {
	case IntervalHourly:
		return time.Hour
	case IntervalDaily:
		return 24 * time.Hour
	case IntervalWeekly:
		return 7 * 24 * time.Hour
	}
	return 0
}

// MarketingList is a CRM marketing list (table list) as crmsync knows it: its
// metadata, the group it is linked to and its schedule. Its _id is tenant|list id;
// the API shows the CRM's list id.
type MarketingList struct {
	ID           string        `bson:"_id"`
	Tenant       string        `bson:"tenant"`
	ConnectionID string        `bson:"connectionId"`
	CRMListID    string        `bson:"crmListId"`
	Name         string        `bson:"name"`
	Type         ListType      `bson:"type"`
	MemberType   RecipientType `bson:"memberType"`
	SyncToEMS    bool          `bson:"syncToEms"`
	Periodic     bool          `bson:"periodic"`
	Interval     *SyncInterval `bson:"interval,omitempty"`
	SyncAt       *time.Time    `bson:"syncAt,omitempty"`
	// NextSyncAt is when the schedule fires next; nil when nothing is scheduled.
	NextSyncAt   *time.Time `bson:"nextSyncAt,omitempty"`
	GroupID      string     `bson:"groupId,omitempty"`
	LastSyncedAt *time.Time `bson:"lastSyncedAt,omitempty"`
	// Warning is shown with the list's sync status (a member type other than the
	// connection's recipient type, a list deleted in the CRM).
	Warning *string `bson:"warning,omitempty"`
	// Query is a dynamic list's FetchXML.
	Query string `bson:"query,omitempty"`
	// CreatedByCrmsync marks the lists crmsync created for a group.
	CreatedByCrmsync bool      `bson:"createdByCrmsync,omitempty"`
	Deleted          bool      `bson:"deleted,omitempty"`
	UpdatedAt        time.Time `bson:"updatedAt"`
}

func listDocID(tenant, crmListID string) string { return tenant + "|" + strings.ToLower(crmListID) }

// ListFromCRM is a list row as read from the CRM.
type ListFromCRM struct {
	CRMListID  string
	Name       string
	Type       ListType
	MemberType RecipientType
	SyncToEMS  bool
	Periodic   bool
	Interval   *SyncInterval
	SyncAt     *time.Time
	Query      string
}

// List loads one of the tenant's lists by its CRM id.
func (s *Store) List(ctx context.Context, tenant, crmListID string) (*MarketingList, error) {
	var l MarketingList
	if err := s.findOwned(ctx, colLists, tenant, listDocID(tenant, crmListID), &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// SaveListFromCRM stores what the CRM says about a list, keeping crmsync's own
// state of it (the linked group, the last sync, the next run). A list already known
// through another connection of the tenant is a conflict. The schedule follows the
// list's periodic-sync columns.
func (s *Store) SaveListFromCRM(ctx context.Context, tenant, connectionID string, in ListFromCRM) (*MarketingList, error) {
	now := s.now().UTC()
	l, err := s.List(ctx, tenant, in.CRMListID)
	switch {
	case errors.Is(err, ErrNotFound):
		l = &MarketingList{ID: listDocID(tenant, in.CRMListID), Tenant: tenant, ConnectionID: connectionID, CRMListID: strings.ToLower(in.CRMListID)}
	case err != nil:
		return nil, err
	case l.ConnectionID != connectionID:
		return nil, &ConflictError{Field: "listId", Reason: "the list is synced through another connection"}
	}
	scheduleChanged := l.Periodic != in.Periodic || !equalPtr(l.Interval, in.Interval) || !equalTime(l.SyncAt, in.SyncAt)
	l.Name, l.Type, l.MemberType, l.SyncToEMS, l.Query = in.Name, in.Type, in.MemberType, in.SyncToEMS, in.Query
	l.Periodic, l.Interval, l.SyncAt = in.Periodic, in.Interval, in.SyncAt
	l.Deleted = false
	if scheduleChanged || l.NextSyncAt == nil {
		l.NextSyncAt = firstSyncAt(l, now)
	}
	l.UpdatedAt = now
	if err := s.replaceByID(ctx, colLists, l.ID, l); err != nil {
		return nil, err
	}
	return l, nil
}

// SetListSchedule sets a list's periodic sync from the API. A point in time needs
// syncAt; the other intervals start at syncAt when it lies ahead, else one
// interval from now.
func (s *Store) SetListSchedule(ctx context.Context, tenant, crmListID string, periodic bool, interval *SyncInterval, syncAt *time.Time) (*MarketingList, error) {
	l, err := s.List(ctx, tenant, crmListID)
	if err != nil {
		return nil, err
	}
	if periodic {
		switch {
		case interval == nil:
			return nil, invalid("interval", "is required when periodic is true")
		case !interval.Valid():
			return nil, invalid("interval", "unknown interval %q", *interval)
		case *interval == IntervalPointInTime && syncAt == nil:
			return nil, invalid("syncAt", "is required for POINT_IN_TIME")
		}
	}
	if syncAt != nil {
		t := syncAt.UTC()
		syncAt = &t
	}
	l.Periodic, l.Interval, l.SyncAt = periodic, interval, syncAt
	l.NextSyncAt = firstSyncAt(l, s.now().UTC())
	l.UpdatedAt = s.now().UTC()
	if err := s.replaceByID(ctx, colLists, l.ID, l); err != nil {
		return nil, err
	}
	return l, nil
}

// firstSyncAt is when a list's schedule fires first, seen from now; nil when it
// has none (not periodic, not synced, or a point in time already past).
func firstSyncAt(l *MarketingList, now time.Time) *time.Time {
	if !l.Periodic || !l.SyncToEMS || l.Interval == nil {
		return nil
	}
	if l.SyncAt != nil && l.SyncAt.After(now) {
		t := *l.SyncAt
		return &t
	}
	p := l.Interval.period()
	if p == 0 {
		return nil // a point in time that has passed
	}
	t := now.Add(p)
	return &t
}

// nextSyncAfter is when a schedule fires after it fired at due: the next interval
// boundary after now, so an instance that was down fires once, not once per
// missed interval; nil for a point in time.
func nextSyncAfter(l *MarketingList, due, now time.Time) *time.Time {
	p := time.Duration(0)
	if l.Interval != nil {
		p = l.Interval.period()
	}
	if p == 0 {
		return nil
	}
	next := due.Add(p)
	if !next.After(now) {
		next = next.Add(now.Sub(next).Truncate(p) + p)
	}
	return &next
}

// LinkList links a list to a group and turns its sync on; warning is shown with the
// list's sync status (nil for none). A group links at most one list per member
// type: a second one is a conflict.
func (s *Store) LinkList(ctx context.Context, l *MarketingList, groupID string, warning *string) error {
	others, err := s.ListsOfGroup(ctx, l.Tenant, groupID)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.ID != l.ID && o.MemberType == l.MemberType && !o.Deleted {
			return &ConflictError{Field: "listId", Reason: "the group links list " + o.CRMListID + " of the same member type already"}
		}
	}
	l.GroupID, l.SyncToEMS, l.Warning = groupID, true, warning
	if l.NextSyncAt == nil {
		l.NextSyncAt = firstSyncAt(l, s.now().UTC())
	}
	l.UpdatedAt = s.now().UTC()
	return s.replaceByID(ctx, colLists, l.ID, l)
}

// MarkListDeleted records that the CRM deleted a list: its sync stops, its group and
// subscribers stay.
func (s *Store) MarkListDeleted(ctx context.Context, tenant, crmListID string) error {
	l, err := s.List(ctx, tenant, crmListID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	w := "the list was deleted in the CRM; its group and subscribers were kept"
	l.Deleted, l.SyncToEMS, l.NextSyncAt, l.Warning, l.UpdatedAt = true, false, nil, &w, s.now().UTC()
	return s.replaceByID(ctx, colLists, l.ID, l)
}

// ListsOfGroup lists the lists linked to a group.
func (s *Store) ListsOfGroup(ctx context.Context, tenant, groupID string) ([]*MarketingList, error) {
	return s.findLists(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "groupId", Value: groupID}}, 0)
}

// ListsPage lists up to first of a connection's known lists after the given CRM list
// id, in id order, and whether more follow.
func (s *Store) ListsPage(ctx context.Context, tenant, connectionID, afterID string, first int) ([]*MarketingList, bool, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}, {Key: "connectionId", Value: connectionID}}
	if afterID != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: listDocID(tenant, afterID)}}})
	}
	return findPage[MarketingList](ctx, s.db.Collection(colLists), "lists", filter, byID, first)
}

// CountLists counts a connection's known lists.
func (s *Store) CountLists(ctx context.Context, tenant, connectionID string) (int, error) {
	n, err := s.db.Collection(colLists).CountDocuments(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "connectionId", Value: connectionID}})
	if err != nil {
		return 0, unavailable("count lists", err)
	}
	return int(n), nil
}

// DueLists lists the lists, of every tenant, whose schedule is due at now.
func (s *Store) DueLists(ctx context.Context, now time.Time, limit int) ([]*MarketingList, error) {
	return s.findLists(ctx, bson.D{{Key: "nextSyncAt", Value: bson.D{{Key: "$lte", Value: now.UTC()}}}}, limit)
}

// AdvanceSchedule moves a list's next run on from due, unless someone else did so
// first (then it reports false and changes nothing).
func (s *Store) AdvanceSchedule(ctx context.Context, l *MarketingList, due time.Time) (bool, error) {
	next := nextSyncAfter(l, due, s.now().UTC())
	update := bson.D{{Key: "$unset", Value: bson.D{{Key: "nextSyncAt", Value: ""}}}}
	if next != nil {
		update = bson.D{{Key: "$set", Value: bson.D{{Key: "nextSyncAt", Value: *next}}}}
	}
	res, err := s.db.Collection(colLists).UpdateOne(ctx, bson.D{{Key: "_id", Value: l.ID}, {Key: "nextSyncAt", Value: due.UTC()}}, update)
	if err != nil {
		return false, unavailable("advance schedule", err)
	}
	l.NextSyncAt = next
	return res.ModifiedCount == 1, nil
}

func (s *Store) findLists(ctx context.Context, filter bson.D, limit int) ([]*MarketingList, error) {
	opts := options.Find().SetSort(byID)
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	return findAll[MarketingList](ctx, s.db.Collection(colLists), "lists", filter, opts)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func equalTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}
