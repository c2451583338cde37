package emulator

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FetchXML (reference/dataverse.md §4.4): GET /<set>?fetchXml=<url-encoded xml>.
// The emulator runs this subset and refuses the rest with a clear error:
//
//   - <fetch> with top, or count (at most 5000, the default), page and
//     paging-cookie; distinct; returntotalrecordcount;
//   - one <entity> with <attribute>, <all-attributes> (no attribute element at all
//     also reads every column), <order attribute descending>, <filter type="and|or">
//     nested freely;
//   - <condition attribute operator value> with eq, ne, gt, ge, lt, le, like and
//     not-like (% and _), begins-with, ends-with, in and not-in (<value> children),
//     null and not-null, and entityname="<alias>" for a linked table's column;
//   - <link-entity name from to alias link-type="inner|outer"> one level deep, with
//     its own attributes and filter; a main row joins every matching linked row.
//
// String comparisons ignore case, as Dataverse's collation does. Rows come back
// as in the Web API with null columns left out; a linked column is named
// "<alias>.<column>" (an unaliased link is "<table><n>"). With Prefer:
// odata.include-annotations="*" (or naming them) the answer carries
// @Microsoft.Dynamics.CRM.morerecords and, when there are more, the
// @Microsoft.Dynamics.CRM.fetchxmlpagingcookie whose pagingcookie attribute is
// URL-encoded twice: <cookie page="N"><col last=… first=…/>…<pk last="{…}"
// first="{…}"/></cookie>, ordered columns first. Given back in paging-cookie,
// the next page starts after the row it names (keyset); without it a page is
// counted from the start. Paging keys on the main row, so a join that repeats
// a main row across a page boundary loses the repeats, as Dataverse's cookie
// paging does with 1:N links.

// Errors of FetchXML. QueryBuilderNoAttribute's code is Dataverse's; malformed
// queries get InvalidArgument (the emulator's choice).
const codeNoAttribute = "0x80041103"

// fetchQuery is a parsed FetchXML query.
type fetchQuery struct {
	t          *table
	attrs      []*column // nil with all
	all        bool
	filter     fetchNode // nil: every row
	links      []*fetchLink
	orders     []orderKey
	top        int // 0: none
	count      int
	page       int
	cookie     string // the paging-cookie attribute (inner cookie XML)
	distinct   bool
	totalCount bool
}

// fetchLink is one <link-entity>: linked rows whose from column equals the main
// row's to column.
type fetchLink struct {
	t        *table
	from, to *column
	name     string // prefix of its columns in the result
	outer    bool
	attrs    []*column
	all      bool
	filter   fetchNode
	index    int
}

// joined is one result row: a main row and, per link, its linked row (nil for an
// outer link without a match).
type joined struct {
	main   *record
	linked []*record
}

// fetchNode is a filter over a joined row.
type fetchNode interface{ eval(j *joined) bool }

type fetchAnd []fetchNode
type fetchOr []fetchNode

func (n fetchAnd) eval(j *joined) bool {
	for _, c := range n {
		if !c.eval(j) {
			return false
		}
	}
	return true
}

func (n fetchOr) eval(j *joined) bool {
	for _, c := range n {
		if c.eval(j) {
			return true
		}
	}
	return len(n) == 0
}

// fetchCond is one <condition>.
type fetchCond struct {
	link int // -1: the main row; else the index of the link
	col  *column
	op   string
	vals []any    // literals, converted to the column's stored type
	like [][]rune // lower-cased patterns of like and friends
}

