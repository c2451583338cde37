package dataverse

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// FetchXML (reference/dataverse.md §4.4) is Dataverse's own query language; the
// Web API runs it as GET /<set>?fetchXml=<url-encoded xml>. It reaches what
// $filter cannot (joins through link-entity, like patterns) and is what a dynamic
// marketing list stores as its query.

// FetchXML runs a FetchXML query against entitySet (whose table its <entity>
// must name) and streams every row of every page: it sets count (5000 unless the
// query says less) and page, asks for the paging annotations and hands the
// @Microsoft.Dynamics.CRM.fetchxmlpagingcookie of each page — URL-encoded twice —
// back in paging-cookie for the next, so a large result reads in constant memory.
// A query with top is one request. Linked columns read as "<alias>.<column>";
// null columns are absent.
func (c *Client) FetchXML(ctx context.Context, entitySet, fetch string) *Rows {
	r := &Rows{c: c, set: entitySet, top: -1, prefer: `odata.include-annotations="*"`}
	u, err := c.setURL(entitySet)
	if err != nil {
		r.err = fmt.Errorf("fetch %s: %w", entitySet, err)
		return r
	}
	root, err := fetchRoot(fetch)
	if err != nil {
		r.err = fmt.Errorf("fetch %s: %w", entitySet, err)
		return r
	}
	set := map[string]string{}
	pageNo := 1
	if _, ok := root.attr("top"); !ok {
		if n, ok := root.attr("count"); !ok || n == "" {
			set["count"] = strconv.Itoa(MaxPageSize)
		}
		if p, ok := root.attr("page"); ok {
			if pageNo, err = strconv.Atoi(p); err != nil || pageNo < 1 {
				r.err = fmt.Errorf("fetch %s: page %q is not a positive number", entitySet, p)
				return r
			}
		}
		set["page"] = strconv.Itoa(pageNo)
	}
	first, err := root.with(set, nil)
	if err != nil {
		r.err = fmt.Errorf("fetch %s: %w", entitySet, err)
		return r
	}
	r.next = u + "?fetchXml=" + odataEscape(first)
	if _, ok := root.attr("top"); !ok {
		r.follow = func(p *page) (string, error) {
			if !p.MoreRecords || len(p.Value) == 0 {
				return "", nil
			}
			pageNo++
			set := map[string]string{"page": strconv.Itoa(pageNo)}
			drop := []string{"paging-cookie"}
			if p.PagingCookie != "" {
				cookie, next, err := parsePagingCookie(p.PagingCookie)
				if err != nil {
					return "", err
				}
				if next > 0 {
					pageNo = next
					set["page"] = strconv.Itoa(pageNo)
				}
				set["paging-cookie"], drop = cookie, nil
			}
			next, err := root.with(set, drop)
			if err != nil {
				return "", err
			}
			return u + "?fetchXml=" + odataEscape(next), nil
		}
	}
	r.fetch(ctx)
	return r
}

// parsePagingCookie reads the annotation <cookie pagenumber="2" pagingcookie="…"
// istracking="False" />: the inner cookie, decoded twice as §4.4 says, and the
// page it is for (0 when not given).
func parsePagingCookie(annotation string) (string, int, error) {
	var c struct {
		PageNumber   string `xml:"pagenumber,attr"`
		PagingCookie string `xml:"pagingcookie,attr"`
	}
	if err := xml.Unmarshal([]byte(annotation), &c); err != nil {
		return "", 0, fmt.Errorf("read paging cookie %q: %w", annotation, err)
	}
	cookie := c.PagingCookie
	for range 2 {
		var err error
		if cookie, err = url.QueryUnescape(cookie); err != nil {
			return "", 0, fmt.Errorf("read paging cookie %q: %w", annotation, err)
		}
	}
	n, _ := strconv.Atoi(c.PageNumber)
	return cookie, n, nil
}

// fetchDoc is a FetchXML document split around its root <fetch> start tag, so
// its attributes can change while the rest stays byte for byte as written.
type fetchDoc struct {
	before, after string // text before the start tag and after it
	attrs         []xml.Attr
}

// fetchRoot finds the root <fetch> element.
func fetchRoot(fetch string) (*fetchDoc, error) {
	dec := xml.NewDecoder(strings.NewReader(fetch))
	for {
		start := dec.InputOffset()
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no <fetch> element")
		}
		if err != nil {
			return nil, fmt.Errorf("read FetchXML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "fetch" {
				return nil, fmt.Errorf("the root element is <%s>, want <fetch>", t.Name.Local)
			}
			end := int(dec.InputOffset())
			if strings.HasSuffix(fetch[:end], "/>") {
				return nil, errors.New("the <fetch> element is empty")
			}
			return &fetchDoc{before: fetch[:start], after: fetch[end:], attrs: t.Attr}, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("text before the <fetch> element")
			}
		}
	}
}

