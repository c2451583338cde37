package emulator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// clientCred is a registered confidential client and the systemuser it acts as.
type clientCred struct {
	secret string
	user   string // systemuserid
}

// principal is the caller of a Web API request.
type principal struct {
	user         string // systemuserid
	businessUnit string
}

// principal looks up a systemuser's business unit.
func (e *Emulator) principal(user string) *principal {
	e.mu.RLock()
	defer e.mu.RUnlock()
	p := &principal{user: user}
	if rec := e.rows["systemuser"][user]; rec != nil {
		if bu, ok := rec.vals["businessunitid"].(ref); ok {
			p.businessUnit = bu.id
		}
	}
	return p
}

// issuedToken is what an opaque access token stands for.
type issuedToken struct {
	user    string
	expires time.Time
}

// tokenStore maps opaque access tokens to their user and expiry.
type tokenStore struct {
	mu sync.Mutex
	m  map[string]issuedToken
}

// issue stores a new random token; expired ones are dropped now and then so a
// long-running emulator does not grow without bound.
func (s *tokenStore) issue(user string, now time.Time, ttl time.Duration) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= 1024 {
		for k, v := range s.m {
			if !now.Before(v.expires) {
				delete(s.m, k)
			}
		}
	}
	s.m[tok] = issuedToken{user: user, expires: now.Add(ttl)}
	return tok
}

func (s *tokenStore) lookup(tok string, now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.m[tok]
	if !ok || !now.Before(it.expires) {
		return "", false
	}
	return it.user, true
}

// authenticate checks the bearer token of a Web API request.
func (e *Emulator) authenticate(r *http.Request) (*principal, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, errorf(http.StatusUnauthorized, codeNotAuthenticated, "Bearer token is missing from the Authorization header.")
	}
	user, ok := e.tokens.lookup(strings.TrimSpace(tok), e.now())
	if !ok {
		return nil, errorf(http.StatusUnauthorized, codeNotAuthenticated, "The access token is invalid or has expired.")
	}
	return e.principal(user), nil
}

// entraError is an answer of the token endpoint in Entra ID's shape.
type entraError struct {
	status int
	code   string // "invalid_client", "invalid_scope", …
	aadsts int    // the AADSTS number in the description and error_codes
	desc   string
}

// serveToken is the client-credentials token endpoint
// POST /{tenant}/oauth2/v2.0/token; any tenant id is accepted.
func (e *Emulator) serveToken(w http.ResponseWriter, r *http.Request) {
	e.tokenRequests.Add(1)
	tok, ee := e.grant(w, r)
	if ee != nil {
		e.writeEntraError(w, ee)
		return
	}
	ttl := e.cfg.TokenTTL
	expiresIn := max(int64(ttl/time.Second)-1, 0)
	b := []byte(`{"token_type":"Bearer","expires_in":`)
	b = strconv.AppendInt(b, expiresIn, 10)
	b = append(b, `,"ext_expires_in":`...)
	b = strconv.AppendInt(b, expiresIn, 10)
	b = append(b, `,"access_token":`...)
	b = appendString(b, tok)
	b = append(b, '}')
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// grant checks a token request and issues a token, or says what Entra ID would.
func (e *Emulator) grant(w http.ResponseWriter, r *http.Request) (string, *entraError) {
	if r.Method != http.MethodPost {
		return "", &entraError{http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests. Received a " + r.Method + " request."}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return "", &entraError{http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'."}
	}
	form := r.PostForm
	missing := func(name string) *entraError {
		return &entraError{http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: '" + name + "'."}
	}
	grant := form.Get("grant_type")
	if grant == "" {
		return "", missing("grant_type")
	}
	if grant != "client_credentials" {
		return "", &entraError{http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '" + grant + "'."}
	}
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if bid, bsecret, ok := r.BasicAuth(); ok {
		id, secret = bid, bsecret
	}
	if id == "" {
		return "", missing("client_id")
	}
	tenant := r.PathValue("tenant")
	client, ok := e.clients[id]
	if !ok {
		return "", &entraError{http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", id, tenant)}
	}
	if secret == "" {
		return "", &entraError{http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."}
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(client.secret)) != 1 {
		return "", &entraError{http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf(
			"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", id)}
	}
	scope := form.Get("scope")
	if scope == "" {
		return "", missing("scope")
	}
	resource, ok := strings.CutSuffix(scope, "/.default")
	if !ok || strings.ContainsAny(scope, " ") {
		return "", &entraError{http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf(
			"The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope)}
	}
	if !isOwnResource(resource, r.Host) {
		return "", &entraError{http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf(
			"The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", resource, tenant)}
	}
	return e.tokens.issue(client.user, e.now(), e.cfg.TokenTTL), nil
}

// isOwnResource says whether a scope's resource names this emulator: its base URL,
// where the host may be 127.0.0.1 or localhost interchangeably (contract.md).
func isOwnResource(resource, requestHost string) bool {
	u, err := url.Parse(strings.TrimSuffix(resource, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return false
	}
	reqHost, reqPort, err := net.SplitHostPort(requestHost)
	if err != nil {
		reqHost, reqPort = requestHost, ""
	}
	if u.Port() != reqPort {
		return false
	}
	local := func(h string) bool { return h == "127.0.0.1" || h == "localhost" }
	host := u.Hostname()
	return strings.EqualFold(host, reqHost) || (local(host) && local(reqHost))
}

// writeEntraError renders an error the way login.microsoftonline.com does.
func (e *Emulator) writeEntraError(w http.ResponseWriter, ee *entraError) {
	now := e.now().UTC()
	trace, corr := uuid.NewString(), uuid.NewString()
	desc := fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
		ee.aadsts, ee.desc, trace, corr, now.Format("2006-01-02 15:04:05Z"))
	b := []byte(`{"error":`)
	b = appendString(b, ee.code)
	b = append(b, `,"error_description":`...)
	b = appendString(b, desc)
	b = append(b, `,"error_codes":[`...)
	b = strconv.AppendInt(b, int64(ee.aadsts), 10)
	b = append(b, `],"timestamp":`...)
	b = appendString(b, now.Format("2006-01-02 15:04:05Z"))
	b = append(b, `,"trace_id":`...)
	b = appendString(b, trace)
	b = append(b, `,"correlation_id":`...)
	b = appendString(b, corr)
	b = append(b, `,"error_uri":`...)
	b = appendString(b, "https://login.microsoftonline.com/error?code="+strconv.Itoa(ee.aadsts))
	b = append(b, '}')
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(ee.status)
	_, _ = w.Write(b)
}
