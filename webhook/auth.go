package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"crmsync/store"
)

// authenticate checks the credential that the connection's service endpoint sends.
// It fails closed: an unknown mode or an unreadable secret refuses the call.
func authenticate(r *http.Request, auth store.WebhookAuth, secret string) bool {
	var presented string
	switch auth.Mode {
	case store.WebhookKey:
		presented = r.URL.Query().Get("code")
	case store.WebhookHTTPHeader:
		presented = r.Header.Get(auth.Name)
	case store.WebhookHTTPQueryString:
		presented = r.URL.Query().Get(auth.Name)
	default:
		return false
	}
	return presented != "" && secret != "" && equalConstantTime(presented, secret)
}

// equalConstantTime compares digests, so neither the content nor the length of the
// secret shows in the time the comparison takes.
func equalConstantTime(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
