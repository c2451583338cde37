package queue

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// QueryCache keeps GraphQL documents under their SHA-256 for automatic persisted
// queries, shared by every instance through Redis. Losing it costs only a retry
// with the full query, so errors read as "not cached".
type QueryCache struct {
	rdb  redis.UniversalClient
	keys Keys
	ttl  time.Duration
}

// NewQueryCache returns the cache; entries live for ttl after their last store.
func NewQueryCache(rdb redis.UniversalClient, keys Keys, ttl time.Duration) *QueryCache {
	return &QueryCache{rdb: rdb, keys: keys, ttl: ttl}
}

// Get returns the query stored under its hash.
func (c *QueryCache) Get(ctx context.Context, hash string) (string, bool) {
	q, err := c.rdb.Get(ctx, c.keys.PersistedQuery(hash)).Result()
	if err != nil {
		return "", false
	}
	return q, true
}

// Add stores a query under its hash.
func (c *QueryCache) Add(ctx context.Context, hash, query string) {
	_ = c.rdb.Set(ctx, c.keys.PersistedQuery(hash), query, c.ttl).Err()
}
