package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCreateAndRead(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	a := b.call(t, http.MethodPost, "contacts", map[string]any{"firstname": "Anna", "lastname": "Schmidt", "emailaddress1": "anna@example.de"})
	if a.status != http.StatusNoContent || a.raw != "" {
		t.Fatalf("create: %d %s", a.status, a.raw)
	}
	loc := a.header.Get("OData-EntityId")
	if !strings.HasPrefix(loc, b.srv.URL+"/api/data/v9.2/contacts(") {
		t.Fatalf("OData-EntityId = %q", loc)
	}
	id := loc[strings.LastIndexByte(loc, '(')+1 : len(loc)-1]

	a = b.call(t, http.MethodGet, "contacts("+id+")", nil, "Prefer", `odata.include-annotations="*"`)
	if a.status != http.StatusOK {
		t.Fatalf("get: %d %s", a.status, a.raw)
	}
	r := a.body
	want := map[string]any{
		"contactid": id, "firstname": "Anna", "lastname": "Schmidt", "fullname": "Anna Schmidt",
		"emailaddress1": "anna@example.de", "donotbulkemail": false, "followemail": true,
		"statecode": json.Number("0"), "statuscode": json.Number("1"),
		"createdon": "2026-11-29T07:00:00Z", "modifiedon": "2026-11-29T07:00:00Z",
		"_createdby_value": b.e.ApplicationUserID(), "_modifiedby_value": b.e.ApplicationUserID(),
		"_ownerid_value": b.e.ApplicationUserID(), "_owninguser_value": b.e.ApplicationUserID(),
		"_owningbusinessunit_value":                                b.e.BusinessUnitID(),
		"_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname":  "systemuser",
		"_ownerid_value@OData.Community.Display.V1.FormattedValue": "crmsync application user",
		"statecode@OData.Community.Display.V1.FormattedValue":      "Active",
		"_parentcustomerid_value":                                  nil,
		"emailaddress2":                                            nil,
		"@odata.context":                                           b.srv.URL + "/api/data/v9.2/$metadata#contacts/$entity",
	}
	for k, v := range want {
		if got, ok := r[k]; !ok || got != v {
			t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, v)
		}
	}
	etag, _ := r["@odata.etag"].(string)
	if !strings.HasPrefix(etag, `W/"`) || a.header.Get("ETag") != etag {
		t.Errorf("@odata.etag %q, ETag header %q", etag, a.header.Get("ETag"))
	}
	if _, ok := r["unknowncolumn"]; ok {
		t.Error("row has columns the table does not define")
	}

	a = b.call(t, http.MethodGet, "contacts("+id+")?$select=firstname,_ownerid_value", nil)
	if len(a.body) != 5 { // @odata.context, @odata.etag, contactid, firstname, _ownerid_value
		t.Errorf("$select: got %v", a.body)
	}
	a = b.call(t, http.MethodGet, "contacts("+id+")", nil, "If-None-Match", etag)
	if a.status != http.StatusNotModified {
		t.Errorf("If-None-Match with the current etag: %d, want 304", a.status)
	}
}

func TestCreateWithReturnRepresentation(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	a := b.call(t, http.MethodPost, "accounts?$select=name,accountid", map[string]any{"name": "Contoso"}, "Prefer", "return=representation")
	if a.status != http.StatusCreated {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	if a.header.Get("OData-EntityId") != "" {
		t.Error("201 with a body must not carry OData-EntityId")
	}
	if a.header.Get("Preference-Applied") != "return=representation" {
		t.Errorf("Preference-Applied = %q", a.header.Get("Preference-Applied"))
	}
	if a.body["name"] != "Contoso" || a.body["accountid"] == nil || len(a.body) != 4 {
		t.Errorf("body %s", a.raw)
	}
}

func TestCreateWithChosenIDAndDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	const id = "6d81597f-0f9f-e711-8122-000d3aa2331c"
	if got := b.mustCreate(t, "contacts", map[string]any{"contactid": strings.ToUpper(id), "lastname": "X"}); got != id {
		t.Errorf("id %q, want %q", got, id)
	}
	b.call(t, http.MethodPost, "contacts", map[string]any{"contactid": id}).
		wantError(t, http.StatusPreconditionFailed, codeDuplicateRecord, "Cannot insert duplicate key.")
}

