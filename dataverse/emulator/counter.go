package emulator

import (
	"net/http"
	"strings"
	"sync"
)

// RequestCounter is an http.Handler in front of an emulator that counts the Web
// API requests of each user since it was made (a $batch counts once, as for the
// service-protection limits), so tests and benchmarks can state what a piece of
// work costs in requests. Token requests are not counted (see TokenRequests).
type RequestCounter struct {
	e  *Emulator
	mu sync.Mutex
	by map[counterKey]int64
}

// counterKey is a user (systemuserid) and the first segment of a Web API path
// ("contacts", "$batch", "AddListMembersList").
type counterKey struct{ user, resource string }

// NewRequestCounter returns a counter that passes every request on to e; serve it
// (httptest.NewServer) instead of e.
func NewRequestCounter(e *Emulator) *RequestCounter {
	return &RequestCounter{e: e, by: map[counterKey]int64{}}
}

// ServeHTTP counts a Web API request of a known token's user and lets the
// emulator answer it.
func (c *RequestCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, "/api/data/v9.2/"); ok {
		if p, err := c.e.authenticate(r); err == nil {
			resource, _, _ := strings.Cut(rest, "/")
			if i := strings.IndexByte(resource, '('); i >= 0 {
				resource = resource[:i]
			}
			c.mu.Lock()
			c.by[counterKey{p.user, resource}]++
			c.mu.Unlock()
		}
	}
	c.e.ServeHTTP(w, r)
}

// Requests is how many Web API requests a user (a systemuserid, such as
// ApplicationUserID) has sent so far.
func (c *RequestCounter) Requests(userID string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for k, v := range c.by {
		if k.user == userID {
			n += v
		}
	}
	return n
}

// RequestsTo is how many of a user's Web API requests went to one resource: the
// first segment of the path below /api/data/v9.2/, without a key ("contacts" for
// contacts(<id>) and contacts/Microsoft.Dynamics.CRM.CreateMultiple, "$batch").
func (c *RequestCounter) RequestsTo(userID, resource string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.by[counterKey{userID, resource}]
}
