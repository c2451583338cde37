package store

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
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

// SubscribersByIDs loads several of the tenant's subscribers by id (one lookup by
// _id each on the embedded store, one $in query on MongoDB); ids that do not
// exist, or are another tenant's, are absent.
func (s *Store) SubscribersByIDs(ctx context.Context, tenant string, ids []string) (map[string]*Subscriber, error) {
	in := make(bson.A, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			in = append(in, id)
		}
	}
	var out []*Subscriber
	if err := s.findIn(ctx, colSubscribers, in, &out); err != nil {
		return nil, err
	}
	m := make(map[string]*Subscriber, len(out))
	for _, sub := range out {
		if sub.Tenant == tenant {
			m[sub.ID] = sub
		}
	}
	return m, nil
}

// ferretMaxWrites is the most write statements one command may carry on FerretDB.
// v1.24 keeps a SQLite connection per statement of an update command until the
// command ends, from a pool of 100, so an update of a few hundred documents by
// BulkWrite waits for a connection forever (measured: 300 updateOne models hang),
// and so do several clients writing at once: three clients each writing 50
// statements per command took every connection and wedged the whole server
// (measured). At 16 a fleet of up to five processes on one store-server, or a test
// binary's parallel stores on its shared server, stay well inside the pool.
const ferretMaxWrites = 16

// bulkWrite applies models unordered, in commands of at most ferretMaxWrites on
// FerretDB and in one on MongoDB; what names them in errors.
func (s *Store) bulkWrite(ctx context.Context, col, what string, models []mongo.WriteModel) error {
	chunk := len(models)
	if s.ferret {
		chunk = ferretMaxWrites
	}
	for len(models) > 0 {
		n := min(chunk, len(models))
		if _, err := s.db.Collection(col).BulkWrite(ctx, models[:n], options.BulkWrite().SetOrdered(false)); err != nil {
			return unavailable(what, err)
		}
		models = models[n:]
	}
	return nil
}
