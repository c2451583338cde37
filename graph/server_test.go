package graph_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"crmsync/auth"
	"crmsync/dataverse"
	"crmsync/graph"
	"crmsync/queue"
	"crmsync/queue/queuetest"
	"crmsync/store"
	"crmsync/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var secret = []byte("graph-test-secret-graph-test-secret")

// planRegistrar stands in for engine.Registrar: it plans one step to create.
type planRegistrar struct{}

func (planRegistrar) RegisterWebhooks(_ context.Context, conn *store.Connection, dryRun bool) (*store.WebhookRegistration, error) {
	return &store.WebhookRegistration{StepsCreated: 1, Warnings: []string{}}, nil
}

type fakePublisher struct {
	mu      sync.Mutex
	entries []queue.Entry
}

func (p *fakePublisher) Publish(_ context.Context, entries ...queue.Entry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.entries = append(p.entries, entries...)
	return nil
}

type bundle struct {
	pub    *fakePublisher
	budget *queue.Budget
	srv    *httptest.Server
	store  *store.Store
	conn   *store.Connection
	group  *store.Group
	sub    *store.Subscriber
	list   *store.MarketingList
	run    *store.SyncRun
}

// setup serves a tenant "acme" with a connection, a CRM-synced group with one
// subscriber and a linked list; opts change the server's configuration.
func setup(t *testing.T, opts ...func(*graph.Config)) *bundle {
	t.Helper()
	st := storetest.Open(t)
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{}
	rdb, keys := queuetest.Open(t)
	budget := queue.NewBudget(rdb.Client, keys, queue.BudgetConfig{})
	cfg := graph.Config{Store: st, Verifier: v, Publisher: pub, Lists: storeListSync{st}, Tester: okTester{},
		Campaigns: storeCampaigns{st}, Registrar: planRegistrar{}, Budget: budget, SendPollInterval: 10 * time.Millisecond, PublicURL: "https://crmsync.example", ComplexityLimit: 1000}
	for _, opt := range opts {
		opt(&cfg)
	}
	srv := httptest.NewServer(graph.NewHandler(cfg))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	conn, err := st.CreateConnection(ctx, "acme", store.ConnectionInput{
		Name: "CRM", OrganizationURL: "https://acme.crm4.dynamics.com", WebhookAuthMode: store.WebhookKey,
		WebhookAuthValue: "0123456789abcdef-secret", RecipientType: store.RecipientContact, ClientID: "client-id", ClientSecret: "client-secret",
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := st.CreateGroup(ctx, "acme", store.GroupInput{Name: "News", ConnectionID: conn.ID, CRMSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpsertSubscribers(ctx, "acme", g.ID, []store.SubscriberInput{{Email: "a@example.com"}}); err != nil {
		t.Fatal(err)
	}
	sub, err := st.SubscriberByEmail(ctx, "acme", g.ID, "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	list, err := st.SaveListFromCRM(ctx, "acme", conn.ID, store.ListFromCRM{
		CRMListID: "5b0e3c1e-1d7a-4f7e-9c55-0d7e4c9b2a10", Name: "Fair", Type: store.ListStatic, MemberType: store.RecipientContact, SyncToEMS: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.LinkList(ctx, list, g.ID, nil); err != nil {
		t.Fatal(err)
	}
	run, err := storeListSync{st}.SyncNow(ctx, "acme", list.CRMListID, true)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{srv: srv, store: st, conn: conn, group: g, sub: sub, pub: pub, budget: budget, list: list, run: run}
}

// okTester stands in for the engine's connection test: every connection works.
type okTester struct{}

func (okTester) Test(context.Context, *store.Connection) (dataverse.Identity, time.Duration, error) {
	return dataverse.Identity{UserID: "u1", BusinessUnitID: "bu1"}, time.Millisecond, nil
}

// storeListSync stands in for the engine's list sync: it queues runs of known lists.
type storeListSync struct{ st *store.Store }

func (s storeListSync) SyncNow(ctx context.Context, tenant, listID string, dryRun bool) (*store.SyncRun, error) {
	l, err := s.st.List(ctx, tenant, listID)
	if err != nil {
		return nil, err
	}
	r := &store.SyncRun{ID: "run-" + strconv.FormatInt(time.Now().UnixNano(), 10), Tenant: tenant, ConnectionID: l.ConnectionID, CRMListID: l.CRMListID, DryRun: dryRun, Trigger: store.TriggerManual}
	_, err = s.st.CreateRun(ctx, r)
	return r, err
}

type result struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func (r result) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

func (b *bundle) do(t testing.TB, token, query string, vars map[string]any) result {
	t.Helper()
	r, _ := b.doWith(t, nil, token, query, vars)
	return r
}

// doWith sends a request with extra headers and answers the result and the
// response's headers.
func (b *bundle) doWith(t testing.TB, header http.Header, token, query string, vars map[string]any) (result, http.Header) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL, bytes.NewReader(body))
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r result
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	// Auth and resolver errors come inside a 200; gqlgen answers documents that do
	// not parse or validate with 422.
	if resp.StatusCode != http.StatusOK && !(resp.StatusCode == http.StatusUnprocessableEntity && strings.HasPrefix(r.code(), "GRAPHQL_")) {
		t.Fatalf("status %d (%+v)", resp.StatusCode, r.Errors)
	}
	return r, resp.Header
}

func token(t testing.TB, claims jwt.MapClaims, method jwt.SigningMethod, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(tenant, role string, exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{"sub": "t", "tenant": tenant, "roles": []string{role}, "exp": exp.Unix()}
}

// TestAuthMatrix runs every root field of this slice with every kind of caller.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)
	callers := map[string]string{
		"none":        "",
		"expired":     token(t, claims("acme", "admin", past), jwt.SigningMethodHS256, secret),
		"alg none":    token(t, claims("acme", "admin", future), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType),
		"wrong key":   token(t, claims("acme", "admin", future), jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx")),
		"no role":     token(t, claims("acme", "wizard", future), jwt.SigningMethodHS256, secret),
		"viewer":      token(t, claims("acme", "viewer", future), jwt.SigningMethodHS256, secret),
		"editor":      token(t, claims("acme", "editor", future), jwt.SigningMethodHS256, secret),
		"admin":       token(t, claims("acme", "admin", future), jwt.SigningMethodHS256, secret),
		"other admin": token(t, claims("globex", "admin", future), jwt.SigningMethodHS256, secret),
	}
	type field struct {
		query string
		min   string // least role
		owned bool   // names an acme id: another tenant gets NOT_FOUND
	}
	fields := map[string]field{
		"connections":           {`{ connections { id } }`, "viewer", false},
		"connection":            {`query($c: ID!) { connection(id: $c) { id } }`, "viewer", true},
		"subscriberGroup":       {`query($g: ID!) { subscriberGroup(id: $g) { id } }`, "viewer", true},
		"subscriber":            {`query($s: ID!) { subscriber(id: $s) { id } }`, "viewer", true},
		"subscriberByEmail":     {`query($g: ID!) { subscriberByEmail(groupId: $g, email: "a@example.com") { id } }`, "viewer", true},
		"createSubscriberGroup": {`mutation { createSubscriberGroup(input: {name: "G"}) { id } }`, "editor", false},
		"upsertSubscribers":     {`mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [{email: "b@example.com"}]) { created updated } }`, "editor", true},
		"syncEvents":            {`{ syncEvents { totalCount } }`, "viewer", false},
		"ingestStats":           {`query($c: ID!) { ingestStats(connectionId: $c) { processed } }`, "viewer", true},
		"replayEvents":          {`mutation { replayEvents }`, "admin", false},
		"marketingList":         {`query($l: ID!) { marketingList(id: $l) { id memberCount group { id } } }`, "viewer", true},
		"marketingLists":        {`query($c: ID!) { marketingLists(connectionId: $c) { totalCount } }`, "viewer", true},
		"syncRun":               {`query($r: ID!) { syncRun(id: $r) { id status changes { totalCount } } }`, "viewer", true},
		"syncRuns":              {`query($l: ID!) { syncRuns(listId: $l) { totalCount } }`, "viewer", false},
		"syncMarketingList":     {`mutation($l: ID!) { syncMarketingList(listId: $l, dryRun: true) { id status } }`, "editor", true},
		"testConnection":        {`mutation($c: ID!) { testConnection(id: $c) { ok detail latencyMs } }`, "admin", true},
		"registerWebhooks":      {`mutation($c: ID!) { registerWebhooks(connectionId: $c, dryRun: true) { stepsCreated warnings } }`, "admin", true},
		"setListSchedule":       {`mutation($l: ID!) { setListSchedule(listId: $l, input: {periodic: true, interval: DAILY}) { nextSyncAt } }`, "editor", true},
		"campaignSend":          {`query($send: ID!) { campaignSend(id: $send) { id status stats { sent } progress { total } reactions { totalCount } } }`, "viewer", true},
		"campaignSends":         {`{ campaignSends { totalCount } }`, "viewer", false},
		"sendCampaign":          {`mutation { sendCampaign(input: {subject: "S", senderName: "N", senderEmail: "n@example.com", textBody: "T"}) { id } }`, "editor", false},
		"cancelCampaignSend":    {`mutation($send: ID!) { cancelCampaignSend(id: $send) { id } }`, "editor", true},
		"setCampaignSettings":   {`mutation($c: ID!) { setCampaignSettings(connectionId: $c, input: {sendRatePerMinute: 600}) { campaignSettings { sendRatePerMinute } } }`, "admin", true},
		"createConnection": {`mutation { createConnection(input: {name: "X", organizationUrl: "https://x.crm.dynamics.com", recipientType: LEAD,
			webhookAuth: {mode: HTTP_HEADER, name: "x-key", value: "0123456789abcdef!"}}) { id } }`, "admin", false},
		"form":           {`query($form: ID!) { form(id: $form) { id submitUrl group { id } fields { name } } }`, "viewer", true},
		"forms":          {`{ forms { totalCount edges { node { id } } } }`, "viewer", false},
		"createForm":     {`mutation($g: ID!) { createForm(input: ` + formLiteral + `) { id } }`, "editor", true},
		"updateForm":     {`mutation($form: ID!, $g: ID!) { updateForm(id: $form, input: ` + formLiteral + `) { id } }`, "editor", true},
		"consentHistory": {`query($s: ID!) { consentHistory(subscriberId: $s) { totalCount edges { node { id } } } }`, "viewer", true},
		"consentExport":  {`{ consentExport(email: "a@example.com") { email events { id } subscribers { id } } }`, "admin", false},
		"suppression":    {`query($c: ID!) { suppression(connectionId: $c) { totalCount edges { node { email subscriber { id } } } } }`, "viewer", true},
		"apiBudget":      {`query($c: ID!) { apiBudget(connectionId: $c) { used left minutes(hours: 1) { requests } } }`, "viewer", true},
		"syncStats":      {`query($c: ID!, $since: Time!) { syncStats(connectionId: $c, since: $since) { total buckets { count } } }`, "viewer", true},
		"health":         {`query($c: ID!) { connection(id: $c) { health { status reasons lastTest { ok } } } }`, "viewer", true},
		"healthOfAll":    {`{ connections { health { status deadLetters } } }`, "viewer", false},
	}
	// createForm names its group inside the input, which the store checks: another
	// tenant's group is a bad groupId there, as an unknown one is.
	otherTenant := map[string]string{"createForm": "BAD_USER_INPUT"}
	rank := map[string]int{"viewer": 1, "editor": 2, "admin": 3}
	// A send going out: cancelling it only asks it to stop, so every caller may try.
	send := startSend(t, b.store, &store.CampaignSend{Tenant: "acme", GroupID: b.group.ID, Subject: "S", SenderName: "N", SenderEmail: "n@example.com", Status: store.SendScheduled})
	f, err := b.store.CreateForm(context.Background(), "acme", store.FormInput{GroupID: b.group.ID, Name: "F",
		Fields: []store.FormField{{Name: "email", Type: store.FieldEmail, SubscriberField: "email"}}})
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{"c": b.conn.ID, "g": b.group.ID, "s": b.sub.ID, "l": b.list.CRMListID, "r": b.run.ID, "send": send.ID, "form": f.ID,
		"since": time.Now().Add(-time.Hour).Format(time.RFC3339)}
	for fname, f := range fields {
		for cname, tok := range callers {
			var want string
			switch cname {
			case "none", "expired", "alg none", "wrong key":
				want = "UNAUTHENTICATED"
			case "no role":
				want = "FORBIDDEN"
			case "other admin":
				if f.owned {
					want = cmp.Or(otherTenant[fname], "NOT_FOUND")
				}
			default:
				if rank[cname] < rank[f.min] {
					want = "FORBIDDEN"
				}
			}
			used := map[string]any{}
			for k, v := range vars {
				if regexp.MustCompile(`\$` + k + `\b`).MatchString(f.query) {
					used[k] = v
				}
			}
			r := b.do(t, tok, f.query, used)
			if got := r.code(); got != want {
				t.Errorf("%s as %s: code %q, want %q (%+v)", fname, cname, got, want, r.Errors)
			}
		}
	}
	// Nothing of acme's leaked into globex's list.
	r := b.do(t, callers["other admin"], `{ connections { id } }`, nil)
	if string(r.Data["connections"]) == "" || strings.Contains(string(r.Data["connections"]), b.conn.ID) {
		t.Errorf("other tenant's connections = %s", r.Data["connections"])
	}
}

// formLiteral is a form of the group $g, as a GraphQL input literal.
const formLiteral = `{groupId: $g, name: "F", doubleOptIn: false, fields: [{name: "email", type: EMAIL, subscriberField: "email"}]}`

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin := token(t, claims("acme", "admin", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
	tests := []struct {
		name, query string
		vars        map[string]any
		code        string
		field       string
	}{
		{"parse", `{ connections { id }`, nil, "GRAPHQL_PARSE_FAILED", ""},
		{"validation", `{ connections { clientSecret } }`, nil, "GRAPHQL_VALIDATION_FAILED", ""},
		{"secret not readable", `{ connections { campaignSettings { sendingEngineSecret } } }`, nil, "GRAPHQL_VALIDATION_FAILED", ""},
		{"sends first over 500", `{ campaignSends(first: 501) { totalCount } }`, nil, "TOO_COMPLEX", "first"},
		{"forms first over 500", `{ forms(first: 501) { totalCount } }`, nil, "TOO_COMPLEX", "first"},
		{"consent history first over 500", `query($s: ID!) { consentHistory(subscriberId: $s, first: 501) { totalCount } }`, map[string]any{"s": b.sub.ID}, "TOO_COMPLEX", "first"},
		{"form input of the wrong type", `mutation($g: ID!) { createForm(input: {groupId: $g, name: "F", doubleOptIn: false, fields: [{name: "x", type: RADIO}]}) { id } }`, map[string]any{"g": b.group.ID}, "GRAPHQL_VALIDATION_FAILED", ""},
		{"export of no address", `{ consentExport(email: "nobody") { email } }`, nil, "BAD_USER_INPUT", "email"},
		{"first over 500", `query($g: ID!) { subscriberGroup(id: $g) { subscribers(first: 501) { totalCount } } }`, map[string]any{"g": b.group.ID}, "TOO_COMPLEX", "first"},
		{"bad cursor", `query($g: ID!) { subscriberGroup(id: $g) { subscribers(after: "zzz") { totalCount } } }`, map[string]any{"g": b.group.ID}, "BAD_USER_INPUT", "after"},
		{"invalid input", `mutation { createConnection(input: {name: "X", organizationUrl: "ftp://x", recipientType: LEAD, webhookAuth: {mode: WEBHOOK_KEY, value: "0123456789abcdef!"}}) { id } }`, nil, "BAD_USER_INPUT", "organizationUrl"},
		{"crmSync without connection", `mutation { createSubscriberGroup(input: {name: "G", crmSync: true}) { id } }`, nil, "BAD_USER_INPUT", "crmSync"},
		{"fields not an object", `mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [{email: "x@example.com", fields: "x"}]) { created } }`, map[string]any{"g": b.group.ID}, "BAD_USER_INPUT", ""},
		{"unknown id", `{ subscriber(id: "nope") { id } }`, nil, "NOT_FOUND", ""},
		{"recipient type is set once", `mutation($c: ID!) { updateConnection(id: $c, input: {recipientType: LEAD}) { id } }`, map[string]any{"c": b.conn.ID}, "CONFLICT", "recipientType"},
		{"mapping to an unknown field", `mutation($c: ID!) { setFieldMappings(connectionId: $c, mappings: [{crmEntity: "contact", crmAttribute: "x", subscriberField: "birthday", kind: SIMPLE}]) { id } }`, map[string]any{"c": b.conn.ID}, "BAD_USER_INPUT", "mappings[0].subscriberField"},
		{"option set without labels", `mutation($c: ID!) { setFieldMappings(connectionId: $c, mappings: [{crmEntity: "contact", crmAttribute: "gendercode", subscriberField: "fields.salutation", kind: OPTION_SET}]) { id } }`, map[string]any{"c": b.conn.ID}, "BAD_USER_INPUT", "mappings[0].optionLabels"},
		{"lookup without path", `mutation($c: ID!) { setFieldMappings(connectionId: $c, mappings: [{crmEntity: "contact", crmAttribute: "parentcustomerid", subscriberField: "fields.company", kind: LOOKUP}]) { id } }`, map[string]any{"c": b.conn.ID}, "BAD_USER_INPUT", "mappings[0].lookupPath"},
		{"language not ISO", `mutation($c: ID!) { setLanguageMapping(connectionId: $c, input: {businessUnitId: "c3ec0cc2-d836-eb11-bf68-0022489b563d", crmAttribute: "cs_language", values: {a1031: "deutsch"}}) { id } }`, map[string]any{"c": b.conn.ID}, "BAD_USER_INPUT", "values"},
		{"depth", `query($g: ID!) { subscriberGroup(id: $g) { connection { id } subscribers { edges { node { group { subscribers { edges { node { group { subscribers { edges { node { group { name } } } } } } } } } } } } } }`, map[string]any{"g": b.group.ID}, "TOO_COMPLEX", ""},
		{"complexity", `query($g: ID!) { subscriberGroup(id: $g) { subscribers(first: 400) { edges { node { id email language group { name } } } } } }`, map[string]any{"g": b.group.ID}, "COMPLEXITY_LIMIT_EXCEEDED", ""},
	}
	for _, tt := range tests {
		wantError(t, tt.name, b.do(t, admin, tt.query, tt.vars), tt.code, tt.field)
	}
}

// TestRegisterWebhooksNeedsCRMCredentials: without a client id and secret there is
// nothing to register with.
func TestRegisterWebhooksNeedsCRMCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin := token(t, claims("acme", "admin", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
	bare, err := b.store.CreateConnection(context.Background(), "acme", store.ConnectionInput{
		Name: "Bare", OrganizationURL: "https://bare.crm4.dynamics.com", WebhookAuthMode: store.WebhookKey,
		WebhookAuthValue: "0123456789abcdef-secret", RecipientType: store.RecipientContact,
	})
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, "register without credentials", b.do(t, admin, `mutation($c: ID!) { registerWebhooks(connectionId: $c) { stepsCreated } }`,
		map[string]any{"c": bare.ID}), "BAD_USER_INPUT", "connectionId")
}

func TestSubscribersPaging(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin := token(t, claims("acme", "admin", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
	var rows []map[string]any
	for _, e := range []string{"b@example.com", "c@example.com", "d@example.com", "not an address"} {
		rows = append(rows, map[string]any{"email": e})
	}
	r := b.do(t, admin, `mutation($g: ID!, $rows: [SubscriberInput!]!) { upsertSubscribers(groupId: $g, subscribers: $rows) { created rejected { email reason } } }`,
		map[string]any{"g": b.group.ID, "rows": rows})
	if r.code() != "" || !strings.Contains(string(r.Data["upsertSubscribers"]), `"created":3`) || !strings.Contains(string(r.Data["upsertSubscribers"]), "not an address") {
		t.Fatalf("upsert: %s %+v", r.Data["upsertSubscribers"], r.Errors)
	}
	var seen []string
	after := ""
	for page := 0; page < 5; page++ {
		r := b.do(t, admin, `query($g: ID!, $a: String) { subscriberGroup(id: $g) { subscriberCount subscribers(first: 3, after: $a) {
			totalCount pageInfo { hasNextPage endCursor } edges { cursor node { email } } } } }`, map[string]any{"g": b.group.ID, "a": after})
		var g struct {
			SubscriberCount int
			Subscribers     struct {
				TotalCount int
				PageInfo   struct {
					HasNextPage bool
					EndCursor   string
				}
				Edges []struct{ Node struct{ Email string } }
			}
		}
		if err := json.Unmarshal(r.Data["subscriberGroup"], &g); err != nil || r.code() != "" {
			t.Fatalf("page %d: %v %+v", page, err, r.Errors)
		}
		if g.SubscriberCount != 4 || g.Subscribers.TotalCount != 4 {
			t.Errorf("counts = %d, %d", g.SubscriberCount, g.Subscribers.TotalCount)
		}
		for _, e := range g.Subscribers.Edges {
			seen = append(seen, e.Node.Email)
		}
		if !g.Subscribers.PageInfo.HasNextPage {
			break
		}
		after = g.Subscribers.PageInfo.EndCursor
	}
	if strings.Join(seen, ",") != "a@example.com,b@example.com,c@example.com,d@example.com" {
		t.Errorf("paged through %v", seen)
	}
}

func TestSyncEventsAndReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	admin := token(t, claims("acme", "admin", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	var evs []*store.InboxEvent
	for i := range 5 {
		evs = append(evs, &store.InboxEvent{ID: fmt.Sprintf("ev%d", i), Tenant: "acme", ConnectionID: b.conn.ID, Message: "Update",
			Entity: "contact", RecordID: fmt.Sprintf("row%d", i%2), Stage: 40, Body: "{}", ReceivedAt: base.Add(time.Duration(i) * time.Minute)})
	}
	evs = append(evs, &store.InboxEvent{ID: "other", Tenant: "globex", ConnectionID: "x", Message: "Create", Entity: "contact", RecordID: "row0", Body: "{}", ReceivedAt: base})
	if _, err := b.store.AddInboxEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ev1", "ev3"} {
		if err := b.store.FinishInboxEvent(ctx, id, store.InboxFailed, 5, "CRM said no"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.store.FinishInboxEvent(ctx, "ev0", store.InboxProcessed, 1, ""); err != nil {
		t.Fatal(err)
	}

	type page struct {
		TotalCount int
		PageInfo   struct {
			HasNextPage bool
			EndCursor   string
		}
		Edges []struct {
			Node struct {
				ID, Status, Direction, RecordID string
				Detail                          *string
			}
		}
	}
	list := func(vars map[string]any) page {
		r := b.do(t, admin, `query($r: ID, $s: SyncStatus, $f: Int, $a: String) { syncEvents(recordId: $r, status: $s, first: $f, after: $a) {
			totalCount pageInfo { hasNextPage endCursor } edges { node { id status direction recordId detail } } } }`, vars)
		var p page
		if err := json.Unmarshal(r.Data["syncEvents"], &p); err != nil || r.code() != "" {
			t.Fatalf("syncEvents %v: %v %+v", vars, err, r.Errors)
		}
		return p
	}
	// Newest first, paged, only this tenant's.
	ids := b.pageIDs(t, admin, `query($first: Int, $after: String) { syncEvents(first: $first, after: $after) {
		totalCount pageInfo { hasNextPage endCursor } edges { node { id } } } }`, "syncEvents", 2, 5)
	if strings.Join(ids, ",") != "ev4,ev3,ev2,ev1,ev0" {
		t.Errorf("paged %v", ids)
	}
	failed := list(map[string]any{"s": "FAILED"})
	if failed.TotalCount != 2 || failed.Edges[0].Node.ID != "ev3" || failed.Edges[0].Node.Detail == nil || *failed.Edges[0].Node.Detail != "CRM said no" ||
		failed.Edges[0].Node.Direction != "CRM_TO_EMS" {
		t.Errorf("failed = %+v", failed)
	}
	if p := list(map[string]any{"r": "row0", "s": "APPLIED"}); p.TotalCount != 1 || p.Edges[0].Node.ID != "ev0" {
		t.Errorf("row0 applied = %+v", p)
	}

	r := b.do(t, admin, `mutation { replayEvents }`, nil)
	if r.code() != "" || string(r.Data["replayEvents"]) != "2" {
		t.Fatalf("replay: %s %+v", r.Data["replayEvents"], r.Errors)
	}
	if len(b.pub.entries) != 2 {
		t.Errorf("published %+v", b.pub.entries)
	}
	if p := list(map[string]any{"s": "FAILED"}); p.TotalCount != 0 {
		t.Errorf("after replay %d failed", p.TotalCount)
	}
	if p := list(map[string]any{"s": "PENDING"}); p.TotalCount != 4 {
		t.Errorf("after replay %d pending, want 4", p.TotalCount)
	}
	if r := b.do(t, admin, `{ syncEvents(after: "bm9wZQ") { totalCount } }`, nil); r.code() != "BAD_USER_INPUT" {
		t.Errorf("bad cursor: %+v", r.Errors)
	}
}

func TestGroupAndSubscriberLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ed := token(t, claims("acme", "editor", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
	r := b.do(t, ed, `mutation { createSubscriberGroup(input: {name: "Plain"}) { id } }`, nil)
	var g struct{ ID string }
	if err := json.Unmarshal(r.Data["createSubscriberGroup"], &g); err != nil || r.code() != "" {
		t.Fatalf("%v %+v", err, r.Errors)
	}
	if r := b.do(t, ed, `mutation($g: ID!) { setGroupCrmSync(groupId: $g, enabled: true) { id } }`, map[string]any{"g": g.ID}); r.code() != "BAD_USER_INPUT" {
		t.Errorf("crm sync without a connection: %+v", r.Errors)
	}
	r = b.do(t, ed, `{ subscriberGroups(first: 1) { totalCount pageInfo { hasNextPage endCursor } edges { node { name } } } }`, nil)
	if !strings.Contains(string(r.Data["subscriberGroups"]), `"totalCount":2`) || !strings.Contains(string(r.Data["subscriberGroups"]), `"hasNextPage":true`) {
		t.Errorf("groups page: %s %+v", r.Data["subscriberGroups"], r.Errors)
	}
	// unsubscribe, then erase: the subscriber is gone, the address free again.
	r = b.do(t, ed, `mutation($s: ID!) { unsubscribe(subscriberId: $s) { subscriptionState } }`, map[string]any{"s": b.sub.ID})
	if !strings.Contains(string(r.Data["unsubscribe"]), "UNSUBSCRIBED") {
		t.Errorf("unsubscribe: %s %+v", r.Data["unsubscribe"], r.Errors)
	}
	// The ledger says who stopped it, once (a second unsubscribe changes nothing).
	b.do(t, ed, `mutation($s: ID!) { unsubscribe(subscriberId: $s) { subscriptionState } }`, map[string]any{"s": b.sub.ID})
	r = b.do(t, ed, `query($s: ID!) { consentHistory(subscriberId: $s) { totalCount edges { node { action source actor } } } }`, map[string]any{"s": b.sub.ID})
	if h := string(r.Data["consentHistory"]); !strings.Contains(h, `"totalCount":1`) || !strings.Contains(h, `"action":"UNSUBSCRIBED","source":"OPERATOR","actor":"`) {
		t.Errorf("consent history after unsubscribe: %s %+v", h, r.Errors)
	}
	if r := b.do(t, ed, `mutation($s: ID!) { deleteSubscriber(id: $s) }`, map[string]any{"s": b.sub.ID}); string(r.Data["deleteSubscriber"]) != "true" {
		t.Fatalf("delete: %+v", r.Errors)
	}
	if r := b.do(t, ed, `query($s: ID!) { subscriber(id: $s) { id } }`, map[string]any{"s": b.sub.ID}); r.code() != "NOT_FOUND" {
		t.Errorf("deleted subscriber: %+v", r.Errors)
	}
	if r := b.do(t, ed, `query($g: ID!) { subscriberByEmail(groupId: $g, email: "a@example.com") { id } }`, map[string]any{"g": b.group.ID}); string(r.Data["subscriberByEmail"]) != "null" {
		t.Errorf("deleted address still answers: %s", r.Data["subscriberByEmail"])
	}
	other := token(t, claims("globex", "admin", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
	if r := b.do(t, other, `mutation($g: ID!) { deleteSubscriberGroup(id: $g) }`, map[string]any{"g": b.group.ID}); r.code() != "NOT_FOUND" {
		t.Errorf("another tenant deleted the group: %+v", r.Errors)
	}
	if r := b.do(t, ed, `mutation($g: ID!) { deleteSubscriberGroup(id: $g) }`, map[string]any{"g": b.group.ID}); string(r.Data["deleteSubscriberGroup"]) != "true" {
		t.Fatalf("delete group: %+v", r.Errors)
	}
	if r := b.do(t, ed, `query($g: ID!) { subscriberGroup(id: $g) { id } }`, map[string]any{"g": b.group.ID}); r.code() != "NOT_FOUND" {
		t.Errorf("deleted group: %+v", r.Errors)
	}
}

func TestAutomaticPersistedQueries(t *testing.T) {
	t.Parallel()
	r, keys := queuetest.Open(t)
	st := storetest.Open(t)
	v, _ := auth.NewVerifier(auth.Config{Secret: secret})
	srv := httptest.NewServer(graph.NewHandler(graph.Config{Store: st, Verifier: v, Publisher: &fakePublisher{},
		QueryCache: queue.NewQueryCache(r.Client, keys, time.Minute)}))
	defer srv.Close()
	b := &bundle{srv: srv}
	viewer := token(t, claims("acme", "viewer", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
	query := `{ connections { id } }`
	sum := sha256.Sum256([]byte(query))
	ext := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hex.EncodeToString(sum[:])}}
	post := func(q string) result {
		body, _ := json.Marshal(map[string]any{"query": q, "extensions": ext})
		req, _ := http.NewRequest(http.MethodPost, b.srv.URL, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+viewer)
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out result
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	if res := post(""); res.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Fatalf("unknown hash: %+v", res.Errors)
	}
	if res := post(query); res.code() != "" {
		t.Fatalf("register: %+v", res.Errors)
	}
	if res := post(""); res.code() != "" || string(res.Data["connections"]) != "[]" {
		t.Errorf("by hash: %s %+v", res.Data["connections"], res.Errors)
	}
}

// TestRequestTimeout: a mutation that outlives the request timeout is stopped and
// answered with an error that says so, not left running.
func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	st := storetest.Open(t)
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(graph.NewHandler(graph.Config{Store: st, Verifier: v, Publisher: &fakePublisher{}, Lists: stuckListSync{},
		RequestTimeout: 50 * time.Millisecond}))
	t.Cleanup(srv.Close)
	b := &bundle{srv: srv, store: st}
	admin := token(t, claims("acme", "admin", time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
	r := b.do(t, admin, `mutation { syncMarketingList(listId: "5b0e3c1e-1d7a-4f7e-9c55-0d7e4c9b2a10") { id } }`, nil)
	if r.code() != "INTERNAL" || !strings.Contains(r.Errors[0].Message, "did not finish within 50ms") {
		t.Errorf("answer = %+v", r.Errors)
	}
}

// stuckListSync never answers before its context ends.
type stuckListSync struct{}

func (stuckListSync) SyncNow(ctx context.Context, _, _ string, _ bool) (*store.SyncRun, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
