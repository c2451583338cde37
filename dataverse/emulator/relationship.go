package emulator

import (
	"net/http"
	"net/url"
	"strings"
)

// N:N relationships (reference/dataverse.md §4.3, §5), written through $ref from
// either side and read from either side as a collection-valued navigation
// property:
//
//	POST   /lists(<id>)/listcontact_association/$ref {"@odata.id":"…/contacts(<id>)"}  → 204; Associate
//	DELETE /lists(<id>)/listcontact_association(<id>)/$ref (or /$ref?$id=<uri>)        → 204; Disassociate
//	GET    /campaigns(<id>)/campaignlist_association?$select=listname                   → the related lists
//
// Each link is a row of the relationship's intersect table: listmember for the
// list relationships, campaignitem for campaignlist_association and
// campaignactivityitem for campaignactivitylist_association. A GET of a 1:N
// property (campaignresponse_activity_parties) reads the rows whose lookup
// names the row. Both kinds of GET take the query options of a collection
// ($select, $filter, $orderby, $top, $count, $expand, paging), and
// @odata.context names the related entity set, as OData does for a navigation
// property bound to one.
//
// Where the reference is silent the emulator chose: an Associate of rows linked
// already fails with DuplicateRecord; a Disassociate of rows that are not
// linked succeeds without a change and still raises its event.

// intersect says how an intersect table stores one link: a lookup to the owner
// and the item either as a lookup (typeCol "") or as a GUID with its table's
// logical name beside it.
type intersect struct {
	table    string
	ownerCol string
	itemCol  string
	typeCol  string
}

// The intersect tables.
var (
	listMembers           = intersect{table: "listmember", ownerCol: "listid", itemCol: "entityid"}
	campaignItems         = intersect{table: "campaignitem", ownerCol: "campaignid", itemCol: "entityid", typeCol: "entitytype"}
	campaignActivityItems = intersect{table: "campaignactivityitem", ownerCol: "campaignactivityid", itemCol: "itemid", typeCol: "itemobjecttypecode"}
)

// itemOf is the item an intersect row links.
func (in intersect) itemOf(vals map[string]any) ref {
	if in.typeCol == "" {
		r, _ := vals[in.itemCol].(ref)
		return r
	}
	id, _ := vals[in.itemCol].(string)
	typ, _ := vals[in.typeCol].(string)
	return ref{table: typ, id: id}
}

// link is the change that creates an intersect row.
func (in intersect) link(owner, item ref) *change {
	vals := map[string]any{in.ownerCol: owner}
	if in.typeCol == "" {
		vals[in.itemCol] = item
	} else {
		vals[in.itemCol], vals[in.typeCol] = item.id, item.table
	}
	return &change{vals: vals}
}

// relationship is an N:N relationship between an owner table, whose rows the
// intersect's lookup names, and an item table.
type relationship struct {
	owner, item string // logical names
	pairs       intersect
}

// relationships are the N:N relationships the emulator has, by schema name.
var relationships = map[string]relationship{
	"listaccount_association":          {owner: "list", item: "account", pairs: listMembers},
	"listcontact_association":          {owner: "list", item: "contact", pairs: listMembers},
	"listlead_association":             {owner: "list", item: "lead", pairs: listMembers},
	"campaignlist_association":         {owner: "campaign", item: "list", pairs: campaignItems},
	"campaignactivitylist_association": {owner: "campaignactivity", item: "list", pairs: campaignActivityItems},
}

// other is the table across the relationship from t, false when t is on neither
// side.
func (rel relationship) other(t *table) (string, bool) {
	switch t.logical {
	case rel.owner:
		return rel.item, true
	case rel.item:
		return rel.owner, true
	}
	return "", false
}

// findLinkLocked is the intersect row linking owner and item, nil if none.
func (e *Emulator) findLinkLocked(in intersect, owner, item ref) *record {
	for _, m := range e.rows[in.table] {
		if m.vals[in.ownerCol] == owner && in.itemOf(m.vals) == item {
			return m
		}
	}
	return nil
}

// linkLocked links owner and item, or finds their link; added says which. The
// intersect table's rules (its check, or the list rules of listmember) decide
// whether the link may be made.
func (e *Emulator) linkLocked(in intersect, owner, item ref, caller *principal) (rec *record, added bool, err error) {
	if m := e.findLinkLocked(in, owner, item); m != nil {
		return m, false, nil
	}
	rec, err = e.insertLocked(e.reg.byName[in.table], caller, in.link(owner, item), "")
	return rec, err == nil, err
}

// unlinkLocked ends the link of owner and item if there is one.
func (e *Emulator) unlinkLocked(in intersect, owner, item ref) {
	if m := e.findLinkLocked(in, owner, item); m != nil {
		e.removeLocked(e.reg.byName[in.table], m)
	}
}

