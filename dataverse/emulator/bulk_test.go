package emulator

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"crmsync/dataverse"
)

func TestBulkMessagesWireFormat(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	a := b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.CreateMultiple", map[string]any{"Targets": []any{
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "A"},
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "B"},
	}})
	ids, _ := a.body["Ids"].([]any)
	if a.status != http.StatusOK || len(ids) != 2 || !strings.HasSuffix(a.body["@odata.context"].(string), "$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse") {
		t.Fatalf("CreateMultiple: %d %s", a.status, a.raw)
	}
	b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.CreateMultiple", map[string]any{"Targets": []any{map[string]any{"lastname": "no type"}}}).
		wantError(t, http.StatusBadRequest, codeODataBadRequest, "'@odata.type'")
	b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.CreateMultiple", map[string]any{"Targets": []any{
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "wrong table"}}}).
		wantError(t, http.StatusBadRequest, codePayload, "not assignable")
	b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.CreateMultiple", map[string]any{}).
		wantError(t, http.StatusBadRequest, codeInvalidArgument, "'Targets'")
	if a := b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", map[string]any{"Targets": []any{
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": ids[0], "firstname": "X"}}}); a.status != http.StatusNoContent {
		t.Errorf("UpdateMultiple: %d %s", a.status, a.raw)
	}
	b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", map[string]any{"Targets": []any{
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.contact", "@odata.id": "contacts(emailaddress1='a@b.de')", "firstname": "X"}}}).
		wantError(t, http.StatusBadRequest, codeInvalidArgument, "alternate keys")
	b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.DeleteMultiple", map[string]any{"Targets": []any{}}).
		wantError(t, http.StatusBadRequest, codeInvalidArgument, "DeleteMultiple has not yet been implemented.")
	b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.UpsertMultiple", map[string]any{"Targets": []any{
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.contact", "@odata.id": "contacts(emailaddress1='a@b.de')"}}}).
		wantError(t, http.StatusBadRequest, codeInvalidArgument, "no alternate key")
	contact := ids[0].(string)
	b.call(t, http.MethodPost, "cs_subscriptions/Microsoft.Dynamics.CRM.UpsertMultiple", map[string]any{"Targets": []any{
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.cs_subscription", "@odata.id": "cs_subscriptions(cs_groupid='g')"}}}).
		wantError(t, http.StatusBadRequest, codeODataBadRequest, "no alternate key with these columns")
	if a := b.call(t, http.MethodPost, "cs_subscriptions/Microsoft.Dynamics.CRM.UpsertMultiple", map[string]any{"Targets": []any{
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.cs_subscription",
			"@odata.id": b.srv.URL + "/api/data/v9.2/cs_subscriptions(cs_groupid='a%2Cb',_cs_contactid_value=" + contact + ")", "cs_subscribed": true}}}); a.status != http.StatusNoContent {
		t.Fatalf("UpsertMultiple: %d %s", a.status, a.raw)
	}
	a = b.call(t, http.MethodGet, "cs_subscriptions?"+query("$select", "cs_groupid,_cs_contactid_value,cs_subscribed"), nil)
	if rows := values(t, a); len(rows) != 1 || rows[0]["cs_groupid"] != "a,b" || rows[0]["_cs_contactid_value"] != contact || rows[0]["cs_subscribed"] != true {
		t.Errorf("upserted row: %s", a.raw)
	}
}

func TestListActionsWireFormat(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	list := b.mustCreate(t, "lists", map[string]any{"listname": "L", "createdfromcode": 2})
	c := b.mustCreate(t, "contacts", map[string]any{"lastname": "C"})
	b.call(t, http.MethodPost, "lists("+list+")/AddMemberList", map[string]any{"EntityId": c}).
		wantError(t, http.StatusBadRequest, codeODataBadRequest, "Request message has unresolved parameters.")
	b.call(t, http.MethodPost, "lists("+list+")/Microsoft.Dynamics.CRM.AddMemberList", map[string]any{}).
		wantError(t, http.StatusBadRequest, codeInvalidArgument, "'EntityId'")
	a := b.call(t, http.MethodPost, "lists("+list+")/Microsoft.Dynamics.CRM.AddMemberList", map[string]any{"EntityId": c})
	if a.status != http.StatusOK || !strings.HasSuffix(a.body["@odata.context"].(string), "#Microsoft.Dynamics.CRM.AddMemberListResponse") || a.body["Id"] == nil {
		t.Errorf("AddMemberList: %d %s", a.status, a.raw)
	}
	b.call(t, http.MethodPost, "AddListMembersList", map[string]any{
		"List":    map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list},
		"Members": []any{map[string]any{"contactid": c}},
	}).wantError(t, http.StatusBadRequest, codeODataBadRequest, "'@odata.type'")
	if a := b.call(t, http.MethodPost, "AddListMembersList", map[string]any{
		"List":    map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list},
		"Members": []any{map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": c}},
	}); a.status != http.StatusNoContent {
		t.Errorf("AddListMembersList: %d %s", a.status, a.raw)
	}
	// Disassociate by $id as well as by key.
	ref := url.QueryEscape(b.srv.URL + "/api/data/v9.2/contacts(" + c + ")")
	if a := b.call(t, http.MethodDelete, "lists("+list+")/listcontact_association/$ref?$id="+ref, nil); a.status != http.StatusNoContent {
		t.Errorf("disassociate by $id: %d %s", a.status, a.raw)
	}
	if n := b.call(t, http.MethodGet, "lists("+list+")?$select=membercount", nil).body["membercount"]; n != json.Number("0") {
		t.Errorf("membercount %v", n)
	}
	b.call(t, http.MethodPost, "lists("+list+")/listaccount_association/$ref", map[string]any{"@odata.id": "contacts(" + c + ")"}).
		wantError(t, http.StatusBadRequest, codeODataBadRequest, "does not name a row of 'accounts'")
	b.call(t, http.MethodPost, "lists("+list+")/Microsoft.Dynamics.CRM.CopyDynamicListToStatic", map[string]any{}).
		wantError(t, http.StatusBadRequest, codeInvalidArgument, "only a dynamic list")
}

