package emulator

import (
	"net/http"
	"slices"
	"strings"
)

// Campaign actions (reference/dataverse.md §4.7, §5; Microsoft's Web API action
// reference for AddItemCampaign and AddItemCampaignActivity), which link lists to
// campaigns and campaign activities like $ref on campaignlist_association and
// campaignactivitylist_association does (relationship.go):
//
//	POST /lists(<id>)/Microsoft.Dynamics.CRM.AddItemCampaign {"Campaign":{"@odata.type":"Microsoft.Dynamics.CRM.campaign","campaignid":…}}
//	  → 200 the campaignitem; AddItemCampaign (CampaignId, EntityId, EntityName → CampaignItemId)
//	POST /AddItemCampaignActivity {"CampaignActivity":{…,"activityid":…},"Item":{"@odata.type":"Microsoft.Dynamics.CRM.list","listid":…}}
//	  → 200 {"CampaignActivityItemId":…}; AddItemCampaignActivity (CampaignActivityId, ItemId, EntityName → CampaignActivityItemId)
//
// These are the Web API forms the action reference documents (and public code
// uses): AddItemCampaign is bound to the item, not unbound with the SDK request's
// CampaignId, EntityId and EntityName, and answers the campaignitem entity; an
// unbound POST /AddItemCampaign answers 404 as an unknown segment. Item is a
// crmbaseentity parameter, so it needs its @odata.type. Items of a campaign may be
// campaigns, lists, products or sales literature, of a campaign activity lists or
// sales literature. The emulator takes lists as items of both; AddItemCampaign
// bound to a campaign (the other binding it has a table for) and items that are
// products or sales literature, which it has no table for, answer 501.
//
// Where the sources are silent the emulator chose: adding an item that is linked
// already answers the existing link (as AddMemberList does); the events are raised
// on the campaign and on the campaign activity with the SDK requests' parameter
// names, by sdkmessagefilters the emulator seeds for those tables.

// Names of the campaign actions, which are also their messages.
const (
	actionAddItemCampaign         = "AddItemCampaign"
	actionAddItemCampaignActivity = "AddItemCampaignActivity"
)

// unmodelledTables are tables Dataverse has that action parameters may name but
// the emulator does not have: naming one is not implemented rather than wrong.
var unmodelledTables = map[string]bool{"product": true, "salesliterature": true}

// entityParam reads an entity-typed action parameter,
// {"@odata.type":"Microsoft.Dynamics.CRM.<table>","<primary key>":"<id>"}: of table
// want, where @odata.type may be left out but must fit when given, or, with want
// nil (crmbaseentity parameters), of the table its @odata.type names.
func entityParam(reg *registry, v any, name string, want *table) (ref, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return ref{}, errorf(http.StatusBadRequest, codeInvalidArgument, "The parameter '%s' is missing or is not an entity.", name)
	}
	typ, _ := m["@odata.type"].(string)
	t := want
	switch {
	case want != nil && typ != "" && strings.TrimPrefix(typ, "#") != want.typeName():
		return ref{}, errorf(http.StatusBadRequest, codeODataBadRequest, "The parameter '%s' has type '%s'; it must be '%s'.", name, typ, want.typeName())
	case want == nil && typ == "":
		return ref{}, errorf(http.StatusBadRequest, codeODataBadRequest, "The parameter '%s' has no '@odata.type' annotation; it can be of several types.", name)
	case want == nil:
		logical := strings.TrimPrefix(strings.TrimPrefix(typ, "#"), "Microsoft.Dynamics.CRM.")
		if t = reg.byName[logical]; t == nil {
			if unmodelledTables[logical] {
				return ref{}, errNotImplemented("the table '" + logical + "'")
			}
			return ref{}, errorf(http.StatusBadRequest, codeODataBadRequest, "The parameter '%s' has the unknown type '%s'.", name, typ)
		}
	}
	id, err := guidParam(m, t.pk)
	return ref{table: t.logical, id: id}, err
}

