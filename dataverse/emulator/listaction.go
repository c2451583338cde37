package emulator

import (
	"fmt"
	"net/http"
	"strings"
)

// Marketing-list actions (reference/dataverse.md §4.7) and the list N:N
// relationships written through $ref (§4.3, relationship.go), with the events of
// §3.6:
//
//	POST /lists(<id>)/Microsoft.Dynamics.CRM.AddMemberList {"EntityId":…}        → 200 {"Id":<listmember>}; AddMember (ListId, EntityId)
//	POST /AddListMembersList {"List":{…},"Members":[{"@odata.type":…},…]}         → 204; AddListMembers (ListId, MemberIds)
//	POST /lists(<id>)/Microsoft.Dynamics.CRM.RemoveMemberList {"EntityId":…}     → 204; RemoveMember (ListId, EntityId)
//	POST /lists(<id>)/Microsoft.Dynamics.CRM.CopyDynamicListToStatic             → 200 the new static list; Create of it and CopyDynamicListToStatic
//	POST /lists(<id>)/listcontact_association/$ref {"@odata.id":…}               → 204; Associate (Target, Relationship, RelatedEntities)
//	DELETE /lists(<id>)/listcontact_association(<id>)/$ref (or /$ref?$id=<uri>)  → 204; Disassociate
//
// and the same relationships from the member's side (/contacts(<id>)/
// listcontact_association/$ref naming the list). A member's table must be the
// list's member type (createdfromcode: 1 account, 2 contact, 4 lead); only static,
// unlocked lists take members; a member is in a list once. The rules for
// associations are the actions' (the reference leaves open whether they differ).
//
// Where the reference is silent the emulator chose: AddMemberList for a record
// that is a member already answers that membership's id, AddListMembersList skips
// such records, RemoveMemberList and Disassociate of a record that is no member
// succeed without a change (each still raises its event), and an Associate of a
// member already there fails with DuplicateRecord as other N:N associations do.
// The copy of a dynamic list is named "<name> (static copy)".

// Names of the list actions.
const (
	actionAddMemberList    = "AddMemberList"
	actionAddListMembers   = "AddListMembersList"
	actionRemoveMemberList = "RemoveMemberList"
	actionCopyDynamic      = "CopyDynamicListToStatic"
)

// memberTypes maps list.createdfromcode to the member table.
var memberTypes = map[int64]string{1: "account", 2: "contact", 4: "lead"}

// rowOperation handles what follows a row's key: bound custom APIs, the bound
// list and campaign actions, GET of a collection-valued navigation property and
// $ref.
func (e *Emulator) rowOperation(w http.ResponseWriter, r *http.Request, t *table, id, tail string, caller *principal) error {
	name, qualified := strings.CutPrefix(tail, "Microsoft.Dynamics.CRM.")
	if api, ok := e.boundCustomAPI(t.logical, name); ok {
		if !qualified {
			return errUnqualified()
		}
		return e.invokeCustomAPI(w, r, t, id, api, caller)
	}
	if t.logical == "list" {
		switch name {
		case actionAddMemberList, actionRemoveMemberList, actionCopyDynamic:
			if !qualified {
				return errUnqualified()
			}
			if r.Method != http.MethodPost {
				return errMethod(r)
			}
			switch name {
			case actionAddMemberList:
				return e.addMemberList(w, r, t, id, caller)
			case actionRemoveMemberList:
				return e.removeMemberList(w, r, t, id, caller)
			}
			return e.copyDynamicList(w, r, t, id, caller)
		case actionAddItemCampaign:
			if !qualified {
				return errUnqualified()
			}
			if r.Method != http.MethodPost {
				return errMethod(r)
			}
			return e.addItemCampaign(w, r, t, id, caller)
		}
	}
	if r.Method == http.MethodGet {
		if ok, err := e.navigation(w, r, t, id, tail); ok {
			return err
		}
	}
	if nav, rest, ok := strings.Cut(tail, "/"); ok && rest == "$ref" {
		return e.reference(w, r, t, id, nav, caller)
	}
	return errNotImplemented("'" + tail + "' on a row (single properties, other navigation properties and bound operations)")
}

// guidParam reads a Guid action parameter.
func guidParam(body map[string]any, name string) (string, error) {
	s, _ := body[name].(string)
	id, ok := parseGUID(s)
	if !ok {
		return "", errorf(http.StatusBadRequest, codeInvalidArgument, "The parameter '%s' is missing or is not a GUID.", name)
	}
	return id, nil
}

