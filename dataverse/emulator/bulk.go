package emulator

import (
	"net/http"
	"strings"
	"unicode"
)

// Bulk messages (reference/dataverse.md §7.1): actions bound to an entity set,
// POST /<set>/Microsoft.Dynamics.CRM.CreateMultiple, UpdateMultiple or
// UpsertMultiple with {"Targets":[…]}, every target carrying
// "@odata.type":"Microsoft.Dynamics.CRM.<table>". A table takes them when it has
// CreateMultiple and UpdateMultiple sdkmessagefilter rows (table.bulk). All targets
// are applied in one transaction: any failing target leaves nothing done. Each row
// raises its ordinary Create or Update events, CreateMultiple and UpdateMultiple
// one event more with all Targets; UpsertMultiple raises only the per-row Create
// or Update (§7.1 lists Upsert as "Event: False"). DeleteMultiple exists only for
// elastic tables, which the emulator has none of.

// collectionOperation handles POST /<set>/<operation>: the bulk actions.
func (e *Emulator) collectionOperation(w http.ResponseWriter, r *http.Request, t *table, tail string, caller *principal) error {
	name, qualified := strings.CutPrefix(tail, "Microsoft.Dynamics.CRM.")
	switch name {
	case msgCreateMultiple, msgUpdateMultiple, "UpsertMultiple", "DeleteMultiple":
	default:
		return errNotImplemented("'" + tail + "' on a collection (functions and other bound actions)")
	}
	if !qualified {
		return errUnqualified()
	}
	if r.Method != http.MethodPost {
		return errMethod(r)
	}
	if name == "DeleteMultiple" {
		// The emulator's choice of status and code; the text is §7.1's.
		return errorf(http.StatusBadRequest, codeInvalidArgument, "DeleteMultiple has not yet been implemented.")
	}
	if !t.bulk || t.noWrite {
		return errReadOnlyTable(t, name)
	}
	body, err := readBody(w, r, t)
	if err != nil {
		return err
	}
	targets, err := bulkTargets(t, body)
	if err != nil {
		return err
	}
	switch name {
	case msgCreateMultiple:
		return e.createMultiple(w, r, t, targets, caller)
	case msgUpdateMultiple:
		return e.updateMultiple(w, t, targets, caller)
	}
	return e.upsertMultiple(w, t, targets, caller)
}

// errUnqualified is what a bound action without its namespace gets (§4.7).
func errUnqualified() *apiError {
	return errorf(http.StatusBadRequest, codeODataBadRequest, "Request message has unresolved parameters.")
}

// bulkTargets reads the Targets parameter: objects of this table, each with its
// @odata.type.
func bulkTargets(t *table, body map[string]any) ([]map[string]any, error) {
	for k := range body {
		if k != "Targets" && !strings.HasPrefix(k, "@") {
			return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "The parameter '%s' in the request payload is not a valid parameter for the operation.", k)
		}
	}
	raw, ok := body["Targets"].([]any)
	if !ok {
		return nil, errorf(http.StatusBadRequest, codeInvalidArgument, "Required parameter 'Targets' is missing or is not a collection.")
	}
	targets := make([]map[string]any, len(raw))
	for i, v := range raw {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "Targets[%d] is not an entity.", i)
		}
		typ, _ := m["@odata.type"].(string)
		if typ == "" {
			return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "Targets[%d] has no '@odata.type' annotation; every target of a bulk operation must name its type ('%s').", i, t.typeName())
		}
		targets[i] = m
	}
	return targets, nil
}

