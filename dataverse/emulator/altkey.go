package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Alternate keys (reference/dataverse.md §4.3): a table may define keys, sets of
// columns whose values name a row as well as its id. The emulator's only keys are
// the connector solution's on cs_subscription (solution.go). A key can name a row in
// a URL — GET, PATCH (upsert: a missing row is made with the key's values) and
// DELETE of /cs_subscriptions(cs_groupid='g1',_cs_contactid_value=<guid>) — and in
// UpsertMultiple's "@odata.id"; no two rows may share a key's values. Lookup
// columns are named by their property (_<name>_value), strings compare without
// regard to case as SQL Server's collation does, and rows whose key columns are
// not all set are not held to the key.

// parseKeyRef reads an alternate-key reference, "cs_subscriptions(cs_groupid='g1',
// _cs_contactid_value=<guid>)" (relative or absolute), into the key it uses and
// the stored values of its columns. Lookup columns are named by their property
// (_<name>_value), strings are quoted with ” for a quote, GUIDs and numbers bare.
func (e *Emulator) parseKeyRef(t *table, s string) (altKey, map[string]any, error) {
	bad := func(format string, args ...any) (altKey, map[string]any, error) {
		return altKey{}, nil, errorf(http.StatusBadRequest, codeODataBadRequest, format, args...)
	}
	last := s
	if u, err := url.Parse(s); err == nil && u.IsAbs() {
		last = u.Path
	}
	if i := strings.LastIndexByte(last, '/'); i >= 0 {
		last = last[i+1:]
	}
	open := strings.IndexByte(last, '(')
	if open <= 0 || !strings.HasSuffix(last, ")") {
		return bad("The @odata.id '%s' is not a reference to a row.", s)
	}
	if set := last[:open]; set != t.set {
		return bad("The @odata.id '%s' names entity set '%s', not '%s'.", s, set, t.set)
	}
	pairs, err := splitKeyPairs(last[open+1 : len(last)-1])
	if err != nil {
		return bad("The key in '%s' is not valid: %v", s, err)
	}
	vals := map[string]any{}
	for prop, lit := range pairs {
		c, ok := t.readable(prop)
		if !ok {
			return bad("The key property '%s' in '%s' is not a property of '%s'.", prop, s, t.logical)
		}
		lit, err := url.PathUnescape(lit)
		if err != nil {
			return bad("The key value %s of '%s' in '%s' is not valid percent-encoding.", lit, prop, s)
		}
		v, err := keyLiteral(c, lit)
		if err != nil {
			return bad("The key value %s of '%s' in '%s' is not a valid %s.", lit, prop, s, c.typ.edm())
		}
		vals[c.name] = v
	}
	for _, k := range t.keys {
		if len(k.cols) != len(vals) {
			continue
		}
		match := true
		for _, col := range k.cols {
			if _, ok := vals[col]; !ok {
				match = false
				break
			}
		}
		if match {
			return k, vals, nil
		}
	}
	return bad("The key '%s' is not valid for entity '%s': no alternate key with these columns is defined.", last[open+1:len(last)-1], t.logical)
}

// splitKeyPairs splits "a='x,y',b=1" into its pairs; commas inside single
// quotes (a doubled quote toggles twice) do not split.
func splitKeyPairs(s string) (map[string]string, error) {
	out := map[string]string{}
	var parts []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\'':
			quoted = !quoted
		case s[i] == ',' && !quoted:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	parts = append(parts, s[start:])
	for _, part := range parts {
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("'%s' is not name=value", part)
		}
		out[k] = v
	}
	return out, nil
}

// keyLiteral converts a key literal to the stored value of its column: a quoted
// string, a GUID (a lookup's target row id), a number or true/false.
func keyLiteral(c *column, lit string) (any, error) {
	bad := errorf(http.StatusBadRequest, codeODataBadRequest, "bad literal")
	switch c.typ {
	case typeString, typeMemo, typeEntityName:
		if len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
			return nil, bad
		}
		return strings.ReplaceAll(lit[1:len(lit)-1], "''", "'"), nil
	case typeLookup:
		id, ok := parseGUID(lit)
		if !ok || len(c.navs) != 1 || len(c.navs[0].targets) != 1 {
			return nil, bad
		}
		return ref{table: c.navs[0].targets[0], id: id}, nil
	case typeGUID:
		id, ok := parseGUID(lit)
		if !ok {
			return nil, bad
		}
		return id, nil
	case typeBool:
		if lit != "true" && lit != "false" {
			return nil, bad
		}
		return lit == "true", nil
	case typeInt, typeBigInt, typeChoice, typeState, typeStatus:
		n, err := strconv.ParseInt(lit, 10, 64)
		if err != nil {
			return nil, bad
		}
		return n, nil
	}
	return nil, bad
}

