package dataverse

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"crmsync/dataverse/emulator"
)

// hookReceiver is the webhook endpoint of the round trip: it keeps every request
// and answers with the next status of its script (202 once the script is used up).
type hookReceiver struct {
	mu     sync.Mutex
	bodies [][]byte
	header []http.Header
	code   []string
	script []int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, body)
	h.header = append(h.header, r.Header.Clone())
	h.code = append(h.code, r.URL.Query().Get("code"))
	status := http.StatusAccepted
	if len(h.script) > 0 {
		status, h.script = h.script[0], h.script[1:]
	}
	h.mu.Unlock()
	w.WriteHeader(status)
}

// take returns what arrived since the last call, decoded, and sets the answers of
// the next requests.
func (h *hookReceiver) take(t *testing.T, next ...int) ([]*ExecutionContext, []http.Header) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*ExecutionContext
	for i, b := range h.bodies {
		ec, err := Decode(b)
		if err != nil {
			t.Fatalf("delivery %d does not decode: %v\n%s", i, err, b)
		}
		if h.header[i].Get(HeaderSizeExceeded) != "" {
			ec.MarkSizeExceeded()
		}
		if h.code[i] != "the-webhook-key" {
			t.Errorf("delivery %d: code %q", i, h.code[i])
		}
		out = append(out, ec)
	}
	headers := h.header
	h.bodies, h.header, h.code, h.script = nil, nil, nil, next
	return out, headers
}

// roundTrip is an emulator, crmsync's client (the application user) and a user's
// client (admin@emulator.test) sharing one clock.
type roundTrip struct {
	e          *emulator.Emulator
	clock      *fakeClock
	app, user  *Client
	receiver   *hookReceiver
	receiverAt string
}

