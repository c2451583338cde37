package emulator

import (
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// change is a parsed request body: canonical values by column logical name (nil
// clears the column; a ref sets a lookup), the primary key if the body named it
// and the rows of a deep insert.
type change struct {
	vals    map[string]any
	pk      string
	related []related
}

// related is what a deep insert puts into one 1:N navigation property: the rows
// to create with the new row (party.go).
type related struct {
	nav  oneToMany
	rows []*change
}

// parseChange validates a body against the table as the Web API's OData reader
// does: known properties with the right JSON types, lookups only through
// "<nav>@odata.bind", nothing else.
func parseChange(reg *registry, t *table, body map[string]any) (*change, error) {
	ch := &change{vals: make(map[string]any, len(body))}
	bound := map[string]string{} // lookup column → navigation property that set it
	keys := slices.Sorted(maps.Keys(body))
	for _, k := range keys {
		v := body[k]
		if prop, ann, ok := strings.Cut(k, "@"); ok {
			switch {
			case prop == "" && ann == "odata.type":
				s, _ := v.(string)
				if strings.TrimPrefix(s, "#") != t.typeName() {
					return nil, errPayload(t, "A resource with type '%s' was found, but it is not assignable to the expected type '%s'.", s, t.typeName())
				}
			case prop == "":
				// @odata.etag, @odata.context … of a row read back: ignored.
			case ann == "odata.bind":
				nr, ok := t.byNav[prop]
				if !ok {
					return nil, errPayload(t, "An undeclared property '%s' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values.", prop)
				}
				if other, dup := bound[nr.col.name]; dup {
					return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "Navigation properties '%s' and '%s' both set lookup '%s'; set only one.", other, prop, nr.col.name)
				}
				bound[nr.col.name] = prop
				if v == nil {
					ch.vals[nr.col.name] = nil
					continue
				}
				target, err := parseBind(reg, t, nr, v)
				if err != nil {
					return nil, err
				}
				ch.vals[nr.col.name] = target
			default:
				// Instance annotations of a property (FormattedValue…) are ignored.
			}
			continue
		}
		if k == t.pk {
			s, _ := v.(string)
			id, ok := parseGUID(s)
			if !ok {
				return nil, errPayload(t, "Cannot convert the literal '%v' to the expected type 'Edm.Guid'.", v)
			}
			ch.pk = id
			continue
		}
		if nr, ok := t.byNav[k]; ok {
			if v != nil {
				return nil, errNotImplemented("deep insert through navigation property '" + k + "'")
			}
			ch.vals[nr.col.name] = nil
			continue
		}
		if nav, ok := t.child(k); ok {
			rows, err := parseRelated(reg, t, nav, v)
			if err != nil {
				return nil, err
			}
			ch.related = append(ch.related, related{nav: nav, rows: rows})
			continue
		}
		c, ok := t.byProp[k]
		if !ok {
			return nil, errInvalidProperty(t, k)
		}
		if c.typ == typeLookup {
			return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead.")
		}
		val, err := convert(t, c, v)
		if err != nil {
			return nil, err
		}
		ch.vals[c.name] = val
	}
	return ch, nil
}

// parseBind reads an @odata.bind value: "/accounts(<id>)", "accounts(<id>)" or an
// absolute URL ending so.
func parseBind(reg *registry, t *table, nr navRef, v any) (ref, error) {
	s, ok := v.(string)
	if !ok {
		return ref{}, errPayload(t, "The value of the annotation 'odata.bind' of navigation property '%s' must be a string.", nr.nav.name)
	}
	last := s
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		last = s[i+1:]
	}
	open := strings.IndexByte(last, '(')
	if open <= 0 || !strings.HasSuffix(last, ")") {
		return ref{}, errorf(http.StatusBadRequest, codeODataBadRequest, "The URL '%s' in the annotation 'odata.bind' of navigation property '%s' is not a valid entity reference.", s, nr.nav.name)
	}
	set, key := last[:open], last[open+1:len(last)-1]
	target, ok := reg.bySet[set]
	if !ok {
		return ref{}, errSegment(set)
	}
	if !slices.Contains(nr.nav.targets, target.logical) {
		return ref{}, errorf(http.StatusBadRequest, codeODataBadRequest, "A reference to entity set '%s' is not valid for navigation property '%s', which refers to %s.", set, nr.nav.name, strings.Join(nr.nav.targets, ", "))
	}
	id, err := parseKey(target, key)
	if err != nil {
		return ref{}, err
	}
	return ref{table: target.logical, id: id}, nil
}

