package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"crmsync/dataverse"
)

// received is one webhook POST as the receiver saw it.
type received struct {
	header http.Header
	query  url.Values
	body   []byte
}

// receiver is a webhook endpoint that records what it gets and answers with the
// status answer gives for the n-th request (1-based).
type receiver struct {
	mu     sync.Mutex
	got    []received
	answer func(n int) int
	hold   chan struct{} // when set, every request waits for it
	srv    *httptest.Server
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), query: r.URL.Query(), body: body})
		n, hold := len(rc.got), rc.hold
		rc.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		status := http.StatusAccepted
		if rc.answer != nil {
			status = rc.answer(n)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// decoded decodes every body received, in order.
func (rc *receiver) decoded(t *testing.T) []*dataverse.ExecutionContext {
	t.Helper()
	var out []*dataverse.ExecutionContext
	for _, r := range rc.requests() {
		ec, err := dataverse.Decode(r.body)
		if err != nil {
			t.Fatalf("body does not decode: %v\n%s", err, r.body)
		}
		out = append(out, ec)
	}
	return out
}

// flush waits for the emulator's deliveries.
func (b *testBundle) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := b.e.FlushWebhooks(ctx); err != nil {
		t.Fatalf("webhooks not delivered: %v", err)
	}
}

// webhookSetup is setup with webhook workers that end with the test.
func webhookSetup(t *testing.T, cfg Config) *testBundle {
	t.Helper()
	b := setup(t, cfg)
	t.Cleanup(func() { _ = b.e.Close() })
	return b
}

// receiverSetup is webhookSetup with a receiver behind one webhook endpoint that
// the given steps are registered on.
func receiverSetup(t *testing.T, steps ...stepSpec) (*testBundle, *receiver) {
	t.Helper()
	b := webhookSetup(t, Config{})
	rc := newReceiver(t, nil)
	ep := b.endpoint(t, "hooks", rc.srv.URL, 4, "k")
	for _, s := range steps {
		b.registerStep(t, ep, s)
	}
	return b, rc
}

// firstValue returns the first row of a collection answer.
func firstValue(t *testing.T, a answer) map[string]any {
	t.Helper()
	v := values(t, a)
	if len(v) == 0 {
		t.Fatalf("no rows: %s", a.raw)
	}
	return v[0]
}

func (b *testBundle) messageID(t *testing.T, name string) string {
	t.Helper()
	a := b.call(t, http.MethodGet, "sdkmessages?"+query("$select", "sdkmessageid", "$filter", "name eq '"+name+"'"), nil)
	return firstValue(t, a)["sdkmessageid"].(string)
}

func (b *testBundle) filterID(t *testing.T, message, table string) string {
	t.Helper()
	a := b.call(t, http.MethodGet, "sdkmessagefilters?"+query("$select", "sdkmessagefilterid",
		"$filter", "sdkmessageid/name eq '"+message+"' and primaryobjecttypecode eq '"+table+"'"), nil)
	if n := len(values(t, a)); n != 1 {
		t.Fatalf("%d filters for %s of %s: %s", n, message, table, a.raw)
	}
	return firstValue(t, a)["sdkmessagefilterid"].(string)
}

// endpoint registers a webhook service endpoint and returns its id.
func (b *testBundle) endpoint(t *testing.T, name, u string, authType int, authValue string) string {
	t.Helper()
	return b.mustCreate(t, "serviceendpoints", map[string]any{
		"name": name, "url": u, "contract": 8, "authtype": authType, "authvalue": authValue, "messageformat": 2,
	})
}

// stepSpec describes a step for registerStep.
type stepSpec struct {
	message, table string
	stage, mode    int
	filtering      string
	images         []map[string]any
}

// registerStep registers a step on an endpoint as §7.6 does and returns its id.
func (b *testBundle) registerStep(t *testing.T, endpointID string, s stepSpec) string {
	t.Helper()
	row := map[string]any{
		"name": "test: " + s.message + " of " + s.table, "stage": s.stage, "mode": s.mode, "rank": 1, "supporteddeployment": 0,
		"eventhandler_serviceendpoint@odata.bind": "/serviceendpoints(" + endpointID + ")",
		"sdkmessageid@odata.bind":                 "/sdkmessages(" + b.messageID(t, s.message) + ")",
	}
	if s.table != "" {
		row["sdkmessagefilterid@odata.bind"] = "/sdkmessagefilters(" + b.filterID(t, s.message, s.table) + ")"
	}
	if s.filtering != "" {
		row["filteringattributes"] = s.filtering
	}
	if s.mode == 1 {
		row["asyncautodelete"] = true
	}
	id := b.mustCreate(t, "sdkmessageprocessingsteps", row)
	for _, img := range s.images {
		img = copyRow(img)
		img["sdkmessageprocessingstepid@odata.bind"] = "/sdkmessageprocessingsteps(" + id + ")"
		b.mustCreate(t, "sdkmessageprocessingstepimages", img)
	}
	return id
}