func (c fetchCond) eval(j *joined) bool {
	row := j.main
	if c.link >= 0 {
		row = j.linked[c.link]
	}
	var v any
	if row != nil {
		v = row.vals[c.col.name]
	}
	switch c.op {
	case "null":
		return v == nil
	case "not-null":
		return v != nil
	}
	if v == nil {
		return false // SQL: a comparison with NULL is never true
	}
	switch c.op {
	case "like", "begins-with", "ends-with":
		s, ok := v.(string)
		return ok && likeMatch([]rune(strings.ToLower(s)), c.like[0])
	case "not-like":
		s, ok := v.(string)
		return ok && !likeMatch([]rune(strings.ToLower(s)), c.like[0])
	case "in", "not-in":
		in := false
		for _, lit := range c.vals {
			if compareValues(v, lit) == 0 {
				in = true
				break
			}
		}
		return in == (c.op == "in")
	}
	cmp := compareValues(v, c.vals[0])
	switch c.op {
	case "eq":
		return cmp == 0
	case "ne":
		return cmp != 0
	case "gt":
		return cmp > 0
	case "ge":
		return cmp >= 0
	case "lt":
		return cmp < 0
	}
	return cmp <= 0
}

// likeMatch is SQL LIKE on lower-cased runes: % any run, _ one character.
func likeMatch(s, p []rune) bool {
	si, pi, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '_' || p[pi] == s[si]):
			si++
			pi++
		case pi < len(p) && p[pi] == '%':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '%' {
		pi++
	}
	return pi == len(p)
}

// The FetchXML document as encoding/xml reads it.
type (
	xFetch struct {
		XMLName     xml.Name  `xml:"fetch"`
		Top         string    `xml:"top,attr"`
		Count       string    `xml:"count,attr"`
		Page        string    `xml:"page,attr"`
		Cookie      string    `xml:"paging-cookie,attr"`
		Distinct    string    `xml:"distinct,attr"`
		Aggregate   string    `xml:"aggregate,attr"`
		ReturnTotal string    `xml:"returntotalrecordcount,attr"`
		Entities    []xEntity `xml:"entity"`
	}
	xEntity struct {
		Name       string    `xml:"name,attr"`
		From       string    `xml:"from,attr"`
		To         string    `xml:"to,attr"`
		Alias      string    `xml:"alias,attr"`
		LinkType   string    `xml:"link-type,attr"`
		Attributes []xAttr   `xml:"attribute"`
		All        []xEmpty  `xml:"all-attributes"`
		Orders     []xOrder  `xml:"order"`
		Filters    []xFilter `xml:"filter"`
		Links      []xEntity `xml:"link-entity"`
	}
	xEmpty struct{}
	xAttr  struct {
		Name      string `xml:"name,attr"`
		Alias     string `xml:"alias,attr"`
		Aggregate string `xml:"aggregate,attr"`
	}
	xOrder struct {
		Attribute  string `xml:"attribute,attr"`
		Alias      string `xml:"alias,attr"`
		Descending string `xml:"descending,attr"`
	}
	xFilter struct {
		Type       string    `xml:"type,attr"`
		Conditions []xCond   `xml:"condition"`
		Filters    []xFilter `xml:"filter"`
	}
	xCond struct {
		Attribute  string   `xml:"attribute,attr"`
		Operator   string   `xml:"operator,attr"`
		Value      *string  `xml:"value,attr"`
		EntityName string   `xml:"entityname,attr"`
		Values     []string `xml:"value"`
	}
)

// fetchError is a 400 about the query.
func fetchError(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, codeInvalidArgument, format, args...)
}

