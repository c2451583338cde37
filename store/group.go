package store

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// GroupInput is what a caller supplies to create a subscriber group.
type GroupInput struct {
	Name         string
	ConnectionID string
	CRMSync      bool
}

// CreateGroup stores a new subscriber group. A group with CRM sync on needs a
// connection, and the connection must be the tenant's own.
func (s *Store) CreateGroup(ctx context.Context, tenant string, in GroupInput) (*Group, error) {
	g := &Group{
		ID:           uuid.Must(uuid.NewV7()).String(),
		Tenant:       tenant,
		Name:         strings.TrimSpace(in.Name),
		ConnectionID: strings.TrimSpace(in.ConnectionID),
		CRMSync:      in.CRMSync,
		CreatedAt:    s.now().UTC(),
	}
	if g.Name == "" {
		return nil, invalid("name", "must not be empty")
	}
	if g.CRMSync && g.ConnectionID == "" {
		return nil, invalid("crmSync", "needs a connectionId")
	}
	if g.ConnectionID != "" {
		if _, err := s.Connection(ctx, tenant, g.ConnectionID); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, invalid("connectionId", "no such connection")
			}
			return nil, err
		}
	}
	if _, err := s.db.Collection(colGroups).InsertOne(ctx, g); err != nil {
		return nil, unavailable("create group", err)
	}
	return g, nil
}

// Group loads one of the tenant's subscriber groups.
func (s *Store) Group(ctx context.Context, tenant, id string) (*Group, error) {
	var g Group
	if err := s.findOwned(ctx, colGroups, tenant, id, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// SyncedGroups lists the groups of a connection that have CRM sync on: the groups a
// CRM change must reach.
func (s *Store) SyncedGroups(ctx context.Context, tenant, connectionID string) ([]*Group, error) {
	return findAll[Group](ctx, s.db.Collection(colGroups), "synced groups", bson.D{
		{Key: "tenant", Value: tenant},
		{Key: "connectionId", Value: connectionID},
		{Key: "crmSync", Value: true},
	})
}

// GroupsPage lists up to first of the tenant's groups after the given id, in id
// (creation) order, and whether more follow.
func (s *Store) GroupsPage(ctx context.Context, tenant, afterID string, first int) ([]*Group, bool, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}}
	if afterID != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: afterID}}})
	}
	return findPage[Group](ctx, s.db.Collection(colGroups), "groups", filter, byID, first)
}

// CountGroups counts the tenant's groups.
func (s *Store) CountGroups(ctx context.Context, tenant string) (int, error) {
	n, err := s.db.Collection(colGroups).CountDocuments(ctx, bson.D{{Key: "tenant", Value: tenant}})
	if err != nil {
		return 0, unavailable("count groups", err)
	}
	return int(n), nil
}

// RenameGroup gives a group a new name.
func (s *Store) RenameGroup(ctx context.Context, tenant, id, name string) (*Group, error) {
	g, err := s.Group(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if g.Name = strings.TrimSpace(name); g.Name == "" {
		return nil, invalid("name", "must not be empty")
	}
	if err := s.replaceByID(ctx, colGroups, g.ID, g); err != nil {
		return nil, err
	}
	return g, nil
}

// DeleteGroup removes a group with its subscribers, their address claims, CRM
// links and list memberships; its lists stay, unlinked. (Campaign sends, which
// would make a group undeletable while in progress, do not exist in this version.)
func (s *Store) DeleteGroup(ctx context.Context, tenant, id string) error {
	g, err := s.Group(ctx, tenant, id)
	if err != nil {
		return err
	}
	byGroup := bson.D{{Key: "tenant", Value: tenant}, {Key: "groupId", Value: g.ID}}
	for _, col := range []string{colSubscribers, colAddresses} {
		if _, err := s.db.Collection(col).DeleteMany(ctx, byGroup); err != nil {
			return unavailable("delete group", err)
		}
	}
	// Its lists lose their link and memberships; a list the CRM still syncs gets a
	// new group at its next sync.
	lists, err := s.ListsOfGroup(ctx, tenant, g.ID)
	if err != nil {
		return err
	}
	for _, l := range lists {
		if _, err := s.db.Collection(colListMembers).DeleteMany(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "crmListId", Value: l.CRMListID}}); err != nil {
			return unavailable("delete group", err)
		}
		if _, err := s.db.Collection(colLists).UpdateOne(ctx, bson.D{{Key: "_id", Value: l.ID}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "groupId", Value: ""}}}}); err != nil {
			return unavailable("delete group", err)
		}
	}
	prefix := "^" + regexp.QuoteMeta(tenant+"|"+g.ID+"|")
	if _, err := s.db.Collection(colCRMLinks).DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$regex", Value: prefix}}}}); err != nil {
		return unavailable("delete group", err)
	}
	if _, err := s.db.Collection(colGroups).DeleteOne(ctx, bson.D{{Key: "_id", Value: g.ID}}); err != nil {
		return unavailable("delete group", err)
	}
	return nil
}

// SetGroupCRMSync turns a group's CRM sync on or off; on needs a connection.
func (s *Store) SetGroupCRMSync(ctx context.Context, tenant, id string, enabled bool) (*Group, error) {
	g, err := s.Group(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if enabled && g.ConnectionID == "" {
		return nil, invalid("enabled", "the group has no connection to sync with")
	}
	g.CRMSync = enabled
	if err := s.replaceByID(ctx, colGroups, g.ID, g); err != nil {
		return nil, err
	}
	return g, nil
}
