package emulator

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"crmsync/dataverse"
)

// missingID names no row.
const missingID = "00000000-0000-4000-8000-00000000abcd"

// campaignFixture is a campaign with one campaign activity and three contact lists.
type campaignFixture struct {
	campaign, activity string
	lists              []string // listnames A, B, C
	contact            string
}

func newCampaignFixture(t *testing.T, b *testBundle) campaignFixture {
	t.Helper()
	f := campaignFixture{campaign: b.mustCreate(t, "campaigns", map[string]any{"name": "Winter"})}
	f.activity = b.mustCreate(t, "campaignactivities", map[string]any{
		"subject": "Mailing", "channeltypecode": 100000001,
		"regardingobjectid_campaign_campaignactivity@odata.bind": "/campaigns(" + f.campaign + ")",
	})
	for _, name := range []string{"A", "B", "C"} {
		f.lists = append(f.lists, b.mustCreate(t, "lists", map[string]any{"listname": name, "createdfromcode": 2}))
	}
	f.contact = b.mustCreate(t, "contacts", map[string]any{"lastname": "Customer"})
	return f
}

// rowRef is an @odata.id body naming a row by absolute URL.
func (b *testBundle) rowRef(set, id string) map[string]any {
	return map[string]any{"@odata.id": b.srv.URL + "/api/data/v9.2/" + set + "(" + id + ")"}
}

// ids reads one column of every row of a collection answer.
func ids(t *testing.T, a answer, col string) []string {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	var out []string
	for _, row := range values(t, a) {
		s, _ := row[col].(string)
		out = append(out, s)
	}
	return out
}

