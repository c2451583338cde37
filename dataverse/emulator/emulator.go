package emulator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Config describes an emulator; the zero value is usable and gives the identities
// contract.md documents.
type Config struct {
	// ClientID and ClientSecret are the credentials of the application user
	// crmsync@emulator.test, the identity a crmsync connection uses. Defaults
	// "emulator" and "emulator-secret".
	ClientID     string
	ClientSecret string
	// UserClientID and UserClientSecret act as the human user admin@emulator.test,
	// so tests can make changes that are not crmsync's own. Defaults
	// "emulator-user" and "emulator-user-secret".
	UserClientID     string
	UserClientSecret string
	// TokenTTL is how long an access token is valid; the token answer reports one
	// second less in expires_in, as Entra ID does (3599 for the default 1h).
	TokenTTL time.Duration
	// AllowQualifiedLeadUpdates lets PATCH change columns of a qualified lead. By
	// default such updates are refused (contract.md: "qualified leads refuse
	// updates"); reference/dataverse.md §7.4 notes that real Dataverse's behaviour
	// is unverified, hence the switch. State changes (reopening) always work.
	AllowQualifiedLeadUpdates bool
	// Now is the clock for createdon/modifiedon, token expiry, the service-protection
	// window and webhook timestamps, so tests can move time; default time.Now.
	Now func() time.Time
	// Logger receives internal errors (at Error), failed webhook deliveries (at Warn)
	// and each request (at Debug); default discards.
	Logger *slog.Logger

	// LimitRequests is the service-protection limit on Web API requests per user
	// over a sliding five-minute window (§7.3, code 0x80072322); default 6000,
	// negative for none.
	LimitRequests int
	// LimitExecSeconds is the limit on the combined handling time of a user's Web
	// API requests over the same window, in seconds (0x80072321); default 1200,
	// negative for none. Handling time is measured on the real clock and includes
	// Latency.
	LimitExecSeconds float64
	// LimitConcurrent is how many Web API requests one user may have in flight; one
	// more fails at once (0x80072326). Default 52, negative for none.
	LimitConcurrent int
	// DOPHint is the x-ms-dop-hint header sent on every Web API answer, Dataverse's
	// recommended degree of parallelism; default 4, negative to leave it out.
	DOPHint int
	// Latency is added to every Web API request before it is handled, to imitate a
	// distant or busy server; default none.
	Latency time.Duration
	// FaultRate is the share (0 to 1) of Web API requests that fail on purpose: half
	// of them answer 503 with Dataverse's error JSON before anything happens, half
	// are cut (the connection closed without an answer), of which half are cut
	// after the request took effect, so clients must make retries safe. Default 0.
	FaultRate float64
	// Rand drives fault injection; tests pass a seeded source (rand.NewPCG) to get
	// the same faults every run. Default a randomly seeded source.
	Rand rand.Source

	// WebhookTimeout is how long a webhook delivery may take before it counts as
	// failed; default 60s, as Dataverse (§2.3).
	WebhookTimeout time.Duration
	// WebhookWorkers is how many webhook deliveries run at once; default 4.
	WebhookWorkers int
	// WebhookClient sends webhook deliveries; default a client with a transport of
	// its own and no timeout (WebhookTimeout bounds each attempt).
	WebhookClient *http.Client
	// DropWebhooks, when set, is asked before each webhook delivery; returning true
	// records the delivery as dropped and sends nothing, so tests can lose events on
	// purpose (for the anti-entropy sweep).
	DropWebhooks func(stepID string) bool
	// DeliveryLogSize is how many webhook deliveries Deliveries keeps, the oldest
	// going first; default 10000.
	DeliveryLogSize int

	// ChangeTrackingRetention is how long deletions are remembered for change
	// tracking and a delta token stays usable (organization.expirechangetrackingindays,
	// §7.2); an older token fails with ExpiredVersionStamp. Default 7 days, the
	// current documented default.
	ChangeTrackingRetention time.Duration
}