// parseFetch compiles FetchXML against the schema.
func parseFetch(reg *registry, src string) (*fetchQuery, error) {
	var doc xFetch
	if err := xml.Unmarshal([]byte(src), &doc); err != nil {
		return nil, fetchError("The FetchXML is not valid: %s", err)
	}
	if len(doc.Entities) != 1 {
		return nil, fetchError("The FetchXML must have exactly one <entity> element.")
	}
	if doc.Aggregate == "true" || doc.Aggregate == "1" {
		return nil, errNotImplemented("FetchXML aggregates")
	}
	xe := doc.Entities[0]
	t := reg.byName[xe.Name]
	if t == nil {
		return nil, fetchError("The entity with a name = '%s' with namemapping = 'Logical' was not found in the MetadataCache.", xe.Name)
	}
	fq := &fetchQuery{t: t, count: maxPageSize, page: 1, cookie: doc.Cookie,
		distinct: isTrue(doc.Distinct), totalCount: isTrue(doc.ReturnTotal)}
	var err error
	if doc.Top != "" {
		if fq.top, err = strconv.Atoi(doc.Top); err != nil || fq.top < 1 || fq.top > maxPageSize {
			return nil, fetchError("The top attribute '%s' must be a whole number from 1 to %d.", doc.Top, maxPageSize)
		}
		if doc.Count != "" || doc.Page != "" {
			return nil, fetchError("The top attribute cannot be used with the count or page attributes.")
		}
	}
	if doc.Count != "" {
		if fq.count, err = strconv.Atoi(doc.Count); err != nil || fq.count < 1 {
			return nil, fetchError("The count attribute '%s' must be a positive whole number.", doc.Count)
		}
		fq.count = min(fq.count, maxPageSize)
	}
	if doc.Page != "" {
		if fq.page, err = strconv.Atoi(doc.Page); err != nil || fq.page < 1 {
			return nil, fetchError("The page attribute '%s' must be a positive whole number.", doc.Page)
		}
	}
	if fq.attrs, fq.all, err = fetchAttributes(t, xe.Attributes, len(xe.All) > 0); err != nil {
		return nil, err
	}
	if len(xe.Attributes) == 0 && len(xe.All) == 0 {
		fq.all = true
	}
	for _, o := range xe.Orders {
		if o.Alias != "" {
			return nil, errNotImplemented("FetchXML orders by alias")
		}
		c, err := fetchColumn(t, o.Attribute)
		if err != nil {
			return nil, err
		}
		fq.orders = append(fq.orders, orderKey{col: c, desc: isTrue(o.Descending)})
	}
	aliases := map[string]int{}
	for i, xl := range xe.Links {
		if len(xl.Links) > 0 {
			return nil, errNotImplemented("link-entity inside link-entity")
		}
		if len(xl.Orders) > 0 {
			return nil, errNotImplemented("order inside link-entity")
		}
		lt := reg.byName[xl.Name]
		if lt == nil {
			return nil, fetchError("The entity with a name = '%s' with namemapping = 'Logical' was not found in the MetadataCache.", xl.Name)
		}
		link := &fetchLink{t: lt, index: i, name: xl.Alias}
		if link.name == "" {
			link.name = lt.logical + strconv.Itoa(i+1)
		}
		if _, dup := aliases[link.name]; dup {
			return nil, fetchError("The alias '%s' is used twice.", link.name)
		}
		aliases[link.name] = i
		switch xl.LinkType {
		case "", "inner":
		case "outer":
			link.outer = true
		default:
			return nil, errNotImplemented("link-type '" + xl.LinkType + "'")
		}
		if link.from, err = fetchColumn(lt, xl.From); err != nil {
			return nil, err
		}
		if link.to, err = fetchColumn(t, xl.To); err != nil {
			return nil, err
		}
		if link.attrs, link.all, err = fetchAttributes(lt, xl.Attributes, len(xl.All) > 0); err != nil {
			return nil, err
		}
		if link.filter, err = fetchFilters(reg, lt, xl.Filters, i, nil, nil); err != nil {
			return nil, err
		}
		fq.links = append(fq.links, link)
	}
	if fq.filter, err = fetchFilters(reg, t, xe.Filters, -1, aliases, fq.links); err != nil {
		return nil, err
	}
	return fq, nil
}

func isTrue(s string) bool { return s == "true" || s == "1" }

// fetchColumn finds a readable column by logical name.
func fetchColumn(t *table, name string) (*column, error) {
	c := t.byName[name]
	if c == nil || c.secret {
		return nil, errorf(http.StatusBadRequest, codeNoAttribute, "'%s' entity doesn't contain attribute with Name = '%s' and NameMapping = 'Logical'.", t.logical, name)
	}
	return c, nil
}