// actionEvent is an action's event on the row it concerns (the list of a list
// action, the campaign of AddItemCampaign).
func actionEvent(message string, t *table, rec *record, input, output []wireKV) rowChange {
	return rowChange{message: message, t: t, id: rec.id, post: rec.vals, input: input, output: output}
}

// addMemberLocked makes member a member of the list, or finds the membership that
// exists; added says which.
func (e *Emulator) addMemberLocked(list *record, member ref, caller *principal) (rec *record, added bool, err error) {
	return e.linkLocked(listMembers, ref{table: "list", id: list.id}, member, caller)
}

// memberTable is the table a list's members come from.
func memberTable(list *record) string {
	code, _ := list.vals["createdfromcode"].(int64)
	return memberTypes[code]
}

// lockListForMember reads the EntityId of AddMemberList or RemoveMemberList and
// finds the list; on success the emulator's lock is held and the caller unlocks.
func (e *Emulator) lockListForMember(w http.ResponseWriter, r *http.Request, t *table, listID string, caller *principal) (string, *record, op, error) {
	body, err := readBody(w, r, t)
	if err != nil {
		return "", nil, op{}, err
	}
	entityID, err := guidParam(body, "EntityId")
	if err != nil {
		return "", nil, op{}, err
	}
	o := e.newOp(caller)
	e.mu.Lock()
	list := e.rows["list"][listID]
	if list == nil {
		e.mu.Unlock()
		return "", nil, op{}, errNotFound(t, listID)
	}
	return entityID, list, o, nil
}

// addMemberList handles AddMemberList.
func (e *Emulator) addMemberList(w http.ResponseWriter, r *http.Request, t *table, listID string, caller *principal) error {
	entityID, list, o, err := e.lockListForMember(w, r, t, listID, caller)
	if err != nil {
		return err
	}
	lm, _, err := e.addMemberLocked(list, ref{table: memberTable(list), id: entityID}, caller)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	list = e.rows["list"][listID] // membercount took a new version
	calls := e.hooksLocked(o, func() []rowChange {
		return []rowChange{actionEvent(msgAddMember, t, list,
			[]wireKV{{"ListId", listID}, {"EntityId", entityID}}, []wireKV{{"Id", lm.id}})}
	})
	e.mu.Unlock()
	e.enqueue(calls)
	writeIDResponse(w, r, "AddMemberListResponse", "Id", lm.id)
	return nil
}

// writeIDResponse answers an action whose response type holds one id:
// {"@odata.context":"…#Microsoft.Dynamics.CRM.<responseType>","<prop>":"<id>"}.
func writeIDResponse(w http.ResponseWriter, r *http.Request, responseType, prop, id string) {
	b := []byte(`{"@odata.context":`)
	b = appendString(b, baseURL(r)+"/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM."+responseType)
	b = append(b, ',')
	b = appendString(b, prop)
	b = append(b, ':')
	b = appendString(b, id)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
}