// Default identities of contract.md ("The emulator").
const (
	DefaultClientID         = "emulator"
	DefaultClientSecret     = "emulator-secret"
	DefaultUserClientID     = "emulator-user"
	DefaultUserClientSecret = "emulator-user-secret"
	DefaultTokenTTL         = time.Hour

	// Service-protection limits per user and five-minute window (§7.3).
	DefaultLimitRequests    = 6000
	DefaultLimitExecSeconds = 1200
	DefaultLimitConcurrent  = 52
	// DefaultDOPHint is the x-ms-dop-hint the emulator recommends.
	DefaultDOPHint = 4

	DefaultWebhookTimeout  = 60 * time.Second
	DefaultWebhookWorkers  = 4
	DefaultDeliveryLogSize = 10000

	// DefaultChangeTrackingRetention is organization.expirechangetrackingindays' current
	// documented default, 7 days (§7.2).
	DefaultChangeTrackingRetention = 7 * 24 * time.Hour

	// AppUserDomainName is the domainname of the application user the ClientID acts as.
	AppUserDomainName = "crmsync@emulator.test"
	// AdminDomainName is the domainname of the human user the UserClientID acts as.
	AdminDomainName = "admin@emulator.test"
)

// maxBody bounds a request body; Dataverse's own limit is far higher, but no
// emulator test needs more.
const maxBody = 16 << 20

// Emulator is an in-memory Dataverse: the Web API under /api/data/v9.2/ and an
// Entra-ID-style token endpoint, so crmsync's client, engine and demo run against
// something that answers like Dataverse without a tenant.
type Emulator struct {
	cfg  Config
	now  func() time.Time
	log  *slog.Logger
	reg  *registry
	apis []customAPI // the connector solution's custom APIs (customapi.go)
	mux  *http.ServeMux

	clients map[string]clientCred // by client id
	tokens  tokenStore

	orgID, rootBU, appUser, adminUser string

	mu      sync.RWMutex
	version int64                         // global row version; every write takes the next one
	rows    map[string]map[string]*record // by logical name, then id
	journal *journal                      // the open transaction's undo log (txn.go)
	deleted map[string][]tombstone        // deletions of change-tracked tables, oldest first (changetrack.go)

	// gate is held shared by every Web API request and exclusively by a $batch
	// change set, so a change set's rollback meets only its own writes (txn.go).
	gate sync.RWMutex

	tokenRequests atomic.Int64

	limits *throttle
	faults *faults
	hooks  *deliverer
	// wait sleeps for Latency; tests in this package replace it to hold requests.
	wait func(ctx context.Context, d time.Duration) error

	srvMu sync.Mutex
	srv   *http.Server
	url   string
}

// record is one stored row; vals holds canonical values by column logical name
// (string, bool, int64, float64, time.Time, ref), absent meaning null.
type record struct {
	id      string
	version int64
	vals    map[string]any
}

// ref is a stored lookup value.
type ref struct {
	table string // logical name
	id    string
}

// etag is the weak ETag Dataverse derives from the row version.
func (r *record) etag() string { return fmt.Sprintf(`W/"%d"`, r.version) }

// New builds an emulator seeded with one root business unit and the two
// systemusers of contract.md.
func New(cfg Config) *Emulator {
	cfg.ClientID = cmp.Or(cfg.ClientID, DefaultClientID)
	cfg.ClientSecret = cmp.Or(cfg.ClientSecret, DefaultClientSecret)
	cfg.UserClientID = cmp.Or(cfg.UserClientID, DefaultUserClientID)
	cfg.UserClientSecret = cmp.Or(cfg.UserClientSecret, DefaultUserClientSecret)
	cfg.TokenTTL = cmp.Or(cfg.TokenTTL, DefaultTokenTTL)
	cfg.LimitRequests = cmp.Or(cfg.LimitRequests, DefaultLimitRequests)
	cfg.LimitExecSeconds = cmp.Or(cfg.LimitExecSeconds, DefaultLimitExecSeconds)
	cfg.LimitConcurrent = cmp.Or(cfg.LimitConcurrent, DefaultLimitConcurrent)
	cfg.DOPHint = cmp.Or(cfg.DOPHint, DefaultDOPHint)
	cfg.FaultRate = min(max(cfg.FaultRate, 0), 1)
	if cfg.Rand == nil {
		cfg.Rand = rand.NewPCG(rand.Uint64(), rand.Uint64())
	}
	cfg.WebhookTimeout = cmp.Or(cfg.WebhookTimeout, DefaultWebhookTimeout)
	cfg.WebhookWorkers = cmp.Or(cfg.WebhookWorkers, DefaultWebhookWorkers)
	if cfg.WebhookClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.WebhookWorkers
		cfg.WebhookClient = &http.Client{Transport: tr}
	}
	cfg.DeliveryLogSize = cmp.Or(cfg.DeliveryLogSize, DefaultDeliveryLogSize)
	cfg.ChangeTrackingRetention = cmp.Or(cfg.ChangeTrackingRetention, DefaultChangeTrackingRetention)
	e := &Emulator{
		cfg:     cfg,
		now:     cfg.Now,
		log:     cfg.Logger,
		rows:    map[string]map[string]*record{},
		deleted: map[string][]tombstone{},
		version: 1_000_000,
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	built := builtinSchema()
	reg, err := newRegistry(built.tables)
	if err != nil {
		panic(err) // the built-in schema is static; a mistake in it is a programming error
	}
	e.reg, e.apis = reg, built.apis
	for _, t := range reg.tables {
		e.rows[t.logical] = map[string]*record{}
	}
	e.orgID, e.rootBU, e.appUser, e.adminUser = uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	e.clients = map[string]clientCred{
		cfg.ClientID:     {secret: cfg.ClientSecret, user: e.appUser},
		cfg.UserClientID: {secret: cfg.UserClientSecret, user: e.adminUser},
	}
	e.tokens.m = map[string]issuedToken{}
	e.limits = newThrottle(cfg)
	e.faults = &faults{rate: cfg.FaultRate, rnd: rand.New(cfg.Rand)}
	e.hooks = newDeliverer(cfg, e.now, e.log)
	e.wait = sleepContext
	e.seed()

	e.mux = http.NewServeMux()
	e.mux.HandleFunc("/{tenant}/oauth2/v2.0/token", e.serveToken)
	e.mux.HandleFunc("/api/data/v9.2/{rest...}", e.serveAPI)
	e.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		e.writeError(w, r, errorf(http.StatusNotFound, "", "No HTTP resource was found that matches the request URI '%s'.", r.URL.Path))
	})
	return e
}

