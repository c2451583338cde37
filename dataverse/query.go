package dataverse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxPageSize is the largest page the Web API returns, and the default (§4.4).
const MaxPageSize = 5000

// Query is what Client.Query asks for; the zero value reads every column of every
// row in pages of MaxPageSize.
type Query struct {
	// Select names the columns to read (lookups as "_<name>_value"); all when empty,
	// which costs Dataverse far more.
	Select []string
	// Filter is an OData $filter; quote string literals with QuoteString.
	Filter string
	// OrderBy items such as "createdon desc"; Dataverse orders by primary key
	// otherwise.
	OrderBy []string
	// Top limits the rows read in all; 0 reads all of them.
	Top int
	// PageSize is the rows per request (Prefer: odata.maxpagesize); default and at
	// most MaxPageSize.
	PageSize int
	// Count asks for @odata.count (Rows.Count); Dataverse caps it at 5000.
	Count bool
	// FormattedValues asks for display values (option labels, lookup names), read
	// with Row.Formatted.
	FormattedValues bool
	// Expand reads related rows through single-valued navigation properties with
	// each row, e.g. "parentcustomerid_account($select=name)"; the related row (or
	// nil) is then under the property's name, read with Row.Expanded.
	Expand []string
}

// QuoteString makes s an OData string literal, doubling single quotes, so values
// from users or the eMS cannot change a $filter.
func QuoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Rows streams the result of a query page by page: it follows @odata.nextLink (or,
// for FetchXML, the paging cookie) only when the current page is used up and never
// holds more than one page, so a 100,000-row table reads in constant memory.
type Rows struct {
	c        *Client
	set      string
	next     string // URL of the next page; "" after the last
	prefer   string
	top      int // rows left to hand out when Query.Top was set; -1 without limit
	page     []Row
	i        int
	row      Row
	err      error
	pages    int
	count    int64
	hasCount bool
	// follow turns an answer into the URL of the next page ("" after the last);
	// nil follows @odata.nextLink. FetchXML pages by cookie, change tracking also
	// keeps the delta link.
	follow func(p *page) (string, error)
}

// Query starts reading entitySet; the first page is fetched at once, so Count is
// known when Query returns and a bad filter shows as Err after the first Next.
func (c *Client) Query(ctx context.Context, entitySet string, q Query) *Rows {
	r := &Rows{c: c, set: entitySet, top: -1}
	u, err := c.setURL(entitySet)
	if err != nil {
		r.err = fmt.Errorf("query %s: %w", entitySet, err)
		return r
	}
	var params []string
	add := func(k, v string) { params = append(params, k+"="+odataEscape(v)) }
	if len(q.Select) > 0 {
		add("$select", strings.Join(q.Select, ","))
	}
	if q.Filter != "" {
		add("$filter", q.Filter)
	}
	if len(q.OrderBy) > 0 {
		add("$orderby", strings.Join(q.OrderBy, ","))
	}
	if len(q.Expand) > 0 {
		add("$expand", strings.Join(q.Expand, ","))
	}
	if q.Count {
		add("$count", "true")
	}
	annotations := preferLookupNames
	if q.FormattedValues {
		annotations = `odata.include-annotations="*"`
	}
	pageSize := min(q.PageSize, MaxPageSize)
	if pageSize <= 0 {
		pageSize = MaxPageSize
	}
	switch {
	case q.Top > 0 && q.PageSize <= 0 && q.Top <= MaxPageSize:
		// One page answers it: $top, which Dataverse ignores once maxpagesize is set.
		add("$top", strconv.Itoa(q.Top))
		r.prefer = annotations
	default:
		if q.Top > 0 {
			r.top = q.Top
			pageSize = min(pageSize, q.Top)
		}
		r.prefer = "odata.maxpagesize=" + strconv.Itoa(pageSize) + "," + annotations
	}
	r.next = u
	if len(params) > 0 {
		r.next += "?" + strings.Join(params, "&")
	}
	r.fetch(ctx)
	return r
}

// Next advances to the next row, fetching the next page when the current one is
// used up; it returns false at the end or on an error (see Err).
func (r *Rows) Next(ctx context.Context) bool {
	for {
		if r.err != nil || r.top == 0 {
			r.row = nil
			return false
		}
		if r.i < len(r.page) {
			r.row = r.page[r.i]
			r.page[r.i] = nil // the caller holds it now; the page need not
			r.i++
			if r.top > 0 {
				r.top--
			}
			return true
		}
		if r.next == "" {
			r.page, r.row = nil, nil
			return false
		}
		r.fetch(ctx)
	}
}

// Row is the current row, valid after Next returned true.
func (r *Rows) Row() Row { return r.row }

// Err is the error that ended the iteration, nil at a normal end.
func (r *Rows) Err() error { return r.err }

// Count is @odata.count when Query.Count was set (Dataverse caps it at 5000).
func (r *Rows) Count() (int64, bool) { return r.count, r.hasCount }

// Pages is how many pages were fetched so far, for logs and tests.
func (r *Rows) Pages() int { return r.pages }

// page is one answer of a collection request.
type page struct {
	Value     []Row
	NextLink  string // @odata.nextLink
	Count     *int64 // @odata.count
	DeltaLink string // @odata.deltaLink (change tracking)
	// PagingCookie and MoreRecords are FetchXML's paging annotations.
	PagingCookie string // @Microsoft.Dynamics.CRM.fetchxmlpagingcookie
	MoreRecords  bool   // @Microsoft.Dynamics.CRM.morerecords
}

// decodePage reads a collection answer row by row, so the raw page is never
// buffered whole (encoding/json would hold all of a 5000-row answer before decoding
// it).
func decodePage(r io.Reader, p *page) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	fail := func(err error) error { return fmt.Errorf("decode page: %w", &transportError{err}) }
	if err := expectDelim(dec, '{'); err != nil {
		return fail(err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		switch tok {
		case "value":
			if err := expectDelim(dec, '['); err != nil {
				return fail(err)
			}
			for dec.More() {
				var row Row
				if err := dec.Decode(&row); err != nil {
					return fail(err)
				}
				p.Value = append(p.Value, row)
			}
			if err := expectDelim(dec, ']'); err != nil {
				return fail(err)
			}
		case "@odata.nextLink":
			err = dec.Decode(&p.NextLink)
		case "@odata.count":
			err = dec.Decode(&p.Count)
		case "@odata.deltaLink":
			err = dec.Decode(&p.DeltaLink)
		case "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie":
			err = dec.Decode(&p.PagingCookie)
		case "@Microsoft.Dynamics.CRM.morerecords":
			err = dec.Decode(&p.MoreRecords)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return fail(err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return fail(err)
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}

// fetch replaces the current page with the next one.
func (r *Rows) fetch(ctx context.Context) {
	u := r.next
	r.page, r.i, r.next = nil, 0, ""
	var p page
	_, err := r.c.do(ctx, &request{method: http.MethodGet, url: u, header: http.Header{"Prefer": {r.prefer}},
		decode: func(body io.Reader) error { p = page{}; return decodePage(body, &p) }})
	if err != nil {
		r.err = fmt.Errorf("query %s: %w", r.set, err)
		return
	}
	next := p.NextLink
	if r.follow != nil {
		if next, err = r.follow(&p); err != nil {
			r.err = fmt.Errorf("query %s: %w", r.set, err)
			return
		}
	}
	if next != "" && !sameOrigin(next, r.c.api) {
		// The bearer token must never go to another host.
		r.err = fmt.Errorf("query %s: next page %q leaves %s", r.set, next, r.c.api)
		return
	}
	r.pages++
	r.page, r.next = p.Value, next
	if p.Count != nil {
		r.count, r.hasCount = *p.Count, true
	}
}

// sameOrigin says whether link is under the Web API base URL.
func sameOrigin(link, api string) bool {
	l, err1 := url.Parse(link)
	a, err2 := url.Parse(api)
	return err1 == nil && err2 == nil && strings.EqualFold(l.Scheme, a.Scheme) && strings.EqualFold(l.Host, a.Host) &&
		strings.HasPrefix(l.Path, a.Path)
}

// Row is one row as the Web API returns it: column values by name (numbers as
// json.Number), "@odata.etag", and lookups as "_<name>_value" with their
// annotations. The helpers read typed values without knowing that format.
type Row map[string]any

// String reads a text, memo or GUID column.
func (r Row) String(name string) (string, bool) {
	s, ok := r[name].(string)
	return s, ok
}

// Bool reads a Yes/No column.
func (r Row) Bool(name string) (bool, bool) {
	b, ok := r[name].(bool)
	return b, ok
}

// Int reads a whole-number or choice column (statecode, statuscode).
func (r Row) Int(name string) (int64, bool) {
	switch v := r[name].(type) {
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	case float64:
		return int64(v), v == float64(int64(v))
	case int64:
		return v, true
	case int:
		return int64(v), true
	}
	return 0, false
}

// Float reads a decimal, currency or whole-number column.
func (r Row) Float(name string) (float64, bool) {
	switch v := r[name].(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case int:
		return float64(v), true
	}
	return 0, false
}

// Time reads a date-and-time column (ISO 8601, UTC) or a date-only column
// (midnight UTC).
func (r Row) Time(name string) (time.Time, bool) {
	s, ok := r[name].(string)
	if !ok {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// Expanded returns a related row read through Query.Expand; ok is false when the
// row has none (the lookup is empty) or the property was not expanded.
func (r Row) Expanded(nav string) (Row, bool) {
	m, ok := r[nav].(map[string]any)
	return Row(m), ok
}

// ETag is the row's @odata.etag, for UpdateIfMatch.
func (r Row) ETag() string {
	s, _ := r["@odata.etag"].(string)
	return s
}

// Lookup reads the id a lookup column points at; name is the column
// ("parentcustomerid") or its property ("_parentcustomerid_value").
func (r Row) Lookup(name string) (string, bool) {
	s, ok := r[lookupProperty(name)].(string)
	return s, ok && s != ""
}

// LookupTable is the logical name of the table a lookup points at ("account"),
// which polymorphic lookups need; "" when unknown.
func (r Row) LookupTable(name string) string {
	s, _ := r[lookupProperty(name)+"@Microsoft.Dynamics.CRM.lookuplogicalname"].(string)
	return s
}

// Formatted is a column's display value (option label, lookup name), present when
// the query asked for FormattedValues.
func (r Row) Formatted(name string) (string, bool) {
	if s, ok := r[name+"@OData.Community.Display.V1.FormattedValue"].(string); ok {
		return s, true
	}
	s, ok := r[lookupProperty(name)+"@OData.Community.Display.V1.FormattedValue"].(string)
	return s, ok
}

func lookupProperty(name string) string {
	if strings.HasPrefix(name, "_") && strings.HasSuffix(name, "_value") {
		return name
	}
	return "_" + name + "_value"
}