func TestPatchSemantics(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	const missing = "00000000-0000-0000-0000-000000000001"

	// Upsert of a new id creates it: 204 + OData-EntityId, or 201 with a body.
	a := b.call(t, http.MethodPatch, "contacts("+missing+")", map[string]any{"lastname": "Upserted"})
	if a.status != http.StatusNoContent || !strings.HasSuffix(a.header.Get("OData-EntityId"), "contacts("+missing+")") {
		t.Fatalf("upsert-create: %d %v", a.status, a.header)
	}
	const other = "00000000-0000-0000-0000-000000000002"
	if a := b.call(t, http.MethodPatch, "contacts("+other+")?$select=lastname", map[string]any{"lastname": "New"}, "Prefer", "return=representation"); a.status != http.StatusCreated {
		t.Errorf("upsert-create with representation: %d, want 201", a.status)
	}
	if a := b.call(t, http.MethodPatch, "contacts("+other+")?$select=lastname", map[string]any{"lastname": "Again"}, "Prefer", "return=representation"); a.status != http.StatusOK || a.body["lastname"] != "Again" {
		t.Errorf("upsert-update with representation: %d %s, want 200", a.status, a.raw)
	}

	// Update-only and create-only.
	b.call(t, http.MethodPatch, "contacts(00000000-0000-0000-0000-000000000009)", map[string]any{"lastname": "x"}, "If-Match", "*").
		wantError(t, http.StatusNotFound, codeObjectDoesNotExist, "Does Not Exist")
	b.call(t, http.MethodPatch, "contacts("+missing+")", map[string]any{"lastname": "x"}, "If-None-Match", "*").
		wantError(t, http.StatusPreconditionFailed, codeDuplicateRecord, "A record with matching key values already exists.")

	// Optimistic concurrency.
	get := func() map[string]any { return b.call(t, http.MethodGet, "contacts("+missing+")", nil).body }
	etag := get()["@odata.etag"].(string)
	if a := b.call(t, http.MethodPatch, "contacts("+missing+")", map[string]any{"firstname": "A"}, "If-Match", etag); a.status != http.StatusNoContent {
		t.Fatalf("update with current etag: %d %s", a.status, a.raw)
	}
	after := get()
	if after["@odata.etag"] == etag || after["fullname"] != "A Upserted" {
		t.Errorf("after update: etag %v (was %s), fullname %v", after["@odata.etag"], etag, after["fullname"])
	}
	b.call(t, http.MethodPatch, "contacts("+missing+")", map[string]any{"firstname": "B"}, "If-Match", etag).
		wantError(t, http.StatusPreconditionFailed, codeVersionMismatch, "The version of the existing record doesn't match the RowVersion property provided.")
	b.call(t, http.MethodDelete, "contacts("+missing+")", nil, "If-Match", etag).
		wantError(t, http.StatusPreconditionFailed, codeVersionMismatch, "")

	// Every write advances one global version.
	v1 := get()["versionnumber"].(json.Number)
	b.mustCreate(t, "accounts", map[string]any{"name": "bump"})
	b.call(t, http.MethodPatch, "contacts("+missing+")", map[string]any{"firstname": "C"}, "If-Match", "*")
	if v2 := get()["versionnumber"].(json.Number); v2 <= v1 || len(v2) < len(v1) {
		t.Errorf("versionnumber %s after %s", v2, v1)
	}
}

func TestModifiedStampsFollowTheCaller(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	id := b.mustCreate(t, "contacts", map[string]any{"lastname": "Stamp"})
	b.clock.Add(90 * time.Minute)
	admin := b.getToken(t, DefaultUserClientID, DefaultUserClientSecret)
	if a := b.callAs(t, admin, http.MethodPatch, "contacts("+id+")", map[string]any{"firstname": "Eva"}, "If-Match", "*"); a.status != http.StatusNoContent {
		t.Fatalf("update as admin: %d %s", a.status, a.raw)
	}
	r := b.callAs(t, admin, http.MethodGet, "contacts("+id+")", nil).body
	if r["createdon"] != "2026-11-29T07:00:00Z" || r["modifiedon"] != "2026-11-29T08:30:00Z" ||
		r["_createdby_value"] != b.e.ApplicationUserID() || r["_modifiedby_value"] != b.e.AdminUserID() {
		t.Errorf("stamps: %v %v %v %v", r["createdon"], r["modifiedon"], r["_createdby_value"], r["_modifiedby_value"])
	}
}

func TestBodyValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	tests := []struct {
		name    string
		body    map[string]any
		status  int
		code    string
		message string
	}{
		{"unknown column", map[string]any{"lastname": "X", "nosuchcolumn": 1}, 400, codeODataBadRequest,
			"Invalid property 'nosuchcolumn' was found in entity 'Microsoft.Dynamics.CRM.contact'."},
		{"column names are case-sensitive", map[string]any{"LastName": "X"}, 400, codeODataBadRequest, "Invalid property 'LastName'"},
		{"lookup value property", map[string]any{"_parentcustomerid_value": "6d81597f-0f9f-e711-8122-000d3aa2331c"}, 400, codeODataBadRequest,
			"Use Navigation properties instead"},
		{"undeclared navigation property", map[string]any{"parentcustomerid@odata.bind": "/accounts(6d81597f-0f9f-e711-8122-000d3aa2331c)"}, 400, codePayload,
			"An undeclared property 'parentcustomerid' which only has property annotations"},
		{"bind to a missing row", map[string]any{"parentcustomerid_account@odata.bind": "/accounts(6d81597f-0f9f-e711-8122-000d3aa2331c)"}, 404, codeObjectDoesNotExist,
			"account With Id = 6d81597f-0f9f-e711-8122-000d3aa2331c Does Not Exist"},
		{"bind to the wrong table", map[string]any{"parentcustomerid_account@odata.bind": "/contacts(6d81597f-0f9f-e711-8122-000d3aa2331c)"}, 400, codeODataBadRequest,
			"not valid for navigation property 'parentcustomerid_account'"},
		{"bind to an unknown set", map[string]any{"ownerid@odata.bind": "/teams(6d81597f-0f9f-e711-8122-000d3aa2331c)"}, 404, codeResourceNotFound, "'teams'"},
		{"two binds of one lookup", map[string]any{"parentcustomerid_account@odata.bind": "/accounts(6d81597f-0f9f-e711-8122-000d3aa2331c)",
			"parentcustomerid_contact@odata.bind": "/contacts(6d81597f-0f9f-e711-8122-000d3aa2331c)"}, 400, codeODataBadRequest, "set only one"},
		{"string for a Boolean", map[string]any{"donotbulkemail": "yes"}, 400, codePayload, "Cannot convert the literal 'yes' to the expected type 'Edm.Boolean'."},
		{"number for a string", map[string]any{"lastname": 5}, 400, codePayload, "'Edm.String'"},
		{"too long", map[string]any{"firstname": strings.Repeat("x", 51)}, 400, codeValidation, "exceeded the maximum allowed length of '50'"},
		{"option out of range", map[string]any{"gendercode": 9}, 400, codeValidation, "The value 9 of 'gendercode'"},
		{"bad date", map[string]any{"birthdate": "29.11.2026"}, 400, codePayload, "'Edm.Date'"},
		{"wrong @odata.type", map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.account"}, 400, codePayload, "not assignable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b.call(t, http.MethodPost, "contacts", tt.body).wantError(t, tt.status, tt.code, tt.message)
		})
	}
	t.Run("not JSON", func(t *testing.T) {
		t.Parallel()
		a := b.call(t, http.MethodPost, "contacts", rawBody(`{"lastname":`))
		a.wantError(t, http.StatusBadRequest, codePayload, "Invalid JSON")
	})
	t.Run("read-only columns are dropped", func(t *testing.T) {
		t.Parallel()
		id := b.mustCreate(t, "contacts", map[string]any{"lastname": "RO", "createdon": "2001-01-01T00:00:00Z", "fullname": "Someone Else"})
		r := b.call(t, http.MethodGet, "contacts("+id+")?$select=createdon,fullname", nil).body
		if r["createdon"] != "2026-11-29T07:00:00Z" || r["fullname"] != "RO" {
			t.Errorf("read-only columns were written: %v", r)
		}
	})
}