// seed creates the root business unit and the two systemusers.
func (e *Emulator) seed() {
	now := e.now().UTC().Truncate(time.Second)
	put := func(table, id string, vals map[string]any) {
		t := e.reg.byName[table]
		e.version++
		vals[t.pk] = id
		vals["createdon"], vals["modifiedon"] = now, now
		vals["createdby"], vals["modifiedby"] = ref{"systemuser", e.appUser}, ref{"systemuser", e.appUser}
		vals["versionnumber"] = e.version
		for _, c := range t.columns {
			if _, set := vals[c.name]; !set && c.def != nil {
				vals[c.name] = c.def
			}
		}
		if t.derive != nil {
			t.derive(vals)
		}
		e.rows[table][id] = &record{id: id, version: e.version, vals: vals}
	}
	put("businessunit", e.rootBU, map[string]any{"name": "emulator"})
	put("systemuser", e.appUser, map[string]any{
		"domainname": AppUserDomainName, "firstname": "crmsync", "lastname": "application user",
		"internalemailaddress": AppUserDomainName, "accessmode": int64(4),
		"businessunitid": ref{"businessunit", e.rootBU},
	})
	put("systemuser", e.adminUser, map[string]any{
		"domainname": AdminDomainName, "firstname": "Emulator", "lastname": "Admin",
		"internalemailaddress": AdminDomainName,
		"businessunitid":       ref{"businessunit", e.rootBU},
	})
	e.seedMessages(put)
	e.seedCustomAPIs(put)
}

// newID is a new row id, lower-case as Dataverse writes them.
func newID() string { return uuid.NewString() }

// ApplicationUserID is the systemuserid of crmsync@emulator.test, the identity of
// Config.ClientID, so tests can recognise crmsync's own writes.
func (e *Emulator) ApplicationUserID() string { return e.appUser }

// AdminUserID is the systemuserid of admin@emulator.test, the identity of
// Config.UserClientID.
func (e *Emulator) AdminUserID() string { return e.adminUser }

// BusinessUnitID is the root business unit's id, which both seeded users belong to.
func (e *Emulator) BusinessUnitID() string { return e.rootBU }

// OrganizationID is the id WhoAmI reports, stable for the emulator's lifetime.
func (e *Emulator) OrganizationID() string { return e.orgID }

// TokenRequests counts calls to the token endpoint, so tests can prove that a
// client caches its token.
func (e *Emulator) TokenRequests() int64 { return e.tokenRequests.Load() }

// Create inserts a row as the application user through the same validation as
// POST /<entitySet>, without HTTP, so tests and the demo can seed many rows fast.
// row holds what a request body would: columns, "nav@odata.bind" references.
func (e *Emulator) Create(entitySet string, row map[string]any) (string, error) {
	t, ok := e.reg.bySet[entitySet]
	if !ok {
		return "", fmt.Errorf("create %s: %w", entitySet, errSegment(entitySet))
	}
	raw, err := json.Marshal(row)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", entitySet, err)
	}
	body, err := decodeBody(t, bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("create %s: %w", entitySet, err)
	}
	e.gate.RLock()
	defer e.gate.RUnlock()
	rec, err := e.createRow(t, e.principal(e.appUser), body)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", entitySet, err)
	}
	return rec.id, nil
}