// convert checks a JSON value against a column type and returns the stored form.
func convert(t *table, c *column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	mismatch := func() error {
		if s, ok := v.(string); ok {
			return errPayload(t, "Cannot convert the literal '%s' to the expected type '%s'.", s, c.typ.edm())
		}
		return errPayload(t, "Cannot convert a primitive value to the expected type '%s'. See the inner exception for more details.", c.typ.edm())
	}
	switch c.typ {
	case typeString, typeMemo, typeEntityName:
		s, ok := v.(string)
		if !ok {
			return nil, mismatch()
		}
		if c.maxLen > 0 && utf8.RuneCountInString(s) > c.maxLen {
			return nil, errorf(http.StatusBadRequest, codeValidation, "A validation error occurred. The length of the '%s' attribute of the '%s' entity exceeded the maximum allowed length of '%d'.", c.name, t.logical, c.maxLen)
		}
		return s, nil
	case typeBool:
		b, ok := v.(bool)
		if !ok {
			return nil, mismatch()
		}
		return b, nil
	case typeInt, typeChoice, typeState, typeStatus, typeBigInt:
		n, ok := v.(json.Number)
		if !ok {
			return nil, mismatch()
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || (c.typ != typeBigInt && (i < -1<<31 || i > 1<<31-1)) {
			return nil, errPayload(t, "Cannot convert the literal '%s' to the expected type '%s'.", n, c.typ.edm())
		}
		if c.typ == typeChoice && len(c.options) > 0 && !hasOption(c.options, int(i)) {
			vals := make([]string, len(c.options))
			for j, o := range c.options {
				vals[j] = strconv.Itoa(o.value)
			}
			return nil, errorf(http.StatusBadRequest, codeValidation, "A validation error occurred. The value %d of '%s' on record of type '%s' is outside the valid range. Accepted Values: %s", i, c.name, t.logical, strings.Join(vals, ","))
		}
		return i, nil
	case typeDecimal, typeMoney:
		n, ok := v.(json.Number)
		if !ok {
			return nil, mismatch()
		}
		f, err := n.Float64()
		if err != nil {
			return nil, errPayload(t, "Cannot convert the literal '%s' to the expected type 'Edm.Decimal'.", n)
		}
		return f, nil
	case typeDateTime, typeDateOnly:
		s, ok := v.(string)
		if !ok {
			return nil, mismatch()
		}
		tm, ok := parseTime(s, c.typ == typeDateOnly)
		if !ok {
			return nil, mismatch()
		}
		return tm, nil
	case typeGUID:
		s, ok := v.(string)
		if !ok {
			return nil, mismatch()
		}
		id, ok := parseGUID(s)
		if !ok {
			return nil, mismatch()
		}
		return id, nil
	}
	return nil, mismatch()
}

func hasOption(opts []option, v int) bool {
	for _, o := range opts {
		if o.value == v {
			return true
		}
	}
	return false
}

// parseTime reads an ISO 8601 date-time (UTC when no offset is given, kept to whole
// seconds as Dataverse stores it) or, for date-only columns, a date.
func parseTime(s string, dateOnly bool) (time.Time, bool) {
	if dateOnly {
		if tm, err := time.Parse(dateLayout, s); err == nil {
			return tm, true
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", dateLayout} {
		if tm, err := time.Parse(layout, s); err == nil {
			tm = tm.UTC().Truncate(time.Second)
			if dateOnly {
				tm = time.Date(tm.Year(), tm.Month(), tm.Day(), 0, 0, 0, 0, time.UTC)
			}
			return tm, true
		}
	}
	return time.Time{}, false
}

// readBody checks the media type and decodes the body of a POST or PATCH.
func readBody(w http.ResponseWriter, r *http.Request, t *table) (map[string]any, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, errorf(http.StatusUnsupportedMediaType, codeODataBadRequest, "The content type '%s' is not supported; send application/json.", ct)
		}
	}
	return decodeBody(t, http.MaxBytesReader(w, r.Body, maxBody))
}