// reference handles POST and DELETE of …/<relationship>/$ref, from either side.
func (e *Emulator) reference(w http.ResponseWriter, r *http.Request, t *table, id, nav string, caller *principal) error {
	navName, key := nav, ""
	if i := strings.IndexByte(nav, '('); i > 0 && strings.HasSuffix(nav, ")") {
		navName, key = nav[:i], nav[i+1:len(nav)-1]
	}
	rel, ok := relationships[navName]
	if !ok {
		return errNotImplemented("$ref on the navigation property '" + navName + "'")
	}
	other, ok := rel.other(t)
	if !ok {
		return errNoProperty(t, navName)
	}
	ot := e.reg.byName[other]
	var otherID string
	switch r.Method {
	case http.MethodPost:
		if key != "" {
			return errMethod(r)
		}
		body, err := readBody(w, r, t)
		if err != nil {
			return err
		}
		s, _ := body["@odata.id"].(string)
		if otherID, err = rowRefID(e.reg, ot, s); err != nil {
			return err
		}
	case http.MethodDelete:
		var err error
		if key != "" {
			otherID, err = parseKey(ot, key)
		} else {
			otherID, err = rowRefID(e.reg, ot, r.URL.Query().Get("$id"))
		}
		if err != nil {
			return err
		}
	default:
		return errMethod(r)
	}
	ownerID, itemID := id, otherID
	if t.logical != rel.owner {
		ownerID, itemID = otherID, id
	}
	owner, item := ref{table: rel.owner, id: ownerID}, ref{table: rel.item, id: itemID}
	o := e.newOp(caller)
	e.mu.Lock()
	switch {
	case e.rows[t.logical][id] == nil:
		e.mu.Unlock()
		return errNotFound(t, id)
	case e.rows[rel.owner][ownerID] == nil:
		e.mu.Unlock()
		return errNotFound(e.reg.byName[rel.owner], ownerID)
	}
	message := msgAssociate
	if r.Method == http.MethodPost {
		_, added, err := e.linkLocked(rel.pairs, owner, item, caller)
		if err == nil && !added {
			err = errorf(http.StatusPreconditionFailed, codeDuplicateRecord, "Cannot insert duplicate key.")
		}
		if err != nil {
			e.mu.Unlock()
			return err
		}
	} else {
		message = msgDisassociate
		e.unlinkLocked(rel.pairs, owner, item)
	}
	self := e.rows[t.logical][id] // a list's membercount took a new version
	calls := e.hooksLocked(o, func() []rowChange {
		return []rowChange{{message: message, t: t, id: id, post: self.vals, input: []wireKV{
			{"Target", wireRef{logical: t.logical, id: id}},
			{"Relationship", wireRelationship(navName)},
			{"RelatedEntities", []any{wireRef{logical: other, id: otherID}}},
		}}}
	})
	e.mu.Unlock()
	e.enqueue(calls)
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rowRefID reads the id out of an entity reference URL ("…/contacts(<id>)") that
// must name a row of t.
func rowRefID(reg *registry, t *table, s string) (string, error) {
	bad := errorf(http.StatusBadRequest, codeODataBadRequest, "The reference '%s' does not name a row of '%s'.", s, t.set)
	if s == "" {
		return "", bad
	}
	last := s
	if u, err := url.Parse(s); err == nil {
		last = u.Path
	}
	if i := strings.LastIndexByte(last, '/'); i >= 0 {
		last = last[i+1:]
	}
	open := strings.IndexByte(last, '(')
	if open <= 0 || !strings.HasSuffix(last, ")") || reg.bySet[last[:open]] != t {
		return "", bad
	}
	return parseKey(t, last[open+1:len(last)-1])
}

// navigation handles GET /<set>(<id>)/<property> of an N:N relationship or a 1:N
// property: the related rows as a collection; false when name is neither.
func (e *Emulator) navigation(w http.ResponseWriter, r *http.Request, t *table, id, name string) (bool, error) {
	self := ref{table: t.logical, id: id}
	var target *table
	var related func() map[string]*record
	if rel, ok := relationships[name]; ok {
		other, ok := rel.other(t)
		if !ok {
			return true, errNoProperty(t, name)
		}
		target = e.reg.byName[other]
		related = func() map[string]*record {
			out := map[string]*record{}
			for _, m := range e.rows[rel.pairs.table] {
				mine, _ := m.vals[rel.pairs.ownerCol].(ref)
				theirs := rel.pairs.itemOf(m.vals)
				if theirs.table != rel.item {
					continue // a list's members of another type, a campaign's other items
				}
				if t.logical == rel.item {
					mine, theirs = theirs, mine
				}
				if rec := e.rows[other][theirs.id]; mine == self && rec != nil {
					out[rec.id] = rec
				}
			}
			return out
		}
	} else if c, ok := t.child(name); ok {
		target = e.reg.byName[c.table]
		related = func() map[string]*record {
			out := map[string]*record{}
			for _, rec := range e.rows[c.table] {
				if rec.vals[c.col] == self {
					out[rec.id] = rec
				}
			}
			return out
		}
	} else {
		return false, nil
	}
	return true, e.list(w, r, target, &scope{
		path: t.set + "(" + id + ")/" + name,
		rows: func() (map[string]*record, error) {
			if e.rows[t.logical][id] == nil {
				return nil, errNotFound(t, id)
			}
			return related(), nil
		},
	})
}