// copyRow copies a row so a table's fixtures are not shared between subtests.
func copyRow(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestRegisterWebhookThroughTheWebAPI(t *testing.T) {
	t.Parallel()
	b := webhookSetup(t, Config{})
	rc := newReceiver(t, nil)

	// §7.6 step 1, with return=representation: authvalue is never read back.
	a := b.call(t, http.MethodPost, "serviceendpoints", map[string]any{
		"name": "mkt-receiver", "url": rc.srv.URL + "/dv", "contract": 8, "authtype": 5,
		"authvalue": `<settings><setting name="x-api-key" value="s3cret"/></settings>`,
	}, "Prefer", "return=representation")
	if a.status != http.StatusCreated {
		t.Fatalf("create endpoint: %d %s", a.status, a.raw)
	}
	if _, ok := a.body["authvalue"]; ok || a.body["isauthvalueset"] != true || a.body["messageformat"] != json.Number("2") || strings.Contains(a.raw, "s3cret") {
		t.Errorf("endpoint read back: %s", a.raw)
	}
	ep := a.body["serviceendpointid"].(string)
	b.call(t, http.MethodGet, "serviceendpoints("+ep+")?$select=authvalue", nil).
		wantError(t, http.StatusBadRequest, codeODataGeneric, "Could not find a property named 'authvalue'")
	a = b.call(t, http.MethodGet, "serviceendpoints?"+query("$filter", "contract eq 8", "$select", "serviceendpointid,name,authtype,url"), nil)
	if rows := values(t, a); len(rows) != 1 || rows[0]["url"] != rc.srv.URL+"/dv" || rows[0]["authtype"] != json.Number("5") {
		t.Errorf("registered webhooks: %s", a.raw)
	}

	// Steps 2–4.
	step := b.registerStep(t, ep, stepSpec{message: "Update", table: "contact", stage: 40, mode: 1, filtering: "emailaddress1,donotbulkemail,statecode",
		images: []map[string]any{{"name": "PreImage", "entityalias": "PreImage", "imagetype": 0, "messagepropertyname": "Target", "attributes": "emailaddress1,donotbulkemail"}}})

	// Step 5, without $expand.
	a = b.call(t, http.MethodGet, "sdkmessageprocessingsteps?"+query("$select", "name,stage,mode,filteringattributes,statecode,_sdkmessageid_value,_sdkmessagefilterid_value",
		"$filter", "_eventhandler_value eq "+ep), nil)
	rows := values(t, a)
	if len(rows) != 1 || rows[0]["sdkmessageprocessingstepid"] != step || rows[0]["stage"] != json.Number("40") || rows[0]["statecode"] != json.Number("0") ||
		rows[0]["_sdkmessageid_value"] != b.messageID(t, "Update") || rows[0]["_sdkmessagefilterid_value"] != b.filterID(t, "Update", "contact") {
		t.Errorf("steps of the endpoint: %s", a.raw)
	}
	// Disabling a step (statecode 1/2) stops its deliveries.
	if a := b.call(t, http.MethodPatch, "sdkmessageprocessingsteps("+step+")", map[string]any{"statecode": 1, "statuscode": 2}); a.status != http.StatusNoContent {
		t.Fatalf("disable step: %d %s", a.status, a.raw)
	}
	contact := b.mustCreate(t, "contacts", map[string]any{"lastname": "Quiet"})
	b.call(t, http.MethodPatch, "contacts("+contact+")", map[string]any{"emailaddress1": "q@example.de"}, "If-Match", "*")
	b.flush(t)
	if n := len(rc.requests()); n != 0 {
		t.Errorf("a disabled step got %d deliveries", n)
	}

	// Deleting the endpoint takes its steps and their images along.
	if a := b.call(t, http.MethodDelete, "serviceendpoints("+ep+")", nil); a.status != http.StatusNoContent {
		t.Fatalf("delete endpoint: %d", a.status)
	}
	for _, set := range []string{"sdkmessageprocessingsteps", "sdkmessageprocessingstepimages"} {
		if rows := values(t, b.call(t, http.MethodGet, set, nil)); len(rows) != 0 {
			t.Errorf("%s left after deleting the endpoint: %v", set, rows)
		}
	}
}

func TestRegistrationRefusals(t *testing.T) {
	t.Parallel()
	b := webhookSetup(t, Config{})
	ep := b.endpoint(t, "ep", "http://127.0.0.1:9/hook", 4, "key")
	step := b.registerStep(t, ep, stepSpec{message: "Create", table: "contact", stage: 40, mode: 0})
	del := b.registerStep(t, ep, stepSpec{message: "Delete", table: "contact", stage: 40, mode: 0})
	bind := func(set, id string) string { return "/" + set + "(" + id + ")" }
	tests := []struct {
		name, set string
		row       map[string]any
		status    int
		msg       string
	}{
		{"webhook without URL", "serviceendpoints", map[string]any{"name": "a", "contract": 8, "authtype": 4, "authvalue": "k"}, 400, "not an absolute http or https URL"},
		{"relative URL", "serviceendpoints", map[string]any{"name": "a", "contract": 8, "url": "/hook", "authtype": 4, "authvalue": "k"}, 400, "not an absolute"},
		{"SAS auth on a webhook", "serviceendpoints", map[string]any{"name": "a", "contract": 8, "url": "https://x.test/", "authtype": 2, "authvalue": "k"}, 400, "authtype 4"},
		{"webhook key without key", "serviceendpoints", map[string]any{"name": "a", "contract": 8, "url": "https://x.test/", "authtype": 4}, 400, "needs the key"},
		{"header auth not XML", "serviceendpoints", map[string]any{"name": "a", "contract": 8, "url": "https://x.test/", "authtype": 5, "authvalue": "x-key: v"}, 400, "<settings>"},
		{"query auth without setting", "serviceendpoints", map[string]any{"name": "a", "contract": 8, "url": "https://x.test/", "authtype": 6, "authvalue": "<settings/>"}, 400, "no <setting>"},
		{"duplicate name", "serviceendpoints", map[string]any{"name": "EP", "contract": 8, "url": "https://x.test/", "authtype": 4, "authvalue": "k"}, 412, "already exists"},
		{"unknown contract", "serviceendpoints", map[string]any{"name": "b", "contract": 99, "url": "https://x.test/"}, 400, "outside the valid range"},
		{"async pre-operation", "sdkmessageprocessingsteps", map[string]any{"name": "s", "stage": 20, "mode": 1,
			"eventhandler_serviceendpoint@odata.bind": bind("serviceendpoints", ep), "sdkmessageid@odata.bind": bind("sdkmessages", b.messageID(t, "Update"))}, 400, "stage 40"},
		{"stage 30", "sdkmessageprocessingsteps", map[string]any{"name": "s", "stage": 30, "mode": 0,
			"eventhandler_serviceendpoint@odata.bind": bind("serviceendpoints", ep), "sdkmessageid@odata.bind": bind("sdkmessages", b.messageID(t, "Update"))}, 400, "outside the valid range"},
		{"filter of another message", "sdkmessageprocessingsteps", map[string]any{"name": "s", "stage": 40, "mode": 0,
			"eventhandler_serviceendpoint@odata.bind": bind("serviceendpoints", ep), "sdkmessageid@odata.bind": bind("sdkmessages", b.messageID(t, "Update")),
			"sdkmessagefilterid@odata.bind": bind("sdkmessagefilters", b.filterID(t, "Create", "contact"))}, 400, "does not belong"},
		{"PascalCase navigation property", "sdkmessageprocessingsteps", map[string]any{"name": "s", "stage": 40, "mode": 0,
			"EventHandler_ServiceEndpoint@odata.bind": bind("serviceendpoints", ep), "sdkmessageid@odata.bind": bind("sdkmessages", b.messageID(t, "Update"))}, 400, "undeclared property"},
		{"step without handler", "sdkmessageprocessingsteps", map[string]any{"name": "s", "stage": 40, "mode": 0,
			"sdkmessageid@odata.bind": bind("sdkmessages", b.messageID(t, "Update"))}, 400, "'eventhandler' cannot be NULL"},
		{"pre-image on Create", "sdkmessageprocessingstepimages", map[string]any{"entityalias": "Pre", "imagetype": 0, "messagepropertyname": "Target",
			"sdkmessageprocessingstepid@odata.bind": bind("sdkmessageprocessingsteps", step)}, 400, "no pre-image"},
		{"post-image on Delete", "sdkmessageprocessingstepimages", map[string]any{"entityalias": "Post", "imagetype": 2, "messagepropertyname": "Target",
			"sdkmessageprocessingstepid@odata.bind": bind("sdkmessageprocessingsteps", del)}, 400, "no post-image"},
		{"image of the wrong property", "sdkmessageprocessingstepimages", map[string]any{"entityalias": "Post", "imagetype": 1, "messagepropertyname": "EntityMoniker",
			"sdkmessageprocessingstepid@odata.bind": bind("sdkmessageprocessingsteps", step)}, 400, "not valid for images of Create"},
		{"sdkmessages are the platform's", "sdkmessages", map[string]any{"name": "Mine"}, 400, "does not support"},
		{"so are filters", "sdkmessagefilters", map[string]any{"primaryobjecttypecode": "contact"}, 400, "does not support"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := b.call(t, http.MethodPost, tt.set, tt.row)
			if a.status != tt.status {
				t.Fatalf("%d, want %d: %s", a.status, tt.status, a.raw)
			}
			if _, msg := a.errorOf(t); !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q lacks %q", msg, tt.msg)
			}
		})
	}
	msg := b.messageID(t, "Create")
	b.call(t, http.MethodDelete, "sdkmessages("+msg+")", nil).wantError(t, http.StatusBadRequest, codeInvalidArgument, "does not support")
	b.call(t, http.MethodPatch, "sdkmessages("+msg+")", map[string]any{"name": "x"}).wantError(t, http.StatusBadRequest, codeInvalidArgument, "does not support")
	// Any port is fine for the emulator.
	if a := b.call(t, http.MethodPost, "serviceendpoints", map[string]any{"name": "port", "url": "http://localhost:65000/x", "contract": 8, "authtype": 4, "authvalue": "k"}); a.status != http.StatusNoContent {
		t.Errorf("webhook on port 65000: %d %s", a.status, a.raw)
	}
}