// fetchAttributes reads <attribute> elements.
func fetchAttributes(t *table, xs []xAttr, all bool) ([]*column, bool, error) {
	if all {
		return nil, true, nil
	}
	var cols []*column
	for _, a := range xs {
		if a.Aggregate != "" {
			return nil, false, errNotImplemented("FetchXML aggregates")
		}
		c, err := fetchColumn(t, a.Name)
		if err != nil {
			return nil, false, err
		}
		if !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
	}
	return cols, false, nil
}

// fetchFilters compiles the <filter> elements of an entity (joined with and);
// link is the index conditions refer to (-1 for the main entity), aliases and
// links let main conditions name a linked column through entityname.
func fetchFilters(reg *registry, t *table, xs []xFilter, link int, aliases map[string]int, links []*fetchLink) (fetchNode, error) {
	var nodes fetchAnd
	for _, xf := range xs {
		n, err := fetchFilter(reg, t, xf, link, aliases, links)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	switch len(nodes) {
	case 0:
		return nil, nil
	case 1:
		return nodes[0], nil
	}
	return nodes, nil
}

func fetchFilter(reg *registry, t *table, xf xFilter, link int, aliases map[string]int, links []*fetchLink) (fetchNode, error) {
	var nodes []fetchNode
	for _, xc := range xf.Conditions {
		c, err := fetchCondition(t, xc, link, aliases, links)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, c)
	}
	for _, inner := range xf.Filters {
		n, err := fetchFilter(reg, t, inner, link, aliases, links)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	switch xf.Type {
	case "", "and":
		return fetchAnd(nodes), nil
	case "or":
		return fetchOr(nodes), nil
	}
	return nil, fetchError("The filter type '%s' is not valid; use and or or.", xf.Type)
}

// fetchCondition compiles one <condition>.
func fetchCondition(t *table, xc xCond, link int, aliases map[string]int, links []*fetchLink) (fetchNode, error) {
	c := fetchCond{link: link, op: xc.Operator}
	if xc.EntityName != "" {
		i, ok := aliases[xc.EntityName]
		if !ok {
			return nil, fetchError("The entityname '%s' of a condition names no link-entity alias.", xc.EntityName)
		}
		c.link, t = i, links[i].t
	}
	col, err := fetchColumn(t, xc.Attribute)
	if err != nil {
		return nil, err
	}
	c.col = col
	var raw []string
	if xc.Value != nil {
		raw = append(raw, *xc.Value)
	}
	raw = append(raw, xc.Values...)
	want := 1
	switch c.op {
	case "null", "not-null":
		want = 0
	case "in", "not-in":
		want = -1
	case "eq", "ne", "gt", "ge", "lt", "le", "like", "not-like", "begins-with", "ends-with":
	default:
		return nil, fetchError("The condition operator '%s' is not valid (the emulator knows eq, ne, gt, ge, lt, le, like, not-like, begins-with, ends-with, in, not-in, null, not-null).", c.op)
	}
	switch {
	case want == 0 && len(raw) > 0:
		return nil, fetchError("The condition operator '%s' takes no value.", c.op)
	case want == 1 && len(raw) != 1:
		return nil, fetchError("The condition operator '%s' on '%s' takes exactly one value.", c.op, xc.Attribute)
	case want == -1 && len(raw) == 0:
		return nil, fetchError("The condition operator '%s' on '%s' needs at least one <value>.", c.op, xc.Attribute)
	}
	switch c.op {
	case "like", "not-like", "begins-with", "ends-with":
		if col.typ != typeString && col.typ != typeMemo && col.typ != typeEntityName {
			return nil, fetchError("The condition operator '%s' needs a text column; '%s' is not one.", c.op, xc.Attribute)
		}
		p := strings.ToLower(raw[0])
		switch c.op {
		case "begins-with":
			p += "%"
		case "ends-with":
			p = "%" + p
		}
		c.like = [][]rune{[]rune(p)}
		return c, nil
	}
	for _, s := range raw {
		v, ok := fetchValue(col, s)
		if !ok {
			return nil, fetchError("The value '%s' of the condition on '%s' is not a valid %s.", s, xc.Attribute, col.typ.edm())
		}
		c.vals = append(c.vals, v)
	}
	return c, nil
}

// fetchValue converts a FetchXML literal to the stored type of its column.
func fetchValue(c *column, s string) (any, bool) {
	s = strings.TrimSpace(s)
	switch c.typ {
	case typeString, typeMemo, typeEntityName:
		return s, true
	case typeBool:
		switch strings.ToLower(s) {
		case "1", "true":
			return true, true
		case "0", "false":
			return false, true
		}
	case typeInt, typeBigInt, typeChoice, typeState, typeStatus:
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	case typeDecimal, typeMoney:
		f, err := strconv.ParseFloat(s, 64)
		return f, err == nil
	case typeDateTime, typeDateOnly:
		return parseTime(s, c.typ == typeDateOnly)
	case typeGUID, typeLookup:
		return parseGUID(strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}"))
	}
	return nil, false
}

// linkKey makes equal join values equal map keys: lookups by id, strings
// without regard to case.
func linkKey(v any) string {
	switch v := v.(type) {
	case ref:
		return v.id
	case string:
		return strings.ToLower(v)
	}
	return encodeKeyValue(v)
}

// evalFetchLocked runs a query and returns every matching joined row in order;
// callers hold e.mu.
func (e *Emulator) evalFetchLocked(fq *fetchQuery) []joined {
	type linkIndex map[string][]*record
	indexes := make([]linkIndex, len(fq.links))
	for i, l := range fq.links {
		idx := linkIndex{}
		probe := joined{linked: make([]*record, len(fq.links))}
		for _, rec := range e.rows[l.t.logical] {
			v := rec.vals[l.from.name]
			if v == nil {
				continue
			}
			if l.filter != nil {
				probe.linked[i] = rec
				if !l.filter.eval(&probe) {
					continue
				}
			}
			k := linkKey(v)
			idx[k] = append(idx[k], rec)
		}
		indexes[i] = idx
	}
	var out []joined
	for _, rec := range e.rows[fq.t.logical] {
		combos := []joined{{main: rec, linked: make([]*record, len(fq.links))}}
		for i, l := range fq.links {
			var matches []*record
			if v := rec.vals[l.to.name]; v != nil {
				matches = indexes[i][linkKey(v)]
			}
			if len(matches) == 0 {
				if !l.outer {
					combos = nil
					break
				}
				continue
			}
			next := make([]joined, 0, len(combos)*len(matches))
			for _, c := range combos {
				for _, m := range matches {
					linked := slices.Clone(c.linked)
					linked[i] = m
					next = append(next, joined{main: rec, linked: linked})
				}
			}
			combos = next
		}
		for _, c := range combos {
			if fq.filter == nil || fq.filter.eval(&c) {
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b joined) int {
		if c := compareRows(fq.t, fq.orders, a.main, b.main); c != 0 {
			return c
		}
		for i := range a.linked {
			if c := strings.Compare(recID(a.linked[i]), recID(b.linked[i])); c != 0 {
				return c
			}
		}
		return 0
	})
	if fq.distinct {
		seen := map[string]bool{}
		kept := out[:0]
		for _, j := range out {
			k := j.main.id
			for i, l := range fq.links {
				if l.all || len(l.attrs) > 0 {
					k += "|" + recID(j.linked[i])
				}
			}
			if !seen[k] {
				seen[k] = true
				kept = append(kept, j)
			}
		}
		out = kept
	}
	return out
}

func recID(r *record) string {
	if r == nil {
		return ""
	}
	return r.id
}

// fetchXML handles GET /<set>?fetchXml=….
func (e *Emulator) fetchXML(w http.ResponseWriter, r *http.Request, t *table) error {
	q := r.URL.Query()
	for k := range q {
		if k != "fetchXml" && strings.HasPrefix(k, "$") {
			return errorf(http.StatusBadRequest, codeODataBadRequest, "The query parameter '%s' cannot be combined with fetchXml.", k)
		}
	}
	fq, err := parseFetch(e.reg, q.Get("fetchXml"))
	if err != nil {
		return err
	}
	if fq.t != t {
		return fetchError("The FetchXML queries '%s', but the request is for the entity set '%s'.", fq.t.logical, t.set)
	}
	prefs := parsePrefer(r.Header)
	ann := parseAnnotations(prefs["odata.include-annotations"])

	e.mu.RLock()
	defer e.mu.RUnlock()
	all := e.evalFetchLocked(fq)
	rows, more, err := fq.pageOf(all)
	if err != nil {
		return err
	}

	b := make([]byte, 0, 512+len(rows)*512)
	b = append(b, `{"@odata.context":`...)
	b = appendString(b, contextURL(r, t, nil, false))
	if fq.totalCount && ann.want("Microsoft.Dynamics.CRM.totalrecordcount") {
		b = append(b, `,"@Microsoft.Dynamics.CRM.totalrecordcount":`...)
		b = strconv.AppendInt(b, int64(min(len(all), maxPageSize)), 10)
		b = append(b, `,"@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded":`...)
		b = strconv.AppendBool(b, len(all) > maxPageSize)
	}
	if more && len(rows) > 0 && ann.want("Microsoft.Dynamics.CRM.fetchxmlpagingcookie") {
		b = append(b, `,"@Microsoft.Dynamics.CRM.fetchxmlpagingcookie":`...)
		b = appendString(b, fq.nextCookie(rows))
	}
	if ann.want("Microsoft.Dynamics.CRM.morerecords") {
		b = append(b, `,"@Microsoft.Dynamics.CRM.morerecords":`...)
		b = strconv.AppendBool(b, more)
	}
	b = append(b, `,"value":[`...)
	for i := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.appendFetchRow(b, fq, &rows[i], ann)
	}
	b = append(b, "]}"...)
	if ann.any() {
		w.Header().Set("Preference-Applied", `odata.include-annotations="`+prefs["odata.include-annotations"]+`"`)
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// pageOf cuts the requested page out of all rows and says whether more follow:
// top; or count rows after the paging cookie's row; or page number · count.
func (fq *fetchQuery) pageOf(all []joined) ([]joined, bool, error) {
	if fq.top > 0 {
		return all[:min(fq.top, len(all))], false, nil
	}
	start := (fq.page - 1) * fq.count
	if fq.cookie != "" && fq.page > 1 {
		cur, err := fq.parseCookie()
		if err != nil {
			return nil, false, err
		}
		start, _ = slices.BinarySearchFunc(all, cur, func(j joined, c *cursor) int {
			if compareToCursor(fq.orders, j.main, c) <= 0 {
				return -1
			}
			return 1
		})
	}
	start = min(start, len(all))
	end := min(start+fq.count, len(all))
	return all[start:end], end < len(all), nil
}

// nextCookie is the fetchxmlpagingcookie annotation after a page: the position of
// its last row (and first, as Dataverse writes it), URL-encoded twice.
func (fq *fetchQuery) nextCookie(rows []joined) string {
	first, last := rows[0].main, rows[len(rows)-1].main
	var in strings.Builder
	in.WriteString(`<cookie page="` + strconv.Itoa(fq.page) + `">`)
	for _, o := range fq.orders {
		in.WriteString("<" + o.col.name)
		if v := last.vals[o.col.name]; v != nil {
			in.WriteString(` last="` + xmlAttr(cookieValue(v)) + `"`)
		}
		if v := first.vals[o.col.name]; v != nil {
			in.WriteString(` first="` + xmlAttr(cookieValue(v)) + `"`)
		}
		in.WriteString(" />")
	}
	in.WriteString("<" + fq.t.pk + ` last="{` + strings.ToUpper(last.id) + `}" first="{` + strings.ToUpper(first.id) + `}" />`)
	in.WriteString("</cookie>")
	twice := cookieEscape(cookieEscape(in.String()))
	return `<cookie pagenumber="` + strconv.Itoa(fq.page+1) + `" pagingcookie="` + twice + `" istracking="False" />`
}

// cookieEscape URL-encodes as .NET's HttpUtility does in Dataverse's cookies:
// spaces as %20, lower-case hex digits.
func cookieEscape(s string) string {
	esc := []byte(strings.ReplaceAll(url.QueryEscape(s), "+", "%20"))
	for i := 0; i+2 < len(esc); i++ {
		if esc[i] == '%' {
			esc[i+1], esc[i+2] = lowerHex(esc[i+1]), lowerHex(esc[i+2])
			i += 2
		}
	}
	return string(esc)
}

func lowerHex(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// cookieValue writes an ordered column's value in the cookie.
func cookieValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		if v {
			return "1"
		}
		return "0"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	case ref:
		return "{" + strings.ToUpper(v.id) + "}"
	}
	return ""
}

func xmlAttr(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), `"`, "&quot;")
}