// ServeHTTP makes the emulator an http.Handler, so tests can mount it in an
// httptest.Server.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.log.DebugContext(r.Context(), "emulator: request", slog.String("method", r.Method), slog.String("url", r.URL.String()))
	e.mux.ServeHTTP(w, r)
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in the
// background until Close; URL then names the address.
func (e *Emulator) Start(addr string) error {
	e.srvMu.Lock()
	defer e.srvMu.Unlock()
	if e.srv != nil {
		return errors.New("start emulator: already started")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("start emulator: %w", err)
	}
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	e.url = "http://" + ln.Addr().String()
	go func() {
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("emulator: serve", slog.Any("error", err))
		}
	}()
	return nil
}

// URL is the base URL after Start ("http://127.0.0.1:8090"): the organizationUrl of
// a connection, with the token endpoint at URL + "/<tenant>/oauth2/v2.0/token".
func (e *Emulator) URL() string {
	e.srvMu.Lock()
	defer e.srvMu.Unlock()
	return e.url
}

// Close stops a started emulator, letting requests in flight finish for up to five
// seconds, then lets queued webhook deliveries finish for up to five more and
// cancels the rest. Call it also for an emulator served by another server
// (httptest), so its webhook workers end.
func (e *Emulator) Close() error {
	e.srvMu.Lock()
	srv := e.srv
	e.srv = nil
	e.srvMu.Unlock()
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if serr := srv.Shutdown(ctx); serr != nil {
			_ = srv.Close()
			err = fmt.Errorf("close emulator: %w", serr)
		}
	}
	e.hooks.close(5 * time.Second)
	return err
}