func TestLookupsBindAndRead(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	acc := b.mustCreate(t, "accounts", map[string]any{"name": "Contoso"})
	id := b.mustCreate(t, "contacts", map[string]any{
		"lastname":                            "Bound",
		"parentcustomerid_account@odata.bind": b.srv.URL + "/api/data/v9.2/accounts(" + acc + ")",
		"ownerid@odata.bind":                  "systemusers(" + b.e.AdminUserID() + ")",
	})
	a := b.call(t, http.MethodGet, "contacts("+id+")?$select=_parentcustomerid_value,_ownerid_value,_owningbusinessunit_value", nil,
		"Prefer", `odata.include-annotations="Microsoft.Dynamics.CRM.*"`)
	r := a.body
	if r["_parentcustomerid_value"] != acc || r["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] != "account" ||
		r["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] != "parentcustomerid_account" {
		t.Errorf("parentcustomerid: %s", a.raw)
	}
	if r["_ownerid_value"] != b.e.AdminUserID() || r["_owningbusinessunit_value"] != b.e.BusinessUnitID() {
		t.Errorf("owner: %s", a.raw)
	}
	if _, ok := r["_ownerid_value@OData.Community.Display.V1.FormattedValue"]; ok {
		t.Error("FormattedValue sent although only Microsoft.Dynamics.CRM.* was asked for")
	}
	if a.header.Get("Preference-Applied") != `odata.include-annotations="Microsoft.Dynamics.CRM.*"` {
		t.Errorf("Preference-Applied = %q", a.header.Get("Preference-Applied"))
	}
	// Annotation keys must come before their property, as Dataverse writes them.
	if i, j := strings.Index(a.raw, `"_parentcustomerid_value@`), strings.Index(a.raw, `"_parentcustomerid_value":`); i < 0 || i > j {
		t.Errorf("annotations after the value: %s", a.raw)
	}
	if a := b.call(t, http.MethodGet, "contacts("+id+")?$select=_parentcustomerid_value", nil); strings.Contains(a.raw, "@Microsoft") {
		t.Errorf("annotations without asking: %s", a.raw)
	}

	// Clearing with a null bind, and deleting the target removes the link.
	if a := b.call(t, http.MethodPatch, "contacts("+id+")", map[string]any{"parentcustomerid_account@odata.bind": nil}, "If-Match", "*"); a.status != 204 {
		t.Fatalf("clear: %d %s", a.status, a.raw)
	}
	if r := b.call(t, http.MethodGet, "contacts("+id+")", nil).body; r["_parentcustomerid_value"] != nil {
		t.Errorf("after clearing: %v", r["_parentcustomerid_value"])
	}
	b.call(t, http.MethodPatch, "contacts("+id+")", map[string]any{"parentcustomerid_account@odata.bind": "/accounts(" + acc + ")"}, "If-Match", "*")
	if a := b.call(t, http.MethodDelete, "accounts("+acc+")", nil); a.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", a.status, a.raw)
	}
	if r := b.call(t, http.MethodGet, "contacts("+id+")", nil).body; r["_parentcustomerid_value"] != nil {
		t.Errorf("lookup to a deleted row: %v", r["_parentcustomerid_value"])
	}

	// A custom lookup's navigation property is its SchemaName, case-sensitive.
	if a := b.call(t, http.MethodPost, "cs_subscriptions", map[string]any{"cs_ContactId@odata.bind": "/contacts(" + id + ")", "cs_groupid": "g1", "cs_subscribed": true}); a.status != 204 {
		t.Errorf("cs_subscription: %d %s", a.status, a.raw)
	}
	b.call(t, http.MethodPost, "cs_subscriptions", map[string]any{"cs_contactid@odata.bind": "/contacts(" + id + ")"}).
		wantError(t, http.StatusBadRequest, codePayload, "undeclared property 'cs_contactid'")
}