func TestSeededMessagesAndFilters(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	a := b.call(t, http.MethodGet, "sdkmessages?$select=name&$orderby=name", nil)
	var names []string
	for _, r := range values(t, a) {
		names = append(names, r["name"].(string))
	}
	want := []string{"AddItemCampaign", "AddItemCampaignActivity", "AddListMembers", "AddMember", "Assign", "Associate", "CopyDynamicListToStatic", "Create", "CreateMultiple",
		"cs_SendCampaign", "cs_SyncMarketingList", "Delete", "Disassociate", "RemoveMember", "SetState", "Update", "UpdateMultiple"}
	if !slices.Equal(names, want) {
		t.Errorf("sdkmessages %v, want %v", names, want)
	}
	for _, f := range [][2]string{{"Create", "contact"}, {"Update", "lead"}, {"Delete", "list"}, {"SetState", "contact"}, {"Assign", "account"},
		{"AddMember", "list"}, {"AddItemCampaign", "campaign"}, {"AddItemCampaignActivity", "campaignactivity"}, {"cs_SendCampaign", "campaignactivity"}, {"cs_SyncMarketingList", "list"}, {"Update", "cs_subscription"}} {
		b.filterID(t, f[0], f[1])
	}
	for _, f := range [][2]string{{"CreateMultiple", "contact"}, {"UpdateMultiple", "cs_subscription"}, {"CopyDynamicListToStatic", "list"}} {
		b.filterID(t, f[0], f[1])
	}
	for _, f := range [][2]string{{"Associate", "list"}, {"SetState", "listmember"}, {"Create", "systemuser"}, {"AddMember", "contact"},
		{"CreateMultiple", "listmember"}, {"UpdateMultiple", "systemuser"}, {"Create", "activityparty"}} {
		a := b.call(t, http.MethodGet, "sdkmessagefilters?"+query("$filter", "sdkmessageid/name eq '"+f[0]+"' and primaryobjecttypecode eq '"+f[1]+"'"), nil)
		if n := len(values(t, a)); n != 0 {
			t.Errorf("%s of %s: %d filters, want none", f[0], f[1], n)
		}
	}
	b.call(t, http.MethodGet, "sdkmessagefilters?"+query("$filter", "sdkmessageid/nope eq 'x'"), nil).
		wantError(t, http.StatusBadRequest, codeODataGeneric, "Could not find a property named 'nope' on type 'Microsoft.Dynamics.CRM.sdkmessage'")
	// Navigation paths work on any single-valued navigation property.
	acc := b.mustCreate(t, "accounts", map[string]any{"name": "Contoso"})
	c := b.mustCreate(t, "contacts", map[string]any{"lastname": "L", "parentcustomerid_account@odata.bind": "/accounts(" + acc + ")"})
	b.mustCreate(t, "contacts", map[string]any{"lastname": "Other"})
	a = b.call(t, http.MethodGet, "contacts?"+query("$select", "lastname", "$filter", "startswith(parentcustomerid_account/name,'CONT')"), nil)
	if rows := values(t, a); len(rows) != 1 || rows[0]["contactid"] != c {
		t.Errorf("contacts of Contoso: %s", a.raw)
	}
	b.call(t, http.MethodGet, "contacts?"+query("$filter", "ownerid/fullname eq 'x'"), nil).
		wantError(t, http.StatusNotImplemented, codeNotImplemented, "polymorphic")
}

