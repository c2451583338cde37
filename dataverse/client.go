package dataverse

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Config describes a Web API client for one Dataverse environment and application
// user; fields left zero take the defaults applied in NewClient.
type Config struct {
	// OrganizationURL is the environment's base URL, such as
	// https://contoso.crm4.dynamics.com (without /api/data); required. The token
	// scope is this URL + "/.default".
	OrganizationURL string
	// TenantID is the Entra ID tenant; required unless TokenURL is set.
	TenantID string
	// TokenURL is the OAuth 2.0 token endpoint; default
	// https://login.microsoftonline.com/<TenantID>/oauth2/v2.0/token. The emulator's
	// is <emulator URL>/<any tenant>/oauth2/v2.0/token.
	TokenURL string
	// ClientID and ClientSecret are the app registration's credentials; the app must
	// exist as an application user in the environment. Required.
	ClientID     string
	ClientSecret string
	// HTTPClient sends the requests; default a client with a two-minute timeout and
	// a transport of its own.
	HTTPClient *http.Client
	// Logger receives retries (Warn) and token refreshes (Debug); default discards.
	Logger *slog.Logger
	// Now is the clock for token expiry and Retry-After dates; default time.Now.
	Now func() time.Time
	// Sleep waits between attempts and honours ctx; default a timer. Tests replace it
	// so retries do not really wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// MaxRetries is how often a failed request is sent again (429, 408, 5xx,
	// transport errors); default 5, negative for none. A refused token (401) is
	// renewed and the request repeated once more, outside this count.
	MaxRetries int
	// MinBackoff is the first backoff after a 5xx or transport error; each retry
	// doubles it up to MaxBackoff. Defaults 1s and 1m.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxConcurrency is the most requests the client has in flight at once; default
	// 52, Dataverse's per-user concurrency limit (§7.3). Within it the client
	// starts at 4, follows the server's x-ms-dop-hint, halves after a 429 and
	// grows back by one per round of answered requests.
	MaxConcurrency int
	// BulkSize is the most rows one CreateMultiple, UpdateMultiple or UpsertMultiple
	// request carries and the most members one AddListMembers call sends; larger
	// calls are split into requests of this size. Default 1000, the top of
	// Dataverse's guidance of 100–1,000 per request for standard tables (§7.1);
	// elastic tables want 100.
	BulkSize int
	// Observer is told of every attempt's answer and of every wait Dataverse's
	// throttling imposes, for metrics; nil observes nothing.
	Observer Observer
}

// Observer watches a client's traffic; metrics.Registry implements it.
type Observer interface {
	// WebAPIRequest counts one attempt by the HTTP status it was answered, 0
	// when no answer came. Token requests are not counted.
	WebAPIRequest(status int)
	// WebAPIRetryWait adds the time a request waited because Dataverse
	// throttled the user (a 429 and its Retry-After).
	WebAPIRetryWait(d time.Duration)
}

// Defaults for Config, in one place.
const (
	DefaultMaxRetries  = 5
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = time.Minute
	DefaultHTTPTimeout = 2 * time.Minute
	// DefaultMaxConcurrency is Dataverse's concurrent-request limit per user.
	DefaultMaxConcurrency = 52
	// DefaultBulkSize is how many rows a bulk request carries.
	DefaultBulkSize = 1000

	// APIPath is where the Web API lives under the organization URL.
	APIPath = "/api/data/v9.2/"
)

func (c *Config) setDefaults() {
	c.OrganizationURL = strings.TrimRight(c.OrganizationURL, "/")
	if c.TokenURL == "" && c.TenantID != "" {
		c.TokenURL = "https://login.microsoftonline.com/" + url.PathEscape(c.TenantID) + "/oauth2/v2.0/token"
	}
	c.MaxConcurrency = cmp.Or(c.MaxConcurrency, DefaultMaxConcurrency)
	c.BulkSize = cmp.Or(c.BulkSize, DefaultBulkSize)
	if c.HTTPClient == nil {
		// A transport of its own keeps as many idle connections as requests may be
		// in flight; http.DefaultTransport keeps two per host.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = max(c.MaxConcurrency, 1)
		c.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout, Transport: tr}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleepContext
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	c.MinBackoff = cmp.Or(c.MinBackoff, DefaultMinBackoff)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, DefaultMaxBackoff)
}