func TestChangeTrackingWireFormat(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	id := b.mustCreate(t, "accounts", map[string]any{"name": "A"})
	b.call(t, http.MethodGet, "accounts?"+query("$filter", "name eq 'A'"), nil, "Prefer", "odata.track-changes").
		wantError(t, http.StatusBadRequest, codeODataBadRequest, `The "$filter" query parameter isn't supported when Change Tracking is enabled.`)
	a := b.call(t, http.MethodGet, "accounts?"+query("$select", "name"), nil, "Prefer", "odata.track-changes")
	link, _ := a.body["@odata.deltaLink"].(string)
	if a.status != http.StatusOK || a.header.Get("Preference-Applied") != "odata.track-changes" || link == "" {
		t.Fatalf("initial: %d %v %s", a.status, a.header, a.raw)
	}
	u, _ := url.Parse(link)
	token := u.Query().Get("$deltatoken")
	if _, _, ok := parseDeltaToken(token); !ok || !strings.Contains(token, "!") {
		t.Errorf("token %q is not version!time", token)
	}
	b.call(t, http.MethodDelete, "accounts("+id+")", nil)
	a = b.call(t, http.MethodGet, link, nil)
	rows := values(t, a)
	if len(rows) != 1 || rows[0]["id"] != id || rows[0]["reason"] != "deleted" ||
		rows[0]["@odata.context"] != b.srv.URL+"/api/data/v9.2/$metadata#accounts/$deletedEntity" ||
		!strings.HasSuffix(a.body["@odata.context"].(string), "#accounts(accountid,name)/$delta") {
		t.Errorf("delta: %s", a.raw)
	}
	// Campaigns are not tracked: the preference is not applied.
	a = b.call(t, http.MethodGet, "campaigns", nil, "Prefer", "odata.track-changes")
	if a.header.Get("Preference-Applied") != "" || a.body["@odata.deltaLink"] != nil {
		t.Errorf("untracked table: %v %s", a.header, a.raw)
	}
}

func TestFetchXMLWireFormat(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for _, n := range []string{"a", "b", "c"} {
		b.mustCreate(t, "contacts", map[string]any{"lastname": n})
	}
	fetch := `<fetch count="2"><entity name="contact"><attribute name="lastname"/><order attribute="lastname"/></entity></fetch>`
	a := b.call(t, http.MethodGet, "contacts?"+query("fetchXml", fetch), nil)
	if _, ok := a.body["@Microsoft.Dynamics.CRM.morerecords"]; ok || len(values(t, a)) != 2 {
		t.Errorf("without annotations: %s", a.raw)
	}
	a = b.call(t, http.MethodGet, "contacts?"+query("fetchXml", fetch), nil, "Prefer", `odata.include-annotations="*"`)
	cookie, _ := a.body["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"].(string)
	if a.body["@Microsoft.Dynamics.CRM.morerecords"] != true || !strings.HasPrefix(cookie, `<cookie pagenumber="2" pagingcookie="%253ccookie%2520page%253d%25221%2522%253e%253clastname%2520last%253d%2522b%2522`) {
		t.Errorf("annotations: %s", a.raw)
	}
	if rows := values(t, a); rows[0]["lastname"] != "a" || rows[0]["contactid"] == nil || rows[0]["@odata.etag"] == nil {
		t.Errorf("row %v", rows[0])
	}
	for s, want := range map[string]bool{"abc": true, "a%": true, "%c": true, "%b%": true, "a_c": true, "_": false, "ab": false, "%%%": true, "abc%": true, "a%d": false} {
		if got := likeMatch([]rune("abc"), []rune(s)); got != want {
			t.Errorf("'abc' like %q = %v", s, got)
		}
	}
}

