package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RunSets hold, per list sync run, the set of CRM records the run has seen so far.
// A run streams the list's members page by page and adds each page here; it then
// walks the group's current members and removes those the set lacks. The set lives
// in Redis, not in the run's memory (bounded by its page) nor in the store (which
// would take a write per member and run); it expires a day after its last use, and
// a run that finds it gone (Redis lost its data) fails and is retried from scratch.
type RunSets struct {
	rdb  redis.UniversalClient
	keys Keys
}

// runSetTTL is how long an abandoned run's set stays.
const runSetTTL = 24 * time.Hour

// NewRunSets returns the run sets under keys.
func NewRunSets(rdb redis.UniversalClient, keys Keys) *RunSets { return &RunSets{rdb: rdb, keys: keys} }

// Add records members as seen by run and returns how many of them are new to
// the set.
func (s *RunSets) Add(ctx context.Context, run string, members []string) (int64, error) {
	if len(members) == 0 {
		return 0, nil
	}
	key := s.keys.RunSet(run)
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	var added *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		added = p.SAdd(ctx, key, args...)
		p.Expire(ctx, key, runSetTTL)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("record seen members: %w", err)
	}
	return added.Val(), nil
}

// Len is how many members run has seen.
func (s *RunSets) Len(ctx context.Context, run string) (int64, error) {
	n, err := s.rdb.SCard(ctx, s.keys.RunSet(run)).Result()
	if err != nil {
		return 0, fmt.Errorf("count seen members: %w", err)
	}
	return n, nil
}

// Seen reports, for each of members, whether run has seen it.
func (s *RunSets) Seen(ctx context.Context, run string, members []string) ([]bool, error) {
	if len(members) == 0 {
		return nil, nil
	}
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	out, err := s.rdb.SMIsMember(ctx, s.keys.RunSet(run), args...).Result()
	if err != nil {
		return nil, fmt.Errorf("look up seen members: %w", err)
	}
	return out, nil
}

// Drop forgets run's set.
func (s *RunSets) Drop(ctx context.Context, run string) error {
	if err := s.rdb.Del(ctx, s.keys.RunSet(run)).Err(); err != nil {
		return fmt.Errorf("drop seen members: %w", err)
	}
	return nil
}
