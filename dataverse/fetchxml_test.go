package dataverse

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"crmsync/dataverse/emulator"
)

func TestFetchXMLPagesThroughTwelveThousandRowsWithCookies(t *testing.T) {
	t.Parallel()
	e := emulator.New(emulator.Config{Logger: testLogger(t)})
	var mu sync.Mutex
	var fetches []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := r.URL.Query().Get("fetchXml"); f != "" {
			mu.Lock()
			fetches = append(fetches, f)
			mu.Unlock()
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const total = 12_000
	seed(t, e, total)
	ctx := t.Context()
	rows := c.FetchXML(ctx, "contacts", `<fetch count="5000"><entity name="contact"><attribute name="lastname"/><order attribute="lastname" descending="true"/></entity></fetch>`)
	var names []string
	seen := map[string]bool{}
	for rows.Next(ctx) {
		r := rows.Row()
		id, _ := r.String("contactid")
		if seen[id] {
			t.Fatalf("row %s twice", id)
		}
		seen[id] = true
		name, _ := r.String("lastname")
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) != total || rows.Pages() != 3 {
		t.Fatalf("%d rows in %d pages, want %d in 3", len(names), rows.Pages(), total)
	}
	if !slices.IsSortedFunc(names, func(a, b string) int { return strings.Compare(b, a) }) || names[0] != "c11999" {
		t.Errorf("rows not in descending order: %v…", names[:3])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(fetches) != 3 {
		t.Fatalf("%d FetchXML requests", len(fetches))
	}
	for i, f := range fetches {
		root, err := fetchRoot(f)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := root.attr("page")
		cookie, hasCookie := root.attr("paging-cookie")
		if page != fmt.Sprint(i+1) || hasCookie != (i > 0) {
			t.Errorf("request %d: page %q, paging-cookie %q", i+1, page, cookie)
		}
		if i > 0 && (!strings.HasPrefix(cookie, `<cookie page="`+fmt.Sprint(i)+`"><lastname last="`) || !strings.Contains(cookie, "<contactid last=\"{")) {
			t.Errorf("request %d: cookie %q is not the decoded cookie of the page before", i+1, cookie)
		}
	}
}

func TestFetchXMLConditions(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	c := b.client
	acc, err := c.Create(ctx, "accounts", map[string]any{"name": "Contoso"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []map[string]any{
		{"lastname": "Adams", "emailaddress1": "adams@example.de", "donotbulkemail": true, "parentcustomerid_account@odata.bind": Bind("accounts", acc)},
		{"lastname": "bauer", "emailaddress1": "bauer@example.com", "jobtitle": "CEO"},
		{"lastname": "Cole", "jobtitle": "ceo", "birthdate": "1980-05-01"},
		{"lastname": "Dorn", "emailaddress1": "dorn@example.de", "birthdate": "1990-01-01", "parentcustomerid_account@odata.bind": Bind("accounts", acc)},
	} {
		if _, err := c.Create(ctx, "contacts", p); err != nil {
			t.Fatal(err)
		}
	}
	run := func(t *testing.T, entity string, top string) ([]string, []Row) {
		t.Helper()
		fetch := `<fetch` + top + `><entity name="contact"><attribute name="lastname"/><order attribute="lastname"/>` + entity + `</entity></fetch>`
		rows := c.FetchXML(ctx, "contacts", fetch)
		var names []string
		var all []Row
		for rows.Next(ctx) {
			s, _ := rows.Row().String("lastname")
			names = append(names, s)
			all = append(all, rows.Row())
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", fetch, err)
		}
		return names, all
	}
	tests := []struct {
		name, entity, top string
		want              []string
	}{
		{"all", ``, ``, []string{"Adams", "bauer", "Cole", "Dorn"}},
		{"eq ignores case", `<filter><condition attribute="jobtitle" operator="eq" value="CEO"/></filter>`, ``, []string{"bauer", "Cole"}},
		{"ne leaves nulls out", `<filter><condition attribute="jobtitle" operator="ne" value="ceo"/></filter>`, ``, nil},
		{"null", `<filter><condition attribute="emailaddress1" operator="null"/></filter>`, ``, []string{"Cole"}},
		{"not-null", `<filter><condition attribute="jobtitle" operator="not-null"/></filter>`, ``, []string{"bauer", "Cole"}},
		{"like", `<filter><condition attribute="emailaddress1" operator="like" value="%@EXAMPLE.de"/></filter>`, ``, []string{"Adams", "Dorn"}},
		{"like with _", `<filter><condition attribute="lastname" operator="like" value="_o%"/></filter>`, ``, []string{"Cole", "Dorn"}},
		{"in", `<filter><condition attribute="lastname" operator="in"><value>adams</value><value>Dorn</value></condition></filter>`, ``, []string{"Adams", "Dorn"}},
		{"gt date", `<filter><condition attribute="birthdate" operator="gt" value="1985-01-01"/></filter>`, ``, []string{"Dorn"}},
		{"le and lt", `<filter><condition attribute="lastname" operator="lt" value="c"/><condition attribute="lastname" operator="ge" value="b"/></filter>`, ``, []string{"bauer"}},
		{"boolean", `<filter><condition attribute="donotbulkemail" operator="eq" value="1"/></filter>`, ``, []string{"Adams"}},
		{"nested or", `<filter type="or"><condition attribute="lastname" operator="eq" value="Adams"/><filter type="and"><condition attribute="jobtitle" operator="eq" value="ceo"/><condition attribute="emailaddress1" operator="null"/></filter></filter>`, ``, []string{"Adams", "Cole"}},
		{"lookup eq", `<filter><condition attribute="parentcustomerid" operator="eq" value="{` + strings.ToUpper(acc) + `}"/></filter>`, ``, []string{"Adams", "Dorn"}},
		{"inner link", `<link-entity name="account" from="accountid" to="parentcustomerid" link-type="inner"/>`, ``, []string{"Adams", "Dorn"}},
		{"outer link with a condition on it", `<link-entity name="account" from="accountid" to="parentcustomerid" link-type="outer" alias="a"/><filter><condition entityname="a" attribute="accountid" operator="null"/></filter>`, ``, []string{"bauer", "Cole"}},
		{"top", ``, ` top="2"`, []string{"Adams", "bauer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, _ := run(t, tt.entity, tt.top); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("outer link columns", func(t *testing.T) {
		t.Parallel()
		_, rows := run(t, `<link-entity name="account" from="accountid" to="parentcustomerid" link-type="outer" alias="a"><attribute name="name"/></link-entity>`, ``)
		var names []any
		for _, r := range rows {
			names = append(names, r["a.name"])
		}
		if fmt.Sprint(names) != "[Contoso <nil> <nil> Contoso]" {
			t.Errorf("a.name per row: %v", names)
		}
		if _, ok := rows[2]["emailaddress1"]; ok {
			t.Error("a column not asked for came back")
		}
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		for fetch, code := range map[string]string{
			`<fetch><entity name="contact"><attribute name="nosuch"/></entity></fetch>`:                                                          "0x80041103",
			`<fetch><entity name="contact"><filter><condition attribute="lastname" operator="sounds-like" value="x"/></filter></entity></fetch>`: "0x80040203",
			`<fetch><entity name="account"/></fetch>`:                                                                                            "0x80040203",
			`<fetch top="2" count="2"><entity name="contact"/></fetch>`:                                                                          "0x80040203",
			`<fetch><entity name="contact"><filter><condition attribute="birthdate" operator="eq" value="yesterday"/></filter></entity></fetch>`: "0x80040203",
		} {
			rows := c.FetchXML(ctx, "contacts", fetch)
			for rows.Next(ctx) {
			}
			wantAPIError(t, rows.Err(), http.StatusBadRequest, code)
		}
		if rows := c.FetchXML(ctx, "contacts", "<entity/>"); rows.Err() == nil {
			t.Error("FetchXML without <fetch> ran")
		}
	})
}

func TestPagingCookieIsDecodedTwice(t *testing.T) {
	t.Parallel()
	inner := `<cookie page="1"><contactid last="{0A}" first="{0B}" /></cookie>`
	once := strings.ReplaceAll(url.QueryEscape(inner), "+", "%20")
	annotation := `<cookie pagenumber="2" pagingcookie="` + url.QueryEscape(once) + `" istracking="False" />`
	got, page, err := parsePagingCookie(annotation)
	if err != nil || got != inner || page != 2 {
		t.Errorf("parsePagingCookie = %q, %d, %v", got, page, err)
	}
	root, err := fetchRoot(`<?xml version="1.0"?><fetch version="1.0" page="1" mapping="logical"><entity name="contact"/></fetch>`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := root.with(map[string]string{"page": "2", "paging-cookie": inner}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `<?xml version="1.0"?><fetch version="1.0" page="2" mapping="logical" paging-cookie="&lt;cookie page=&#34;1&#34;&gt;&lt;contactid last=&#34;{0A}&#34; first=&#34;{0B}&#34; /&gt;&lt;/cookie&gt;"><entity name="contact"/></fetch>`
	if out != want {
		t.Errorf("with:\n%s\nwant\n%s", out, want)
	}
	if _, err := fetchRoot(`<fetch/>`); err == nil {
		t.Error("an empty <fetch/> was taken")
	}
}

func TestSetFetchAttributes(t *testing.T) {
	t.Parallel()
	in := `<fetch><entity name="contact"><attribute name="fullname"/><all-attributes/><filter><condition attribute="x" operator="eq" value="a&amp;b"/></filter>` +
		`<link-entity name="account" from="accountid" to="parentcustomerid"><attribute name="name"/></link-entity></entity></fetch>`
	got, err := SetFetchAttributes(in, []string{"emailaddress1", "lastname"})
	if err != nil {
		t.Fatal(err)
	}
	want := `<fetch><entity name="contact"><attribute name="emailaddress1"></attribute><attribute name="lastname"></attribute><filter><condition attribute="x" operator="eq" value="a&amp;b"></condition></filter>` +
		`<link-entity name="account" from="accountid" to="parentcustomerid"><attribute name="name"></attribute></link-entity></entity></fetch>`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if f := StaticListMembersFetch("lead", "L1", "fullname"); !strings.Contains(f, `<link-entity name="listmember" from="entityid" to="leadid"`) ||
		!strings.Contains(f, `<condition attribute="listid" operator="eq" value="L1"/>`) {
		t.Errorf("StaticListMembersFetch = %s", f)
	}
}
