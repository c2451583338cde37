package dataverse

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"crmsync/dataverse/emulator"
)

// hooked is a client (whose requests a recorder counts) and an emulator whose
// webhook steps post to a receiver.
type hooked struct {
	c        *Client
	e        *emulator.Emulator
	rec      *recorder
	receiver *hookReceiver
	url      string
	endpoint string
}

func hookedSetup(t *testing.T, mod func(*Config)) *hooked {
	t.Helper()
	c, rec, _, e := recordedSetup(t, emulator.Config{}, mod)
	h := &hooked{c: c, e: e, rec: rec, receiver: &hookReceiver{}}
	srv := httptest.NewServer(h.receiver)
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/webhooks/dataverse/conn-1"
	var err error
	h.endpoint, err = c.Create(t.Context(), "serviceendpoints", map[string]any{
		"name": "crmsync", "url": h.url, "contract": 8, "authtype": 4, "authvalue": "the-webhook-key", "messageformat": 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// step registers an asynchronous post-operation step on message (and table, ""
// for none) through the Web API and returns its id.
func (h *hooked) step(t *testing.T, message, table, filtering string) string {
	t.Helper()
	row := map[string]any{
		"name": "crmsync: " + message + " of " + table, "stage": StagePostOperation, "mode": ModeAsynchronous, "rank": 1,
		"eventhandler_serviceendpoint@odata.bind": Bind("serviceendpoints", h.endpoint),
		"sdkmessageid@odata.bind":                 Bind("sdkmessages", one(t, h.c, "sdkmessages", "sdkmessageid", "name eq "+QuoteString(message))),
	}
	if table != "" {
		row["sdkmessagefilterid@odata.bind"] = Bind("sdkmessagefilters", one(t, h.c, "sdkmessagefilters", "sdkmessagefilterid",
			"sdkmessageid/name eq "+QuoteString(message)+" and primaryobjecttypecode eq "+QuoteString(table)))
	}
	if filtering != "" {
		row["filteringattributes"] = filtering
	}
	id, err := h.c.Create(t.Context(), "sdkmessageprocessingsteps", row)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// requests counts the Web API requests made so far.
func (h *hooked) requests() int { return len(h.rec.arrivals()) }

func (h *hooked) flush(t *testing.T) {
	t.Helper()
	if err := h.e.FlushWebhooks(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// delivered is the set of rows a step's deliveries were about.
func (h *hooked) delivered(t *testing.T, step string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, d := range h.e.StepDeliveries(step) {
		if !d.Succeeded {
			t.Errorf("delivery to %s failed: %+v", d.StepName, d)
		}
		out[d.EntityID]++
	}
	return out
}

func TestCreateMultipleAndUpdateMultipleOfAThousandContacts(t *testing.T) {
	t.Parallel()
	h := hookedSetup(t, nil)
	ctx := t.Context()
	create := h.step(t, MessageCreate, "contact", "")
	update := h.step(t, MessageUpdate, "contact", "emailaddress1")
	multi := h.step(t, "CreateMultiple", "contact", "")

	rows := make([]map[string]any, 1000)
	for i := range rows {
		rows[i] = map[string]any{"lastname": fmt.Sprintf("m%04d", i), "emailaddress1": fmt.Sprintf("m%d@example.de", i)}
	}
	before := h.requests()
	ids, err := h.c.CreateMultiple(ctx, "contacts", rows)
	if err != nil {
		t.Fatal(err)
	}
	if n := h.requests() - before; n != 1 {
		t.Errorf("CreateMultiple of 1000 rows took %d requests, want 1", n)
	}
	if len(ids) != 1000 || rows[0]["contactid"] != nil {
		t.Fatalf("%d ids; caller's row changed: %v", len(ids), rows[0])
	}
	got, err := h.c.Get(ctx, "contacts", ids[517], []string{"lastname", "emailaddress1"})
	if err != nil || got["lastname"] != "m0517" {
		t.Errorf("row 517: %v %v (ids follow the order sent)", got, err)
	}

	updates := make([]map[string]any, len(ids))
	for i, id := range ids {
		updates[i] = map[string]any{"contactid": id, "emailaddress1": fmt.Sprintf("new%d@example.de", i)}
	}
	before = h.requests()
	if err := h.c.UpdateMultiple(ctx, "contacts", updates); err != nil {
		t.Fatal(err)
	}
	if n := h.requests() - before; n != 1 {
		t.Errorf("UpdateMultiple of 1000 rows took %d requests, want 1", n)
	}
	if n := count(t, h.c, "contacts", "startswith(emailaddress1,'new')"); n != 1000 {
		t.Errorf("%d contacts updated, want 1000", n)
	}

	// Dataverse raises Create and Update once per row (§7.1), so the steps see
	// 1000 single events each, one per contact; CreateMultiple steps see the whole
	// request once.
	h.flush(t)
	for name, step := range map[string]string{"Create": create, "Update": update} {
		per := h.delivered(t, step)
		if len(per) != 1000 {
			t.Errorf("%s step: deliveries for %d rows, want 1000", name, len(per))
		}
		for _, id := range ids {
			if per[id] != 1 {
				t.Errorf("%s step: %d deliveries for %s", name, per[id], id)
				break
			}
		}
	}
	if d := h.e.StepDeliveries(multi); len(d) != 1 || d[0].MessageName != "CreateMultiple" || !d[0].SizeExceeded {
		t.Errorf("CreateMultiple step: %+v (1000 Targets exceed 256 KB)", d)
	}
	bodies, _ := h.receiver.take(t)
	var updateEvent *ExecutionContext
	for _, ec := range bodies {
		if ec.MessageName == MessageUpdate && ec.PrimaryEntityID == ids[3] {
			updateEvent = ec
		}
	}
	if updateEvent == nil {
		t.Fatal("no Update event for row 3")
	}
	if target, _ := updateEvent.Target(); target.Attributes["emailaddress1"] != "new3@example.de" {
		t.Errorf("Update Target %v", target.Attributes)
	}
}

func TestBulkRequestsAreAtomic(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	_, err := b.client.CreateMultiple(ctx, "contacts", []map[string]any{
		{"lastname": "atomic-1"}, {"lastname": "atomic-2"}, {"lastname": strings.Repeat("z", 51)},
	})
	wantAPIError(t, err, http.StatusBadRequest, "0x80044331")
	if n := count(t, b.client, "contacts", "startswith(lastname,'atomic-')"); n != 0 {
		t.Errorf("a failed CreateMultiple left %d rows", n)
	}
	ids, err := b.client.CreateMultiple(ctx, "contacts", []map[string]any{{"lastname": "u1"}, {"lastname": "u2"}})
	if err != nil {
		t.Fatal(err)
	}
	missing := "00000000-0000-4000-8000-0000000000cc"
	err = b.client.UpdateMultiple(ctx, "contacts", []map[string]any{
		{"contactid": ids[0], "lastname": "changed"}, {"contactid": missing, "lastname": "x"},
	})
	ae := wantAPIError(t, err, http.StatusNotFound, "0x80040217")
	if !strings.Contains(ae.Message, "With Ids = "+missing+" Do Not Exist") || !errors.Is(err, ErrNotFound) {
		t.Errorf("message %q", ae.Message)
	}
	if row, _ := b.client.Get(ctx, "contacts", ids[0], []string{"lastname"}); row["lastname"] != "u1" {
		t.Errorf("a failed UpdateMultiple changed row 0: %v", row)
	}
	// A row named twice: the first one wins (§7.1).
	if err := b.client.UpdateMultiple(ctx, "contacts", []map[string]any{
		{"contactid": ids[1], "lastname": "first"}, {"contactid": ids[1], "lastname": "second"},
	}); err != nil {
		t.Fatal(err)
	}
	if row, _ := b.client.Get(ctx, "contacts", ids[1], []string{"lastname"}); row["lastname"] != "first" {
		t.Errorf("duplicate in UpdateMultiple: %v", row)
	}
	if err := b.client.UpdateMultiple(ctx, "contacts", []map[string]any{{"lastname": "no id"}}); err == nil {
		t.Error("UpdateMultiple without the primary key succeeded")
	}
	if _, err := b.client.CreateMultiple(ctx, "systemusers", []map[string]any{{"lastname": "x"}}); err == nil {
		t.Error("CreateMultiple on a table without the bulk messages succeeded")
	}
}

func TestCreateMultipleIsSafeToRetry(t *testing.T) {
	t.Parallel()
	e := emulator.New(emulator.Config{Logger: testLogger(t)})
	t.Cleanup(func() { _ = e.Close() })
	var cut atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "CreateMultiple") && cut.CompareAndSwap(false, true) {
			e.ServeHTTP(httptest.NewRecorder(), r) // the rows are made…
			hangUp(w, r)                           // …and the answer is lost
			return
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	clk := newFakeClock()
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token", ClientID: emulator.DefaultClientID,
		ClientSecret: emulator.DefaultClientSecret, Sleep: clk.Sleep, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := c.CreateMultiple(t.Context(), "contacts", []map[string]any{{"lastname": "r1"}, {"lastname": "r2"}, {"lastname": "r3"}})
	if err != nil || len(ids) != 3 {
		t.Fatalf("ids %v, err %v", ids, err)
	}
	if n := count(t, c, "contacts", "startswith(lastname,'r')"); n != 3 {
		t.Errorf("%d contacts after a retried CreateMultiple, want 3", n)
	}
}

func TestBulkSizeSplitsRequests(t *testing.T) {
	t.Parallel()
	h := hookedSetup(t, func(c *Config) { c.BulkSize = 300 })
	rows := make([]map[string]any, 1000)
	for i := range rows {
		rows[i] = map[string]any{"lastname": fmt.Sprintf("s%04d", i)}
	}
	before := h.requests()
	ids, err := h.c.CreateMultiple(t.Context(), "contacts", rows)
	if err != nil || len(ids) != 1000 {
		t.Fatalf("%d ids, %v", len(ids), err)
	}
	if n := h.requests() - before; n != 4 {
		t.Errorf("%d requests for 1000 rows at BulkSize 300, want 4", n)
	}
}

func TestUpsertMultipleByAlternateKey(t *testing.T) {
	t.Parallel()
	h := hookedSetup(t, nil)
	ctx := t.Context()
	create := h.step(t, MessageCreate, "cs_subscription", "")
	update := h.step(t, MessageUpdate, "cs_subscription", "")
	c1, err := h.c.Create(ctx, "contacts", map[string]any{"lastname": "Sub One"})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := h.c.Create(ctx, "contacts", map[string]any{"lastname": "Sub Two"})
	if err != nil {
		t.Fatal(err)
	}
	key := func(contact, group string) string {
		return AlternateKey("cs_subscriptions", map[string]any{"_cs_contactid_value": contact, "cs_groupid": group})
	}
	if got, want := key(c1, "O'Brien/1"), "cs_subscriptions(_cs_contactid_value="+c1+",cs_groupid='O''Brien%2F1')"; got != want {
		t.Errorf("AlternateKey = %s, want %s", got, want)
	}
	if err := h.c.UpsertMultiple(ctx, "cs_subscriptions", []map[string]any{
		{"@odata.id": key(c1, "g1"), "cs_subscribed": true},
		{"@odata.id": key(c1, "g2"), "cs_subscribed": true},
	}); err != nil {
		t.Fatal(err)
	}
	if err := h.c.UpsertMultiple(ctx, "cs_subscriptions", []map[string]any{
		{"@odata.id": key(c1, "G1"), "cs_subscribed": false}, // keys compare without regard to case
		{"@odata.id": key(c2, "g1"), "cs_subscribed": true},
	}); err != nil {
		t.Fatal(err)
	}
	subs := map[string]bool{}
	rows := h.c.Query(ctx, "cs_subscriptions", Query{Select: []string{"_cs_contactid_value", "cs_groupid", "cs_subscribed"}})
	for rows.Next(ctx) {
		r := rows.Row()
		contact, _ := r.Lookup("cs_contactid")
		group, _ := r.String("cs_groupid")
		subscribed, _ := r.Bool("cs_subscribed")
		subs[contact+"/"+group] = subscribed
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{c1 + "/g1": false, c1 + "/g2": true, c2 + "/g1": true}
	if fmt.Sprint(subs) != fmt.Sprint(want) {
		t.Errorf("subscriptions %v, want %v", subs, want)
	}
	h.flush(t)
	if nc, nu := len(h.e.StepDeliveries(create)), len(h.e.StepDeliveries(update)); nc != 3 || nu != 1 {
		t.Errorf("%d Create and %d Update events, want 3 and 1 (UpsertMultiple raises no event of its own)", nc, nu)
	}

	// Two targets with one key fail the whole request; rows need a key.
	err = h.c.UpsertMultiple(ctx, "cs_subscriptions", []map[string]any{
		{"@odata.id": key(c2, "g9"), "cs_subscribed": true}, {"@odata.id": key(c2, "g9"), "cs_subscribed": false},
	})
	wantAPIError(t, err, http.StatusBadRequest, "")
	if n := count(t, h.c, "cs_subscriptions", "cs_groupid eq 'g9'"); n != 0 {
		t.Errorf("a refused UpsertMultiple made %d rows", n)
	}
	if err := h.c.UpsertMultiple(ctx, "cs_subscriptions", []map[string]any{{"cs_subscribed": true}}); err == nil {
		t.Error("UpsertMultiple without @odata.id succeeded")
	}
	// The key holds for single writes too.
	_, err = h.c.Create(ctx, "cs_subscriptions", map[string]any{"cs_groupid": "g2", "cs_ContactId@odata.bind": Bind("contacts", c1)})
	wantAPIError(t, err, http.StatusPreconditionFailed, "0x80040237")
}

// BenchmarkCreateMultiple creates 1000 contacts per operation with one
// CreateMultiple request, beside creating them one by one, HTTP and JSON on both
// sides included.
func BenchmarkCreateMultiple(b *testing.B) {
	const rows = 1000
	batch := make([]map[string]any, rows)
	for i := range batch {
		batch[i] = map[string]any{"lastname": fmt.Sprintf("b%04d", i), "emailaddress1": fmt.Sprintf("b%d@example.de", i)}
	}
	for _, bc := range []struct {
		name   string
		create func(tb *testBundle) error
	}{
		{"bulk", func(tb *testBundle) error {
			_, err := tb.client.CreateMultiple(b.Context(), "contacts", batch)
			return err
		}},
		{"one-by-one", func(tb *testBundle) error {
			for _, row := range batch {
				if _, err := tb.client.Create(b.Context(), "contacts", row); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var requests atomic.Int64
			tb := setup(b, func(e *emulator.Config, c *Config) {
				e.Logger, c.Logger = nil, nil
				e.LimitRequests, e.LimitExecSeconds, e.LimitConcurrent = -1, -1, -1
				c.HTTPClient = &http.Client{Transport: countingTransport{&requests, http.DefaultTransport.(*http.Transport).Clone()}}
			})
			b.ReportAllocs()
			requests.Store(0)
			for b.Loop() {
				if err := bc.create(tb); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/1000rows")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rows, "ns/row")
		})
	}
}

// countingTransport counts the Web API requests a client sends.
type countingTransport struct {
	n  *atomic.Int64
	rt http.RoundTripper
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, APIPath) {
		c.n.Add(1)
	}
	return c.rt.RoundTrip(r)
}