func (c *Config) validate() error {
	u, err := url.Parse(c.OrganizationURL)
	switch {
	case c.OrganizationURL == "":
		return errors.New("OrganizationURL is required")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return fmt.Errorf("OrganizationURL %q is not an http(s) URL", c.OrganizationURL)
	case u.Path != "" || u.RawQuery != "":
		return fmt.Errorf("OrganizationURL %q must be the environment's base URL, without a path", c.OrganizationURL)
	case c.TokenURL == "":
		return errors.New("TenantID or TokenURL is required")
	case c.ClientID == "":
		return errors.New("ClientID is required")
	case c.ClientSecret == "":
		return errors.New("ClientSecret is required")
	case c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("MaxBackoff (%s) must be at least MinBackoff (%s)", c.MaxBackoff, c.MinBackoff)
	case c.MaxConcurrency < 1:
		return fmt.Errorf("MaxConcurrency must be positive, got %d", c.MaxConcurrency)
	case c.BulkSize < 1:
		return fmt.Errorf("BulkSize must be positive, got %d", c.BulkSize)
	}
	if u, err := url.Parse(c.TokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("TokenURL %q is not an http(s) URL", c.TokenURL)
	}
	return nil
}

// Client talks to one environment's Web API as one application user: it keeps the
// token, sets the OData headers, retries what may succeed later and turns every
// other answer into an *APIError. It is safe for concurrent use.
type Client struct {
	api    string // OrganizationURL + APIPath
	http   *http.Client
	log    *slog.Logger
	now    func() time.Time
	tokens *tokenSource
	retry  retrier
	gate   gate
	limit  *limiter
	bulk   int      // Config.BulkSize
	obs    Observer // Config.Observer, optional
}

// NewClient checks cfg and builds a client; it does not contact the server.
func NewClient(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("dataverse config: %w", err)
	}
	return &Client{
		api:  cfg.OrganizationURL + APIPath,
		http: cfg.HTTPClient,
		log:  cfg.Logger,
		now:  cfg.Now,
		tokens: &tokenSource{
			url: cfg.TokenURL, clientID: cfg.ClientID, clientSecret: cfg.ClientSecret,
			scope: cfg.OrganizationURL + "/.default",
			http:  cfg.HTTPClient, now: cfg.Now, log: cfg.Logger,
		},
		retry: retrier{max: cfg.MaxRetries, min: cfg.MinBackoff, cap: cfg.MaxBackoff, sleep: cfg.Sleep},
		limit: newLimiter(cfg.MaxConcurrency),
		bulk:  cfg.BulkSize,
		obs:   cfg.Observer,
	}, nil
}

// Concurrency is how many requests the client lets be in flight now, after the
// server's hint and throttling answers, for metrics and tests.
func (c *Client) Concurrency() int { return c.limit.current() }

// Bind is the value of a "<navigation property>@odata.bind" field that sets a
// lookup, e.g. row["parentcustomerid_account@odata.bind"] = Bind("accounts", id).
func Bind(entitySet, id string) string { return "/" + entitySet + "(" + id + ")" }

// Create inserts a row and returns its id. The client chooses the id (a new GUID
// in the primary-key column, unless row names one) so a create is safe to retry:
// when an attempt failed without a clear answer and a retry finds the row there
// already (DuplicateRecord), the create counts as done instead of making a second
// row. The primary-key column is the table's logical name + "id"
// (contacts → contactid, cs_subscriptions → cs_subscriptionid), activityid for
// activity tables.
func (c *Client) Create(ctx context.Context, entitySet string, row map[string]any) (string, error) {
	u, err := c.setURL(entitySet)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", entitySet, err)
	}
	pk := primaryKey(entitySet)
	id, _ := row[pk].(string)
	if id == "" {
		id = uuid.NewString()
		row = maps.Clone(row)
		if row == nil {
			row = map[string]any{}
		}
		row[pk] = id
	} else if !isGUID(id) {
		return "", fmt.Errorf("create %s: invalid id %q in %s: want a GUID", entitySet, id, pk)
	}
	body, err := json.Marshal(row)
	if err != nil {
		return "", fmt.Errorf("create %s: encode row: %w", entitySet, err)
	}
	resp, err := c.do(ctx, &request{method: http.MethodPost, url: u, body: body, create: true})
	if errors.Is(err, errCreatedEarlier) {
		return strings.ToLower(id), nil
	}
	if err != nil {
		return "", fmt.Errorf("create %s: %w", entitySet, err)
	}
	defer drain(resp)
	if got, ok := idFromEntityID(resp.Header.Get("OData-EntityId")); ok {
		return got, nil
	}
	return strings.ToLower(id), nil
}

