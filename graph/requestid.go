package graph

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"

	"crmsync/auth"
	"crmsync/logctx"
)

// RequestIDHeader names a GraphQL request's id, so a caller can find the lines
// logged about its request, and the CRM writes its changes cause, by an id it
// knows. The caller's id is kept when it is sane (1 to 128 characters of A–Z,
// a–z, 0–9, '.', '_', ':' and '-'); otherwise one is generated. Every HTTP answer
// carries the id in the same header.
const RequestIDHeader = "X-Request-Id"

// maxRequestIDLength is the longest request id taken from a caller.
const maxRequestIDLength = 128

// withRequestID gives each request its id (RequestIDHeader), answers with it and
// puts it on the request's context as the correlation id: lines logged with that
// context carry it, and the events of the changes the request makes
// (engine.Outbox) are correlated with it.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !saneRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		ctx := logctx.With(r.Context(), slog.String(logctx.Correlation, id))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// saneRequestID reports whether a caller's request id can go into logs and
// headers as it is: not empty, not too long, and only characters that need no
// escaping anywhere.
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLength {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// newRequestID is 16 random bytes in hex.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// withCallerTenant puts the authenticated caller's tenant on the request's
// context, for the lines logged about the request; it runs after the verifier.
func withCallerTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := auth.CallerFrom(r.Context()); c != nil {
			r = r.WithContext(logctx.With(r.Context(), slog.String(logctx.Tenant, c.Tenant)))
		}
		next.ServeHTTP(w, r)
	})
}