// create handles POST /<set>.
func (e *Emulator) create(w http.ResponseWriter, r *http.Request, t *table, caller *principal) error {
	sel, err := parseSelect(t, r.URL.Query().Get("$select"))
	if err != nil {
		return err
	}
	body, err := readBody(w, r, t)
	if err != nil {
		return err
	}
	prefs := parsePrefer(r.Header)
	rec, err := e.createRow(t, caller, body)
	if err != nil {
		return err
	}
	if prefs["return"] == "representation" {
		e.mu.RLock()
		defer e.mu.RUnlock()
		return e.writeRow(w, r, t, rec, sel, prefs, http.StatusCreated, "return=representation")
	}
	w.Header().Set("OData-EntityId", entityID(r, t, rec.id))
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// createRow validates and inserts a row (POST) and raises its webhook events.
func (e *Emulator) createRow(t *table, caller *principal, body map[string]any) (*record, error) {
	if t.noWrite {
		return nil, errReadOnlyTable(t, "Create")
	}
	ch, err := parseChange(e.reg, t, body)
	if err != nil {
		return nil, err
	}
	o := e.newOp(caller)
	e.mu.Lock()
	rec, err := e.insertLocked(t, caller, ch, "")
	var calls []*stepCall
	if err == nil {
		calls = e.hooksLocked(o, func() []rowChange { return createChanges(t, rec) })
	}
	e.mu.Unlock()
	e.enqueue(calls)
	return rec, err
}

// errReadOnlyTable refuses a write to a table only the platform writes.
func errReadOnlyTable(t *table, method string) *apiError {
	return errorf(http.StatusBadRequest, codeInvalidArgument, "The '%s' method does not support entities of type '%s'.", method, t.logical)
}

// insertLocked validates and inserts a row and the rows of its deep insert, all or
// nothing; it raises no events.
func (e *Emulator) insertLocked(t *table, caller *principal, ch *change, urlID string) (*record, error) {
	if len(ch.related) == 0 {
		return e.insertRowLocked(t, caller, ch, urlID)
	}
	tx := e.beginLocked()
	rec, err := e.insertRowLocked(t, caller, ch, urlID)
	if err == nil {
		err = e.insertRelatedLocked(t, rec, ch.related, caller)
	}
	if err != nil {
		tx.rollbackLocked()
		return nil, err
	}
	tx.commitLocked() // nothing in between raised events
	return rec, nil
}

// insertRowLocked validates and inserts one row.
func (e *Emulator) insertRowLocked(t *table, caller *principal, ch *change, urlID string) (*record, error) {
	id := ch.pk
	switch {
	case urlID != "" && id != "" && id != urlID:
		return nil, errorf(http.StatusBadRequest, codeInvalidArgument, "The key in the body (%s) does not match the key in the URL (%s).", id, urlID)
	case urlID != "":
		id = urlID
	case id == "":
		id = uuid.NewString()
	}
	if e.rows[t.logical][id] != nil {
		// What a POST with the id of an existing row gets: DuplicateRecord, whose
		// documented text this is (§7.1); 412 as §4.6 lists for DuplicateRecord.
		return nil, errorf(http.StatusPreconditionFailed, codeDuplicateRecord, "Cannot insert duplicate key.")
	}
	vals := make(map[string]any, len(t.columns)) // sized once: rows are most of a bulk create's cost
	vals[t.pk] = id
	for _, c := range t.columns {
		if c.def != nil {
			vals[c.name] = c.def
		}
	}
	if err := e.applyLocked(t, id, vals, ch, caller, true); err != nil {
		return nil, err
	}
	if t.logical == "listmember" {
		if err := e.checkListMemberLocked(vals); err != nil {
			return nil, err
		}
	}
	e.version++
	vals["versionnumber"] = e.version
	rec := &record{id: id, version: e.version, vals: vals}
	e.saveLocked(t.logical, id)
	e.rows[t.logical][id] = rec
	if t.logical == "listmember" {
		e.addMemberCountLocked(vals, 1)
	}
	return rec, nil
}

// patch handles PATCH /<set>(<id>): update with If-Match (a "*" or an etag),
// create-only with If-None-Match: *, and upsert without either.
func (e *Emulator) patch(w http.ResponseWriter, r *http.Request, t *table, id string, caller *principal) error {
	sel, err := parseSelect(t, r.URL.Query().Get("$select"))
	if err != nil {
		return err
	}
	body, err := readBody(w, r, t)
	if err != nil {
		return err
	}
	ch, err := parseChange(e.reg, t, body)
	if err != nil {
		return err
	}
	if t.noWrite {
		return errReadOnlyTable(t, "Update")
	}
	ifMatch, ifNoneMatch := r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
	prefs := parsePrefer(r.Header)
	o := e.newOp(caller)

	e.mu.Lock()
	rec := e.rows[t.logical][id]
	created := false
	var pre map[string]any // the row before an update; updates replace the map
	switch {
	case ifNoneMatch == "*":
		if rec != nil {
			e.mu.Unlock()
			return errorf(http.StatusPreconditionFailed, codeDuplicateRecord, "A record with matching key values already exists.")
		}
		rec, err = e.insertLocked(t, caller, ch, id)
		created = true
	case ifMatch != "":
		if rec == nil {
			e.mu.Unlock()
			return errNotFound(t, id)
		}
		if !etagMatches(ifMatch, rec) {
			e.mu.Unlock()
			return errorf(http.StatusPreconditionFailed, codeVersionMismatch, "The version of the existing record doesn't match the RowVersion property provided.")
		}
		pre = rec.vals
		err = e.updateLocked(t, rec, ch, caller)
	case rec == nil:
		rec, err = e.insertLocked(t, caller, ch, id)
		created = true
	default:
		pre = rec.vals
		err = e.updateLocked(t, rec, ch, caller)
	}
	var calls []*stepCall
	if err == nil {
		calls = e.hooksLocked(o, func() []rowChange {
			if created {
				return createChanges(t, rec)
			}
			return updateChanges(t, rec.id, pre, rec.vals, sentColumns(t, ch, false), true)
		})
	}
	e.mu.Unlock()
	e.enqueue(calls)
	if err != nil {
		return err
	}
	if prefs["return"] == "representation" {
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		e.mu.RLock()
		defer e.mu.RUnlock()
		return e.writeRow(w, r, t, rec, sel, prefs, status, "return=representation")
	}
	w.Header().Set("OData-EntityId", entityID(r, t, rec.id))
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// etagMatches evaluates an If-Match header: "*" or a list of etags.
func etagMatches(h string, rec *record) bool {
	for tag := range strings.SplitSeq(h, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || tag == rec.etag() {
			return true
		}
	}
	return false
}

// updateLocked applies a change to an existing row.
func (e *Emulator) updateLocked(t *table, rec *record, ch *change, caller *principal) error {
	if ch.pk != "" && ch.pk != rec.id {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The key in the body (%s) does not match the key in the URL (%s).", ch.pk, rec.id)
	}
	if len(ch.related) > 0 {
		return errNotImplemented("deep update through navigation property '" + ch.related[0].nav.name + "'")
	}
	if t.logical == "lead" && !e.cfg.AllowQualifiedLeadUpdates {
		if state, _ := rec.vals["statecode"].(int64); state == 1 {
			for name := range ch.vals {
				if c := t.byName[name]; c != nil && c.typ != typeState && c.typ != typeStatus && c.access != readOnly {
					return errorf(http.StatusBadRequest, codeBusinessRule,
						"The lead with Id = %s is qualified and cannot be updated. Reopen it first ({\"statecode\":0,\"statuscode\":1}).", rec.id)
				}
			}
		}
	}
	vals := maps.Clone(rec.vals)
	if err := e.applyLocked(t, rec.id, vals, ch, caller, false); err != nil {
		return err
	}
	e.version++
	vals["versionnumber"] = e.version
	e.saveLocked(t.logical, rec.id)
	rec.vals, rec.version = vals, e.version
	return nil
}

// applyLocked writes a change into vals (a copy, so a refused change leaves the
// row alone) and maintains the system columns: state defaults and §7.4 rules,
// ownership, created/modified stamps, derived columns, required columns.
func (e *Emulator) applyLocked(t *table, id string, vals map[string]any, ch *change, caller *principal, creating bool) error {
	for name, v := range ch.vals {
		c := t.byName[name]
		if c.access == readOnly || (c.access == createOnly && !creating) {
			continue // not valid for this operation: dropped, as Dataverse does
		}
		if c.typ == typeState || c.typ == typeStatus {
			continue // below
		}
		if target, ok := v.(ref); ok {
			if e.rows[target.table][target.id] == nil {
				return errorf(http.StatusNotFound, codeObjectDoesNotExist, "%s With Id = %s Does Not Exist", target.table, target.id)
			}
		}
		if v == nil {
			delete(vals, name)
		} else {
			vals[name] = v
		}
	}
	if len(t.states) > 0 {
		if err := applyState(t, id, vals, ch, creating); err != nil {
			return err
		}
	}
	now := e.now().UTC().Truncate(time.Second)
	user := ref{table: "systemuser", id: caller.user}
	if creating {
		vals["createdon"], vals["createdby"] = now, user
	}
	vals["modifiedon"], vals["modifiedby"] = now, user
	if t.ownership == userOwned {
		owner, ok := vals["ownerid"].(ref)
		if !ok {
			owner = user
			vals["ownerid"] = owner
		}
		if owner.table == "systemuser" {
			vals["owninguser"] = owner
			if u := e.rows["systemuser"][owner.id]; u != nil {
				if bu, ok := u.vals["businessunitid"].(ref); ok {
					vals["owningbusinessunit"] = bu
				}
			}
		}
	}
	if t.derive != nil {
		t.derive(vals)
	}
	for _, c := range t.columns {
		if c.required && vals[c.name] == nil {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "Attribute '%s' cannot be NULL: it is required on entity '%s'.", c.name, t.logical)
		}
	}
	if err := e.checkKeysLocked(t, id, vals); err != nil {
		return err
	}
	if t.check != nil {
		return t.check(e, vals)
	}
	return nil
}

// applyState enforces reference/dataverse.md §7.4: statecode alone takes the state's
// default status; a statuscode must belong to the (new or current) state; neither
// can be null.
func applyState(t *table, id string, vals map[string]any, ch *change, creating bool) error {
	stateV, hasState := ch.vals["statecode"]
	statusV, hasStatus := ch.vals["statuscode"]
	if (hasState && stateV == nil) || (hasStatus && statusV == nil) {
		return errorf(http.StatusBadRequest, codeInvalidStateStatus, "State code is invalid or state code is valid but status code is invalid for a specified state code.")
	}
	cur, _ := vals["statecode"].(int64)
	state := int(cur)
	if hasState {
		state = int(stateV.(int64))
	}
	def, ok := t.state(state)
	if !ok {
		return errorf(http.StatusBadRequest, codeInvalidStateStatus, "%d is not a valid state code on %s with Id %s.", state, t.logical, id)
	}
	switch {
	case hasStatus:
		status := int(statusV.(int64))
		if !hasOption(def.statuses, status) {
			return errorf(http.StatusBadRequest, codeInvalidStateStatus, "%d is not a valid status code for state code %s.%s on %s with Id %s.",
				status, t.stateEnum, strings.ReplaceAll(def.label, " ", ""), t.logical, id)
		}
		vals["statuscode"] = int64(status)
	case hasState || creating:
		vals["statuscode"] = int64(def.defaultStatus)
	}
	vals["statecode"] = int64(state)
	return nil
}

// checkListMemberLocked keeps a membership consistent with its list: the member's
// table must be the list's member type (createdfromcode), dynamic and locked lists
// take no members, and a record is a member once.
func (e *Emulator) checkListMemberLocked(vals map[string]any) error {
	list, _ := vals["listid"].(ref)
	member, _ := vals["entityid"].(ref)
	lrec := e.rows["list"][list.id]
	if lrec == nil {
		return errorf(http.StatusNotFound, codeObjectDoesNotExist, "list With Id = %s Does Not Exist", list.id)
	}
	want := map[int64]string{1: "account", 2: "contact", 4: "lead"}[lrec.vals["createdfromcode"].(int64)]
	if member.table != want {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The list %s has member type %s; a %s cannot be added.", list.id, want, member.table)
	}
	if dynamic, _ := lrec.vals["type"].(bool); dynamic {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The list %s is dynamic: its members come from its query and cannot be added.", list.id)
	}
	if locked, _ := lrec.vals["lockstatus"].(bool); locked {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The list %s is locked; no members can be added.", list.id)
	}
	for _, m := range e.rows["listmember"] {
		if m.vals["listid"] == list && m.vals["entityid"] == member {
			return errorf(http.StatusPreconditionFailed, codeDuplicateRecord, "A record with matching key values already exists.")
		}
	}
	vals["entitytype"] = member.table
	return nil
}

// addMemberCountLocked keeps list.membercount in step with its listmember rows.
// The platform's update of the column is a change of the list: it takes a new
// version (so change tracking reports the list) but raises no Update event.
func (e *Emulator) addMemberCountLocked(member map[string]any, delta int64) {
	list, _ := member["listid"].(ref)
	if lrec := e.rows["list"][list.id]; lrec != nil {
		n, _ := lrec.vals["membercount"].(int64)
		vals := maps.Clone(lrec.vals)
		vals["membercount"] = max(n+delta, 0)
		e.version++
		vals["versionnumber"] = e.version
		e.saveLocked("list", lrec.id)
		lrec.vals, lrec.version = vals, e.version
	}
}

// delete handles DELETE /<set>(<id>), with an optional If-Match etag.
func (e *Emulator) delete(w http.ResponseWriter, r *http.Request, t *table, id string, caller *principal) error {
	o := e.newOp(caller)
	calls, err := e.deleteRow(t, id, r.Header.Get("If-Match"), o)
	if err != nil {
		return err
	}
	e.enqueue(calls)
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteRow removes a row and captures its webhook events.
func (e *Emulator) deleteRow(t *table, id, ifMatch string, o op) ([]*stepCall, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec := e.rows[t.logical][id]
	if rec == nil {
		return nil, errNotFound(t, id)
	}
	if t.noDelete {
		return nil, errReadOnlyTable(t, "Delete")
	}
	if ifMatch != "" && !etagMatches(ifMatch, rec) {
		return nil, errorf(http.StatusPreconditionFailed, codeVersionMismatch, "The version of the existing record doesn't match the RowVersion property provided.")
	}
	e.removeLocked(t, rec)
	return e.hooksLocked(o, func() []rowChange { return deleteChanges(t, rec) }), nil
}

// removeLocked deletes a row and what depends on it: list memberships cascade
// (they are the intersect of an N:N relationship); other lookups to the row are
// cleared, Dataverse's default "remove link" behaviour.
func (e *Emulator) removeLocked(t *table, rec *record) {
	e.saveLocked(t.logical, rec.id)
	delete(e.rows[t.logical], rec.id)
	e.tombstoneLocked(t, rec.id)
	if t.logical == "listmember" {
		e.addMemberCountLocked(rec.vals, -1)
	}
	gone := ref{table: t.logical, id: rec.id}
	for _, m := range e.rows["listmember"] {
		if m.vals["listid"] == gone || m.vals["entityid"] == gone {
			e.saveLocked("listmember", m.id)
			delete(e.rows["listmember"], m.id)
			e.addMemberCountLocked(m.vals, -1)
		}
	}
	// Campaign items name their item by GUID, not by a lookup the loop below
	// would find; their campaign's lookup cascades there.
	for _, in := range []intersect{campaignItems, campaignActivityItems} {
		for _, m := range e.rows[in.table] {
			if in.itemOf(m.vals) == gone {
				e.saveLocked(in.table, m.id)
				delete(e.rows[in.table], m.id)
			}
		}
	}
	for _, other := range e.reg.tables {
		for _, row := range e.rows[other.logical] {
			var changed map[string]any
			for _, c := range other.columns {
				if c.cascade && row.vals[c.name] == gone {
					e.removeLocked(other, row) // a step goes with its endpoint, an image with its step
					changed = nil
					break
				}
				if c.typ == typeLookup && row.vals[c.name] == gone {
					if changed == nil {
						changed = maps.Clone(row.vals)
					}
					delete(changed, c.name)
				}
			}
			if changed != nil {
				e.version++
				changed["versionnumber"] = e.version
				e.saveLocked(other.logical, row.id)
				row.vals, row.version = changed, e.version
			}
		}
	}
}

// entityID is the OData-EntityId of a row.
func entityID(r *http.Request, t *table, id string) string {
	return fmt.Sprintf("%s/api/data/v9.2/%s(%s)", baseURL(r), t.set, id)
}