func TestWebhookHeadersAuthAndBody(t *testing.T) {
	t.Parallel()
	b := webhookSetup(t, Config{})
	rc := newReceiver(t, nil)
	ep := b.endpoint(t, "key", rc.srv.URL+"/webhooks/dataverse/conn1", 4, "k/+ey=1")
	step := b.registerStep(t, ep, stepSpec{message: "Create", table: "contact", stage: 40, mode: 1})
	admin := b.getToken(t, DefaultUserClientID, DefaultUserClientSecret)
	a := b.callAs(t, admin, http.MethodPost, "contacts", map[string]any{
		"firstname": "Anna", "lastname": "Schmidt", "emailaddress1": "anna@example.de", "preferredcontactmethodcode": 2,
		"birthdate": "1990-05-01",
	})
	if a.status != http.StatusNoContent {
		t.Fatalf("create: %d %s", a.status, a.raw)
	}
	b.flush(t)
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	r := got[0]
	if r.query.Get("code") != "k/+ey=1" || len(r.query) != 1 {
		t.Errorf("query %v, want code=k/+ey=1", r.query)
	}
	ec, err := dataverse.Decode(r.body)
	if err != nil {
		t.Fatal(err)
	}
	for h, want := range map[string]string{
		"x-ms-dynamics-organization":  b.e.OrganizationName(),
		"x-ms-dynamics-entity-name":   "contact",
		"x-ms-dynamics-request-name":  "Create",
		"x-ms-correlation-request-id": ec.CorrelationID,
		"Content-Type":                "application/json; charset=utf-8",
	} {
		if r.header.Get(h) != want || want == "" {
			t.Errorf("%s: %q, want %q", h, r.header.Get(h), want)
		}
	}
	if _, ok := parseGUID(r.header.Get("x-request-id")); !ok || r.header.Get("x-ms-dynamics-msg-size-exceeded") != "" {
		t.Errorf("x-request-id %q, size exceeded %q", r.header.Get("x-request-id"), r.header.Get("x-ms-dynamics-msg-size-exceeded"))
	}
	// The context: who, what, which step.
	id := strings.TrimSuffix(a.header.Get("OData-EntityId")[strings.LastIndexByte(a.header.Get("OData-EntityId"), '(')+1:], ")")
	if ec.MessageName != "Create" || ec.PrimaryEntityName != "contact" || ec.PrimaryEntityID != id || ec.Stage != 40 || ec.Mode != 1 ||
		ec.UserID != b.e.AdminUserID() || ec.InitiatingUserID != b.e.AdminUserID() || ec.BusinessUnitID != b.e.BusinessUnitID() ||
		ec.OrganizationID != b.e.OrganizationID() || ec.OrganizationName != b.e.OrganizationName() || ec.Depth != 1 ||
		ec.OwningExtension == nil || ec.OwningExtension.ID != step || ec.OwningExtension.LogicalName != "sdkmessageprocessingstep" ||
		ec.SecondaryEntityName != "none" || !ec.OperationCreatedOn.Equal(b.clock.Now()) {
		t.Errorf("context %+v", ec)
	}
	if _, ok := parseGUID(ec.OperationID); !ok || ec.OperationID == ec.CorrelationID {
		t.Errorf("OperationId %q", ec.OperationID)
	}
	target, ok := ec.Target()
	if !ok || target.ID != id || target.LogicalName != "contact" {
		t.Fatalf("Target %+v", target)
	}
	checks := map[string]any{
		"firstname": "Anna", "fullname": "Anna Schmidt", "contactid": id, "donotbulkemail": false,
		"preferredcontactmethodcode": dataverse.OptionSetValue{Value: 2}, "statecode": dataverse.OptionSetValue{Value: 0},
		"statuscode": dataverse.OptionSetValue{Value: 1},
		"ownerid":    dataverse.EntityReference{LogicalName: "systemuser", ID: b.e.AdminUserID()},
		"createdon":  b.clock.Now(), "birthdate": time.Date(1990, 5, 1, 0, 0, 0, 0, time.UTC),
	}
	for k, want := range checks {
		if got := target.Attributes[k]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Target %s = %#v, want %#v", k, got, want)
		}
	}
	if target.FormattedValues["statecode"] != "Active" || target.FormattedValues["preferredcontactmethodcode"] != "Email" {
		t.Errorf("FormattedValues %v", target.FormattedValues)
	}
	if ec.OutputParameters["id"] != id {
		t.Errorf("OutputParameters %v", ec.OutputParameters)
	}
	async := ec.PostEntityImages["AsynchronousStepPrimaryName"]
	if async == nil || async.Attributes["fullname"] != "Anna Schmidt" || async.Attributes["contactid"] != id || len(async.Attributes) != 2 {
		t.Errorf("AsynchronousStepPrimaryName %+v", async)
	}
	if p := ec.ParentContext; p == nil || p.Stage != 30 || p.Mode != 0 || p.MessageName != "Create" || p.OwningExtension != nil {
		t.Errorf("ParentContext %+v", p)
	}
	// The wire form: ordinal property order, "\/" escapes, typed values.
	body := string(r.body)
	for _, want := range []string{`"__type":"Entity:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts"`, `"OperationCreatedOn":"\/Date(`,
		`{"key":"statecode","value":{"__type":"OptionSetValue:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Value":0}}`,
		`"OwningExtension":{"Id":"` + step + `","KeyAttributes":[],"LogicalName":"sdkmessageprocessingstep","Name":"test: Create of contact","RowVersion":null}`} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %s", want)
		}
	}
	if strings.Contains(body, "http://") {
		t.Error("body has an unescaped /")
	}
	keys := topLevelKeys(t, r.body)
	if !slices.IsSorted(keys) || len(keys) != 29 {
		t.Errorf("top-level keys not in ordinal order or missing: %v", keys)
	}
}