// baseURL is how the caller reached the emulator, for OData-EntityId, nextLink and
// @odata.context.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// serveAPI runs a Web API request through what stands between a client and
// Dataverse's handlers: an injected fault, the caller's token, the
// service-protection limits and the configured latency; then the path is split
// into an entity set, an optional key and what follows it.
func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request) {
	if e.cfg.DOPHint > 0 {
		w.Header().Set("x-ms-dop-hint", strconv.Itoa(e.cfg.DOPHint))
	}
	fate := e.faults.next()
	switch fate {
	case faultUnavailable:
		e.writeError(w, r, errUnavailable())
		return
	case faultCutBefore:
		cut(w)
		return
	}
	caller, err := e.authenticate(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization_uri=%s/common/oauth2/authorize, resource_id=%s/`, baseURL(r), baseURL(r)))
		e.writeError(w, r, err)
		return
	}
	left, err := e.limits.admit(caller.user, e.now())
	if err != nil {
		e.writeError(w, r, err)
		return
	}
	start := time.Now() // handling time is real time, whatever Config.Now says
	defer func() { e.limits.done(caller.user, e.now(), time.Since(start)) }()
	if err := e.wait(r.Context(), e.cfg.Latency); err != nil {
		return // the client went away
	}
	out := w
	if fate == faultCutAfter {
		out = &lostAnswer{h: http.Header{}}
	}
	setBudgetHeaders(out.Header(), left)
	if r.PathValue("rest") != "$batch" { // a batch takes the gate per part (batch.go)
		e.gate.RLock()
		defer e.gate.RUnlock()
	}
	if err := e.route(out, r, caller); err != nil {
		e.writeError(out, r, err)
	}
	if fate == faultCutAfter {
		cut(w)
	}
}

func (e *Emulator) route(w http.ResponseWriter, r *http.Request, caller *principal) error {
	rest := r.PathValue("rest")
	head, tail, _ := strings.Cut(rest, "/")
	name, key, hasKey := head, "", false
	if i := strings.IndexByte(head, '('); i >= 0 && strings.HasSuffix(head, ")") {
		name, key, hasKey = head[:i], head[i+1:len(head)-1], true
	}
	switch name {
	case "":
		if r.Method != http.MethodGet {
			return errMethod(r)
		}
		return e.serviceDocument(w, r)
	case "WhoAmI":
		if r.Method != http.MethodGet || tail != "" || (hasKey && key != "") {
			return errMethod(r)
		}
		return e.whoAmI(w, r, caller)
	case "$batch":
		if r.Method != http.MethodPost || hasKey || tail != "" {
			return errMethod(r)
		}
		return e.batch(w, r, caller)
	case "$metadata":
		return errNotImplemented(name)
	case actionAddListMembers:
		if r.Method != http.MethodPost || hasKey || tail != "" {
			return errMethod(r)
		}
		return e.addListMembers(w, r, caller)
	case actionAddItemCampaignActivity:
		if r.Method != http.MethodPost || hasKey || tail != "" {
			return errMethod(r)
		}
		return e.addItemCampaignActivity(w, r, caller)
	}
	t, ok := e.reg.bySet[name]
	if !ok {
		return errSegment(name)
	}
	if !hasKey {
		switch {
		case tail == "$count" && r.Method == http.MethodGet:
			return e.count(w, r, t)
		case tail != "":
			return e.collectionOperation(w, r, t, tail, caller)
		case r.Method == http.MethodGet && r.URL.Query().Has("fetchXml"):
			return e.fetchXML(w, r, t)
		case r.Method == http.MethodGet && r.URL.Query().Has("$deltatoken"):
			return e.delta(w, r, t)
		case r.Method == http.MethodGet:
			return e.list(w, r, t, nil)
		case r.Method == http.MethodPost:
			return e.create(w, r, t, caller)
		}
		return errMethod(r)
	}
	if strings.Contains(key, "=") && len(t.keys) > 0 {
		return e.routeAlternateKey(w, r, t, key, tail, caller)
	}
	id, err := parseKey(t, key)
	if err != nil {
		return err
	}
	if tail != "" {
		return e.rowOperation(w, r, t, id, tail, caller)
	}
	switch r.Method {
	case http.MethodGet:
		return e.retrieve(w, r, t, id)
	case http.MethodPatch:
		return e.patch(w, r, t, id, caller)
	case http.MethodDelete:
		return e.delete(w, r, t, id, caller)
	}
	return errMethod(r)
}

func errMethod(r *http.Request) *apiError {
	return errorf(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '%s'.", r.Method)
}

// parseKey reads the key in "contacts(<key>)": a GUID. Alternate keys are refused
// as Dataverse refuses them on a table that defines none; tables with keys route
// them to routeAlternateKey first.
func parseKey(t *table, key string) (string, error) {
	if id, ok := parseGUID(key); ok {
		return id, nil
	}
	if strings.Contains(key, "=") {
		return "", errorf(http.StatusBadRequest, codeODataBadRequest, "The key '%s' is not valid for entity '%s': no alternate key with these columns is defined.", key, t.logical)
	}
	return "", errorf(http.StatusBadRequest, codeODataBadRequest, "Bad Request - Error in query syntax.")
}

// parseGUID accepts the 36-character form, returned in lower case as Dataverse
// writes ids.
func parseGUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// whoAmI answers the WhoAmI function, which clients use to test a connection.
func (e *Emulator) whoAmI(w http.ResponseWriter, r *http.Request, caller *principal) error {
	b := []byte(`{"@odata.context":`)
	b = appendString(b, baseURL(r)+"/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
	b = append(b, `,"BusinessUnitId":`...)
	b = appendString(b, caller.businessUnit)
	b = append(b, `,"UserId":`...)
	b = appendString(b, caller.user)
	b = append(b, `,"OrganizationId":`...)
	b = appendString(b, e.orgID)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
	return nil
}

// serviceDocument lists the entity sets, like GET /api/data/v9.2/.
func (e *Emulator) serviceDocument(w http.ResponseWriter, r *http.Request) error {
	b := []byte(`{"@odata.context":`)
	b = appendString(b, baseURL(r)+"/api/data/v9.2/$metadata")
	b = append(b, `,"value":[`...)
	for i, t := range e.reg.tables {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, t.set)
		b = append(b, `,"kind":"EntitySet","url":`...)
		b = appendString(b, t.set)
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

// writeJSON sends a Web API JSON body with the OData headers Dataverse sets.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; odata.metadata=minimal")
	h.Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// decodeBody reads a request body as one JSON object, numbers kept exact.
func decodeBody(t *table, r io.Reader) (map[string]any, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(http.StatusRequestEntityTooLarge, codeODataBadRequest, "The request body exceeds the limit of %d bytes.", tooBig.Limit)
		}
		return nil, errPayload(t, "Invalid JSON. %s", err.Error())
	}
	if m == nil {
		return nil, errPayload(t, "Invalid JSON. A JSON object was expected.")
	}
	if dec.More() {
		return nil, errPayload(t, "Invalid JSON. More than one value was found in the payload.")
	}
	return m, nil
}