// parseCookie reads the paging-cookie attribute into a keyset cursor. A cookie
// that does not name the query's order columns and primary key is refused.
func (fq *fetchQuery) parseCookie() (*cursor, error) {
	bad := fetchError("The paging-cookie '%s' is not valid for this query.", fq.cookie)
	dec := xml.NewDecoder(strings.NewReader(fq.cookie))
	var elems []xml.StartElement
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, bad
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local != "cookie" {
			elems = append(elems, se)
		}
	}
	if len(elems) != len(fq.orders)+1 {
		return nil, bad
	}
	attr := func(se xml.StartElement, name string) (string, bool) {
		for _, a := range se.Attr {
			if a.Name.Local == name {
				return a.Value, true
			}
		}
		return "", false
	}
	cur := &cursor{}
	for i, o := range fq.orders {
		if elems[i].Name.Local != o.col.name {
			return nil, bad
		}
		var v any
		if s, ok := attr(elems[i], "last"); ok {
			if v, ok = fetchValue(o.col, s); !ok {
				return nil, bad
			}
		}
		cur.vals = append(cur.vals, v)
	}
	pk := elems[len(elems)-1]
	s, ok := attr(pk, "last")
	id, okID := parseGUID(strings.Trim(s, "{}"))
	if pk.Name.Local != fq.t.pk || !ok || !okID {
		return nil, bad
	}
	cur.id = id
	return cur, nil
}

