package emulator

import (
	"net/http"
	"slices"
	"strings"
)

// Custom API messages (reference/dataverse.md §7.5). The emulator plays an
// organisation with crmsync's solution installed: the solution's custom APIs
// (solution.go) are seeded as customapi rows (read-only here, as solution
// components are), with their request parameters, and calling one as a bound
// action raises its message for the webhook steps registered on it — which is how
// the "Send eMS campaign" and "Synchronize with eMS" buttons reach crmsync.

// customAPI is a custom API definition of the solution.
type customAPI struct {
	uniqueName, displayName string
	boundTable              string // entity-bound APIs only
	bindingType, stepType   int    // bindingtype, allowedcustomprocessingsteptype
	isFunction              bool
	params                  []apiParam // String parameters (type 10)
}

// apiParam is a request parameter of a custom API.
type apiParam struct {
	name, fullName string // uniquename, name
	optional       bool
}

// customAPITables is the schema of customapi and customapirequestparameter.
func customAPITables() []*table {
	return []*table{
		{
			logical: "customapi", set: "customapis", pk: "customapiid", primaryName: "name", ownership: businessOwned,
			noWrite: true, noDelete: true,
			columns: []*column{
				text("uniquename", 128).require(),
				text("name", 100),
				text("displayname", 100),
				choice("bindingtype", opts(0, "Global", 1, "Entity", 2, "EntityCollection")...).withDefault(int64(0)),
				text("boundentitylogicalname", 100),
				yesNo("isfunction", false),
				yesNo("isprivate", false),
				choice("allowedcustomprocessingsteptype", opts(0, "None", 1, "Async Only", 2, "Sync and Async")...).withDefault(int64(0)),
			},
		},
		{
			logical: "customapirequestparameter", set: "customapirequestparameters", pk: "customapirequestparameterid", primaryName: "name",
			ownership: businessOwned, noWrite: true, noDelete: true,
			columns: []*column{
				text("uniquename", 128).require(),
				text("name", 100),
				choice("type", opts(0, "Boolean", 1, "DateTime", 2, "Decimal", 3, "Entity", 4, "EntityCollection", 5, "EntityReference",
					6, "Float", 7, "Integer", 8, "Money", 9, "Picklist", 10, "String", 11, "StringArray", 12, "Guid")...).require(),
				yesNo("isoptional", false),
				lookup("customapiid", "customapi").require(),
			},
		},
	}
}

// seedCustomAPIs writes the definitions of the solution's custom APIs.
func (e *Emulator) seedCustomAPIs(put func(table, id string, vals map[string]any)) {
	for _, api := range e.apis {
		id := newID()
		put("customapi", id, map[string]any{
			"uniquename": api.uniqueName, "name": api.uniqueName, "displayname": api.displayName,
			"bindingtype": int64(api.bindingType), "boundentitylogicalname": api.boundTable,
			"isfunction": api.isFunction, "allowedcustomprocessingsteptype": int64(api.stepType),
		})
		for _, p := range api.params {
			put("customapirequestparameter", newID(), map[string]any{
				"uniquename": p.name, "name": p.fullName, "type": int64(10), "isoptional": p.optional,
				"customapiid": ref{"customapi", id},
			})
		}
	}
}

// boundCustomAPI finds the custom API bound to a table by name.
func (e *Emulator) boundCustomAPI(table, name string) (customAPI, bool) {
	for _, api := range e.apis {
		if api.uniqueName == name && api.bindingType == 1 && api.boundTable == table {
			return api, true
		}
	}
	return customAPI{}, false
}

// invokeCustomAPI handles POST /<set>(<id>)/Microsoft.Dynamics.CRM.<uniquename>: the
// bound row is the implicit Target, the body holds the parameters by unique name.
// A parameter the API does not define, one that is not a string, or a missing
// required one is refused. The APIs have no response properties, so the answer is
// 204.
func (e *Emulator) invokeCustomAPI(w http.ResponseWriter, r *http.Request, t *table, id string, api customAPI, caller *principal) error {
	if r.Method != http.MethodPost {
		return errMethod(r)
	}
	body, err := readBody(w, r, t)
	if err != nil {
		return err
	}
	var input []wireKV
	input = append(input, wireKV{"Target", wireRef{logical: t.logical, id: id}})
	for name, v := range body {
		if strings.HasPrefix(name, "@") {
			continue
		}
		if !slices.ContainsFunc(api.params, func(p apiParam) bool { return p.name == name }) {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "Request message has unresolved parameters: '%s' is not a parameter of %s.", name, api.uniqueName)
		}
		s, ok := v.(string)
		if !ok && v != nil {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "The parameter '%s' of %s must be a string.", name, api.uniqueName)
		}
		if v != nil {
			input = append(input, wireKV{name, s})
		}
	}
	for _, p := range api.params {
		if v, ok := body[p.name]; !p.optional && (!ok || v == nil) {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "Request message is missing the required parameter '%s' of %s.", p.name, api.uniqueName)
		}
	}
	o := e.newOp(caller)
	e.mu.Lock()
	rec := e.rows[t.logical][id]
	if rec == nil {
		e.mu.Unlock()
		return errNotFound(t, id)
	}
	calls := e.hooksLocked(o, func() []rowChange {
		return []rowChange{{message: api.uniqueName, t: t, id: id, post: rec.vals, input: input}}
	})
	e.mu.Unlock()
	e.enqueue(calls)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