// activitySets are the entity sets of activity tables, whose primary key is
// activityid whatever the table is called.
var activitySets = map[string]bool{
	"activitypointers": true, "campaignactivities": true, "campaignresponses": true, "emails": true,
	"phonecalls": true, "tasks": true, "appointments": true, "letters": true, "faxes": true,
	"bulkoperations": true, "socialactivities": true,
}

// primaryKey guesses the primary-key column of an entity set from Dataverse's
// naming: the logical name (the set name made singular) + "id".
func primaryKey(entitySet string) string {
	switch {
	case activitySets[entitySet]:
		return "activityid"
	case strings.HasSuffix(entitySet, "ies"):
		return strings.TrimSuffix(entitySet, "ies") + "yid"
	case strings.HasSuffix(entitySet, "sses"), strings.HasSuffix(entitySet, "xes"):
		return strings.TrimSuffix(entitySet, "es") + "id"
	}
	return strings.TrimSuffix(entitySet, "s") + "id"
}

// codeDuplicateRecord is Dataverse's DuplicateRecord ("Cannot insert duplicate
// key."), what a create with the id of an existing row gets.
const codeDuplicateRecord = "0x80040237"

// errCreatedEarlier reports that a retried create found its row: an earlier
// attempt whose answer was lost had made it.
var errCreatedEarlier = errors.New("created by an earlier attempt")

// Update changes the named columns of an existing row (If-Match: *), so it never
// creates one: a missing row is ErrNotFound.
func (c *Client) Update(ctx context.Context, entitySet, id string, row map[string]any) error {
	return c.patch(ctx, "update", entitySet, id, row, http.Header{"If-Match": {"*"}})
}

// UpdateIfMatch updates only if the row still has etag (from Row.ETag), for
// read-modify-write without losing a concurrent change: a stale etag is
// ErrPreconditionFailed.
func (c *Client) UpdateIfMatch(ctx context.Context, entitySet, id, etag string, row map[string]any) error {
	if etag == "" {
		return fmt.Errorf("update %s(%s): empty etag", entitySet, id)
	}
	return c.patch(ctx, "update", entitySet, id, row, http.Header{"If-Match": {etag}})
}

// CreateOnly creates a row with a chosen id (If-None-Match: *); if it exists already
// the answer is ErrPreconditionFailed, which makes a repeated create harmless.
func (c *Client) CreateOnly(ctx context.Context, entitySet, id string, row map[string]any) error {
	return c.patch(ctx, "create", entitySet, id, row, http.Header{"If-None-Match": {"*"}})
}

// Upsert creates the row with this id or updates it, and says which happened.
// Telling the two apart needs Prefer: return=representation (201 created, 200
// updated), which costs Dataverse a read; $select keeps that read to one column.
func (c *Client) Upsert(ctx context.Context, entitySet, id string, row map[string]any) (created bool, err error) {
	u, err := c.rowURL(entitySet, id)
	if err != nil {
		return false, fmt.Errorf("upsert %s: %w", entitySet, err)
	}
	if col := firstColumn(row); col != "" {
		u += "?$select=" + odataEscape(col)
	}
	resp, err := c.write(ctx, http.MethodPatch, u, row, http.Header{"Prefer": {"return=representation"}})
	if err != nil {
		return false, fmt.Errorf("upsert %s(%s): %w", entitySet, id, err)
	}
	defer drain(resp)
	return resp.StatusCode == http.StatusCreated, nil
}

// firstColumn picks a column of a write body to $select, so a
// return=representation answer stays small. Annotated keys (binds) and null values
// (which may clear a navigation property rather than name a column) do not qualify.
func firstColumn(row map[string]any) string {
	var cols []string
	for k, v := range row {
		if v != nil && !strings.Contains(k, "@") {
			cols = append(cols, k)
		}
	}
	if len(cols) == 0 {
		return ""
	}
	return slices.Min(cols)
}

// Delete removes a row; a missing row is ErrNotFound.
func (c *Client) Delete(ctx context.Context, entitySet, id string) error {
	u, err := c.rowURL(entitySet, id)
	if err != nil {
		return fmt.Errorf("delete %s: %w", entitySet, err)
	}
	resp, err := c.do(ctx, &request{method: http.MethodDelete, url: u})
	if err != nil {
		return fmt.Errorf("delete %s(%s): %w", entitySet, id, err)
	}
	drain(resp)
	return nil
}

