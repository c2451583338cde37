package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// seedContacts creates n contacts named c0000… with statecode alternating.
func seedContacts(t *testing.T, b *testBundle, n int) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("c%04d", i)
		id, err := b.e.Create("contacts", map[string]any{"lastname": name, "firstname": []string{"Zoe", "anna", "Bert"}[i%3], "statecode": i % 2})
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = name
	}
	return ids
}

func values(t *testing.T, a answer) []map[string]any {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	raw, _ := a.body["value"].([]any)
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i] = r.(map[string]any)
	}
	return out
}

func TestPaging(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ids := seedContacts(t, b, 25)
	seen := map[string]int{}
	next := b.srv.URL + "/api/data/v9.2/contacts?" + query("$select", "lastname", "$filter", "lastname ne null", "$count", "true")
	pages := 0
	for next != "" {
		a := b.call(t, http.MethodGet, next, nil, "Prefer", "odata.maxpagesize=10")
		if got := a.header.Get("Preference-Applied"); got != "odata.maxpagesize=10" {
			t.Errorf("Preference-Applied = %q", got)
		}
		if pages == 0 && a.body["@odata.count"] != json.Number("25") {
			t.Errorf("@odata.count = %v", a.body["@odata.count"])
		}
		for _, r := range values(t, a) {
			seen[r["contactid"].(string)]++
		}
		pages++
		next, _ = a.body["@odata.nextLink"].(string)
		if next != "" && (!strings.Contains(next, "$select=lastname") || !strings.Contains(next, "$skiptoken=%3Ccookie%20pagenumber%3D%22")) {
			t.Errorf("nextLink %q lost the query options or has no cookie", next)
		}
		if pages == 1 {
			// A row added between pages is no reason to repeat or skip others.
			if _, err := b.e.Create("contacts", map[string]any{"lastname": "late"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if pages != 3 {
		t.Errorf("%d pages, want 3", pages)
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("row %s seen %d times", ids[id], seen[id])
		}
	}
}

func TestQueryOptions(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	seedContacts(t, b, 12)
	get := func(q string, headers ...string) answer {
		return b.call(t, http.MethodGet, "contacts?"+q, nil, headers...)
	}
	t.Run("orderby several keys", func(t *testing.T) {
		rows := values(t, get(query("$select", "firstname,lastname", "$orderby", "firstname asc, lastname desc")))
		var got []string
		for _, r := range rows[:5] {
			got = append(got, r["firstname"].(string)+" "+r["lastname"].(string))
		}
		want := "anna c0010,anna c0007,anna c0004,anna c0001,Bert c0011"
		if strings.Join(got, ",") != want {
			t.Errorf("order %v, want %s", got, want)
		}
	})
	t.Run("top without maxpagesize", func(t *testing.T) {
		a := get(query("$top", "3", "$orderby", "lastname"))
		if rows := values(t, a); len(rows) != 3 || rows[0]["lastname"] != "c0000" || a.body["@odata.nextLink"] != nil {
			t.Errorf("$top=3: %d rows, nextLink %v", len(rows), a.body["@odata.nextLink"])
		}
	})
	t.Run("top is ignored with maxpagesize", func(t *testing.T) {
		a := get(query("$top", "3"), "Prefer", "odata.maxpagesize=5")
		if rows := values(t, a); len(rows) != 5 || a.body["@odata.nextLink"] == nil {
			t.Errorf("%d rows, nextLink %v", len(rows), a.body["@odata.nextLink"])
		}
	})
	t.Run("maxpagesize above 5000 is 5000", func(t *testing.T) {
		a := get("", "Prefer", "odata.maxpagesize=9000")
		if a.header.Get("Preference-Applied") != "odata.maxpagesize=5000" {
			t.Errorf("Preference-Applied = %q", a.header.Get("Preference-Applied"))
		}
	})
	t.Run("filter and count", func(t *testing.T) {
		a := get(query("$filter", "statecode eq 1 and startswith(firstname,'a')", "$count", "true"))
		if rows := values(t, a); len(rows) != 2 || a.body["@odata.count"] != json.Number("2") {
			t.Errorf("%d rows, count %v: %s", len(rows), a.body["@odata.count"], a.raw)
		}
		c := b.call(t, http.MethodGet, "contacts/$count?"+query("$filter", "statecode eq 1"), nil)
		if c.status != 200 || c.raw != "6" {
			t.Errorf("$count: %d %q", c.status, c.raw)
		}
	})
	t.Run("context names the selection", func(t *testing.T) {
		a := get(query("$select", "lastname,_ownerid_value"))
		if a.body["@odata.context"] != b.srv.URL+"/api/data/v9.2/$metadata#contacts(contactid,lastname,_ownerid_value)" {
			t.Errorf("@odata.context = %v", a.body["@odata.context"])
		}
	})
	t.Run("annotations on collections", func(t *testing.T) {
		rows := values(t, get(query("$select", "statecode,_ownerid_value", "$top", "1"), "Prefer", `odata.include-annotations="OData.Community.Display.V1.FormattedValue"`))
		r := rows[0]
		if r["statecode@OData.Community.Display.V1.FormattedValue"] == nil || r["_ownerid_value@OData.Community.Display.V1.FormattedValue"] != "crmsync application user" {
			t.Errorf("row %v", r)
		}
		if r["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] != nil {
			t.Errorf("lookuplogicalname sent without asking: %v", r)
		}
	})
	errs := []struct {
		name, q       string
		status        int
		code, message string
	}{
		{"$skip", query("$skip", "10"), 400, codeODataBadRequest, "The query parameter $skip is not supported."},
		{"unknown option", query("$frobnicate", "1"), 400, codeODataBadRequest, "'$frobnicate'"},
		{"$expand of an unknown property", query("$expand", "nosuch"), 400, codeODataBadRequest, "'nosuch'"},
		{"$expand with $filter", query("$expand", "parentcustomerid_account($filter=name eq 'x')"), 501, codeNotImplemented, "$expand"},
		{"$apply", query("$apply", "groupby((lastname))"), 501, codeNotImplemented, "$apply"},
		{"bad $select", query("$select", "Name"), 400, codeODataGeneric, "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.contact'."},
		{"bad $orderby", query("$orderby", "nosuch desc"), 400, codeODataGeneric, "'nosuch'"},
		{"bad $orderby direction", query("$orderby", "lastname sideways"), 400, codeODataBadRequest, "Syntax error"},
		{"bad $filter", query("$filter", "lastname eq"), 400, codeODataBadRequest, "Syntax error"},
		{"bad $top", query("$top", "-1"), 400, codeODataBadRequest, "$top"},
		{"bad $skiptoken", query("$skiptoken", "<cookie/>"), 400, codeODataBadRequest, "$skiptoken"},
		{"fetchXml without entity", query("fetchXml", "<fetch/>"), 400, codeInvalidArgument, "<entity>"},
		{"fetchXml with $select", query("fetchXml", "<fetch><entity name='contact'/></fetch>", "$select", "lastname"), 400, codeODataBadRequest, "fetchXml"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			get(tt.q).wantError(t, tt.status, tt.code, tt.message)
		})
	}
	t.Run("custom parameters pass", func(t *testing.T) {
		if a := get(query("tag", "crmsync", "$top", "1")); a.status != 200 {
			t.Errorf("?tag=: %d %s", a.status, a.raw)
		}
	})
}

func TestServiceDocument(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	a := b.call(t, http.MethodGet, "", nil)
	var sets []string
	for _, v := range values(t, a) {
		sets = append(sets, v["name"].(string))
	}
	want := "contacts,accounts,leads,lists,listmembers,campaigns,campaignactivities,campaignresponses,campaignitems,campaignactivityitems,activityparties,cs_subscriptions,systemusers,businessunits," +
		"serviceendpoints,sdkmessages,sdkmessagefilters,sdkmessageprocessingsteps,sdkmessageprocessingstepimages,customapis,customapirequestparameters"
	if strings.Join(sets, ",") != want {
		t.Errorf("entity sets %v", sets)
	}
}