func TestAlternateKeyInTheURL(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	c := b.mustCreate(t, "contacts", map[string]any{"lastname": "K"})
	path := "cs_subscriptions(cs_groupid='G1',_cs_contactid_value=" + c + ")"
	b.call(t, http.MethodGet, path, nil).wantError(t, http.StatusNotFound, codeObjectDoesNotExist, "A record with the specified key values does not exist in cs_subscription entity")
	// PATCH without If-Match upserts: the row is made with the key's values.
	if a := b.call(t, http.MethodPatch, path, map[string]any{"cs_subscribed": true}); a.status != http.StatusNoContent {
		t.Fatalf("upsert by key: %d %s", a.status, a.raw)
	}
	a := b.call(t, http.MethodGet, "cs_subscriptions(cs_groupid='g1',_cs_contactid_value="+c+")?$select=cs_groupid,_cs_contactid_value,cs_subscribed", nil)
	if a.status != http.StatusOK || a.body["cs_groupid"] != "G1" || a.body["_cs_contactid_value"] != c || a.body["cs_subscribed"] != true {
		t.Fatalf("read by key: %d %s", a.status, a.raw)
	}
	// An update by key leaves the key's columns alone.
	if a := b.call(t, http.MethodPatch, path, map[string]any{"cs_groupid": "other", "cs_subscribed": false}, "If-Match", "*"); a.status != http.StatusNoContent {
		t.Fatalf("update by key: %d %s", a.status, a.raw)
	}
	if a := b.call(t, http.MethodGet, path+"?$select=cs_groupid,cs_subscribed", nil); a.body["cs_groupid"] != "G1" || a.body["cs_subscribed"] != false {
		t.Errorf("after the update: %s", a.raw)
	}
	if a := b.call(t, http.MethodDelete, path, nil); a.status != http.StatusNoContent {
		t.Errorf("delete by key: %d %s", a.status, a.raw)
	}
	b.call(t, http.MethodGet, "cs_subscriptions(cs_name='x')", nil).wantError(t, http.StatusBadRequest, codeODataBadRequest, "no alternate key with these columns")
}

// CreateMultiple and UpdateMultiple steps get the whole request once, single
// creates and updates one-Target events (§7.1's merged pipelines).
func TestMultipleMessageEvents(t *testing.T) {
	t.Parallel()
	b, rc := receiverSetup(t,
		stepSpec{message: "CreateMultiple", table: "contact", stage: 40, mode: 1},
		stepSpec{message: "UpdateMultiple", table: "contact", stage: 40, mode: 0})
	single := b.mustCreate(t, "contacts", map[string]any{"lastname": "Single"})
	a := b.call(t, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.CreateMultiple", map[string]any{"Targets": []any{
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "M1"},
		map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "M2"},
	}})
	ids := a.body["Ids"].([]any)
	b.call(t, http.MethodPatch, "contacts("+single+")", map[string]any{"firstname": "S"}, "If-Match", "*")
	b.flush(t)
	got := rc.decoded(t)
	if len(got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(got))
	}
	var multi, update *dataverse.ExecutionContext
	for _, ec := range got {
		switch {
		case ec.MessageName == "CreateMultiple" && len(ec.OutputParameters) > 0 && len(ec.OutputParameters["Ids"].([]any)) == 2:
			multi = ec
		case ec.MessageName == "UpdateMultiple":
			update = ec
		}
	}
	if multi == nil || update == nil {
		t.Fatalf("deliveries %v", got)
	}
	targets, ok := multi.InputParameters["Targets"].(*dataverse.EntityCollection)
	if !ok || len(targets.Entities) != 2 || targets.EntityName != "contact" || targets.Entities[1].Attributes["lastname"] != "M2" ||
		targets.Entities[0].ID != ids[0] || multi.PrimaryEntityName != "contact" {
		t.Errorf("CreateMultiple Targets %+v", multi.InputParameters["Targets"])
	}
	if ut, ok := update.InputParameters["Targets"].(*dataverse.EntityCollection); !ok || len(ut.Entities) != 1 || ut.Entities[0].Attributes["firstname"] != "S" {
		t.Errorf("UpdateMultiple Targets %+v", update.InputParameters["Targets"])
	}
}