// topLevelKeys lists a JSON object's keys in the order they appear.
func topLevelKeys(t *testing.T, body []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %v", err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestWebhookSettingsAuthentication(t *testing.T) {
	t.Parallel()
	b := webhookSetup(t, Config{})
	rc := newReceiver(t, nil)
	b.registerStep(t, b.endpoint(t, "header", rc.srv.URL+"/h", 5,
		`<settings><setting name="x-api-key" value="one"/><setting name="x-tenant" value="t&amp;2"/></settings>`),
		stepSpec{message: "Create", table: "account", stage: 40})
	b.registerStep(t, b.endpoint(t, "query", rc.srv.URL+"/q?fixed=1", 6,
		`<settings><setting name="key" value="a b"/><setting name="other" value="2"/></settings>`),
		stepSpec{message: "Create", table: "account", stage: 40})
	b.mustCreate(t, "accounts", map[string]any{"name": "Contoso"})
	b.flush(t)
	got := rc.requests()
	if len(got) != 2 {
		t.Fatalf("%d deliveries", len(got))
	}
	var header, qs received
	for _, r := range got {
		if r.query.Has("fixed") {
			qs = r
		} else {
			header = r
		}
	}
	if header.header.Get("x-api-key") != "one" || header.header.Get("x-tenant") != "t&2" || len(header.query) != 0 {
		t.Errorf("header auth: %v %v", header.header, header.query)
	}
	if qs.query.Get("key") != "a b" || qs.query.Get("other") != "2" || qs.query.Get("fixed") != "1" || qs.header.Get("x-api-key") != "" {
		t.Errorf("query auth: %v", qs.query)
	}
}

func TestWebhookRetriesOnlyAfter502To504(t *testing.T) {
	t.Parallel()
	tests := []struct {
		answers   []int
		attempts  int
		succeeded bool
	}{
		{[]int{200}, 1, true},
		{[]int{204}, 1, true},
		{[]int{503, 202}, 2, true},
		{[]int{502, 200}, 2, true},
		{[]int{504, 504, 200}, 2, false},
		{[]int{500, 200}, 1, false},
		{[]int{429, 200}, 1, false},
		{[]int{401, 200}, 1, false},
		{[]int{404, 200}, 1, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.answers), func(t *testing.T) {
			t.Parallel()
			b := webhookSetup(t, Config{})
			rc := newReceiver(t, func(n int) int { return tt.answers[min(n, len(tt.answers))-1] })
			step := b.registerStep(t, b.endpoint(t, "ep", rc.srv.URL, 4, "k"), stepSpec{message: "Create", table: "lead", stage: 40, mode: 1})
			b.mustCreate(t, "leads", map[string]any{"lastname": "L", "subject": "S"})
			b.flush(t)
			got := rc.requests()
			if len(got) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(got), tt.attempts)
			}
			d := b.e.StepDeliveries(step)
			if len(d) != 1 || len(d[0].Attempts) != tt.attempts || d[0].Succeeded != tt.succeeded || !d[0].Done {
				t.Fatalf("delivery log %+v", d)
			}
			if d[0].Attempts[0].Status != tt.answers[0] {
				t.Errorf("logged status %d, want %d", d[0].Attempts[0].Status, tt.answers[0])
			}
			if tt.attempts == 2 {
				first, second := got[0], got[1]
				if first.header.Get("x-request-id") == second.header.Get("x-request-id") {
					t.Error("the retry kept the x-request-id")
				}
				if d[0].Attempts[0].RequestID != first.header.Get("x-request-id") || d[0].Attempts[1].RequestID != second.header.Get("x-request-id") {
					t.Error("the log's request ids differ from the headers")
				}
				if !bytes.Equal(first.body, second.body) {
					t.Error("the retry sent another body")
				}
				ec, _ := dataverse.Decode(second.body)
				if ec.OperationID != d[0].OperationID {
					t.Errorf("OperationId %q, logged %q", ec.OperationID, d[0].OperationID)
				}
			}
		})
	}
}