func TestCampaignListRelationships(t *testing.T) {
	t.Parallel()
	b, rc := receiverSetup(t, stepSpec{message: "Associate", stage: 40, mode: 1}, stepSpec{message: "Disassociate", stage: 40, mode: 1})
	f := newCampaignFixture(t, b)
	a, bl, c := f.lists[0], f.lists[1], f.lists[2]

	// Associate from either side, by absolute or relative reference.
	for _, w := range []struct{ path, set, id string }{
		{"campaigns(" + f.campaign + ")/campaignlist_association/$ref", "lists", a},
		{"lists(" + bl + ")/campaignlist_association/$ref", "campaigns", f.campaign},
		{"campaignactivities(" + f.activity + ")/campaignactivitylist_association/$ref", "lists", a},
	} {
		if got := b.call(t, http.MethodPost, w.path, b.rowRef(w.set, w.id)); got.status != http.StatusNoContent {
			t.Fatalf("POST %s: %d %s", w.path, got.status, got.raw)
		}
	}
	if got := b.call(t, http.MethodPost, "lists("+c+")/campaignactivitylist_association/$ref",
		map[string]any{"@odata.id": "campaignactivities(" + f.activity + ")"}); got.status != http.StatusNoContent {
		t.Fatalf("relative reference: %d %s", got.status, got.raw)
	}
	b.call(t, http.MethodPost, "campaigns("+f.campaign+")/campaignlist_association/$ref", b.rowRef("lists", a)).
		wantError(t, http.StatusPreconditionFailed, codeDuplicateRecord, "duplicate")

	// Read from either side, with the options of a collection.
	got := b.call(t, http.MethodGet, "campaigns("+f.campaign+")/campaignlist_association?"+query("$select", "listid,listname", "$orderby", "listname"), nil)
	if want := []string{a, bl}; !slices.Equal(ids(t, got, "listid"), want) {
		t.Errorf("lists of the campaign: %s, want %v", got.raw, want)
	}
	if ctx, _ := got.body["@odata.context"].(string); ctx != b.srv.URL+"/api/data/v9.2/$metadata#lists(listid,listname)" {
		t.Errorf("@odata.context %q", ctx)
	}
	if row := values(t, got)[0]; len(row) != 3 || row["listname"] != "A" {
		t.Errorf("$select not honoured: %v", row)
	}
	got = b.call(t, http.MethodGet, "campaignactivities("+f.activity+")/campaignactivitylist_association?"+query("$select", "listname", "$filter", "listname eq 'C'"), nil)
	if want := []string{c}; !slices.Equal(ids(t, got, "listid"), want) {
		t.Errorf("$filter: %s", got.raw)
	}
	if n := len(values(t, b.call(t, http.MethodGet, "campaigns("+f.campaign+")/campaignlist_association?$top=1&$count=true", nil))); n != 1 {
		t.Errorf("$top=1: %d rows", n)
	}
	if want := []string{f.campaign}; !slices.Equal(ids(t, b.call(t, http.MethodGet, "lists("+a+")/campaignlist_association?$select=name", nil), "campaignid"), want) {
		t.Errorf("campaigns of list A, want %v", want)
	}
	if want := []string{f.activity}; !slices.Equal(ids(t, b.call(t, http.MethodGet, "lists("+c+")/campaignactivitylist_association?$select=subject", nil), "activityid"), want) {
		t.Errorf("campaign activities of list C, want %v", want)
	}

	// Paging keeps the navigation path in the nextLink.
	first := b.call(t, http.MethodGet, "campaigns("+f.campaign+")/campaignlist_association?$select=listname", nil, "Prefer", "odata.maxpagesize=1")
	next, _ := first.body["@odata.nextLink"].(string)
	if !strings.HasPrefix(next, b.srv.URL+"/api/data/v9.2/campaigns("+f.campaign+")/campaignlist_association?") || len(values(t, first)) != 1 {
		t.Fatalf("first page: %s", first.raw)
	}
	second := b.call(t, http.MethodGet, next, nil, "Prefer", "odata.maxpagesize=1")
	if rows := values(t, second); len(rows) != 1 || rows[0]["listid"] == values(t, first)[0]["listid"] || second.body["@odata.nextLink"] != nil {
		t.Errorf("second page: %s", second.raw)
	}

	// The intersect rows are there to read.
	got = b.call(t, http.MethodGet, "campaignitems?"+query("$select", "entityid,entitytype,_campaignid_value", "$filter", "entityid eq "+a), nil)
	if rows := values(t, got); len(rows) != 1 || rows[0]["entitytype"] != "list" || rows[0]["_campaignid_value"] != f.campaign {
		t.Errorf("campaignitems: %s", got.raw)
	}

	// Disassociate by key and by $id.
	if got := b.call(t, http.MethodDelete, "campaigns("+f.campaign+")/campaignlist_association("+bl+")/$ref", nil); got.status != http.StatusNoContent {
		t.Errorf("disassociate by key: %d %s", got.status, got.raw)
	}
	target := url.QueryEscape(b.srv.URL + "/api/data/v9.2/campaignactivities(" + f.activity + ")")
	if got := b.call(t, http.MethodDelete, "lists("+c+")/campaignactivitylist_association/$ref?$id="+target, nil); got.status != http.StatusNoContent {
		t.Errorf("disassociate by $id: %d %s", got.status, got.raw)
	}
	if got := ids(t, b.call(t, http.MethodGet, "campaigns("+f.campaign+")/campaignlist_association", nil), "listid"); !slices.Equal(got, []string{a}) {
		t.Errorf("after disassociating: %v", got)
	}

	// Every change raised its event, named by the relationship.
	b.flush(t)
	var events []string
	for _, ec := range rc.decoded(t) {
		rel, _ := ec.InputParameters["Relationship"].(dataverse.Relationship)
		target, _ := ec.InputParameters["Target"].(dataverse.EntityReference)
		events = append(events, ec.MessageName+" "+rel.SchemaName+" "+target.LogicalName)
	}
	slices.Sort(events)
	want := []string{
		"Associate campaignactivitylist_association campaignactivity", "Associate campaignactivitylist_association list",
		"Associate campaignlist_association campaign", "Associate campaignlist_association list",
		"Disassociate campaignactivitylist_association list", "Disassociate campaignlist_association campaign",
	}
	if !slices.Equal(events, want) {
		t.Errorf("events %v, want %v", events, want)
	}

	// The lists' own relationships read the same way.
	if got := b.call(t, http.MethodPost, "lists("+a+")/listcontact_association/$ref", b.rowRef("contacts", f.contact)); got.status != http.StatusNoContent {
		t.Fatalf("add a member: %d %s", got.status, got.raw)
	}
	if got := ids(t, b.call(t, http.MethodGet, "lists("+a+")/listcontact_association?$select=fullname", nil), "contactid"); !slices.Equal(got, []string{f.contact}) {
		t.Errorf("members of list A: %v", got)
	}
	if got := ids(t, b.call(t, http.MethodGet, "contacts("+f.contact+")/listcontact_association?$select=listname", nil), "listid"); !slices.Equal(got, []string{a}) {
		t.Errorf("lists of the contact: %v", got)
	}
	if n := len(values(t, b.call(t, http.MethodGet, "lists("+a+")/listlead_association", nil))); n != 0 {
		t.Errorf("%d lead members of a contact list", n)
	}

	// Deleting a list ends its links, on both relationships.
	if got := b.call(t, http.MethodDelete, "lists("+a+")", nil); got.status != http.StatusNoContent {
		t.Fatalf("delete list: %d %s", got.status, got.raw)
	}
	for _, set := range []string{"campaignitems", "campaignactivityitems"} {
		if n := len(values(t, b.call(t, http.MethodGet, set, nil))); n != 0 {
			t.Errorf("%d %s left after deleting their list", n, set)
		}
	}
}

func TestCampaignRelationshipRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	f := newCampaignFixture(t, b)
	campaignRef := "campaigns(" + f.campaign + ")/campaignlist_association/$ref"
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code, message      string
	}{
		{"$ref naming the wrong table", http.MethodPost, campaignRef, b.rowRef("contacts", f.contact), 400, codeODataBadRequest, "does not name a row of 'lists'"},
		{"$ref without @odata.id", http.MethodPost, campaignRef, map[string]any{}, 400, codeODataBadRequest, "does not name a row"},
		{"$ref on a table outside the relationship", http.MethodPost, "contacts(" + f.contact + ")/campaignlist_association/$ref", b.rowRef("lists", f.lists[0]),
			400, codeODataGeneric, "Could not find a property named 'campaignlist_association'"},
		{"$ref from an unknown campaign", http.MethodPost, "campaigns(" + missingID + ")/campaignlist_association/$ref", b.rowRef("lists", f.lists[0]),
			404, codeObjectDoesNotExist, "Entity 'campaign' With Id = " + missingID},
		{"$ref to an unknown list", http.MethodPost, campaignRef, b.rowRef("lists", missingID), 404, codeObjectDoesNotExist, "Entity 'list' With Id = " + missingID},
		{"$ref from an unknown list", http.MethodPost, "lists(" + missingID + ")/campaignactivitylist_association/$ref", b.rowRef("campaignactivities", f.activity),
			404, codeObjectDoesNotExist, "Entity 'list' With Id = " + missingID},
		{"$ref to an unknown campaign activity", http.MethodPost, "lists(" + f.lists[0] + ")/campaignactivitylist_association/$ref", b.rowRef("campaignactivities", missingID),
			404, codeObjectDoesNotExist, "Entity 'campaignactivity' With Id = " + missingID},
		{"$ref with a key on POST", http.MethodPost, "campaigns(" + f.campaign + ")/campaignlist_association(" + f.lists[0] + ")/$ref", b.rowRef("lists", f.lists[0]),
			405, "", "does not support http method 'POST'"},
		{"disassociate with a bad key", http.MethodDelete, "campaigns(" + f.campaign + ")/campaignlist_association(nope)/$ref", nil, 400, codeODataBadRequest, ""},
		{"$ref with PUT", http.MethodPut, campaignRef, b.rowRef("lists", f.lists[0]), 405, "", "does not support http method 'PUT'"},
		{"$ref on an unknown relationship", http.MethodPost, "campaigns(" + f.campaign + ")/campaigncampaign_association/$ref", b.rowRef("campaigns", f.campaign),
			501, codeNotImplemented, "campaigncampaign_association"},
		{"GET of an unknown row's lists", http.MethodGet, "campaignactivities(" + missingID + ")/campaignactivitylist_association", nil,
			404, codeObjectDoesNotExist, "Entity 'campaignactivity' With Id = " + missingID},
		{"GET of the relationship from another table", http.MethodGet, "contacts(" + f.contact + ")/campaignlist_association", nil,
			400, codeODataGeneric, "Could not find a property named 'campaignlist_association'"},
		{"GET of an unknown navigation property", http.MethodGet, "campaigns(" + f.campaign + ")/campaign_campaignresponses", nil,
			501, codeNotImplemented, "campaign_campaignresponses"},
		{"GET with an unknown $select column", http.MethodGet, "campaigns(" + f.campaign + ")/campaignlist_association?$select=nope", nil,
			400, codeODataGeneric, "Could not find a property named 'nope' on type 'Microsoft.Dynamics.CRM.list'"},
		{"GET with $skip", http.MethodGet, "campaigns(" + f.campaign + ")/campaignlist_association?$skip=1", nil, 400, codeODataBadRequest, "$skip"},
		{"$expand of a collection", http.MethodGet, "campaigns(" + f.campaign + ")?$expand=campaignlist_association", nil,
			501, codeNotImplemented, "collection-valued"},
		{"campaign item of a contact", http.MethodPost, "campaignitems", map[string]any{
			"campaignid@odata.bind": "/campaigns(" + f.campaign + ")", "entityid": f.contact, "entitytype": "contact"},
			400, codeInvalidArgument, "A contact cannot be an item of a campaign"},
		{"campaign item of a product", http.MethodPost, "campaignitems", map[string]any{
			"campaignid@odata.bind": "/campaigns(" + f.campaign + ")", "entityid": missingID, "entitytype": "product"},
			501, codeNotImplemented, "product"},
		{"campaign item of an unknown list", http.MethodPost, "campaignitems", map[string]any{
			"campaignid@odata.bind": "/campaigns(" + f.campaign + ")", "entityid": missingID, "entitytype": "list"},
			404, codeObjectDoesNotExist, "Entity 'list' With Id = " + missingID},
		{"campaign item without its campaign", http.MethodPost, "campaignitems", map[string]any{"entityid": f.lists[0], "entitytype": "list"},
			400, codeInvalidArgument, "'campaignid'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.call(t, tt.method, tt.path, tt.body).wantError(t, tt.status, tt.code, tt.message)
		})
	}
	t.Run("a second campaign item of the same list", func(t *testing.T) {
		row := map[string]any{"campaignid@odata.bind": "/campaigns(" + f.campaign + ")", "entityid": f.lists[2], "entitytype": "list"}
		b.mustCreate(t, "campaignitems", row)
		b.call(t, http.MethodPost, "campaignitems", row).wantError(t, http.StatusPreconditionFailed, codeDuplicateRecord, "duplicate")
	})
}