func TestStateRules(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	id := b.mustCreate(t, "contacts", map[string]any{"lastname": "State"})
	state := func() (any, any) {
		r := b.call(t, http.MethodGet, "contacts("+id+")?$select=statecode,statuscode", nil).body
		return r["statecode"], r["statuscode"]
	}
	patch := func(body map[string]any) answer {
		return b.call(t, http.MethodPatch, "contacts("+id+")", body, "If-Match", "*")
	}
	if a := patch(map[string]any{"statecode": 1}); a.status != 204 {
		t.Fatalf("statecode alone: %d %s", a.status, a.raw)
	}
	if s, r := state(); s != json.Number("1") || r != json.Number("2") {
		t.Errorf("statecode alone gives %v/%v, want the state's default status 1/2", s, r)
	}
	patch(map[string]any{"statecode": 1, "statuscode": 1}).wantError(t, http.StatusBadRequest, codeInvalidStateStatus,
		"1 is not a valid status code for state code ContactState.Inactive on contact with Id "+id+".")
	patch(map[string]any{"statecode": 7}).wantError(t, http.StatusBadRequest, codeInvalidStateStatus, "7 is not a valid state code")
	patch(map[string]any{"statuscode": 1}).wantError(t, http.StatusBadRequest, codeInvalidStateStatus, "ContactState.Inactive")
	patch(map[string]any{"statecode": nil}).wantError(t, http.StatusBadRequest, codeInvalidStateStatus, "")
	if a := patch(map[string]any{"statecode": 0, "statuscode": 1}); a.status != 204 {
		t.Fatalf("reactivate: %d %s", a.status, a.raw)
	}
	if s, r := state(); s != json.Number("0") || r != json.Number("1") {
		t.Errorf("after reactivation %v/%v", s, r)
	}
	// Creating in a state other than the default works too.
	if a := b.call(t, http.MethodPost, "leads", map[string]any{"lastname": "L", "statecode": 2, "statuscode": 6}); a.status != 204 {
		t.Errorf("create disqualified lead: %d %s", a.status, a.raw)
	}
}

func TestQualifiedLeadRefusesUpdates(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		b := setup(t, Config{AllowQualifiedLeadUpdates: allow})
		id := b.mustCreate(t, "leads", map[string]any{"lastname": "Lead", "subject": "Interest"})
		patch := func(body map[string]any) answer {
			return b.call(t, http.MethodPatch, "leads("+id+")", body, "If-Match", "*")
		}
		if a := patch(map[string]any{"statecode": 1, "statuscode": 3}); a.status != 204 {
			t.Fatalf("qualify: %d %s", a.status, a.raw)
		}
		a := patch(map[string]any{"emailaddress1": "x@example.de"})
		if allow {
			if a.status != 204 {
				t.Errorf("AllowQualifiedLeadUpdates: %d %s", a.status, a.raw)
			}
			continue
		}
		a.wantError(t, http.StatusBadRequest, codeBusinessRule, "is qualified and cannot be updated")
		// An upsert (no If-Match) is refused the same way.
		b.call(t, http.MethodPatch, "leads("+id+")", map[string]any{"firstname": "x"}).wantError(t, http.StatusBadRequest, codeBusinessRule, "")
		if a := patch(map[string]any{"statecode": 0, "statuscode": 1}); a.status != 204 {
			t.Fatalf("reopen: %d %s", a.status, a.raw)
		}
		if a := patch(map[string]any{"emailaddress1": "x@example.de"}); a.status != 204 {
			t.Errorf("update after reopening: %d %s", a.status, a.raw)
		}
	}
}

