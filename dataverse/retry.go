package dataverse

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// retrier decides whether and when a failed request is sent again: 429 after the
// server's Retry-After and never sooner; 408, 5xx and transport failures after a
// jittered exponential backoff; everything else not at all.
type retrier struct {
	max      int           // retries after the first attempt
	min, cap time.Duration // first backoff and its ceiling
	sleep    func(ctx context.Context, d time.Duration) error
}

// transportError marks a failure to get any HTTP answer (connection refused, reset,
// a body cut short), which is worth another attempt.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// delay returns how long to wait before retry number attempt+1 after err, or false
// when err is final.
func (r retrier) delay(err error, attempt int) (time.Duration, bool) {
	if attempt >= r.max || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if !ae.Retryable() {
			return 0, false
		}
		if ae.Status == http.StatusTooManyRequests && ae.RetryAfter > 0 {
			// Spread the callers a throttle stopped together over a tenth of the wait,
			// always after it.
			return ae.RetryAfter + time.Duration(rand.Int64N(int64(ae.RetryAfter/10)+1)), true
		}
		return max(r.backoff(attempt), ae.RetryAfter), true
	}
	var te *transportError
	if errors.As(err, &te) {
		return r.backoff(attempt), true
	}
	return 0, false
}

// backoff is min·2^attempt, capped, with "equal jitter": half fixed, half random,
// so concurrent clients spread out but never retry immediately.
func (r retrier) backoff(attempt int) time.Duration {
	d := r.min
	for i := 0; i < attempt && d < r.cap; i++ {
		d *= 2
	}
	d = min(d, r.cap)
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// parseRetryAfter reads Retry-After as seconds (decimals allowed, §7.3) or an HTTP
// date; zero when absent or unreadable.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(h, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// sleepContext waits for d or until ctx ends, whichever is first.
func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// throttled sleeps d, a wait that Dataverse's throttling imposed, and tells the
// observer how long it lasted (by the client's clock, so a test's fake sleep
// counts as what it stands for).
func (c *Client) throttled(ctx context.Context, d time.Duration) error {
	start := c.now()
	err := c.retry.sleep(ctx, d)
	if c.obs != nil {
		c.obs.WebAPIRetryWait(c.now().Sub(start))
	}
	return err
}

// gate holds every request of a client back while Dataverse has throttled it:
// after a 429 all requests from the same user fail until Retry-After has passed, so
// sending them earlier only lengthens the penalty (§7.3).
type gate struct {
	mu    sync.Mutex
	until time.Time
}

// close keeps requests back until t.
func (g *gate) close(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.After(g.until) {
		g.until = t
	}
}

// wait returns once the gate is open.
func (g *gate) wait(ctx context.Context, now func() time.Time, sleep func(context.Context, time.Duration) error) error {
	g.mu.Lock()
	d := g.until.Sub(now())
	g.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return sleep(ctx, d)
}

// initialConcurrency is where the in-flight limit starts before the server has
// recommended one: low, then ramped up (§4.6, "start low, ramp up").
const initialConcurrency = 4

// limiter bounds how many requests a client has in flight and adapts the bound
// the AIMD way: every answer below 500 other than 429 adds 1/limit (one more slot
// per round of requests that went through), a 429 halves it, at most once per round
// — only a request sent after the last cut can cut again, so one burst of 429s
// does not collapse the limit to 1. Dataverse's x-ms-dop-hint (its recommended
// degree of parallelism) caps it; the first hint also sets it.
type limiter struct {
	mu       sync.Mutex
	limit    float64 // ≥ 1
	ceiling  int     // max, or the server's hint when lower
	max      int
	hinted   bool
	inflight int
	epoch    uint64 // advances with every cut
	waiters  []chan struct{}
}

func newLimiter(maxInFlight int) *limiter {
	return &limiter{limit: float64(min(initialConcurrency, maxInFlight)), ceiling: maxInFlight, max: maxInFlight}
}

// acquire waits for a free slot; the epoch it returns goes back to release.
func (l *limiter) acquire(ctx context.Context) (uint64, error) {
	l.mu.Lock()
	if len(l.waiters) == 0 && l.inflight < int(l.limit) {
		l.inflight++
		epoch := l.epoch
		l.mu.Unlock()
		return epoch, nil
	}
	ready := make(chan struct{})
	l.waiters = append(l.waiters, ready)
	l.mu.Unlock()
	select {
	case <-ready: // handed a slot, already counted
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.epoch, nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		if i := slices.Index(l.waiters, ready); i >= 0 {
			l.waiters = slices.Delete(l.waiters, i, i+1)
		} else { // the slot arrived as ctx ended: pass it on
			l.inflight--
			l.handOffLocked()
		}
		return 0, ctx.Err()
	}
}

// outcome is what an attempt tells the limiter.
type outcome uint8

const (
	outcomeNone      outcome = iota // no answer or a 5xx: says nothing about the limits
	outcomeAnswered                 // the server took the request: room to grow
	outcomeThrottled                // 429: too much
)

// outcomeOf classifies an answer's status.
func outcomeOf(status int) outcome {
	switch {
	case status == http.StatusTooManyRequests:
		return outcomeThrottled
	case status < 500:
		return outcomeAnswered
	}
	return outcomeNone
}

// release frees a slot and adapts the limit to what the attempt met.
func (l *limiter) release(epoch uint64, o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	switch {
	case o == outcomeThrottled && epoch == l.epoch:
		l.limit = max(1, l.limit/2)
		l.epoch++
	case o == outcomeAnswered:
		l.limit = min(l.limit+1/l.limit, float64(l.ceiling))
	}
	l.handOffLocked()
}

// hint takes the server's x-ms-dop-hint.
func (l *limiter) hint(n int) {
	if n < 1 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ceiling = min(n, l.max)
	if !l.hinted {
		l.hinted = true
		l.limit = float64(l.ceiling)
	}
	l.limit = min(l.limit, float64(l.ceiling))
	l.handOffLocked()
}

// current is the limit now, in whole requests.
func (l *limiter) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// handOffLocked gives free slots to waiters, first come first served.
func (l *limiter) handOffLocked() {
	for len(l.waiters) > 0 && l.inflight < int(l.limit) {
		close(l.waiters[0])
		l.waiters = slices.Delete(l.waiters, 0, 1)
		l.inflight++
	}
}
