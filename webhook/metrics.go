package webhook

import (
	"net/http"
)

// Metrics is told of every answered webhook call and of every group the ingest
// stores; metrics.Registry implements it.
type Metrics interface {
	// WebhookRequest counts a call by route, connection id ("" when it was
	// refused before it authenticated) and the status it was answered.
	WebhookRequest(route, connection string, status int)
	// IngestBatch records how many events one group commit stored.
	IngestBatch(size int)
}

// The routes, as Metrics name them.
const (
	RouteDataverse = "dataverse"
	RouteReactions = "reactions"
)

// metered serves h and tells m the status of the answer and the connection the
// call authenticated as; without m it is h itself.
func metered(m Metrics, route string, h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		m.WebhookRequest(route, rec.connection, max(rec.status, http.StatusOK))
	})
}

// authenticated notes the connection a call proved to come from, for Metrics.
// Only then is the id a label: an unauthenticated caller cannot add series by
// making ids up, so the label takes at most one value per connection.
func authenticated(w http.ResponseWriter, connectionID string) {
	if rec, ok := w.(*recorder); ok {
		rec.connection = connectionID
	}
}

// recorder remembers the status a handler answered and the connection it
// authenticated.
type recorder struct {
	http.ResponseWriter
	status     int
	connection string
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