func TestListsAndMembers(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.call(t, http.MethodPost, "lists", map[string]any{"listname": "No type"}).wantError(t, http.StatusBadRequest, codeInvalidArgument, "'createdfromcode'")
	list := b.mustCreate(t, "lists", map[string]any{"listname": "Newsletter – contact", "createdfromcode": 2, "cs_synctoems": true})
	c1 := b.mustCreate(t, "contacts", map[string]any{"lastname": "One"})
	c2 := b.mustCreate(t, "contacts", map[string]any{"lastname": "Two"})
	acc := b.mustCreate(t, "accounts", map[string]any{"name": "Not a contact"})
	member := func(set, id string) answer {
		return b.call(t, http.MethodPost, "listmembers", map[string]any{"listid@odata.bind": "/lists(" + list + ")", "entityid_" + strings.TrimSuffix(set, "s") + "@odata.bind": "/" + set + "(" + id + ")"})
	}
	for _, c := range []string{c1, c2} {
		if a := member("contacts", c); a.status != 204 {
			t.Fatalf("add member: %d %s", a.status, a.raw)
		}
	}
	member("contacts", c1).wantError(t, http.StatusPreconditionFailed, codeDuplicateRecord, "")
	member("accounts", acc).wantError(t, http.StatusBadRequest, codeInvalidArgument, "member type contact")
	count := func() any {
		return b.call(t, http.MethodGet, "lists("+list+")?$select=membercount,type,createdfromcode", nil).body["membercount"]
	}
	if got := count(); got != json.Number("2") {
		t.Errorf("membercount %v, want 2", got)
	}
	// createdfromcode and type are not updatable: silently kept.
	b.call(t, http.MethodPatch, "lists("+list+")", map[string]any{"createdfromcode": 1, "type": true}, "If-Match", "*")
	if r := b.call(t, http.MethodGet, "lists("+list+")", nil).body; r["createdfromcode"] != json.Number("2") || r["type"] != false {
		t.Errorf("not-updatable columns changed: %v %v", r["createdfromcode"], r["type"])
	}
	// Deleting a member's record removes the membership.
	b.call(t, http.MethodDelete, "contacts("+c1+")", nil)
	if got := count(); got != json.Number("1") {
		t.Errorf("membercount after deleting a member %v, want 1", got)
	}
	a := b.call(t, http.MethodGet, "listmembers?"+query("$filter", "_listid_value eq "+list), nil)
	if rows := a.body["value"].([]any); len(rows) != 1 || rows[0].(map[string]any)["entitytype"] != "contact" {
		t.Errorf("listmembers: %s", a.raw)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	id := b.mustCreate(t, "contacts", map[string]any{"lastname": "Gone"})
	if a := b.call(t, http.MethodDelete, "contacts("+id+")", nil); a.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", a.status, a.raw)
	}
	b.call(t, http.MethodDelete, "contacts("+id+")", nil).wantError(t, http.StatusNotFound, codeObjectDoesNotExist, "Entity 'contact' With Id = "+id+" Does Not Exist")
	b.call(t, http.MethodGet, "contacts("+id+")", nil).wantError(t, http.StatusNotFound, codeObjectDoesNotExist, "")
	b.call(t, http.MethodDelete, "systemusers("+b.e.AdminUserID()+")", nil).wantError(t, http.StatusBadRequest, codeInvalidArgument, "")
}

func TestCreateHelper(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	id, err := b.e.Create("contacts", map[string]any{"lastname": "Direct", "donotbulkemail": true})
	if err != nil {
		t.Fatal(err)
	}
	if r := b.call(t, http.MethodGet, "contacts("+id+")", nil).body; r["lastname"] != "Direct" || r["donotbulkemail"] != true {
		t.Errorf("row %v", r)
	}
	if _, err := b.e.Create("contacts", map[string]any{"nope": 1}); err == nil || !strings.Contains(err.Error(), "Invalid property 'nope'") {
		t.Errorf("err = %v", err)
	}
	if _, err := b.e.Create("unknowns", nil); err == nil {
		t.Error("unknown set accepted")
	}
}

func TestConcurrentWritesGetDistinctVersions(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	const workers, each = 6, 25
	var wg sync.WaitGroup
	ids := make(chan string, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id, err := b.e.Create("contacts", map[string]any{"lastname": fmt.Sprintf("w%d-%d", w, i)})
				if err != nil {
					t.Error(err)
					return
				}
				ids <- id
				b.call(t, http.MethodPatch, "contacts("+id+")", map[string]any{"firstname": "x"}, "If-Match", "*")
				b.call(t, http.MethodGet, "contacts?$select=lastname&$top=5", nil)
			}
		})
	}
	wg.Wait()
	close(ids)
	etags := map[string]bool{}
	for id := range ids {
		a := b.call(t, http.MethodGet, "contacts("+id+")?$select=firstname", nil)
		etag := a.body["@odata.etag"].(string)
		if etags[etag] || a.body["firstname"] != "x" {
			t.Errorf("row %s: etag %s (seen before: %v), firstname %v", id, etag, etags[etag], a.body["firstname"])
		}
		etags[etag] = true
	}
	if len(etags) != workers*each {
		t.Errorf("%d distinct etags, want %d", len(etags), workers*each)
	}
}