// attr reads an attribute of <fetch>.
func (d *fetchDoc) attr(name string) (string, bool) {
	for _, a := range d.attrs {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// with renders the document with attributes of <fetch> set and dropped.
func (d *fetchDoc) with(set map[string]string, drop []string) (string, error) {
	var b strings.Builder
	b.WriteString(d.before)
	b.WriteString("<fetch")
	done := map[string]bool{}
	write := func(name, value string) error {
		b.WriteString(" " + name + `="`)
		var esc bytes.Buffer
		if err := xml.EscapeText(&esc, []byte(value)); err != nil {
			return err
		}
		b.Write(esc.Bytes())
		b.WriteString(`"`)
		return nil
	}
	for _, a := range d.attrs {
		name := a.Name.Local
		if a.Name.Space != "" {
			name = a.Name.Space + ":" + name
		}
		v, replaced := set[name]
		switch {
		case slices.Contains(drop, name):
			continue
		case replaced:
			done[name] = true
		default:
			v = a.Value
		}
		if err := write(name, v); err != nil {
			return "", err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(set)) {
		if !done[name] {
			if err := write(name, set[name]); err != nil {
				return "", err
			}
		}
	}
	b.WriteString(">")
	b.WriteString(d.after)
	return b.String(), nil
}

// StaticListMembersFetch is the FetchXML for the members of a static list, the
// query Dataverse's own list views run: the member table joined to listmember on
// the list. columns are the member table's logical column names (its primary key
// comes back always); none reads every column.
func StaticListMembersFetch(memberTable, listID string, columns ...string) string {
	var b strings.Builder
	b.WriteString(`<fetch distinct="true"><entity name="` + xmlEscape(memberTable) + `">`)
	for _, c := range columns {
		b.WriteString(`<attribute name="` + xmlEscape(c) + `"/>`)
	}
	b.WriteString(`<link-entity name="listmember" from="entityid" to="` + xmlEscape(memberTable) + `id" link-type="inner" intersect="true">`)
	b.WriteString(`<filter type="and"><condition attribute="listid" operator="eq" value="` + xmlEscape(listID) + `"/></filter>`)
	b.WriteString(`</link-entity></entity></fetch>`)
	return b.String()
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// SetFetchAttributes replaces the columns the main <entity> of a FetchXML query
// reads (its <attribute> and <all-attributes> children) with columns, so a
// stored query — a dynamic list's — can be run for the columns a caller needs.
// Everything else, link-entities included, stays as it is.
func SetFetchAttributes(fetch string, columns []string) (string, error) {
	dec := xml.NewDecoder(strings.NewReader(fetch))
	var out bytes.Buffer
	enc := xml.NewEncoder(&out)
	depth, skip := 0, 0
	entityDepth := -1
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("set fetch attributes: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if skip > 0 {
				skip++
				continue
			}
			if depth == entityDepth+1 && entityDepth >= 0 && (t.Name.Local == "attribute" || t.Name.Local == "all-attributes") {
				skip = 1
				continue
			}
			if err := enc.EncodeToken(t); err != nil {
				return "", fmt.Errorf("set fetch attributes: %w", err)
			}
			if t.Name.Local == "entity" && entityDepth < 0 {
				entityDepth = depth
				for _, c := range columns {
					attr := xml.StartElement{Name: xml.Name{Local: "attribute"}, Attr: []xml.Attr{{Name: xml.Name{Local: "name"}, Value: c}}}
					if err := enc.EncodeToken(attr); err != nil {
						return "", fmt.Errorf("set fetch attributes: %w", err)
					}
					if err := enc.EncodeToken(attr.End()); err != nil {
						return "", fmt.Errorf("set fetch attributes: %w", err)
					}
				}
			}
		case xml.EndElement:
			depth--
			if skip > 0 {
				skip--
				continue
			}
			if err := enc.EncodeToken(t); err != nil {
				return "", fmt.Errorf("set fetch attributes: %w", err)
			}
		case xml.CharData:
			if skip == 0 {
				if err := enc.EncodeToken(t.Copy()); err != nil {
					return "", fmt.Errorf("set fetch attributes: %w", err)
				}
			}
		}
	}
	if entityDepth < 0 {
		return "", errors.New("set fetch attributes: no <entity> element")
	}
	if err := enc.Flush(); err != nil {
		return "", fmt.Errorf("set fetch attributes: %w", err)
	}
	return out.String(), nil
}