// Get reads one row, only the columns in sel when given (lookups as
// "_<name>_value"); a missing row is ErrNotFound.
func (c *Client) Get(ctx context.Context, entitySet, id string, sel []string) (Row, error) {
	u, err := c.rowURL(entitySet, id)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", entitySet, err)
	}
	if len(sel) > 0 {
		u += "?$select=" + odataEscape(strings.Join(sel, ","))
	}
	var row Row
	_, err = c.do(ctx, &request{method: http.MethodGet, url: u, header: http.Header{"Prefer": {preferLookupNames}},
		decode: func(r io.Reader) error { row = nil; return decodeJSON(r, &row) }})
	if err != nil {
		return nil, fmt.Errorf("get %s(%s): %w", entitySet, id, err)
	}
	return row, nil
}

// Identity is the WhoAmI answer: who the client acts as.
type Identity struct {
	UserID         string `json:"UserId"`
	BusinessUnitID string `json:"BusinessUnitId"`
	OrganizationID string `json:"OrganizationId"`
}

// WhoAmI asks who the client is, the cheapest call that proves credentials,
// network and application user all work (a connection test).
func (c *Client) WhoAmI(ctx context.Context) (Identity, error) {
	var id Identity
	_, err := c.do(ctx, &request{method: http.MethodGet, url: c.api + "WhoAmI",
		decode: func(r io.Reader) error { id = Identity{}; return decodeJSON(r, &id) }})
	if err != nil {
		return Identity{}, fmt.Errorf("who am i: %w", err)
	}
	return id, nil
}

// patch sends a PATCH to one row with the given conditional headers.
func (c *Client) patch(ctx context.Context, verb, entitySet, id string, row map[string]any, h http.Header) error {
	u, err := c.rowURL(entitySet, id)
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, entitySet, err)
	}
	resp, err := c.write(ctx, http.MethodPatch, u, row, h)
	if err != nil {
		return fmt.Errorf("%s %s(%s): %w", verb, entitySet, id, err)
	}
	drain(resp)
	return nil
}

// write sends a JSON body.
func (c *Client) write(ctx context.Context, method, u string, row map[string]any, h http.Header) (*http.Response, error) {
	body, err := json.Marshal(row)
	if err != nil {
		return nil, fmt.Errorf("encode row: %w", err)
	}
	return c.do(ctx, &request{method: method, url: u, header: h, body: body})
}

// preferLookupNames asks for the table of every lookup value, which polymorphic
// lookups (parentcustomerid: account or contact) need to be read back.
const preferLookupNames = `odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"`

// request is one Web API call; it is sent again as is on a retry.
type request struct {
	method string
	url    string
	header http.Header
	body   []byte
	// decode, when set, reads a 2xx body within the attempt, so an answer cut short
	// is retried like any transport failure; do then returns the response closed.
	decode func(io.Reader) error
	// create marks a POST that carries its row's id: a DuplicateRecord answer
	// after an attempt that may have gone through means the row was made.
	create bool
	// once marks a request that is not sent again after an attempt that may have
	// taken effect (no answer, or a 5xx): a $batch, whose operations need not be
	// idempotent. Throttling and a refused token are still retried: nothing ran.
	once bool
	// accept, when set, takes a non-2xx answer as the answer instead of an error
	// (a $batch that stopped at a failed operation answers that failure's status
	// with the batch body); do returns it like a 2xx one.
	accept func(resp *http.Response) bool
}

// do sends a request until it succeeds, fails for good or runs out of retries; it
// returns a 2xx response whose body the caller closes (unless req.decode read it),
// or an error that wraps an *APIError when the server answered.
func (c *Client) do(ctx context.Context, req *request) (*http.Response, error) {
	renewed := false
	unsure := false // an earlier attempt may have taken effect without our hearing of it
	for attempt := 0; ; {
		resp, tok, err := c.send(ctx, req)
		if err == nil {
			return resp, nil
		}
		var ae *APIError
		isAPI := errors.As(err, &ae)
		if req.create && unsure && isAPI && ae.Code == codeDuplicateRecord {
			return nil, errCreatedEarlier
		}
		var te *transportError
		if errors.As(err, &te) || (isAPI && ae.Status >= 500) {
			unsure = true
			if req.once {
				return nil, err
			}
		}
		if isAPI && tok != "" && ae.Status == http.StatusUnauthorized && !renewed {
			// The token expired early or was revoked: get a new one and try once more.
			renewed = true
			c.tokens.invalidate(tok)
			continue
		}
		sleep := c.retry.sleep
		if isAPI && ae.Status == http.StatusTooManyRequests {
			sleep = c.throttled
			if ae.RetryAfter > 0 {
				// Every request of this user fails until then, not only this one.
				c.gate.close(c.now().Add(ae.RetryAfter))
			}
		}
		d, again := c.retry.delay(err, attempt)
		if !again {
			return nil, err
		}
		path, _, _ := strings.Cut(req.url, "?") // the query may hold e-mail addresses
		c.log.WarnContext(ctx, "dataverse: retrying", slog.String("method", req.method), slog.String("url", path),
			slog.Int("attempt", attempt+1), slog.Duration("wait", d), slog.Any("error", err))
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
		attempt++
	}
}

