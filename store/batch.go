package store

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// GroupsByIDs loads several of the tenant's groups in one query, for the API's
// dataloaders; ids that do not exist (or are another tenant's) are absent.
func (s *Store) GroupsByIDs(ctx context.Context, tenant string, ids []string) (map[string]*Group, error) {
	var out []*Group
	if err := s.findByIDs(ctx, colGroups, tenant, ids, &out); err != nil {
		return nil, err
	}
	m := make(map[string]*Group, len(out))
	for _, g := range out {
		m[g.ID] = g
	}
	return m, nil
}

// ConnectionsByIDs loads several of the tenant's connections in one query.
func (s *Store) ConnectionsByIDs(ctx context.Context, tenant string, ids []string) (map[string]*Connection, error) {
	var out []*Connection
	if err := s.findByIDs(ctx, colConnections, tenant, ids, &out); err != nil {
		return nil, err
	}
	m := make(map[string]*Connection, len(out))
	for _, c := range out {
		m[c.ID] = c
	}
	return m, nil
}

func (s *Store) findByIDs(ctx context.Context, col, tenant string, ids []string, out any) error {
	in := make(bson.A, len(ids))
	for i, id := range ids {
		in[i] = id
	}
	cur, err := s.db.Collection(col).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: in}}}, {Key: "tenant", Value: tenant}})
	if err != nil {
		return unavailable("find "+col, err)
	}
	if err := cur.All(ctx, out); err != nil {
		return unavailable("find "+col, err)
	}
	return nil
}