func newRoundTrip(t *testing.T) *roundTrip {
	t.Helper()
	rt := &roundTrip{clock: newFakeClock(), receiver: &hookReceiver{}}
	rt.e = emulator.New(emulator.Config{Now: rt.clock.Now, Logger: testLogger(t)})
	t.Cleanup(func() { _ = rt.e.Close() })
	srv := httptest.NewServer(rt.e)
	t.Cleanup(srv.Close)
	hooks := httptest.NewServer(rt.receiver)
	t.Cleanup(hooks.Close)
	rt.receiverAt = hooks.URL + "/webhooks/dataverse/conn-1"
	client := func(id, secret string) *Client {
		c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/common/oauth2/v2.0/token",
			ClientID: id, ClientSecret: secret, Now: rt.clock.Now, Sleep: rt.clock.Sleep, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rt.app = client(emulator.DefaultClientID, emulator.DefaultClientSecret)
	rt.user = client(emulator.DefaultUserClientID, emulator.DefaultUserClientSecret)
	return rt
}

// one reads the single row a query must find and returns its id column.
func one(t *testing.T, c *Client, set, idColumn, filter string) string {
	t.Helper()
	rows := c.Query(t.Context(), set, Query{Select: []string{idColumn}, Filter: filter})
	var ids []string
	for rows.Next(t.Context()) {
		id, _ := rows.Row().String(idColumn)
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil || len(ids) != 1 {
		t.Fatalf("%s?$filter=%s: %v, %v", set, filter, ids, err)
	}
	return ids[0]
}

// register does what `crmsync register` will: an endpoint, then one step per
// message with its images, all through the Web API as §7.6 shows.
func (rt *roundTrip) register(t *testing.T) map[string]string {
	t.Helper()
	ctx := t.Context()
	c := rt.app
	ep, err := c.Create(ctx, "serviceendpoints", map[string]any{
		"name": "crmsync conn-1", "url": rt.receiverAt, "contract": 8, "authtype": 4, "authvalue": "the-webhook-key", "messageformat": 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]string{}
	for _, s := range []struct {
		message, filtering string
		images             []map[string]any
	}{
		{message: "Create", images: []map[string]any{{"name": "PostImage", "entityalias": "PostImage", "imagetype": 1, "messagepropertyname": "Target", "attributes": "emailaddress1,firstname,lastname"}}},
		{message: "Update", filtering: "emailaddress1,donotbulkemail,statecode", images: []map[string]any{
			{"name": "PreImage", "entityalias": "PreImage", "imagetype": 0, "messagepropertyname": "Target", "attributes": "emailaddress1,donotbulkemail"},
			{"name": "PostImage", "entityalias": "PostImage", "imagetype": 1, "messagepropertyname": "Target", "attributes": "emailaddress1,firstname,lastname"},
		}},
		{message: "Delete", images: []map[string]any{{"name": "PreImage", "entityalias": "PreImage", "imagetype": 0, "messagepropertyname": "Target", "attributes": "emailaddress1"}}},
	} {
		msg := one(t, c, "sdkmessages", "sdkmessageid", "name eq "+QuoteString(s.message))
		filter := one(t, c, "sdkmessagefilters", "sdkmessagefilterid",
			"sdkmessageid/name eq "+QuoteString(s.message)+" and primaryobjecttypecode eq 'contact'")
		row := map[string]any{
			"name": "crmsync: " + s.message + " of contact", "stage": StagePostOperation, "mode": ModeAsynchronous, "rank": 1,
			"supporteddeployment": 0, "asyncautodelete": true,
			"eventhandler_serviceendpoint@odata.bind": Bind("serviceendpoints", ep),
			"sdkmessageid@odata.bind":                 Bind("sdkmessages", msg),
			"sdkmessagefilterid@odata.bind":           Bind("sdkmessagefilters", filter),
		}
		if s.filtering != "" {
			row["filteringattributes"] = s.filtering
		}
		step, err := c.Create(ctx, "sdkmessageprocessingsteps", row)
		if err != nil {
			t.Fatalf("step %s: %v", s.message, err)
		}
		for _, img := range s.images {
			img["sdkmessageprocessingstepid@odata.bind"] = Bind("sdkmessageprocessingsteps", step)
			if _, err := c.Create(ctx, "sdkmessageprocessingstepimages", img); err != nil {
				t.Fatalf("image of %s: %v", s.message, err)
			}
		}
		steps[s.message] = step
	}
	return steps
}

func (rt *roundTrip) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := rt.e.FlushWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookRoundTrip(t *testing.T) {
	t.Parallel()
	rt := newRoundTrip(t)
	steps := rt.register(t)
	ctx := t.Context()
	admin := rt.e.AdminUserID()

	// The user creates a contact: one Create, Target with every column set.
	id, err := rt.user.Create(ctx, "contacts", map[string]any{"firstname": "Anna", "lastname": "Schmidt", "emailaddress1": "anna@example.de"})
	if err != nil {
		t.Fatal(err)
	}
	rt.flush(t)
	got, headers := rt.receiver.take(t)
	if len(got) != 1 {
		t.Fatalf("%d deliveries after the create, want 1", len(got))
	}
	ec := got[0]
	checkContext(t, ec, MessageCreate, id, steps["Create"], admin, rt.e)
	if h := headers[0]; h.Get("x-ms-dynamics-request-name") != MessageCreate || h.Get("x-ms-dynamics-entity-name") != "contact" ||
		h.Get("x-ms-correlation-request-id") != ec.CorrelationID || h.Get("x-ms-dynamics-organization") != ec.OrganizationName || h.Get("x-request-id") == "" {
		t.Errorf("headers %v", h)
	}
	target, ok := ec.Target()
	if !ok {
		t.Fatal("Create without a Target")
	}
	for k, want := range map[string]any{"firstname": "Anna", "lastname": "Schmidt", "emailaddress1": "anna@example.de", "fullname": "Anna Schmidt", "contactid": id} {
		if target.Attributes[k] != want {
			t.Errorf("Create Target %s = %v, want %v", k, target.Attributes[k], want)
		}
	}
	if owner, _ := target.Reference("ownerid"); owner.ID != admin || owner.LogicalName != "systemuser" {
		t.Errorf("owner %+v", owner)
	}
	if post := ec.PostEntityImages["PostImage"]; post == nil || post.Attributes["emailaddress1"] != "anna@example.de" || post.Attributes["firstname"] != "Anna" {
		t.Errorf("Create post-image %+v", post)
	}
	if ec.OutputParameters["id"] != id || len(ec.PreEntityImages) != 0 {
		t.Errorf("OutputParameters %v, pre-images %v", ec.OutputParameters, ec.PreEntityImages)
	}

	// A change of a column the Update step does not filter on goes nowhere.
	rt.clock.Add(time.Minute)
	if err := rt.user.Update(ctx, "contacts", id, map[string]any{"jobtitle": "Buyer"}); err != nil {
		t.Fatal(err)
	}
	rt.flush(t)
	if got, _ := rt.receiver.take(t); len(got) != 0 {
		t.Fatalf("jobtitle change delivered %d times; the step filters on e-mail and consent", len(got))
	}

	// The e-mail changes: the Target carries the changed column only (plus the key
	// and the modified stamps); the images carry the rest.
	rt.clock.Add(time.Minute)
	if err := rt.user.Update(ctx, "contacts", id, map[string]any{"emailaddress1": "anna.neu@example.de"}); err != nil {
		t.Fatal(err)
	}
	rt.flush(t)
	got, _ = rt.receiver.take(t)
	if len(got) != 1 {
		t.Fatalf("%d deliveries after the update, want 1", len(got))
	}
	ec = got[0]
	checkContext(t, ec, MessageUpdate, id, steps["Update"], admin, rt.e)
	target, _ = ec.Target()
	var cols []string
	for k := range target.Attributes {
		cols = append(cols, k)
	}
	slices.Sort(cols)
	if want := []string{"contactid", "emailaddress1", "modifiedby", "modifiedon", "modifiedonbehalfby"}; !slices.Equal(cols, want) {
		t.Errorf("Update Target columns %v, want %v", cols, want)
	}
	if mod, _ := target.Time("modifiedon"); target.Attributes["emailaddress1"] != "anna.neu@example.de" || !mod.Equal(rt.clock.Now()) {
		t.Errorf("Update Target %v", target.Attributes)
	}
	if by, _ := target.Reference("modifiedby"); by.ID != admin {
		t.Errorf("modifiedby %+v", by)
	}
	if pre := ec.PreEntityImages["PreImage"]; pre == nil || pre.Attributes["emailaddress1"] != "anna@example.de" || pre.Attributes["donotbulkemail"] != false {
		t.Errorf("pre-image %+v", pre)
	}
	if post := ec.PostEntityImages["PostImage"]; post == nil || post.Attributes["emailaddress1"] != "anna.neu@example.de" || post.Attributes["lastname"] != "Schmidt" {
		t.Errorf("post-image %+v", post)
	}
	merged := ec.Merged()
	if merged.Attributes["emailaddress1"] != "anna.neu@example.de" || merged.Attributes["lastname"] != "Schmidt" {
		t.Errorf("merged %v", merged.Attributes)
	}

	// The receiver answers 503: Dataverse tries exactly once more, with a new
	// x-request-id and the same OperationId.
	rt.receiver.take(t, http.StatusServiceUnavailable)
	if err := rt.user.Update(ctx, "contacts", id, map[string]any{"donotbulkemail": true}); err != nil {
		t.Fatal(err)
	}
	rt.flush(t)
	got, headers = rt.receiver.take(t, http.StatusInternalServerError)
	if len(got) != 2 {
		t.Fatalf("%d attempts after a 503, want 2", len(got))
	}
	if headers[0].Get("x-request-id") == headers[1].Get("x-request-id") || got[0].OperationID != got[1].OperationID || got[0].OperationID == "" {
		t.Errorf("retry: x-request-id %q → %q, OperationId %q → %q", headers[0].Get("x-request-id"), headers[1].Get("x-request-id"), got[0].OperationID, got[1].OperationID)
	}
	if d := rt.e.StepDeliveries(steps["Update"]); len(d) == 0 || !d[len(d)-1].Succeeded || len(d[len(d)-1].Attempts) != 2 {
		t.Errorf("delivery log %+v", d)
	}

	// A 500 is not retried.
	if err := rt.user.Update(ctx, "contacts", id, map[string]any{"emailaddress1": "anna.500@example.de"}); err != nil {
		t.Fatal(err)
	}
	rt.flush(t)
	if got, _ := rt.receiver.take(t); len(got) != 1 {
		t.Fatalf("%d attempts after a 500, want 1", len(got))
	}
	if d := rt.e.StepDeliveries(steps["Update"]); d[len(d)-1].Succeeded || d[len(d)-1].Attempts[0].Status != http.StatusInternalServerError {
		t.Errorf("failed delivery logged as %+v", d[len(d)-1])
	}

	// The user deletes the contact: Delete with a reference Target and the pre-image.
	if err := rt.user.Delete(ctx, "contacts", id); err != nil {
		t.Fatal(err)
	}
	rt.flush(t)
	got, _ = rt.receiver.take(t)
	if len(got) != 1 {
		t.Fatalf("%d deliveries after the delete, want 1", len(got))
	}
	ec = got[0]
	checkContext(t, ec, MessageDelete, id, steps["Delete"], admin, rt.e)
	if ref, ok := ec.TargetReference(); !ok || ref.ID != id || ref.LogicalName != "contact" {
		t.Errorf("Delete Target %+v", ref)
	}
	if _, isEntity := ec.Target(); isEntity {
		t.Error("Delete Target is an Entity")
	}
	if pre := ec.PreEntityImages["PreImage"]; pre == nil || pre.Attributes["emailaddress1"] != "anna.500@example.de" || len(ec.PostEntityImages) != 0 {
		t.Errorf("Delete images: pre %+v post %v", pre, ec.PostEntityImages)
	}

	// crmsync's own writes carry its application user, so it can tell them apart.
	appID, err := rt.app.Create(ctx, "contacts", map[string]any{"lastname": "Own"})
	if err != nil {
		t.Fatal(err)
	}
	rt.flush(t)
	got, _ = rt.receiver.take(t)
	if len(got) != 1 || got[0].PrimaryEntityID != appID || got[0].UserID != rt.e.ApplicationUserID() {
		t.Errorf("own write: %+v", got)
	}
}

// checkContext checks what every delivery of the round trip has in common.
func checkContext(t *testing.T, ec *ExecutionContext, message, id, step, user string, e *emulator.Emulator) {
	t.Helper()
	if ec.MessageName != message || ec.PrimaryEntityName != "contact" || ec.PrimaryEntityID != id ||
		ec.Stage != StagePostOperation || ec.Mode != ModeAsynchronous || ec.SizeExceeded || ec.NeedsReread() {
		t.Errorf("%s: %s %s(%s) stage %d mode %d", message, ec.MessageName, ec.PrimaryEntityName, ec.PrimaryEntityID, ec.Stage, ec.Mode)
	}
	if ec.OwningExtension == nil || ec.OwningExtension.ID != step || ec.OwningExtension.LogicalName != "sdkmessageprocessingstep" {
		t.Errorf("%s: OwningExtension %+v, want step %s", message, ec.OwningExtension, step)
	}
	if ec.UserID != user || ec.InitiatingUserID != user || ec.BusinessUnitID != e.BusinessUnitID() || ec.OrganizationID != e.OrganizationID() {
		t.Errorf("%s: user %s/%s, business unit %s, organization %s", message, ec.UserID, ec.InitiatingUserID, ec.BusinessUnitID, ec.OrganizationID)
	}
	if ec.OperationID == "" || ec.CorrelationID == "" || ec.OperationID == ec.CorrelationID {
		t.Errorf("%s: OperationId %q, CorrelationId %q", message, ec.OperationID, ec.CorrelationID)
	}
	if img := ec.PostEntityImages["AsynchronousStepPrimaryName"]; message != MessageDelete && (img == nil || img.Attributes["contactid"] != id) {
		t.Errorf("%s: AsynchronousStepPrimaryName %+v", message, img)
	}
	if ec.ParentContext == nil || ec.ParentContext.Stage != StageMainOperation {
		t.Errorf("%s: ParentContext %+v", message, ec.ParentContext)
	}
}
