package store

import (
	"context"
	"errors"
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
	cur, err := s.db.Collection(colGroups).Find(ctx, bson.D{
		{Key: "tenant", Value: tenant},
		{Key: "connectionId", Value: connectionID},
		{Key: "crmSync", Value: true},
	})
	if err != nil {
		return nil, unavailable("list synced groups", err)
	}
	var out []*Group
	if err := cur.All(ctx, &out); err != nil {
		return nil, unavailable("list synced groups", err)
	}
	return out, nil
}
