package dataverse

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"crmsync/dataverse/emulator"
)

func TestQuoteString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"anna@example.de", "'anna@example.de'"},
		{"O'Brien", "'O''Brien'"},
		{"''", "''''''"},
		{"", "''"},
		{"x' or 1 eq 1 or 'y", "'x'' or 1 eq 1 or ''y'"},
	}
	for _, tt := range tests {
		if got := QuoteString(tt.in); got != tt.want {
			t.Errorf("QuoteString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// seed creates n contacts directly in the emulator: lastname c00000…, a rotating
// first name and e-mail, every third one opted out of bulk e-mail.
func seed(t testing.TB, e *emulator.Emulator, n int) map[string]bool {
	t.Helper()
	ids := make(map[string]bool, n)
	first := []string{"Anna", "bernd", "Clara", "O'Neil"}
	for i := range n {
		id, err := e.Create("contacts", map[string]any{
			"lastname": fmt.Sprintf("c%05d", i), "firstname": first[i%len(first)],
			"emailaddress1": fmt.Sprintf("p%d@example.de", i), "donotbulkemail": i%3 == 0,
		})
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	return ids
}

func TestQueryOptions(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	seed(t, b.e, 40)
	ctx := t.Context()
	names := func(q Query) []string {
		t.Helper()
		rows := b.client.Query(ctx, "contacts", q)
		var out []string
		for rows.Next(ctx) {
			s, _ := rows.Row().String("lastname")
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"filter with a quoted literal, case-insensitive", Query{Select: []string{"lastname"}, Filter: "firstname eq " + QuoteString("o'neil") + " and donotbulkemail eq false", OrderBy: []string{"lastname"}},
			"c00007,c00011,c00019,c00023,c00031,c00035"},
		{"orderby desc and top", Query{Select: []string{"lastname"}, OrderBy: []string{"lastname desc"}, Top: 3}, "c00039,c00038,c00037"},
		{"top across pages", Query{Select: []string{"lastname"}, OrderBy: []string{"lastname"}, Top: 7, PageSize: 3}, "c00000,c00001,c00002,c00003,c00004,c00005,c00006"},
		{"contains and or", Query{Select: []string{"lastname"}, Filter: "contains(emailaddress1,'p1@') or startswith(lastname,'C0003')", OrderBy: []string{"lastname"}},
			"c00001,c00030,c00031,c00032,c00033,c00034,c00035,c00036,c00037,c00038,c00039"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(names(tt.q), ","); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}

	t.Run("select and count", func(t *testing.T) {
		rows := b.client.Query(ctx, "contacts", Query{Select: []string{"emailaddress1"}, Filter: "donotbulkemail eq true", Count: true, PageSize: 5})
		if n, ok := rows.Count(); !ok || n != 14 {
			t.Errorf("Count() = %d, %v, want 14", n, ok)
		}
		got := 0
		for rows.Next(ctx) {
			r := rows.Row()
			if _, ok := r["lastname"]; ok {
				t.Fatal("$select ignored")
			}
			if r.ETag() == "" {
				t.Fatal("row without etag")
			}
			got++
		}
		if got != 14 || rows.Pages() != 3 || rows.Err() != nil {
			t.Errorf("%d rows in %d pages (%v), want 14 in 3", got, rows.Pages(), rows.Err())
		}
	})
	t.Run("formatted values", func(t *testing.T) {
		rows := b.client.Query(ctx, "contacts", Query{Select: []string{"statecode", "_ownerid_value"}, Top: 1, FormattedValues: true})
		if !rows.Next(ctx) {
			t.Fatal(rows.Err())
		}
		r := rows.Row()
		if s, _ := r.Formatted("statecode"); s != "Active" {
			t.Errorf("statecode label %q", s)
		}
		if s, _ := r.Formatted("ownerid"); s != "crmsync application user" {
			t.Errorf("owner name %q", s)
		}
	})
	t.Run("bad filter", func(t *testing.T) {
		rows := b.client.Query(ctx, "contacts", Query{Filter: "lastname eq 5"})
		if rows.Next(ctx) {
			t.Fatal("Next is true after an error")
		}
		ae := wantAPIError(t, rows.Err(), http.StatusBadRequest, "0x80060888")
		if !strings.Contains(ae.Message, "incompatible types") || !strings.HasPrefix(rows.Err().Error(), "query contacts: ") {
			t.Errorf("err = %v", rows.Err())
		}
	})
}

func TestQueryPagesThroughALargeTableOnePageAtATime(t *testing.T) {
	t.Parallel()
	const total, pageSize = 25_000, 5000
	b := setup(t, nil)
	ids := seed(t, b.e, total)
	ctx := t.Context()

	rows := b.client.Query(ctx, "contacts", Query{Select: []string{"contactid", "emailaddress1"}, PageSize: pageSize})
	if rows.Pages() != 1 {
		t.Fatalf("Query fetched %d pages before the first Next, want 1", rows.Pages())
	}
	seen := make(map[string]int, total)
	n := 0
	for rows.Next(ctx) {
		// Page k is fetched only when row k·5000 is asked for, and the iterator never
		// holds more than the current page.
		if want := n/pageSize + 1; rows.Pages() != want {
			t.Fatalf("at row %d: %d pages fetched, want %d", n, rows.Pages(), want)
		}
		if len(rows.page) > pageSize {
			t.Fatalf("at row %d: holding %d rows", n, len(rows.page))
		}
		held := 0
		if n%997 == 0 { // counting is O(page); sample it
			for _, r := range rows.page {
				if r != nil {
					held++
				}
			}
			if want := pageSize - n%pageSize - 1; held != want {
				t.Fatalf("at row %d: %d unread rows held, want %d", n, held, want)
			}
		}
		id, _ := rows.Row().String("contactid")
		seen[id]++
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != total || rows.Pages() != total/pageSize {
		t.Errorf("%d rows in %d pages, want %d in %d", n, rows.Pages(), total, total/pageSize)
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Fatalf("row %s arrived %d times", id, seen[id])
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct ids, want %d", len(seen), total)
	}
}

func TestQueryRetriesAPage(t *testing.T) {
	t.Parallel()
	// The second page fails once with 503; the iterator retries it and goes on.
	e := emulator.New(emulator.Config{})
	seed(t, e, 7)
	var failed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.RawQuery, "skiptoken") && failed.CompareAndSwap(false, true) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"0x80040216","message":"busy"}}`))
			return
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	clk := newFakeClock()
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret, Now: clk.Now, Sleep: clk.Sleep, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rows := c.Query(t.Context(), "contacts", Query{PageSize: 4})
	n := 0
	for rows.Next(t.Context()) {
		n++
	}
	if rows.Err() != nil || n != 7 || len(clk.Sleeps()) != 1 {
		t.Errorf("%d rows, err %v, sleeps %v; want 7 rows after one retry", n, rows.Err(), clk.Sleeps())
	}
}

func TestQueryRefusesANextLinkToAnotherHost(t *testing.T) {
	t.Parallel()
	e := emulator.New(emulator.Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"value":[{"contactid":"x"}],"@odata.nextLink":"https://evil.example/api/data/v9.2/contacts?$skiptoken=1"}`))
			return
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(Config{OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	rows := c.Query(t.Context(), "contacts", Query{})
	for rows.Next(t.Context()) {
	}
	if rows.Err() == nil || !strings.Contains(rows.Err().Error(), "evil.example") {
		t.Errorf("err = %v", rows.Err())
	}
}

func TestRowHelpers(t *testing.T) {
	t.Parallel()
	var r Row
	if err := decodeJSON(strings.NewReader(`{"@odata.etag":"W/\"7\"","n":42,"f":1.5,"big":9007199254740993,"b":true,"s":"x",
		"d":"2026-11-29T07:00:00Z","day":"2026-11-29","_parentcustomerid_value":"abc",
		"_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname":"account","_ownerid_value":null}`), &r); err != nil {
		t.Fatal(err)
	}
	if n, ok := r.Int("n"); n != 42 || !ok {
		t.Errorf("Int = %d %v", n, ok)
	}
	if n, ok := r.Int("big"); n != 9007199254740993 || !ok {
		t.Errorf("Int(big) = %d %v: precision lost", n, ok)
	}
	if _, ok := r.Int("f"); ok {
		t.Error("Int of 1.5 succeeded")
	}
	if f, _ := r.Float("f"); f != 1.5 {
		t.Errorf("Float = %v", f)
	}
	if d, _ := r.Time("d"); !d.Equal(time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("Time = %v", d)
	}
	if d, _ := r.Time("day"); !d.Equal(time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Time(date) = %v", d)
	}
	if id, ok := r.Lookup("parentcustomerid"); id != "abc" || !ok || r.LookupTable("parentcustomerid") != "account" {
		t.Errorf("Lookup = %q %v %q", id, ok, r.LookupTable("parentcustomerid"))
	}
	if _, ok := r.Lookup("ownerid"); ok {
		t.Error("Lookup of a null lookup succeeded")
	}
	if r.ETag() != `W/"7"` {
		t.Errorf("ETag = %q", r.ETag())
	}
	if _, ok := r.String("n"); ok {
		t.Error("String of a number succeeded")
	}
}

func TestIDFromEntityID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		h, want string
		ok      bool
	}{
		{"https://org.crm4.dynamics.com/api/data/v9.2/contacts(6D81597F-0F9F-E711-8122-000D3AA2331C)", "6d81597f-0f9f-e711-8122-000d3aa2331c", true},
		{"http://127.0.0.1:8090/api/data/v9.2/lists(00000000-0000-0000-0000-000000000001)", "00000000-0000-0000-0000-000000000001", true},
		{"", "", false},
		{"https://x/contacts(abc)", "", false},
		{"https://x/contacts(6d81597f-0f9f-e711-8122-000d3aa2331c)/x", "", false},
	}
	for _, tt := range tests {
		if got, ok := idFromEntityID(tt.h); got != tt.want || ok != tt.ok {
			t.Errorf("idFromEntityID(%q) = %q, %v", tt.h, got, ok)
		}
	}
}

// BenchmarkPagedRead reads 10,000 contacts from the emulator in two pages of 5000,
// HTTP and JSON on both sides included.
func BenchmarkPagedRead(b *testing.B) {
	const total = 10_000
	tb := setup(b, func(e *emulator.Config, c *Config) {
		e.Logger, c.Logger = nil, nil
	})
	seed(b, tb.e, total)
	ctx := b.Context()
	for _, bc := range []struct {
		name string
		sel  []string
	}{
		{"select5", []string{"contactid", "fullname", "emailaddress1", "donotbulkemail", "modifiedon"}},
		{"allcolumns", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rows := tb.client.Query(ctx, "contacts", Query{Select: bc.sel, PageSize: MaxPageSize})
				n := 0
				for rows.Next(ctx) {
					n++
				}
				if rows.Err() != nil || n != total {
					b.Fatalf("%d rows, %v", n, rows.Err())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/total, "ns/row")
		})
	}
}