// keyString renders key values so that equal keys (strings compared without
// regard to case, as SQL Server's collation does) give equal strings.
func keyString(k altKey, vals map[string]any) string {
	var b strings.Builder
	for _, col := range k.cols {
		b.WriteString(encodeKeyValue(foldKey(vals[col])))
		b.WriteByte('\x1f')
	}
	return b.String()
}

// storedKey is keyString of a stored row, false when a key column is null.
func storedKey(k altKey, vals map[string]any) (string, bool) {
	for _, col := range k.cols {
		if vals[col] == nil {
			return "", false
		}
	}
	return keyString(k, vals), true
}

func foldKey(v any) any {
	switch v := v.(type) {
	case string:
		return strings.ToLower(v)
	case ref:
		return v.id
	}
	return v
}

// checkKeysLocked refuses a write that would give a row the alternate-key values
// of another row.
func (e *Emulator) checkKeysLocked(t *table, id string, vals map[string]any) error {
	for _, k := range t.keys {
		s, ok := storedKey(k, vals)
		if !ok {
			continue
		}
		for _, other := range e.rows[t.logical] {
			if other.id == id {
				continue
			}
			if o, ok := storedKey(k, other.vals); ok && o == s {
				return errorf(http.StatusPreconditionFailed, codeDuplicateRecord,
					"A record that has the attribute values %s already exists. The entity key %s requires that this set of attributes contains unique values. Select unique values and try again.",
					strings.Join(k.cols, ", "), k.name)
			}
		}
	}
	return nil
}

// routeAlternateKey handles a row named by an alternate key in the URL:
// GET, DELETE and what follows the key act on the row the key finds (404 when
// none); PATCH updates it, or creates it with the key's values when there is
// none (upsert), the key's columns stripped from the body of an update as §4.3
// says.
func (e *Emulator) routeAlternateKey(w http.ResponseWriter, r *http.Request, t *table, key, tail string, caller *principal) error {
	k, vals, err := e.parseKeyRef(t, t.set+"("+key+")")
	if err != nil {
		return err
	}
	want := keyString(k, vals)
	id := ""
	e.mu.RLock()
	for _, rec := range e.rows[t.logical] {
		if s, ok := storedKey(k, rec.vals); ok && s == want {
			id = rec.id
			break
		}
	}
	e.mu.RUnlock()
	missing := errorf(http.StatusNotFound, codeObjectDoesNotExist, "A record with the specified key values does not exist in %s entity", t.logical)
	switch {
	case tail != "":
		if id == "" {
			return missing
		}
		return e.rowOperation(w, r, t, id, tail, caller)
	case r.Method == http.MethodGet || r.Method == http.MethodDelete:
		if id == "" {
			return missing
		}
		if r.Method == http.MethodGet {
			return e.retrieve(w, r, t, id)
		}
		return e.delete(w, r, t, id, caller)
	case r.Method != http.MethodPatch:
		return errMethod(r)
	}
	body, err := readBody(w, r, t)
	if err != nil {
		return err
	}
	for _, name := range k.cols {
		c := t.byName[name]
		props := []string{c.property()}
		for _, n := range c.navs {
			props = append(props, n.name+"@odata.bind")
		}
		named := false
		for _, p := range props {
			if _, ok := body[p]; ok {
				named = true
				if id != "" {
					delete(body, p)
				}
			}
		}
		if id != "" || named {
			continue
		}
		switch v := vals[name].(type) {
		case ref:
			body[c.navs[0].name+"@odata.bind"] = "/" + e.reg.byName[v.table].set + "(" + v.id + ")"
		case int64:
			body[name] = json.Number(strconv.FormatInt(v, 10))
		default:
			body[name] = v
		}
	}
	if id == "" {
		id = newID()
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	r2 := r.Clone(r.Context())
	r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(raw)), int64(len(raw))
	return e.patch(w, r2, t, id, caller)
}