// send makes one attempt within an in-flight slot, after any throttle wait; tok is
// the token used, "" if none was obtained.
func (c *Client) send(ctx context.Context, req *request) (resp *http.Response, tok string, err error) {
	tok, err = c.tokens.get(ctx)
	if err != nil {
		return nil, "", err
	}
	epoch, err := c.limit.acquire(ctx)
	if err != nil {
		return nil, tok, err
	}
	met := outcomeNone
	defer func() { c.limit.release(epoch, met) }()
	// Waiting here, with a slot held, also catches a 429 that came in while this
	// request waited for its slot.
	if err := c.gate.wait(ctx, c.now, c.throttled); err != nil {
		return nil, tok, err
	}
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.method, req.url, body)
	if err != nil {
		return nil, tok, err
	}
	h := hreq.Header
	h.Set("Authorization", "Bearer "+tok)
	h.Set("Accept", "application/json")
	h.Set("OData-MaxVersion", "4.0")
	h.Set("OData-Version", "4.0")
	if req.body != nil {
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	if req.method == http.MethodGet {
		h.Set("If-None-Match", "null") // defeats caching (§4.1)
	}
	for k, v := range req.header {
		h[k] = v
	}
	resp, err = c.http.Do(hreq)
	if c.obs != nil {
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		c.obs.WebAPIRequest(status)
	}
	if err != nil {
		return nil, tok, &transportError{err}
	}
	if n, err := strconv.Atoi(resp.Header.Get("x-ms-dop-hint")); err == nil {
		c.limit.hint(n)
	}
	met = outcomeOf(resp.StatusCode)
	if (resp.StatusCode >= 200 && resp.StatusCode < 300) || (req.accept != nil && req.accept(resp)) {
		if req.decode == nil {
			return resp, tok, nil
		}
		err := req.decode(resp.Body)
		drain(resp)
		if err != nil {
			return nil, tok, err
		}
		return resp, tok, nil
	}
	defer resp.Body.Close()
	return nil, tok, c.apiError(resp)
}

// apiError reads Dataverse's {"error":{"code","message"}} from a failed answer.
func (c *Client) apiError(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &transportError{fmt.Errorf("read %d answer: %w", resp.StatusCode, err)}
	}
	ae := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now())}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Error.Code != "" || e.Error.Message != "") {
		ae.Code, ae.Message = e.Error.Code, e.Error.Message
	} else {
		ae.Message = snippet(body)
	}
	return ae
}

// setURL is the URL of an entity set, checked so a name cannot change the path.
func (c *Client) setURL(entitySet string) (string, error) {
	if entitySet == "" || strings.IndexFunc(entitySet, func(r rune) bool {
		return !(r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9'))
	}) >= 0 {
		return "", fmt.Errorf("invalid entity set name %q", entitySet)
	}
	return c.api + entitySet, nil
}

// rowURL is the URL of one row: <set>(<id>).
func (c *Client) rowURL(entitySet, id string) (string, error) {
	u, err := c.setURL(entitySet)
	if err != nil {
		return "", err
	}
	if !isGUID(id) {
		return "", fmt.Errorf("invalid id %q: want a GUID", id)
	}
	return u + "(" + id + ")", nil
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// idFromEntityID takes the id out of ".../contacts(<id>)".
func idFromEntityID(h string) (string, bool) {
	open, end := strings.LastIndexByte(h, '('), strings.LastIndexByte(h, ')')
	if open < 0 || end != len(h)-1 || !isGUID(h[open+1:end]) {
		return "", false
	}
	return strings.ToLower(h[open+1 : end]), true
}

// odataEscape escapes a query option value; spaces become %20, not "+", which
// not every OData server reads as a space.
func odataEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// decodeJSON reads one JSON value, keeping numbers exact as json.Number.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode answer: %w", &transportError{err})
	}
	return nil
}

// drain reads the rest of a body so the connection can be reused, then closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}
