package emulator

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Service-protection limits (reference/dataverse.md §4.6, §7.3): per user, over a
// sliding five-minute window, a number of requests and a combined handling time,
// and at any moment a number of concurrent requests. A breach answers 429 with
// Retry-After and Dataverse's error JSON; the request is not counted, so the
// Retry-After it got stays true.

// limitWindow is the sliding window of the request and execution-time limits.
const limitWindow = 5 * time.Minute

// Error codes of the three limits (§7.3).
const (
	codeLimitRequests   = "0x80072322"
	codeLimitExecTime   = "0x80072321"
	codeLimitConcurrent = "0x80072326"
)

// throttle keeps the three counters of every user.
type throttle struct {
	maxRequests   int           // ≤ 0: no limit
	maxExec       time.Duration // ≤ 0: no limit
	maxConcurrent int           // ≤ 0: no limit

	mu    sync.Mutex
	users map[string]*usage // by systemuserid
}

// usage is one user's requests and handling times inside the window, oldest first.
type usage struct {
	arrivals []time.Time
	execs    []execSpan
	execSum  time.Duration
	inflight int
}

// execSpan is the handling time of one finished request, counted from when it
// finished.
type execSpan struct {
	at time.Time
	d  time.Duration
}

func newThrottle(cfg Config) *throttle {
	th := &throttle{maxRequests: cfg.LimitRequests, maxConcurrent: cfg.LimitConcurrent, users: map[string]*usage{}}
	if cfg.LimitExecSeconds > 0 {
		th.maxExec = time.Duration(cfg.LimitExecSeconds * float64(time.Second))
	}
	return th
}

// budget is what a user has left in the window, for the debug headers Dataverse
// sends on normal answers.
type budget struct {
	requests int           // -1 without a limit
	exec     time.Duration // -1 without a limit
}

// admit counts a request of user arriving at now, or refuses it with a 429
// apiError that carries Retry-After. An admitted request must be finished with
// done and its handling time.
func (th *throttle) admit(user string, now time.Time) (budget, error) {
	th.mu.Lock()
	defer th.mu.Unlock()
	u := th.users[user]
	if u == nil {
		u = &usage{}
		th.users[user] = u
	}
	u.prune(now)
	if th.maxConcurrent > 0 && u.inflight >= th.maxConcurrent {
		return budget{}, throttled(codeLimitConcurrent, time.Second,
			"Number of concurrent requests exceeded the limit of %d.", th.maxConcurrent)
	}
	if th.maxRequests > 0 && len(u.arrivals) >= th.maxRequests {
		// Allowed again once enough of the oldest arrivals have left the window.
		free := u.arrivals[len(u.arrivals)-th.maxRequests].Add(limitWindow)
		return budget{}, throttled(codeLimitRequests, free.Sub(now),
			"Number of requests exceeded the limit of %d over time window of %d seconds.", th.maxRequests, int(limitWindow/time.Second))
	}
	if th.maxExec > 0 && u.execSum >= th.maxExec {
		sum := u.execSum
		free := now
		for _, s := range u.execs {
			sum -= s.d
			if sum < th.maxExec {
				free = s.at.Add(limitWindow)
				break
			}
		}
		return budget{}, throttled(codeLimitExecTime, free.Sub(now),
			"Combined execution time of incoming requests exceeded limit of %s milliseconds over time window of %d seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
			groupThousands(th.maxExec.Milliseconds()), int(limitWindow/time.Second))
	}
	u.arrivals = append(u.arrivals, now)
	u.inflight++
	b := budget{requests: -1, exec: -1}
	if th.maxRequests > 0 {
		b.requests = th.maxRequests - len(u.arrivals)
	}
	if th.maxExec > 0 {
		b.exec = th.maxExec - u.execSum
	}
	return b, nil
}

// done records an admitted request's end and how long it was handled.
func (th *throttle) done(user string, now time.Time, d time.Duration) {
	th.mu.Lock()
	defer th.mu.Unlock()
	u := th.users[user]
	if u == nil {
		return
	}
	u.inflight--
	u.execs = append(u.execs, execSpan{at: now, d: d})
	u.execSum += d
}

// prune drops what has left the window: everything at or before now − 5 min.
func (u *usage) prune(now time.Time) {
	edge := now.Add(-limitWindow)
	i := 0
	for i < len(u.arrivals) && !u.arrivals[i].After(edge) {
		i++
	}
	u.arrivals = u.arrivals[i:]
	i = 0
	for i < len(u.execs) && !u.execs[i].at.After(edge) {
		u.execSum -= u.execs[i].d
		i++
	}
	u.execs = u.execs[i:]
}

// throttled is the 429 of a limit; Retry-After is whole seconds, at least one.
func throttled(code string, wait time.Duration, format string, args ...any) *apiError {
	e := errorf(http.StatusTooManyRequests, code, format, args...)
	e.retryAfter = max(int(math.Ceil(wait.Seconds())), 1)
	return e
}

// groupThousands writes 1200000 as "1,200,000", as Dataverse's message does.
func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return s
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// setBudgetHeaders adds the debug headers of §7.3. Their units are unverified;
// the emulator sends requests left and milliseconds of handling time left.
func setBudgetHeaders(h http.Header, b budget) {
	if b.requests >= 0 {
		h.Set("x-ms-ratelimit-burst-remaining-xrm-requests", strconv.Itoa(b.requests))
	}
	if b.exec >= 0 {
		h.Set("x-ms-ratelimit-time-remaining-xrm-requests", fmt.Sprintf("%.2f", float64(b.exec)/float64(time.Millisecond)))
	}
}

// sleepContext waits for d or until ctx ends.
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