// appendFetchRow writes one result row: the main row's non-null selected columns
// (the primary key always) with their annotations, then the linked columns.
func (e *Emulator) appendFetchRow(b []byte, fq *fetchQuery, j *joined, ann annotationFilter) []byte {
	b = append(b, `{"@odata.etag":`...)
	b = appendString(b, j.main.etag())
	cols := fq.attrs
	if fq.all {
		cols = fq.t.columns
	}
	wrote := false
	write := func(c *column, prop string, v any) {
		if ann.any() {
			b = e.appendAnnotations(b, c, prop, v, ann)
		}
		b = append(b, ',')
		b = appendString(b, prop)
		b = append(b, ':')
		b = appendValue(b, c, v)
	}
	for _, c := range cols {
		if v := j.main.vals[c.name]; v != nil && !c.secret {
			write(c, c.property(), v)
			wrote = wrote || c.name == fq.t.pk
		}
	}
	if !wrote {
		write(fq.t.byName[fq.t.pk], fq.t.pk, j.main.id)
	}
	for i, l := range fq.links {
		rec := j.linked[i]
		if rec == nil {
			continue
		}
		lcols := l.attrs
		if l.all {
			lcols = l.t.columns
		}
		for _, c := range lcols {
			if v := rec.vals[c.name]; v != nil && !c.secret {
				write(c, l.name+"."+c.name, v)
			}
		}
	}
	return append(b, '}')
}