func TestWebhookTimeoutIsAFailure(t *testing.T) {
	t.Parallel()
	b := webhookSetup(t, Config{WebhookTimeout: 50 * time.Millisecond})
	rc := newReceiver(t, nil)
	rc.hold = make(chan struct{})
	t.Cleanup(func() { close(rc.hold) })
	step := b.registerStep(t, b.endpoint(t, "slow", rc.srv.URL, 4, "k"), stepSpec{message: "Create", table: "contact", stage: 40, mode: 1})
	b.mustCreate(t, "contacts", map[string]any{"lastname": "Slow"})
	b.flush(t)
	d := b.e.StepDeliveries(step)
	if len(d) != 1 || len(d[0].Attempts) != 1 || d[0].Succeeded || d[0].Attempts[0].Status != 0 || !strings.Contains(d[0].Attempts[0].Err, "deadline") {
		t.Errorf("delivery log %+v", d)
	}
}

func TestDropWebhooks(t *testing.T) {
	t.Parallel()
	var dropMu sync.Mutex
	dropped := map[string]bool{}
	b := webhookSetup(t, Config{DropWebhooks: func(stepID string) bool {
		dropMu.Lock()
		defer dropMu.Unlock()
		return dropped[stepID]
	}})
	rc := newReceiver(t, nil)
	ep := b.endpoint(t, "ep", rc.srv.URL, 4, "k")
	lost := b.registerStep(t, ep, stepSpec{message: "Create", table: "contact", stage: 40, mode: 1})
	kept := b.registerStep(t, ep, stepSpec{message: "Create", table: "contact", stage: 40, mode: 0})
	dropMu.Lock()
	dropped[lost] = true
	dropMu.Unlock()
	b.mustCreate(t, "contacts", map[string]any{"lastname": "Lost"})
	b.flush(t)
	if got := rc.decoded(t); len(got) != 1 || got[0].OwningExtension.ID != kept {
		t.Fatalf("received %d deliveries, want only the kept step's", len(got))
	}
	if d := b.e.StepDeliveries(lost); len(d) != 1 || !d[0].Dropped || len(d[0].Attempts) != 0 {
		t.Errorf("dropped step's log %+v", d)
	}
	if d := b.e.Deliveries(); len(d) != 2 {
		t.Errorf("%d deliveries logged, want 2", len(d))
	}
}

