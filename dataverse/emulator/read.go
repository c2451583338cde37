package emulator

import (
	"net/http"
	"strings"
)

// parsePrefer reads the Prefer headers into preference → value ("" when none),
// keys lower-cased, quotes removed: return=representation,
// odata.include-annotations="*", odata.maxpagesize=100.
func parsePrefer(h http.Header) map[string]string {
	prefs := map[string]string{}
	for _, line := range h.Values("Prefer") {
		for _, p := range splitOutsideQuotes(line, ',') {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if k = strings.ToLower(strings.TrimSpace(k)); k != "" {
				prefs[k] = strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
	}
	return prefs
}

func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case sep:
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// Instance annotations the emulator can add to a row.
const (
	annFormatted  = "OData.Community.Display.V1.FormattedValue"
	annLogical    = "Microsoft.Dynamics.CRM.lookuplogicalname"
	annNavigation = "Microsoft.Dynamics.CRM.associatednavigationproperty"
)

// annotationFilter is the value of odata.include-annotations: "*", a list of names,
// or prefixes such as "Microsoft.Dynamics.CRM.*"; "-name" excludes.
type annotationFilter struct {
	include, exclude []string
}

func parseAnnotations(v string) annotationFilter {
	var f annotationFilter
	for p := range strings.SplitSeq(v, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
		case strings.HasPrefix(p, "-"):
			f.exclude = append(f.exclude, p[1:])
		default:
			f.include = append(f.include, p)
		}
	}
	return f
}

func (f annotationFilter) any() bool { return len(f.include) > 0 }

func (f annotationFilter) want(name string) bool {
	match := func(pattern string) bool {
		if pattern == "*" {
			return true
		}
		if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
			return strings.HasPrefix(name, prefix)
		}
		return pattern == name
	}
	for _, p := range f.exclude {
		if match(p) {
			return false
		}
	}
	for _, p := range f.include {
		if match(p) {
			return true
		}
	}
	return false
}

// parseSelect reads $select; nil means every column. The primary key is always
// returned, as Dataverse does.
func parseSelect(t *table, v string) ([]*column, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	cols := []*column{t.byName[t.pk]}
	for name := range strings.SplitSeq(v, ",") {
		name = strings.TrimSpace(name)
		c, ok := t.readable(name)
		if !ok {
			return nil, errNoProperty(t, name)
		}
		if c.name != t.pk {
			cols = append(cols, c)
		}
	}
	return cols, nil
}

// contextURL is @odata.context for a set or, with entity, one row of it.
func contextURL(r *http.Request, t *table, sel []*column, entity bool) string {
	s := baseURL(r) + "/api/data/v9.2/$metadata#" + t.set
	if sel != nil {
		names := make([]string, 0, len(sel))
		for _, c := range sel {
			names = append(names, c.property())
		}
		s += "(" + strings.Join(names, ",") + ")"
	}
	if entity {
		s += "/$entity"
	}
	return s
}

// retrieve handles GET /<set>(<id>); If-None-Match with the current etag answers
// 304 unless annotations were asked for (§4.3).
func (e *Emulator) retrieve(w http.ResponseWriter, r *http.Request, t *table, id string) error {
	sel, err := parseSelect(t, r.URL.Query().Get("$select"))
	if err != nil {
		return err
	}
	if err := checkQueryOptions(r, "$select", "$expand"); err != nil {
		return err
	}
	exp, err := e.parseExpand(t, r.URL.Query().Get("$expand"))
	if err != nil {
		return err
	}
	prefs := parsePrefer(r.Header)
	e.mu.RLock()
	defer e.mu.RUnlock()
	rec := e.rows[t.logical][id]
	if rec == nil {
		return errNotFound(t, id)
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm != "null" && prefs["odata.include-annotations"] == "" && etagMatches(inm, rec) {
		w.Header().Set("ETag", rec.etag())
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	return e.writeRow(w, r, t, rec, sel, prefs, http.StatusOK, "", exp...)
}

// writeRow answers with one row (GET by id, return=representation); callers hold
// the lock, at least for reading.
func (e *Emulator) writeRow(w http.ResponseWriter, r *http.Request, t *table, rec *record, sel []*column, prefs map[string]string, status int, applied string, exp ...expansion) error {
	ann := parseAnnotations(prefs["odata.include-annotations"])
	if ann.any() {
		applied = joinPrefs(applied, `odata.include-annotations="`+prefs["odata.include-annotations"]+`"`)
	}
	b := []byte(`{"@odata.context":`)
	b = appendString(b, contextURL(r, t, sel, true))
	b = append(b, ',')
	b = e.appendRowFields(b, t, rec, sel, ann)
	b = e.appendExpansions(b, rec, exp, ann)
	b = append(b, '}')
	w.Header().Set("ETag", rec.etag())
	if applied != "" {
		w.Header().Set("Preference-Applied", applied)
	}
	writeJSON(w, status, b)
	return nil
}

func joinPrefs(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

// appendRow appends one row as a JSON object.
func (e *Emulator) appendRow(b []byte, t *table, rec *record, sel []*column, ann annotationFilter) []byte {
	b = append(b, '{')
	b = e.appendRowFields(b, t, rec, sel, ann)
	return append(b, '}')
}

// appendRowFields writes @odata.etag and the columns: every column (null when
// unset) or the selected ones, each preceded by the annotations asked for.
func (e *Emulator) appendRowFields(b []byte, t *table, rec *record, sel []*column, ann annotationFilter) []byte {
	b = append(b, `"@odata.etag":`...)
	b = appendString(b, rec.etag())
	cols := sel
	if cols == nil {
		cols = t.columns
	}
	for _, c := range cols {
		if c.secret {
			continue
		}
		v := rec.vals[c.name]
		prop := c.property()
		if v != nil && ann.any() {
			b = e.appendAnnotations(b, c, prop, v, ann)
		}
		b = append(b, ',')
		b = appendString(b, prop)
		b = append(b, ':')
		b = appendValue(b, c, v)
	}
	return b
}

// appendAnnotations writes the FormattedValue of choices and lookups and the
// lookup's table and navigation property, which Dataverse sends before the value.
// Yes/No, number, money and date columns get no FormattedValue here: Dataverse
// formats them with per-column labels and the user's locale, which the emulator
// does not model, and a wrong label would be worse than none.
func (e *Emulator) appendAnnotations(b []byte, c *column, prop string, v any, ann annotationFilter) []byte {
	add := func(name, value string) {
		b = append(b, ',')
		b = appendString(b, prop+"@"+name)
		b = append(b, ':')
		b = appendString(b, value)
	}
	switch c.typ {
	case typeChoice, typeState, typeStatus:
		if ann.want(annFormatted) {
			n, _ := v.(int64)
			for _, o := range c.options {
				if int64(o.value) == n {
					add(annFormatted, o.label)
				}
			}
		}
	case typeLookup:
		target, ok := v.(ref)
		if !ok {
			break
		}
		if ann.want(annFormatted) {
			if tt := e.reg.byName[target.table]; tt != nil {
				if row := e.rows[tt.logical][target.id]; row != nil {
					if name, ok := row.vals[tt.primaryName].(string); ok {
						add(annFormatted, name)
					}
				}
			}
		}
		if ann.want(annNavigation) {
			for _, n := range c.navs {
				for _, tgt := range n.targets {
					if tgt == target.table {
						add(annNavigation, n.name)
					}
				}
			}
		}
		if ann.want(annLogical) {
			add(annLogical, target.table)
		}
	}
	return b
}