func TestAddItemCampaignActions(t *testing.T) {
	t.Parallel()
	b, rc := receiverSetup(t,
		stepSpec{message: "AddItemCampaign", table: "campaign", stage: 40, mode: 1},
		stepSpec{message: "AddItemCampaignActivity", table: "campaignactivity", stage: 40, mode: 1})
	f := newCampaignFixture(t, b)
	campaignParam := map[string]any{"Campaign": map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.campaign", "campaignid": f.campaign}}
	addToCampaign := "lists(" + f.lists[0] + ")/Microsoft.Dynamics.CRM.AddItemCampaign"

	got := b.call(t, http.MethodPost, addToCampaign, campaignParam)
	item, _ := got.body["campaignitemid"].(string)
	if got.status != http.StatusOK || item == "" || got.body["_campaignid_value"] != f.campaign || got.body["entityid"] != f.lists[0] || got.body["entitytype"] != "list" ||
		got.body["@odata.context"] != b.srv.URL+"/api/data/v9.2/$metadata#campaignitems/$entity" {
		t.Fatalf("AddItemCampaign: %d %s", got.status, got.raw)
	}
	again := b.call(t, http.MethodPost, addToCampaign, map[string]any{"Campaign": map[string]any{"campaignid": f.campaign}})
	if again.status != http.StatusOK || again.body["campaignitemid"] != item {
		t.Errorf("AddItemCampaign again (no @odata.type): %s, want campaign item %s", again.raw, item)
	}
	if lists := ids(t, b.call(t, http.MethodGet, "campaigns("+f.campaign+")/campaignlist_association", nil), "listid"); !slices.Equal(lists, f.lists[:1]) {
		t.Errorf("lists of the campaign %v", lists)
	}

	activityParam := func(itemType, itemKey, itemID string) map[string]any {
		p := map[string]any{
			"CampaignActivity": map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.campaignactivity", "activityid": f.activity},
			"Item":             map[string]any{itemKey: itemID},
		}
		if itemType != "" {
			p["Item"].(map[string]any)["@odata.type"] = "Microsoft.Dynamics.CRM." + itemType
		}
		return p
	}
	got = b.call(t, http.MethodPost, "AddItemCampaignActivity", activityParam("list", "listid", f.lists[1]))
	activityItem, _ := got.body["CampaignActivityItemId"].(string)
	if got.status != http.StatusOK || activityItem == "" ||
		got.body["@odata.context"] != b.srv.URL+"/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.AddItemCampaignActivityResponse" {
		t.Fatalf("AddItemCampaignActivity: %d %s", got.status, got.raw)
	}
	if again := b.call(t, http.MethodPost, "AddItemCampaignActivity", activityParam("list", "listid", f.lists[1])); again.body["CampaignActivityItemId"] != activityItem {
		t.Errorf("AddItemCampaignActivity again: %s, want %s", again.raw, activityItem)
	}
	if lists := ids(t, b.call(t, http.MethodGet, "campaignactivities("+f.activity+")/campaignactivitylist_association?$select=listid", nil), "listid"); !slices.Equal(lists, f.lists[1:2]) {
		t.Errorf("lists of the activity %v", lists)
	}

	tests := []struct {
		name, method, path string
		body               any
		status             int
		code, message      string
	}{
		{"AddItemCampaign without its namespace", http.MethodPost, "lists(" + f.lists[0] + ")/AddItemCampaign", campaignParam, 400, codeODataBadRequest, "unresolved parameters"},
		{"AddItemCampaign unbound with the SDK's parameters", http.MethodPost, "AddItemCampaign",
			map[string]any{"CampaignId": f.campaign, "EntityId": f.lists[0], "EntityName": "list"}, 404, codeResourceNotFound, "'AddItemCampaign'"},
		{"AddItemCampaign with GET", http.MethodGet, addToCampaign, nil, 405, "", "'GET'"},
		{"AddItemCampaign without Campaign", http.MethodPost, addToCampaign, map[string]any{}, 400, codeInvalidArgument, "'Campaign'"},
		{"AddItemCampaign with a list as Campaign", http.MethodPost, addToCampaign,
			map[string]any{"Campaign": map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.list", "campaignid": f.campaign}}, 400, codeODataBadRequest, "must be 'Microsoft.Dynamics.CRM.campaign'"},
		{"AddItemCampaign without campaignid", http.MethodPost, addToCampaign, map[string]any{"Campaign": map[string]any{}}, 400, codeInvalidArgument, "'campaignid'"},
		{"AddItemCampaign to an unknown campaign", http.MethodPost, addToCampaign,
			map[string]any{"Campaign": map[string]any{"campaignid": missingID}}, 404, codeObjectDoesNotExist, "Entity 'campaign' With Id = " + missingID},
		{"AddItemCampaign of an unknown list", http.MethodPost, "lists(" + missingID + ")/Microsoft.Dynamics.CRM.AddItemCampaign", campaignParam,
			404, codeObjectDoesNotExist, "Entity 'list' With Id = " + missingID},
		{"AddItemCampaign bound to a contact", http.MethodPost, "contacts(" + f.contact + ")/Microsoft.Dynamics.CRM.AddItemCampaign", campaignParam, 501, codeNotImplemented, ""},
		{"AddItemCampaignActivity with GET", http.MethodGet, "AddItemCampaignActivity", nil, 405, "", "'GET'"},
		{"AddItemCampaignActivity without CampaignActivity", http.MethodPost, "AddItemCampaignActivity", map[string]any{"Item": map[string]any{}},
			400, codeInvalidArgument, "'CampaignActivity'"},
		{"Item without @odata.type", http.MethodPost, "AddItemCampaignActivity", activityParam("", "listid", f.lists[0]), 400, codeODataBadRequest, "'@odata.type'"},
		{"Item of an unknown type", http.MethodPost, "AddItemCampaignActivity", activityParam("nope", "nopeid", f.lists[0]), 400, codeODataBadRequest, "unknown type"},
		{"Item of sales literature", http.MethodPost, "AddItemCampaignActivity", activityParam("salesliterature", "salesliteratureid", missingID), 501, codeNotImplemented, "salesliterature"},
		{"Item that is a contact", http.MethodPost, "AddItemCampaignActivity", activityParam("contact", "contactid", f.contact),
			400, codeInvalidArgument, "A contact cannot be an item of a campaignactivity"},
		{"Item that is an unknown list", http.MethodPost, "AddItemCampaignActivity", activityParam("list", "listid", missingID),
			404, codeObjectDoesNotExist, "Entity 'list' With Id = " + missingID},
		{"Item without its key", http.MethodPost, "AddItemCampaignActivity", activityParam("list", "id", f.lists[0]), 400, codeInvalidArgument, "'listid'"},
		{"an unknown campaign activity", http.MethodPost, "AddItemCampaignActivity", map[string]any{
			"CampaignActivity": map[string]any{"activityid": missingID},
			"Item":             map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": f.lists[0]},
		}, 404, codeObjectDoesNotExist, "Entity 'campaignactivity' With Id = " + missingID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.call(t, tt.method, tt.path, tt.body).wantError(t, tt.status, tt.code, tt.message)
		})
	}

	// One event per call, on the campaign and on the campaign activity.
	b.flush(t)
	var events []string
	for _, ec := range rc.decoded(t) {
		out := ec.OutputParameters["CampaignItemId"]
		if ec.MessageName == "AddItemCampaignActivity" {
			out = ec.OutputParameters["CampaignActivityItemId"]
		}
		events = append(events, strings.Join([]string{ec.MessageName, ec.PrimaryEntityName, ec.PrimaryEntityID,
			ec.InputParameters["EntityName"].(string), out.(string)}, " "))
	}
	slices.Sort(events)
	want := []string{
		"AddItemCampaign campaign " + f.campaign + " list " + item, "AddItemCampaign campaign " + f.campaign + " list " + item,
		"AddItemCampaignActivity campaignactivity " + f.activity + " list " + activityItem,
		"AddItemCampaignActivity campaignactivity " + f.activity + " list " + activityItem,
	}
	if !slices.Equal(events, want) {
		t.Errorf("events %v, want %v", events, want)
	}

	// Deleting the campaign or the activity deletes its items.
	for path, items := range map[string]string{"campaigns(" + f.campaign + ")": "campaignitems", "campaignactivities(" + f.activity + ")": "campaignactivityitems"} {
		if got := b.call(t, http.MethodDelete, path, nil); got.status != http.StatusNoContent {
			t.Fatalf("delete %s: %d %s", path, got.status, got.raw)
		}
		if n := len(values(t, b.call(t, http.MethodGet, items, nil))); n != 0 {
			t.Errorf("%d %s left after deleting %s", n, items, path)
		}
	}
}

// responseRow is a campaign response of the fixture's campaign with parties.
func (f campaignFixture) responseRow(parties ...map[string]any) map[string]any {
	row := map[string]any{
		"subject": "Opened", "channeltypecode": 1, "responsecode": 1, "receivedon": "2026-11-29",
		"regardingobjectid_campaign_campaignresponse@odata.bind": "/campaigns(" + f.campaign + ")",
	}
	if parties != nil {
		row["campaignresponse_activity_parties"] = parties
	}
	return row
}

func TestCampaignResponseParties(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	f := newCampaignFixture(t, b)
	lead := b.mustCreate(t, "leads", map[string]any{"lastname": "Lead", "subject": "Topic"})
	customer := func(nav, set, id string) map[string]any {
		return map[string]any{nav + "@odata.bind": "/" + set + "(" + id + ")", "participationtypemask": 11}
	}
	id := b.mustCreate(t, "campaignresponses", f.responseRow(
		customer("partyid_contact", "contacts", f.contact),
		map[string]any{"partyid_systemuser@odata.bind": "/systemusers(" + b.e.AdminUserID() + ")", "participationtypemask": 1},
	))

	got := b.call(t, http.MethodGet, "activityparties?"+query("$select", "_activityid_value,_partyid_value,participationtypemask",
		"$filter", "_activityid_value eq "+id, "$orderby", "participationtypemask desc"), nil,
		"Prefer", `odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"`)
	rows := values(t, got)
	if len(rows) != 2 {
		t.Fatalf("parties: %s", got.raw)
	}
	const logical = "@Microsoft.Dynamics.CRM.lookuplogicalname"
	for i, want := range []struct {
		party, table string
		mask         string
	}{{f.contact, "contact", "11"}, {b.e.AdminUserID(), "systemuser", "1"}} {
		r := rows[i]
		if r["_partyid_value"] != want.party || r["_partyid_value"+logical] != want.table || r["_activityid_value"] != id ||
			r["_activityid_value"+logical] != "campaignresponse" || fmt.Sprint(r["participationtypemask"]) != want.mask {
			t.Errorf("party %d: %v", i, r)
		}
	}
	got = b.call(t, http.MethodGet, "campaignresponses("+id+")/campaignresponse_activity_parties?$select=participationtypemask", nil)
	if len(values(t, got)) != 2 || got.body["@odata.context"] != b.srv.URL+"/api/data/v9.2/$metadata#activityparties(activitypartyid,participationtypemask)" {
		t.Errorf("parties through the navigation property: %s", got.raw)
	}
	got = b.call(t, http.MethodGet, "campaignresponses("+id+")?$select=receivedon,_regardingobjectid_value,responsecode", nil)
	if got.body["receivedon"] != "2026-11-29" || got.body["_regardingobjectid_value"] != f.campaign {
		t.Errorf("campaign response: %s", got.raw)
	}
	// A lead and an account are customers too.
	account := b.mustCreate(t, "accounts", map[string]any{"name": "Account"})
	b.mustCreate(t, "campaignresponses", f.responseRow(customer("partyid_lead", "leads", lead), customer("partyid_account", "accounts", account)))

	tests := []struct {
		name          string
		row           map[string]any
		status        int
		code, message string
	}{
		{"participationtypemask 0", f.responseRow(map[string]any{"partyid_contact@odata.bind": "/contacts(" + f.contact + ")", "participationtypemask": 0}),
			400, codeValidation, "outside the valid range"},
		{"participationtypemask 14", f.responseRow(map[string]any{"partyid_contact@odata.bind": "/contacts(" + f.contact + ")", "participationtypemask": 14}),
			400, codeValidation, "outside the valid range"},
		{"participationtypemask as a string", f.responseRow(map[string]any{"partyid_contact@odata.bind": "/contacts(" + f.contact + ")", "participationtypemask": "11"}),
			400, codePayload, "Edm.Int32"},
		{"a To Recipient party", f.responseRow(map[string]any{"partyid_contact@odata.bind": "/contacts(" + f.contact + ")", "participationtypemask": 2}),
			400, codeInvalidArgument, "participationtypemask 2 (To Recipient) is not a party list of campaignresponse; use 1 (Sender) or 11 (Customer)"},
		{"a party without participationtypemask", f.responseRow(map[string]any{"partyid_contact@odata.bind": "/contacts(" + f.contact + ")"}),
			400, codeInvalidArgument, "'participationtypemask'"},
		{"a user as customer", f.responseRow(customer("partyid_systemuser", "systemusers", b.e.AdminUserID())),
			400, codeInvalidArgument, "A systemuser cannot be a Customer party of a campaignresponse"},
		{"a lead as sender", f.responseRow(map[string]any{"partyid_lead@odata.bind": "/leads(" + lead + ")", "participationtypemask": 1}),
			400, codeInvalidArgument, "A lead cannot be a Sender party"},
		{"a customer without partyid", f.responseRow(map[string]any{"participationtypemask": 11}), 400, codeInvalidArgument, "needs partyid"},
		{"a customer bound to a missingID contact", f.responseRow(customer("partyid_contact", "contacts", missingID)),
			404, codeObjectDoesNotExist, "contact With Id = " + missingID + " Does Not Exist"},
		{"a customer bound to a campaign", f.responseRow(customer("partyid_campaign", "campaigns", f.campaign)), 400, codePayload, "'partyid_campaign'"},
		{"a customer bound through the wrong set", f.responseRow(customer("partyid_contact", "leads", lead)), 400, codeODataBadRequest, "not valid for navigation property 'partyid_contact'"},
		{"parties that are not a collection", func() map[string]any {
			r := f.responseRow()
			r["campaignresponse_activity_parties"] = customer("partyid_contact", "contacts", f.contact)
			return r
		}(), 400, codePayload, "must be a collection"},
		{"a party that is not an entity", func() map[string]any {
			r := f.responseRow()
			r["campaignresponse_activity_parties"] = []any{"contacts(" + f.contact + ")"}
			return r
		}(), 400, codePayload, "is not an entity"},
		{"without its campaign", func() map[string]any {
			r := f.responseRow(customer("partyid_contact", "contacts", f.contact))
			delete(r, "regardingobjectid_campaign_campaignresponse@odata.bind")
			return r
		}(), 400, codeInvalidArgument, "'regardingobjectid'"},
		{"without a subject", func() map[string]any {
			r := f.responseRow()
			delete(r, "subject")
			return r
		}(), 400, codeInvalidArgument, "'subject'"},
		{"regarding a missingID campaign", func() map[string]any {
			r := f.responseRow()
			r["regardingobjectid_campaign_campaignresponse@odata.bind"] = "/campaigns(" + missingID + ")"
			return r
		}(), 404, codeObjectDoesNotExist, "campaign With Id = " + missingID},
		{"a date-time as receivedon", func() map[string]any {
			r := f.responseRow()
			r["receivedon"] = "29.11.2026"
			return r
		}(), 400, codePayload, "Edm.Date"},
	}
	count := func() (int, int) {
		return len(values(t, b.call(t, http.MethodGet, "campaignresponses?$select=subject", nil))),
			len(values(t, b.call(t, http.MethodGet, "activityparties?$select=participationtypemask", nil)))
	}
	responses, parties := count()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.call(t, http.MethodPost, "campaignresponses", tt.row).wantError(t, tt.status, tt.code, tt.message)
			if r, p := count(); r != responses || p != parties {
				t.Errorf("%d responses and %d parties after a refused create, want %d and %d", r, p, responses, parties)
			}
		})
	}

	party, _ := rows[0]["activitypartyid"].(string)
	b.call(t, http.MethodPost, "activityparties", map[string]any{"participationtypemask": 11}).wantError(t, 400, codeInvalidArgument, "'Create' method does not support entities of type 'activityparty'")
	b.call(t, http.MethodDelete, "activityparties("+party+")", nil).wantError(t, 400, codeInvalidArgument, "'Delete' method does not support")
	b.call(t, http.MethodPatch, "campaignresponses("+id+")", map[string]any{"campaignresponse_activity_parties": []any{customer("partyid_contact", "contacts", f.contact)}},
		"If-Match", "*").wantError(t, http.StatusNotImplemented, codeNotImplemented, "deep update")
	b.call(t, http.MethodGet, "campaignresponses("+id+")?$expand=campaignresponse_activity_parties", nil).wantError(t, http.StatusNotImplemented, codeNotImplemented, "collection-valued")

	// Deleting the response deletes its parties.
	if got := b.call(t, http.MethodDelete, "campaignresponses("+id+")", nil); got.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", got.status, got.raw)
	}
	if n := len(values(t, b.call(t, http.MethodGet, "activityparties?"+query("$filter", "_activityid_value eq "+id), nil))); n != 0 {
		t.Errorf("%d parties left after deleting their response", n)
	}
}

func TestDeepInsertInBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	f := newCampaignFixture(t, b)
	part := func(contentID, line, body string) string {
		s := "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
		if contentID != "" {
			s += "Content-ID: " + contentID + "\r\n"
		}
		return s + "\r\n" + line + " HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n" + body + "\r\n"
	}
	response := func(partyBind string, mask int) string {
		return `{"subject":"Clicked","channeltypecode":1,"responsecode":1,"receivedon":"2026-11-29",` +
			`"regardingobjectid_campaign_campaignresponse@odata.bind":"/campaigns(` + f.campaign + `)",` +
			`"campaignresponse_activity_parties":[{"partyid_contact@odata.bind":"` + partyBind + `","participationtypemask":` + strconv.Itoa(mask) + `}]}`
	}
	changeSet := func(second string) string {
		return "--batch_AAA123\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n" +
			"--cs\r\n" + part("1", "POST contacts", `{"lastname":"New in the batch"}`) +
			"--cs\r\n" + part("2", "POST campaignresponses", second) + "--cs--\r\n"
	}
	single := func(body string) string {
		return "--batch_AAA123\r\n" + part("", "POST /api/data/v9.2/campaignresponses", body)
	}
	end := "--batch_AAA123--\r\n"

	a, parts := b.postBatch(t, changeSet(response("$1", 11))+single(response("/contacts("+f.contact+")", 11))+single(response("/contacts("+f.contact+")", 12))+end,
		"Prefer", "odata.continue-on-error")
	if a.status != http.StatusOK || len(parts) != 3 || len(parts[0].changeSet) != 2 || parts[1].status != http.StatusNoContent ||
		parts[2].status != http.StatusBadRequest || !strings.Contains(parts[2].body, "not a party list") {
		t.Fatalf("batch: %d %+v", a.status, parts)
	}
	created := func(h http.Header) string {
		loc := h.Get("OData-EntityId")
		return loc[strings.LastIndexByte(loc, '(')+1 : len(loc)-1]
	}
	newContact, inChangeSet := created(parts[0].changeSet[0].header), created(parts[0].changeSet[1].header)
	for response, contact := range map[string]string{inChangeSet: newContact, created(parts[1].header): f.contact} {
		got := b.call(t, http.MethodGet, "activityparties?"+query("$select", "_partyid_value", "$filter", "_activityid_value eq "+response), nil)
		if rows := values(t, got); len(rows) != 1 || rows[0]["_partyid_value"] != contact {
			t.Errorf("parties of %s: %s, want contact %s", response, got.raw, contact)
		}
	}

	// A deep insert that fails rolls its change set back.
	a, parts = b.postBatch(t, changeSet(response("/contacts("+missingID+")", 11))+end)
	if a.status != http.StatusNotFound || len(parts) != 1 || parts[0].contentID != "2" {
		t.Fatalf("failing change set: %d %+v", a.status, parts)
	}
	got := b.call(t, http.MethodGet, "contacts?"+query("$filter", "lastname eq 'New in the batch'"), nil)
	if n := len(values(t, got)); n != 1 {
		t.Errorf("%d contacts named in the batches, want 1 (the second change set rolled back)", n)
	}
}