func TestUpdateEvents(t *testing.T) {
	t.Parallel()
	b := webhookSetup(t, Config{})
	rc := newReceiver(t, nil)
	ep := b.endpoint(t, "ep", rc.srv.URL, 4, "k")
	all := b.registerStep(t, ep, stepSpec{message: "Update", table: "contact", stage: 40, mode: 1,
		images: []map[string]any{
			{"entityalias": "Pre", "imagetype": 0, "messagepropertyname": "Target", "attributes": "emailaddress1,lastname"},
			{"entityalias": "Both", "imagetype": 2, "messagepropertyname": "Target"},
		}})
	mail := b.registerStep(t, ep, stepSpec{message: "Update", table: "contact", stage: 40, mode: 0, filtering: "emailaddress1, donotbulkemail"})
	setState := b.registerStep(t, ep, stepSpec{message: "SetState", table: "contact", stage: 40, mode: 1,
		images: []map[string]any{{"entityalias": "Post", "imagetype": 1, "messagepropertyname": "EntityMoniker", "attributes": "statecode"}}})
	assign := b.registerStep(t, ep, stepSpec{message: "Assign", table: "contact", stage: 40, mode: 1})
	b.registerStep(t, ep, stepSpec{message: "Update", table: "account", stage: 40, mode: 1}) // another table: never fires here
	id := b.mustCreate(t, "contacts", map[string]any{"firstname": "Anna", "lastname": "Schmidt", "emailaddress1": "old@example.de"})
	admin := b.getToken(t, DefaultUserClientID, DefaultUserClientSecret)

	byStep := func() map[string][]*dataverse.ExecutionContext {
		b.flush(t)
		m := map[string][]*dataverse.ExecutionContext{}
		for _, ec := range rc.decoded(t) {
			m[ec.OwningExtension.ID] = append(m[ec.OwningExtension.ID], ec)
		}
		rc.mu.Lock()
		rc.got = nil
		rc.mu.Unlock()
		return m
	}

	// A change of firstname only: the unfiltered step fires, the e-mail step not.
	b.clock.Add(time.Minute)
	b.callAs(t, admin, http.MethodPatch, "contacts("+id+")", map[string]any{"firstname": "Anne"}, "If-Match", "*")
	got := byStep()
	if len(got[mail]) != 0 || len(got[all]) != 1 || len(got) != 1 {
		t.Fatalf("firstname change went to %v", got)
	}
	ec := got[all][0]
	target, _ := ec.Target()
	wantKeys := []string{"contactid", "firstname", "modifiedby", "modifiedon", "modifiedonbehalfby"}
	if keys := sortedKeys(target.Attributes); !slices.Equal(keys, wantKeys) {
		t.Errorf("Update Target columns %v, want %v", keys, wantKeys)
	}
	if target.Attributes["firstname"] != "Anne" || target.Attributes["modifiedonbehalfby"] != nil ||
		fmt.Sprint(target.Attributes["modifiedby"]) != fmt.Sprint(dataverse.EntityReference{LogicalName: "systemuser", ID: b.e.AdminUserID()}) {
		t.Errorf("Target %v", target.Attributes)
	}
	if mod, _ := target.Time("modifiedon"); !mod.Equal(b.clock.Now()) {
		t.Errorf("modifiedon %v", mod)
	}
	pre, both := ec.PreEntityImages["Pre"], ec.PreEntityImages["Both"]
	if pre == nil || !slices.Equal(sortedKeys(pre.Attributes), []string{"contactid", "emailaddress1", "lastname"}) || pre.Attributes["emailaddress1"] != "old@example.de" {
		t.Errorf("pre-image %+v", pre)
	}
	if both == nil || both.Attributes["firstname"] != "Anna" || ec.PostEntityImages["Both"].Attributes["firstname"] != "Anne" || ec.PostEntityImages["Both"].Attributes["fullname"] != "Anne Schmidt" {
		t.Errorf("Both images: pre %+v post %+v", both, ec.PostEntityImages["Both"])
	}
	if _, ok := ec.PostEntityImages["Pre"]; ok {
		t.Error("a pre-image was sent as a post-image")
	}

	// An e-mail change set to null reaches both Update steps, with the null.
	b.callAs(t, admin, http.MethodPatch, "contacts("+id+")", map[string]any{"emailaddress1": nil}, "If-Match", "*")
	got = byStep()
	if len(got[mail]) != 1 || len(got[all]) != 1 {
		t.Fatalf("e-mail change went to %v", got)
	}
	if target, _ := got[mail][0].Target(); target == nil || !hasNull(target, "emailaddress1") || got[mail][0].Mode != 0 || !got[mail][0].IsInTransaction {
		t.Errorf("cleared e-mail: %+v", target)
	}

	// State and another column in one PATCH: two Updates (the column first, then
	// the state, §7.4) and a SetState.
	b.callAs(t, admin, http.MethodPatch, "contacts("+id+")", map[string]any{"lastname": "Neu", "statecode": 1}, "If-Match", "*")
	got = byStep()
	if len(got[all]) != 2 || len(got[setState]) != 1 || len(got[mail]) != 0 {
		t.Fatalf("state change went to %v", got)
	}
	first, _ := got[all][0].Target()
	second, _ := got[all][1].Target()
	if first.Attributes["lastname"] != "Neu" || first.Attributes["statecode"] != nil {
		first, second = second, first // the workers may have delivered them out of order
	}
	if first.Attributes["lastname"] != "Neu" || !slices.Equal(sortedKeys(second.Attributes), []string{"contactid", "modifiedby", "modifiedon", "modifiedonbehalfby", "statecode", "statuscode"}) ||
		fmt.Sprint(second.Attributes["statuscode"]) != fmt.Sprint(dataverse.OptionSetValue{Value: 2}) {
		t.Errorf("the two Updates: %v / %v", first.Attributes, second.Attributes)
	}
	ss := got[setState][0]
	if ref, ok := ss.TargetReference(); !ok || ref.ID != id || fmt.Sprint(ss.InputParameters["State"]) != fmt.Sprint(dataverse.OptionSetValue{Value: 1}) ||
		fmt.Sprint(ss.InputParameters["Status"]) != fmt.Sprint(dataverse.OptionSetValue{Value: 2}) {
		t.Errorf("SetState %v", ss.InputParameters)
	}
	if post := ss.PostEntityImages["Post"]; post == nil || fmt.Sprint(post.Attributes["statecode"]) != fmt.Sprint(dataverse.OptionSetValue{Value: 1}) {
		t.Errorf("SetState post-image %+v", post)
	}

	// A new owner: Update and Assign.
	b.callAs(t, admin, http.MethodPatch, "contacts("+id+")", map[string]any{"ownerid@odata.bind": "/systemusers(" + b.e.AdminUserID() + ")"}, "If-Match", "*")
	got = byStep()
	if len(got[assign]) != 1 || len(got[all]) != 1 {
		t.Fatalf("owner change went to %v", got)
	}
	if a := got[assign][0].InputParameters["Assignee"]; fmt.Sprint(a) != fmt.Sprint(dataverse.EntityReference{LogicalName: "systemuser", ID: b.e.AdminUserID()}) {
		t.Errorf("Assignee %v", a)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func hasNull(e *dataverse.Entity, name string) bool {
	v, ok := e.Attributes[name]
	return ok && v == nil
}

func TestDeleteEventAndUpsertCreate(t *testing.T) {
	t.Parallel()
	b := webhookSetup(t, Config{})
	rc := newReceiver(t, nil)
	ep := b.endpoint(t, "ep", rc.srv.URL, 4, "k")
	del := b.registerStep(t, ep, stepSpec{message: "Delete", table: "contact", stage: 40, mode: 1,
		images: []map[string]any{{"entityalias": "PreImage", "imagetype": 0, "messagepropertyname": "Target", "attributes": "emailaddress1"}}})
	create := b.registerStep(t, ep, stepSpec{message: "Create", table: "contact", stage: 40, mode: 1})
	const id = "6d81597f-0f9f-e711-8122-000d3aa2331c"
	if a := b.call(t, http.MethodPatch, "contacts("+id+")", map[string]any{"lastname": "Upserted", "emailaddress1": "u@example.de"}); a.status != http.StatusNoContent {
		t.Fatal(a.status)
	}
	if a := b.call(t, http.MethodDelete, "contacts("+id+")", nil); a.status != http.StatusNoContent {
		t.Fatal(a.status)
	}
	b.flush(t)
	var sawCreate, sawDelete bool
	for _, ec := range rc.decoded(t) {
		switch ec.OwningExtension.ID {
		case create:
			sawCreate = ec.MessageName == "Create" && ec.PrimaryEntityID == id
		case del:
			ref, ok := ec.TargetReference()
			img := ec.PreEntityImages["PreImage"]
			sawDelete = ec.MessageName == "Delete" && ok && ref.ID == id && ref.LogicalName == "contact" &&
				img != nil && img.Attributes["emailaddress1"] == "u@example.de" && len(ec.PostEntityImages) == 0 && ec.ParentContext != nil
		}
	}
	if !sawCreate || !sawDelete {
		t.Errorf("create seen %v, delete seen %v", sawCreate, sawDelete)
	}
}

func TestOversizedBodyIsStripped(t *testing.T) {
	t.Parallel()
	b := webhookSetup(t, Config{})
	rc := newReceiver(t, nil)
	b.registerStep(t, b.endpoint(t, "ep", rc.srv.URL, 4, "k"), stepSpec{message: "Create", table: "list", stage: 40, mode: 1,
		images: []map[string]any{{"entityalias": "Post", "imagetype": 1, "messagepropertyname": "Target"}}})
	b.mustCreate(t, "lists", map[string]any{"listname": "Big", "createdfromcode": 2, "query": strings.Repeat("<fetch/>", 40000)})
	b.flush(t)
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("%d deliveries", len(got))
	}
	r := got[0]
	if r.header.Get(dataverse.HeaderSizeExceeded) == "" || len(r.body) > maxWebhookBody {
		t.Fatalf("size header %q, body %d bytes", r.header.Get(dataverse.HeaderSizeExceeded), len(r.body))
	}
	keys := topLevelKeys(t, r.body)
	for _, gone := range []string{"InputParameters", "PreEntityImages", "PostEntityImages", "ParentContext"} {
		if slices.Contains(keys, gone) {
			t.Errorf("%s kept in a stripped body", gone)
		}
	}
	ec, err := dataverse.Decode(r.body)
	if err != nil || ec.PrimaryEntityName != "list" || !ec.NeedsReread() {
		t.Errorf("stripped body: %v %+v", err, ec)
	}
	if d := b.e.Deliveries(); len(d) != 1 || !d[0].SizeExceeded {
		t.Errorf("log %+v", d)
	}
}

func TestCloseWaitsForQueuedDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{WebhookWorkers: 1})
	rc := newReceiver(t, nil)
	b.registerStep(t, b.endpoint(t, "ep", rc.srv.URL, 4, "k"), stepSpec{message: "Create", table: "contact", stage: 40, mode: 1})
	for i := range 5 {
		b.mustCreate(t, "contacts", map[string]any{"lastname": fmt.Sprint(i)})
	}
	if err := b.e.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(rc.requests()); n != 5 {
		t.Errorf("%d of 5 deliveries made before Close returned", n)
	}
	// After Close a change is logged as undeliverable, not sent.
	b.mustCreate(t, "contacts", map[string]any{"lastname": "late"})
	d := b.e.Deliveries()
	if last := d[len(d)-1]; !last.Done || last.Succeeded || len(last.Attempts) != 1 || last.Attempts[0].Err != "emulator closed" {
		t.Errorf("after Close: %+v", last)
	}
}