// addItemCampaign handles AddItemCampaign bound to a list.
func (e *Emulator) addItemCampaign(w http.ResponseWriter, r *http.Request, t *table, listID string, caller *principal) error {
	body, err := readBody(w, r, t)
	if err != nil {
		return err
	}
	ct := e.reg.byName["campaign"]
	campaign, err := entityParam(e.reg, body["Campaign"], "Campaign", ct)
	if err != nil {
		return err
	}
	item := ref{table: t.logical, id: listID}
	link, err := e.addItem(ct, campaign, campaignItems, item, caller, func(owner, link *record) rowChange {
		return actionEvent(actionAddItemCampaign, ct, owner,
			[]wireKV{{"CampaignId", campaign.id}, {"EntityId", item.id}, {"EntityName", item.table}},
			[]wireKV{{"CampaignItemId", link.id}})
	})
	if err != nil {
		return err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.writeRow(w, r, e.reg.byName[campaignItems.table], link, nil, parsePrefer(r.Header), http.StatusOK, "")
}

// addItemCampaignActivity handles the unbound AddItemCampaignActivity.
func (e *Emulator) addItemCampaignActivity(w http.ResponseWriter, r *http.Request, caller *principal) error {
	at := e.reg.byName["campaignactivity"]
	body, err := readBody(w, r, at)
	if err != nil {
		return err
	}
	activity, err := entityParam(e.reg, body["CampaignActivity"], "CampaignActivity", at)
	if err != nil {
		return err
	}
	item, err := entityParam(e.reg, body["Item"], "Item", nil)
	if err != nil {
		return err
	}
	link, err := e.addItem(at, activity, campaignActivityItems, item, caller, func(owner, link *record) rowChange {
		return actionEvent(actionAddItemCampaignActivity, at, owner,
			[]wireKV{{"CampaignActivityId", activity.id}, {"ItemId", item.id}, {"EntityName", item.table}},
			[]wireKV{{"CampaignActivityItemId", link.id}})
	})
	if err != nil {
		return err
	}
	writeIDResponse(w, r, "AddItemCampaignActivityResponse", "CampaignActivityItemId", link.id)
	return nil
}

// addItem links item to the owner row (a campaign or campaign activity), or finds
// their link, and raises the action's event.
func (e *Emulator) addItem(ot *table, owner ref, in intersect, item ref, caller *principal, event func(owner, link *record) rowChange) (*record, error) {
	o := e.newOp(caller)
	e.mu.Lock()
	orec := e.rows[ot.logical][owner.id]
	if orec == nil {
		e.mu.Unlock()
		return nil, errNotFound(ot, owner.id)
	}
	link, _, err := e.linkLocked(in, owner, item, caller)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	calls := e.hooksLocked(o, func() []rowChange { return []rowChange{event(orec, link)} })
	e.mu.Unlock()
	e.enqueue(calls)
	return link, nil
}

// checkItem keeps the rows of a campaign intersect table to what the actions
// accept: an item of one of types that exists, linked once.
func checkItem(in intersect, types ...string) func(e *Emulator, vals map[string]any) error {
	return func(e *Emulator, vals map[string]any) error {
		owner, _ := vals[in.ownerCol].(ref)
		item := in.itemOf(vals)
		if !slices.Contains(types, item.table) {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "A %s cannot be an item of a %s; its items are of the types %s.",
				item.table, owner.table, strings.Join(types, ", "))
		}
		it := e.reg.byName[item.table]
		if it == nil {
			return errNotImplemented("items of the table '" + item.table + "'")
		}
		if e.rows[item.table][item.id] == nil {
			return errNotFound(it, item.id)
		}
		if m := e.findLinkLocked(in, owner, item); m != nil && m.id != vals[e.reg.byName[in.table].pk] {
			return errorf(http.StatusPreconditionFailed, codeDuplicateRecord, "Cannot insert duplicate key.")
		}
		return nil
	}
}