// addListMembers handles the unbound AddListMembersList: all members or none.
func (e *Emulator) addListMembers(w http.ResponseWriter, r *http.Request, caller *principal) error {
	lt := e.reg.byName["list"]
	body, err := readBody(w, r, lt)
	if err != nil {
		return err
	}
	listRef, err := entityParam(e.reg, body["List"], "List", lt)
	if err != nil {
		return err
	}
	listID := listRef.id
	raw, ok := body["Members"].([]any)
	if !ok {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The parameter 'Members' is missing or is not a collection.")
	}
	members := make([]ref, len(raw))
	ids := make([]any, len(raw))
	for i, v := range raw {
		m, err := entityParam(e.reg, v, fmt.Sprintf("Members[%d]", i), nil)
		if err != nil {
			return err
		}
		members[i], ids[i] = m, m.id
	}
	o := e.newOp(caller)
	e.mu.Lock()
	list := e.rows["list"][listID]
	if list == nil {
		e.mu.Unlock()
		return errNotFound(lt, listID)
	}
	tx := e.beginLocked()
	for _, m := range members {
		if _, _, err := e.addMemberLocked(list, m, caller); err != nil {
			tx.rollbackLocked()
			e.mu.Unlock()
			return err
		}
	}
	list = e.rows["list"][listID]
	calls := e.hooksLocked(o, func() []rowChange {
		return []rowChange{actionEvent(msgAddListMembers, lt, list, []wireKV{{"ListId", listID}, {"MemberIds", ids}}, nil)}
	})
	held := tx.commitLocked()
	e.mu.Unlock()
	e.enqueue(append(held, calls...))
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// removeMemberList handles RemoveMemberList.
func (e *Emulator) removeMemberList(w http.ResponseWriter, r *http.Request, t *table, listID string, caller *principal) error {
	entityID, list, o, err := e.lockListForMember(w, r, t, listID, caller)
	if err != nil {
		return err
	}
	e.removeMemberLocked(list, ref{table: memberTable(list), id: entityID})
	list = e.rows["list"][listID]
	calls := e.hooksLocked(o, func() []rowChange {
		return []rowChange{actionEvent(msgRemoveMember, t, list, []wireKV{{"ListId", listID}, {"EntityId", entityID}}, nil)}
	})
	e.mu.Unlock()
	e.enqueue(calls)
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// removeMemberLocked ends a membership if there is one.
func (e *Emulator) removeMemberLocked(list *record, member ref) {
	e.unlinkLocked(listMembers, ref{table: "list", id: list.id}, member)
}

// copyDynamicList handles CopyDynamicListToStatic: a new static list with the
// members the dynamic list's query finds now.
func (e *Emulator) copyDynamicList(w http.ResponseWriter, r *http.Request, t *table, listID string, caller *principal) error {
	o := e.newOp(caller)
	e.mu.Lock()
	list := e.rows["list"][listID]
	if list == nil {
		e.mu.Unlock()
		return errNotFound(t, listID)
	}
	if dynamic, _ := list.vals["type"].(bool); !dynamic {
		e.mu.Unlock()
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The list %s is static; only a dynamic list can be copied to a static one.", listID)
	}
	members, err := e.dynamicMembersLocked(list)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	tx := e.beginLocked()
	vals := map[string]any{"type": false}
	for _, col := range []string{"listname", "createdfromcode", "purpose", "source", "description", "donotsendonoptout", "ignoreinactivelistmembers"} {
		if v, ok := list.vals[col]; ok {
			vals[col] = v
		}
	}
	name, _ := vals["listname"].(string)
	vals["listname"] = truncateRunes(name+" (static copy)", 128)
	copied, err := e.insertLocked(t, caller, &change{vals: vals}, "")
	if err == nil {
		for _, m := range members {
			if _, _, err = e.addMemberLocked(copied, m, caller); err != nil {
				break
			}
		}
	}
	if err != nil {
		tx.rollbackLocked()
		e.mu.Unlock()
		return err
	}
	copied = e.rows["list"][copied.id]
	calls := e.hooksLocked(o, func() []rowChange {
		return append(createChanges(t, copied),
			actionEvent(msgCopyDynamic, t, list, []wireKV{{"ListId", listID}}, []wireKV{{"StaticListId", copied.id}}))
	})
	held := tx.commitLocked()
	e.mu.Unlock()
	e.enqueue(append(held, calls...))
	e.mu.RLock()
	defer e.mu.RUnlock()
	if rec := e.rows["list"][copied.id]; rec != nil {
		copied = rec
	}
	return e.writeRow(w, r, t, copied, nil, parsePrefer(r.Header), http.StatusOK, "")
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// dynamicMembersLocked runs a dynamic list's query: the members it has now.
func (e *Emulator) dynamicMembersLocked(list *record) ([]ref, error) {
	q, _ := list.vals["query"].(string)
	if strings.TrimSpace(q) == "" {
		return nil, errorf(http.StatusBadRequest, codeInvalidArgument, "The dynamic list %s has no query.", list.id)
	}
	fq, err := parseFetch(e.reg, q)
	if err != nil {
		return nil, err
	}
	var out []ref
	seen := map[string]bool{}
	for _, row := range e.evalFetchLocked(fq) {
		if !seen[row.main.id] {
			seen[row.main.id] = true
			out = append(out, ref{table: fq.t.logical, id: row.main.id})
		}
	}
	return out, nil
}

// checkList validates a dynamic list's query: well-formed FetchXML the emulator
// can run, on the list's member table.
func checkList(e *Emulator, vals map[string]any) error {
	q, _ := vals["query"].(string)
	dynamic, _ := vals["type"].(bool)
	if !dynamic || strings.TrimSpace(q) == "" {
		return nil
	}
	fq, err := parseFetch(e.reg, q)
	if err != nil {
		return err
	}
	code, _ := vals["createdfromcode"].(int64)
	if want := memberTypes[code]; fq.t.logical != want {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The query of a list of %s members must be on %s, not %s.", want, want, fq.t.logical)
	}
	return nil
}