func TestEmulatorCreateRaisesWebhooks(t *testing.T) {
	t.Parallel()
	b := webhookSetup(t, Config{})
	rc := newReceiver(t, nil)
	b.registerStep(t, b.endpoint(t, "ep", rc.srv.URL, 4, "k"), stepSpec{message: "Create", table: "account", stage: 40})
	if _, err := b.e.Create("accounts", map[string]any{"name": "Seeded"}); err != nil {
		t.Fatal(err)
	}
	b.flush(t)
	if got := rc.decoded(t); len(got) != 1 || got[0].UserID != b.e.ApplicationUserID() || got[0].Mode != 0 || got[0].ParentContext != nil {
		t.Errorf("deliveries %+v", got)
	}
}

// BenchmarkWebhookBody measures building one Create body for an asynchronous step
// with a post-image of every column, the largest common case.
func BenchmarkWebhookBody(b *testing.B) {
	e := New(Config{})
	t := e.reg.byName["contact"]
	id, err := e.Create("contacts", map[string]any{"firstname": "Anna", "lastname": "Schmidt", "emailaddress1": "anna@example.de",
		"telephone1": "+49 30 1234567", "address1_city": "Berlin", "birthdate": "1990-05-01"})
	if err != nil {
		b.Fatal(err)
	}
	sc := &stepCall{
		change: rowChange{message: msgCreate, t: t, id: id, post: e.rows["contact"][id].vals},
		op:     e.newOp(e.principal(e.adminUser)),
		step:   stepInfo{id: newID(), name: "bench", stage: 40, mode: 1, images: []imageInfo{{alias: "PostImage", kind: imagePost}}},
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		body, _ := e.webhookBody(sc, "6d81597f-0f9f-e711-8122-000d3aa2331c")
		n = len(body)
	}
	b.ReportMetric(float64(n), "bytes/body")
}

// BenchmarkWriteWithoutWebhooks is a create through the Web API handler with no
// step registered, to show that webhooks cost nothing until one is.
func BenchmarkWriteWithoutWebhooks(b *testing.B) {
	e := New(Config{LimitRequests: -1, LimitExecSeconds: -1})
	for b.Loop() {
		if _, err := e.Create("contacts", map[string]any{"lastname": "Bench"}); err != nil {
			b.Fatal(err)
		}
	}
}
