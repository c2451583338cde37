package emulator

import (
	"net/http"
	"strings"
)

// $expand of single-valued navigation properties (reference/dataverse.md §4.4):
// "parentcustomerid_account($select=name,emailaddress1),ownerid" puts the related
// row (or null) into each row under the navigation property's name. Collection-valued
// navigation and nested options other than $select answer 501.

// expansion is one navigation property to expand and the related table's columns.
type expansion struct {
	col    *column
	name   string
	target *table
	sel    []*column
}

// parseExpand reads $expand for table t.
func (e *Emulator) parseExpand(t *table, raw string) ([]expansion, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	var out []expansion
	for _, item := range splitTopLevel(raw) {
		item = strings.TrimSpace(item)
		name, opts, hasOpts := strings.Cut(item, "(")
		name = strings.TrimSpace(name)
		var found *expansion
		for _, c := range t.columns {
			for _, n := range c.navs {
				if n.name == name && len(n.targets) == 1 && !c.secret {
					found = &expansion{col: c, name: n.name, target: e.reg.byName[n.targets[0]]}
				}
			}
		}
		_, child := t.child(name)
		_, linked := relationships[name].other(t)
		if found == nil && (child || linked) {
			return nil, errNotImplemented("$expand of the collection-valued navigation property '" + name + "'")
		}
		if found == nil || found.target == nil {
			return nil, errorf(http.StatusBadRequest, codeODataBadRequest,
				"Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.", name, t.logical)
		}
		if hasOpts {
			opts = strings.TrimSuffix(strings.TrimSpace(opts), ")")
			sel, ok := strings.CutPrefix(strings.TrimSpace(opts), "$select=")
			if !ok || strings.Contains(sel, "$") || strings.Contains(sel, ";") {
				return nil, errNotImplemented("$expand options other than $select")
			}
			cols, err := parseSelect(found.target, sel)
			if err != nil {
				return nil, err
			}
			found.sel = cols
		}
		out = append(out, *found)
	}
	return out, nil
}

// splitTopLevel splits at commas outside parentheses.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// appendExpansions writes the expanded related rows of rec; callers hold the lock.
func (e *Emulator) appendExpansions(b []byte, rec *record, exp []expansion, ann annotationFilter) []byte {
	for _, x := range exp {
		b = append(b, ',')
		b = appendString(b, x.name)
		b = append(b, ':')
		target, ok := rec.vals[x.col.name].(ref)
		if !ok || target.table != x.target.logical {
			b = append(b, "null"...)
			continue
		}
		related := e.rows[x.target.logical][target.id]
		if related == nil {
			b = append(b, "null"...)
			continue
		}
		b = e.appendRow(b, x.target, related, x.sel, ann)
	}
	return b
}
