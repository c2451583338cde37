package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RateLimiter allows up to a number of events per key in a fixed window, counted
// in Redis so that every instance of the fleet shares the count. A window starts
// with the first event of a key and lasts its length.
type RateLimiter struct {
	rdb    redis.UniversalClient
	keys   Keys
	limit  int
	window time.Duration
}

// NewRateLimiter returns a limiter of limit events per window and key.
func NewRateLimiter(rdb redis.UniversalClient, keys Keys, limit int, window time.Duration) *RateLimiter {
	return &RateLimiter{rdb: rdb, keys: keys, limit: limit, window: window}
}

// rateScript counts one event of a window.
// KEYS[1] the window's counter; ARGV[1] the window in ms.
// Returns {count so far, ms until the window ends}.
var rateScript = redis.NewScript(`
local n = redis.call("INCR", KEYS[1])
if n == 1 then
  redis.call("PEXPIRE", KEYS[1], ARGV[1])
end
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then
  redis.call("PEXPIRE", KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}`)

// Allow counts an event of key and reports whether it is within the limit; when
// it is not, retryAfter is how long until the window ends.
func (l *RateLimiter) Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error) {
	res, err := rateScript.Run(ctx, l.rdb, []string{l.keys.RateLimit(key)}, l.window.Milliseconds()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("count rate of %s: %w", key, err)
	}
	if res[0] <= int64(l.limit) {
		return true, 0, nil
	}
	return false, time.Duration(res[1]) * time.Millisecond, nil
}