// createMultiple inserts every target and answers their ids in order.
func (e *Emulator) createMultiple(w http.ResponseWriter, r *http.Request, t *table, targets []map[string]any, caller *principal) error {
	changes := make([]*change, len(targets))
	for i, m := range targets {
		ch, err := parseChange(e.reg, t, m)
		if err != nil {
			return err
		}
		changes[i] = ch
	}
	o := e.newOp(caller)
	e.mu.Lock()
	tx := e.beginLocked()
	recs := make([]*record, len(changes))
	for i, ch := range changes {
		rec, err := e.insertLocked(t, caller, ch, "")
		if err != nil {
			tx.rollbackLocked()
			e.mu.Unlock()
			return err
		}
		recs[i] = rec
	}
	calls := e.hooksLocked(o, func() []rowChange {
		rows := make([]rowChange, len(recs))
		for i, rec := range recs {
			rows[i] = rowChange{message: msgCreate, t: t, id: rec.id, post: rec.vals}
		}
		return append(rows, multiChange(msgCreateMultiple, t, rows))
	})
	held := tx.commitLocked()
	e.mu.Unlock()
	e.enqueue(append(held, calls...))

	b := []byte(`{"@odata.context":`)
	b = appendString(b, baseURL(r)+"/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse")
	b = append(b, `,"Ids":[`...)
	for i, rec := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, rec.id)
	}
	b = append(b, "]}"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

// updateMultiple updates every target, named by its primary key; a later target
// for a row an earlier one named already is ignored, as §7.1 documents.
func (e *Emulator) updateMultiple(w http.ResponseWriter, t *table, targets []map[string]any, caller *principal) error {
	changes := make([]*change, 0, len(targets))
	seen := map[string]bool{}
	for i, m := range targets {
		if _, ok := m["@odata.id"]; ok {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "Targets[%d]: UpdateMultiple through the Web API does not support alternate keys; name the row by '%s'.", i, t.pk)
		}
		ch, err := parseChange(e.reg, t, m)
		if err != nil {
			return err
		}
		if ch.pk == "" {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "Targets[%d] has no '%s'; UpdateMultiple names every row by its primary key.", i, t.pk)
		}
		if seen[ch.pk] {
			continue
		}
		seen[ch.pk] = true
		changes = append(changes, ch)
	}
	o := e.newOp(caller)
	e.mu.Lock()
	tx := e.beginLocked()
	type done struct {
		rec  *record
		pre  map[string]any
		sent []string
	}
	updated := make([]done, 0, len(changes))
	for _, ch := range changes {
		rec := e.rows[t.logical][ch.pk]
		if rec == nil {
			tx.rollbackLocked()
			e.mu.Unlock()
			return errorf(http.StatusNotFound, codeObjectDoesNotExist, "%s With Ids = %s Do Not Exist", schemaName(t), ch.pk)
		}
		pre := rec.vals
		if err := e.updateLocked(t, rec, ch, caller); err != nil {
			tx.rollbackLocked()
			e.mu.Unlock()
			return err
		}
		updated = append(updated, done{rec: rec, pre: pre, sent: sentColumns(t, ch, false)})
	}
	calls := e.hooksLocked(o, func() []rowChange {
		var out, targets []rowChange
		for _, u := range updated {
			out = append(out, updateChanges(t, u.rec.id, u.pre, u.rec.vals, u.sent, false)...)
			targets = append(targets, updateTarget(t, u.rec.id, u.rec.vals, u.sent))
		}
		return append(out, multiChange(msgUpdateMultiple, t, targets))
	})
	held := tx.commitLocked()
	e.mu.Unlock()
	e.enqueue(append(held, calls...))
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// upsertMultiple creates or updates every target, each named by an alternate key
// in "@odata.id" (§7.1); two targets naming the same row fail the request.
func (e *Emulator) upsertMultiple(w http.ResponseWriter, t *table, targets []map[string]any, caller *principal) error {
	if len(t.keys) == 0 {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The entity '%s' has no alternate key; UpsertMultiple names rows by one.", t.logical)
	}
	type item struct {
		ch   *change
		key  altKey
		vals map[string]any // the key's columns → stored values
	}
	items := make([]item, len(targets))
	seen := map[string]int{}
	for i, m := range targets {
		idRef, _ := m["@odata.id"].(string)
		if idRef == "" {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "Targets[%d] has no '@odata.id'; UpsertMultiple names every row by an alternate key such as %s(<column>=<value>,…).", i, t.set)
		}
		key, vals, err := e.parseKeyRef(t, idRef)
		if err != nil {
			return err
		}
		ch, err := parseChange(e.reg, t, m)
		if err != nil {
			return err
		}
		k := key.name + "\x1f" + keyString(key, vals)
		if j, dup := seen[k]; dup {
			return errorf(http.StatusBadRequest, codeDuplicateRecord, "Targets[%d] and Targets[%d] name the same row (%s); UpsertMultiple does not take duplicates.", j, i, idRef)
		}
		seen[k] = i
		items[i] = item{ch: ch, key: key, vals: vals}
	}
	o := e.newOp(caller)
	e.mu.Lock()
	tx := e.beginLocked()
	index := map[string]map[string]*record{} // key name → key string → row
	find := func(key altKey, vals map[string]any) *record {
		idx, ok := index[key.name]
		if !ok {
			idx = map[string]*record{}
			for _, rec := range e.rows[t.logical] {
				if s, ok := storedKey(key, rec.vals); ok {
					idx[s] = rec
				}
			}
			index[key.name] = idx
		}
		return idx[keyString(key, vals)]
	}
	var changes []rowChange
	for _, it := range items {
		rec := find(it.key, it.vals)
		if rec != nil {
			for _, col := range it.key.cols {
				delete(it.ch.vals, col) // key columns of an existing row are not written
			}
			pre := rec.vals
			if err := e.updateLocked(t, rec, it.ch, caller); err != nil {
				tx.rollbackLocked()
				e.mu.Unlock()
				return err
			}
			changes = append(changes, updateChanges(t, rec.id, pre, rec.vals, sentColumns(t, it.ch, false), false)...)
			continue
		}
		for col, v := range it.vals {
			if _, set := it.ch.vals[col]; !set {
				it.ch.vals[col] = v // body values win over the key's (§4.3)
			}
		}
		rec, err := e.insertLocked(t, caller, it.ch, "")
		if err != nil {
			tx.rollbackLocked()
			e.mu.Unlock()
			return err
		}
		index[it.key.name][keyString(it.key, it.vals)] = rec
		changes = append(changes, rowChange{message: msgCreate, t: t, id: rec.id, post: rec.vals})
	}
	calls := e.hooksLocked(o, func() []rowChange { return changes })
	held := tx.commitLocked()
	e.mu.Unlock()
	e.enqueue(append(held, calls...))
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// schemaName approximates a table's SchemaName for messages ("Contact").
func schemaName(t *table) string {
	if t.logical == "" {
		return ""
	}
	r := []rune(t.logical)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}
