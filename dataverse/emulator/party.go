package emulator

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// Activity parties (reference/dataverse.md §5). An activity's party lists — a
// campaign response's customer and from — are activityparty rows, written with
// the activity by deep insert through its collection-valued navigation property:
//
//	POST /campaignresponses {"subject":…, "regardingobjectid_campaign_campaignresponse@odata.bind":"/campaigns(<id>)",
//	  "campaignresponse_activity_parties":[{"partyid_contact@odata.bind":"/contacts(<id>)","participationtypemask":11}]}
//
// and read back with GET /activityparties?$filter=_activityid_value eq <id> or
// GET /campaignresponses(<id>)/campaignresponse_activity_parties. The activity
// and its parties are created together or not at all, in a $batch too; a bind to
// a missing record fails with 404 like any other bind; deleting the activity
// deletes its parties. participationtypemask takes the values of §5 (1 to 13);
// a campaign response takes 11 Customer (an account, contact or lead) and 1 Sender
// (the from list: an account, contact or systemuser).
//
// Where the reference is silent the emulator chose: a party needs partyid (the
// emulator resolves no e-mail addresses into parties), another
// participationtypemask or party table is a 400 InvalidArgument, a deep insert in
// an update answers 501, and the activity's Create event does not carry the party
// lists in its Target.

// partyLists are the party lists of the activities the emulator has: by
// participationtypemask, the tables a party may be.
var partyLists = map[string]map[int64][]string{
	"campaignresponse": {
		1:  {"account", "contact", "systemuser"}, // from
		11: {"account", "contact", "lead"},       // customer
	},
}

// parseRelated reads the rows of a deep insert into nav, each as a body of the
// related table.
func parseRelated(reg *registry, t *table, nav oneToMany, v any) ([]*change, error) {
	raw, ok := v.([]any)
	if !ok {
		return nil, errPayload(t, "The value of the navigation property '%s' must be a collection of entities.", nav.name)
	}
	rt := reg.byName[nav.table]
	rows := make([]*change, len(raw))
	for i, item := range raw {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, errPayload(t, "Item %d of the navigation property '%s' is not an entity.", i, nav.name)
		}
		ch, err := parseChange(reg, rt, m)
		if err != nil {
			return nil, err
		}
		rows[i] = ch
	}
	return rows, nil
}

// insertRelatedLocked creates the rows of a deep insert, each pointing at rec.
func (e *Emulator) insertRelatedLocked(t *table, rec *record, rels []related, caller *principal) error {
	for _, rel := range rels {
		rt := e.reg.byName[rel.nav.table]
		for _, ch := range rel.rows {
			ch.vals[rel.nav.col] = ref{table: t.logical, id: rec.id}
			if _, err := e.insertLocked(rt, caller, ch, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkActivityParty holds a party to its activity's party lists.
func checkActivityParty(e *Emulator, vals map[string]any) error {
	activity, _ := vals["activityid"].(ref)
	mask, _ := vals["participationtypemask"].(int64)
	lists := partyLists[activity.table]
	tables, ok := lists[mask]
	if !ok {
		var valid []string
		for _, m := range slices.Sorted(maps.Keys(lists)) {
			valid = append(valid, fmt.Sprintf("%d (%s)", m, participation(e, m)))
		}
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The participationtypemask %d (%s) is not a party list of %s; use %s.",
			mask, participation(e, mask), activity.table, strings.Join(valid, " or "))
	}
	party, ok := vals["partyid"].(ref)
	if !ok {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "A %s party of a %s needs partyid.", participation(e, mask), activity.table)
	}
	if !slices.Contains(tables, party.table) {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "A %s cannot be a %s party of a %s; it takes %s.",
			party.table, participation(e, mask), activity.table, strings.Join(tables, ", "))
	}
	return nil
}

// participation is the label of a participationtypemask value.
func participation(e *Emulator, mask int64) string {
	label, _ := optionLabel(e.reg.byName["activityparty"].byName["participationtypemask"], mask)
	return label
}
