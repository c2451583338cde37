package emulator

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxPageSize is both the default and the largest page the Web API returns (§4.4).
const maxPageSize = 5000

// checkQueryOptions refuses system query options a request does not take: $skip as
// Dataverse refuses it, options the emulator lacks as not implemented, and unknown
// ones as the OData parser does. Custom parameters (tag=…) pass.
func checkQueryOptions(r *http.Request, allowed ...string) error {
	for k := range r.URL.Query() {
		if !strings.HasPrefix(k, "$") || slices.Contains(allowed, k) {
			continue
		}
		switch k {
		case "$skip":
			return errorf(http.StatusBadRequest, codeODataBadRequest, "The query parameter $skip is not supported.")
		case "$expand", "$apply", "$search", "$deltatoken", "$compute":
			return errNotImplemented("the query option " + k)
		case "$select", "$filter", "$orderby", "$top", "$count", "$skiptoken":
			return errorf(http.StatusBadRequest, codeODataBadRequest, "The query parameter '%s' is not supported for this request.", k)
		}
		return errorf(http.StatusBadRequest, codeODataBadRequest, "The query parameter '%s' is not supported.", k)
	}
	for _, k := range []string{"fetchXml", "savedQuery", "userQuery"} {
		if r.URL.Query().Has(k) {
			return errNotImplemented("the " + k + " parameter")
		}
	}
	return nil
}

// orderKey is one $orderby item.
type orderKey struct {
	col  *column
	desc bool
}

