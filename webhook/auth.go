package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"crmsync/store"
)

// authenticate checks the call against each credential valid now (the current one
// and, during a rotation, the one it replaced). It fails closed: an unknown mode or
// an empty secret matches nothing. Every credential is compared, so the time taken
// does not tell which one matched.
func authenticate(r *http.Request, creds []store.WebhookCredential) bool {
	ok := false
	for _, c := range creds {
		if matches(r, c) {
			ok = true
		}
	}
	return ok
}

func matches(r *http.Request, auth store.WebhookCredential) bool {
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
	return presented != "" && auth.Secret != "" && equalConstantTime(presented, auth.Secret)
}

// equalConstantTime compares digests, so neither the content nor the length of the
// secret shows in the time the comparison takes.
func equalConstantTime(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
