package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Jobs are leases on named jobs (a list's sync, a connection's sweep) that come
// with a fencing token: each grant increments a counter, so a holder that paused
// past its lease (a GC stop, a frozen VM) carries an older token than the one that
// took over, and the store refuses its writes (design.md, "One writer per key").
type Jobs struct {
	rdb  redis.UniversalClient
	keys Keys
	ttl  time.Duration
}

// NewJobs returns the job lease manager; ttl is how long a lease lives unrenewed.
func NewJobs(rdb redis.UniversalClient, keys Keys, ttl time.Duration) *Jobs {
	return &Jobs{rdb: rdb, keys: keys, ttl: ttl}
}

// TTL is how long a lease lives unrenewed.
func (j *Jobs) TTL() time.Duration { return j.ttl }

// acquireScript takes a free job lease and hands out the next fencing token.
// KEYS[1] the lease, KEYS[2] the token counter; ARGV[1] the owner, ARGV[2] the ttl
// in ms. Returns the token, or 0 when someone else holds the lease.
var acquireScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
local token = redis.call("INCR", KEYS[2])
redis.call("SET", KEYS[1], ARGV[1] .. "|" .. token, "PX", ARGV[2])
return token`)

// Acquire takes the lease on job for owner if nobody holds it and returns its
// fencing token; ok is false when another owner holds it.
func (j *Jobs) Acquire(ctx context.Context, job, owner string) (token int64, ok bool, err error) {
	token, err = acquireScript.Run(ctx, j.rdb, []string{j.keys.Job(job), j.keys.JobFence(job)}, owner, j.ttl.Milliseconds()).Int64()
	if err != nil {
		return 0, false, fmt.Errorf("acquire job lease %s: %w", job, err)
	}
	return token, token > 0, nil
}

// Renew extends the lease that owner holds with token; false means it was lost.
func (j *Jobs) Renew(ctx context.Context, job, owner string, token int64) (bool, error) {
	n, err := renewScript.Run(ctx, j.rdb, []string{j.keys.Job(job)}, holder(owner, token), j.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renew job lease %s: %w", job, err)
	}
	return n == 1, nil
}

// Release gives the lease up if owner still holds it with token.
func (j *Jobs) Release(ctx context.Context, job, owner string, token int64) error {
	err := releaseScript.Run(ctx, j.rdb, []string{j.keys.Job(job)}, holder(owner, token)).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("release job lease %s: %w", job, err)
	}
	return nil
}

func holder(owner string, token int64) string { return owner + "|" + strconv.FormatInt(token, 10) }