func parseOrderBy(t *table, v string) ([]orderKey, error) {
	var keys []orderKey
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	for item := range strings.SplitSeq(v, ",") {
		fields := strings.Fields(item)
		if len(fields) == 0 || len(fields) > 2 {
			return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "Syntax error at position %d in '%s'.", len(v), v)
		}
		c, ok := t.readable(fields[0])
		if !ok {
			return nil, errNoProperty(t, fields[0])
		}
		k := orderKey{col: c}
		if len(fields) == 2 {
			switch strings.ToLower(fields[1]) {
			case "asc":
			case "desc":
				k.desc = true
			default:
				return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "Syntax error at position %d in '%s'.", strings.Index(v, fields[1]), v)
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// compareRows orders rows by the $orderby keys, then by primary key, so paging is
// stable. Nulls sort first ascending, as SQL Server sorts them.
func compareRows(t *table, keys []orderKey, a, b *record) int {
	for _, k := range keys {
		c := compareValues(a.vals[k.col.name], b.vals[k.col.name])
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return strings.Compare(a.id, b.id)
}

// cursor is the position after the last row of a page: the $orderby values and the
// primary key of that row. A keyset cursor keeps paging correct while rows are
// added or removed between pages.
type cursor struct {
	page  int
	vals  []any
	id    string
	track int64 // change tracking: the version the initial sync's delta link starts from; 0 when not tracking
}

// compareToCursor orders a row against a cursor the way compareRows orders rows.
func compareToCursor(keys []orderKey, rec *record, cur *cursor) int {
	for i, k := range keys {
		c := compareValues(rec.vals[k.col.name], cur.vals[i])
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return strings.Compare(rec.id, cur.id)
}

// encode renders a cursor as a $skiptoken shaped like Dataverse's paging cookie,
// <cookie pagenumber="2" pagingcookie="…" istracking="False" />; the paging cookie
// is the emulator's own opaque encoding.
func (c *cursor) encode() string {
	parts := make([]string, 0, len(c.vals)+1)
	for _, v := range c.vals {
		parts = append(parts, encodeKeyValue(v))
	}
	parts = append(parts, "r"+c.id)
	raw := strings.Join(parts, "\x1f")
	tracking := `istracking="False"`
	if c.track > 0 {
		tracking = `istracking="True" trackingversion="` + strconv.FormatInt(c.track, 10) + `"`
	}
	return `<cookie pagenumber="` + strconv.Itoa(c.page) + `" pagingcookie="` + base64.RawURLEncoding.EncodeToString([]byte(raw)) + `" ` + tracking + ` />`
}

func decodeCursor(s string, keys []orderKey) (*cursor, bool) {
	page, ok := cookieAttr(s, "pagenumber")
	if !ok {
		return nil, false
	}
	n, err := strconv.Atoi(page)
	if err != nil {
		return nil, false
	}
	enc, ok := cookieAttr(s, "pagingcookie")
	if !ok {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return nil, false
	}
	parts := strings.Split(string(raw), "\x1f")
	if len(parts) != len(keys)+1 || !strings.HasPrefix(parts[len(parts)-1], "r") {
		return nil, false
	}
	c := &cursor{page: n, id: parts[len(parts)-1][1:]}
	if v, ok := cookieAttr(s, "trackingversion"); ok {
		if c.track, err = strconv.ParseInt(v, 10, 64); err != nil || c.track <= 0 {
			return nil, false
		}
	}
	for _, p := range parts[:len(keys)] {
		v, ok := decodeKeyValue(p)
		if !ok {
			return nil, false
		}
		c.vals = append(c.vals, v)
	}
	return c, true
}

func cookieAttr(s, name string) (string, bool) {
	_, after, ok := strings.Cut(s, name+`="`)
	if !ok {
		return "", false
	}
	v, _, ok := strings.Cut(after, `"`)
	return v, ok
}

// encodeKeyValue writes a stored value with a one-letter type tag.
func encodeKeyValue(v any) string {
	switch v := v.(type) {
	case string:
		return "s" + v
	case bool:
		if v {
			return "b1"
		}
		return "b0"
	case int64:
		return "i" + strconv.FormatInt(v, 10)
	case float64:
		return "f" + strconv.FormatFloat(v, 'g', -1, 64)
	case time.Time:
		return "t" + strconv.FormatInt(v.UnixNano(), 10)
	case ref:
		return "l" + v.table + ":" + v.id
	}
	return "n"
}

func decodeKeyValue(s string) (any, bool) {
	if s == "" {
		return nil, false
	}
	tag, rest := s[0], s[1:]
	switch tag {
	case 'n':
		return nil, true
	case 's':
		return rest, true
	case 'b':
		return rest == "1", true
	case 'i':
		n, err := strconv.ParseInt(rest, 10, 64)
		return n, err == nil
	case 'f':
		f, err := strconv.ParseFloat(rest, 64)
		return f, err == nil
	case 't':
		n, err := strconv.ParseInt(rest, 10, 64)
		return time.Unix(0, n).UTC(), err == nil
	case 'l':
		table, id, ok := strings.Cut(rest, ":")
		return ref{table: table, id: id}, ok
	}
	return nil, false
}

// scope narrows a collection read to the rows a navigation property of one row
// relates to (relationship.go).
type scope struct {
	// path is the URL below the service root that a nextLink repeats:
	// "campaigns(<id>)/campaignlist_association".
	path string
	// rows finds the related rows, called under the emulator's lock; an error
	// (the row does not exist) is the answer.
	rows func() (map[string]*record, error)
}

// list handles GET /<set>: $filter, $orderby, $select, $count and paging. A page is
// odata.maxpagesize rows (default and at most 5000) followed by @odata.nextLink;
// without that preference, $top limits the result to one page of at most $top rows,
// and with it $top is ignored (§4.4). On a tracked table, Prefer:
// odata.track-changes starts change tracking: the last page ends with an
// @odata.deltaLink for the version the first page was read at (changetrack.go).
// With a scope it reads the rows of a navigation property instead, without
// change tracking.
func (e *Emulator) list(w http.ResponseWriter, r *http.Request, t *table, sc *scope) error {
	prefs := parsePrefer(r.Header)
	_, tracking := prefs["odata.track-changes"]
	// Dataverse applies the preference only to entity sets where tracking is enabled.
	tracking = tracking && t.tracked && sc == nil
	path := t.set
	if sc != nil {
		path = sc.path
	}
	if tracking {
		if err := checkTrackingOptions(r); err != nil {
			return err
		}
	}
	if err := checkQueryOptions(r, "$select", "$filter", "$orderby", "$top", "$count", "$skiptoken", "$expand"); err != nil {
		return err
	}
	q := r.URL.Query()
	sel, err := parseSelect(t, q.Get("$select"))
	if err != nil {
		return err
	}
	exp, err := e.parseExpand(t, q.Get("$expand"))
	if err != nil {
		return err
	}
	filter, err := parseFilterNav(t, q.Get("$filter"), e.reg, e.rowOf)
	if err != nil {
		return err
	}
	keys, err := parseOrderBy(t, q.Get("$orderby"))
	if err != nil {
		return err
	}
	top, topSet := 0, q.Has("$top")
	if v := q.Get("$top"); topSet {
		if top, err = strconv.Atoi(v); err != nil || top < 0 {
			return errorf(http.StatusBadRequest, codeODataBadRequest, "Invalid value '%s' for $top query option found. The $top query option requires a non-negative integer value.", v)
		}
	}
	withCount := false
	if v := q.Get("$count"); v != "" {
		switch v {
		case "true":
			withCount = true
		case "false":
		default:
			return errorf(http.StatusBadRequest, codeODataBadRequest, "'%s' is not a valid count option.", v)
		}
	}
	var applied []string
	if tracking {
		applied = append(applied, "odata.track-changes")
	}
	pageSize, paged := maxPageSize, true
	if v, ok := prefs["odata.maxpagesize"]; ok {
		n, err := strconv.Atoi(v)
		if err == nil && n > 0 {
			pageSize = min(n, maxPageSize)
			applied = append(applied, "odata.maxpagesize="+strconv.Itoa(pageSize))
		}
	} else if topSet {
		pageSize, paged = min(top, maxPageSize), false
	}
	var cur *cursor
	if v := q.Get("$skiptoken"); v != "" {
		var ok bool
		if cur, ok = decodeCursor(v, keys); !ok {
			return errorf(http.StatusBadRequest, codeODataBadRequest, "The $skiptoken '%s' is not valid for this query.", v)
		}
		if cur.track > 0 && t.tracked && sc == nil && !tracking {
			// A nextLink of an initial sync goes on tracking without the preference.
			tracking = true
			applied = append([]string{"odata.track-changes"}, applied...)
		}
	}
	ann := parseAnnotations(prefs["odata.include-annotations"])
	if ann.any() {
		applied = append(applied, `odata.include-annotations="`+prefs["odata.include-annotations"]+`"`)
	}

	e.mu.RLock()
	defer e.mu.RUnlock()
	snapshot := e.version
	if cur != nil && cur.track > 0 {
		snapshot = cur.track
	}
	candidates := e.rows[t.logical]
	if sc != nil {
		if candidates, err = sc.rows(); err != nil {
			return err
		}
	}
	matched := make([]*record, 0, len(candidates))
	for _, rec := range candidates {
		if filter == nil || filter.eval(rec) {
			matched = append(matched, rec)
		}
	}
	slices.SortFunc(matched, func(a, b *record) int { return compareRows(t, keys, a, b) })
	total := len(matched)
	start, page := 0, 1
	if cur != nil {
		start, _ = slices.BinarySearchFunc(matched, cur, func(rec *record, c *cursor) int {
			if compareToCursor(keys, rec, c) <= 0 {
				return -1
			}
			return 1
		})
		page = cur.page
	}
	end := min(start+pageSize, len(matched))
	rows := matched[start:end]

	b := make([]byte, 0, 512+len(rows)*1024)
	b = append(b, `{"@odata.context":`...)
	b = appendString(b, contextURL(r, t, sel, false))
	if withCount {
		b = append(b, `,"@odata.count":`...)
		b = strconv.AppendInt(b, int64(min(total, maxPageSize)), 10)
		if total > maxPageSize {
			b = append(b, `,"@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded":true`...)
		}
	}
	b = append(b, `,"value":[`...)
	for i, rec := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		if len(exp) == 0 {
			b = e.appendRow(b, t, rec, sel, ann)
			continue
		}
		b = append(b, '{')
		b = e.appendRowFields(b, t, rec, sel, ann)
		b = e.appendExpansions(b, rec, exp, ann)
		b = append(b, '}')
	}
	b = append(b, ']')
	if paged && end < len(matched) {
		last := rows[len(rows)-1]
		next := &cursor{page: page + 1, id: last.id}
		if tracking {
			next.track = snapshot
		}
		for _, k := range keys {
			next.vals = append(next.vals, last.vals[k.col.name])
		}
		b = append(b, `,"@odata.nextLink":`...)
		b = appendString(b, withParams(r, path, []string{"$skiptoken"}, "$skiptoken", next.encode()))
	} else if tracking {
		b = append(b, `,"@odata.deltaLink":`...)
		b = appendString(b, withParams(r, path, []string{"$skiptoken", "$deltatoken"}, "$deltatoken", deltaToken(snapshot, e.now())))
	}
	b = append(b, '}')
	if len(applied) > 0 {
		w.Header().Set("Preference-Applied", strings.Join(applied, ","))
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// count handles GET /<set>/$count, which Dataverse caps at 5000 like @odata.count.
func (e *Emulator) count(w http.ResponseWriter, r *http.Request, t *table) error {
	if err := checkQueryOptions(r, "$filter"); err != nil {
		return err
	}
	filter, err := parseFilterNav(t, r.URL.Query().Get("$filter"), e.reg, e.rowOf)
	if err != nil {
		return err
	}
	e.mu.RLock()
	n := 0
	for _, rec := range e.rows[t.logical] {
		if filter == nil || filter.eval(rec) {
			n++
		}
	}
	e.mu.RUnlock()
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(strconv.Itoa(min(n, maxPageSize))))
	return nil
}

// rowOf is the rowFunc of $filter navigation paths; callers hold e.mu.
func (e *Emulator) rowOf(r ref) *record { return e.rows[r.table][r.id] }
