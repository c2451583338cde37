package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Leases decide which worker owns which partition of the event stream: a lease is a
// key set with NX and an expiry, renewed by its holder; a worker that dies stops
// renewing and its partitions pass to the others when the lease expires.
type Leases struct {
	rdb  redis.UniversalClient
	keys Keys
	ttl  time.Duration
}

// NewLeases returns the lease manager; ttl is how long a lease lives unrenewed.
func NewLeases(rdb redis.UniversalClient, keys Keys, ttl time.Duration) *Leases {
	return &Leases{rdb: rdb, keys: keys, ttl: ttl}
}

// Acquire takes partition p for owner if nobody holds it.
func (l *Leases) Acquire(ctx context.Context, p int, owner string) (bool, error) {
	ok, err := l.rdb.SetNX(ctx, l.keys.Lease(p), owner, l.ttl).Result()
	if err != nil {
		return false, fmt.Errorf("acquire lease: %w", err)
	}
	return ok, nil
}

// renewScript extends a lease if its holder asks.
// KEYS[1] the lease; ARGV[1] the owner; ARGV[2] the ttl in ms. Returns 1 if renewed, 0 if not held.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// releaseScript deletes a lease if its holder asks.
// KEYS[1] the lease; ARGV[1] the owner. Returns 1 if released, 0 if not held.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`)

// Renew extends owner's lease on p; false means the lease was lost.
func (l *Leases) Renew(ctx context.Context, p int, owner string) (bool, error) {
	n, err := renewScript.Run(ctx, l.rdb, []string{l.keys.Lease(p)}, owner, l.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renew lease: %w", err)
	}
	return n == 1, nil
}

// Release gives p up if owner holds it.
func (l *Leases) Release(ctx context.Context, p int, owner string) error {
	if err := releaseScript.Run(ctx, l.rdb, []string{l.keys.Lease(p)}, owner).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// Heartbeat records that owner is alive and returns how many workers are.
func (l *Leases) Heartbeat(ctx context.Context, owner string, now time.Time) (int, error) {
	key := l.keys.Members()
	cmds, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(now.UnixMilli()), Member: owner})
		p.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatInt(now.Add(-l.ttl).UnixMilli(), 10))
		p.ZCard(ctx, key)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("heartbeat: %w", err)
	}
	return int(cmds[2].(*redis.IntCmd).Val()), nil
}

// Leave removes owner from the live workers, so the others rebalance at once.
func (l *Leases) Leave(ctx context.Context, owner string) error {
	if err := l.rdb.ZRem(ctx, l.keys.Members(), owner).Err(); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}
