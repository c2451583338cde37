package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"crmsync/dataverse"
	"crmsync/store"
)

// Reads through the Web API on the CRM → eMS side: the related rows of LOOKUP
// mappings, and the whole row when a webhook came without it (a body over 256 KB)
// or when the anti-entropy sweep found a change no webhook brought.

// webAPI gives a connection's Web API client; *CRMClients is the one in use.
type webAPI interface {
	For(conn *store.Connection) (*dataverse.Client, error)
}

// secretOpener is the part of the store that opens a connection's client secret.
type secretOpener interface {
	CRMClientSecret(c *store.Connection) (string, error)
}

// storeClients makes the Web API clients of the CRM → eMS steps from the store's
// sealed client secrets; nil when the store cannot open them (a test double), and
// the steps then report that they cannot read through the Web API.
func storeClients(st RecipientStore) webAPI {
	if so, ok := st.(secretOpener); ok {
		return &CRMClients{Secret: so.CRMClientSecret}
	}
	return nil
}

// apiOf is the Web API clients to use: crm when given, else clients made from the
// store's secrets.
func apiOf(st *store.Store, crm *CRMClients) webAPI {
	if crm != nil {
		return crm
	}
	return storeClients(st)
}

// errNoWebAPI is what a step without Web API clients reports.
var errNoWebAPI = errors.New("crmsync was started without access to the Web API")

func clientFor(api webAPI, conn *store.Connection) (*dataverse.Client, error) {
	if api == nil {
		return nil, errNoWebAPI
	}
	return api.For(conn)
}

// recipientColumns are the columns of a recipient table that the CRM → eMS rules
// read: the address, consent flags, state, owning business unit, modification time,
// and the connection's mapped and language columns (lookups as _<name>_value). The
// order is stable, so a delta link made with them can be recognised.
func recipientColumns(conn *store.Connection, entity string) []string {
	base := []string{"emailaddress1", "modifiedon", "statecode", "statuscode", "donotbulkemail", "donotemail", "_owningbusinessunit_value"}
	var extra []string
	for _, m := range conn.FieldMappings {
		if m.CRMEntity != entity {
			continue
		}
		if m.Kind == store.MappingLookup {
			lookup, _, _ := strings.Cut(deref(m.LookupPath), ".")
			extra = append(extra, "_"+lookup+"_value")
			continue
		}
		extra = append(extra, m.CRMAttribute)
	}
	for _, m := range conn.LanguageMappings {
		extra = append(extra, m.CRMAttribute)
	}
	slices.Sort(extra)
	for _, c := range slices.Compact(extra) {
		if !slices.Contains(base, c) {
			base = append(base, c)
		}
	}
	return base
}

// subscriptionColumns are the columns of cs_subscription that subscriptionChanged reads.
var subscriptionColumns = []string{"cs_groupid", "cs_subscribed", "_cs_contactid_value", "_cs_leadid_value", "_cs_accountid_value", "modifiedon", "statecode"}

// readColumns are the columns the CRM → eMS steps read of a table.
func readColumns(conn *store.Connection, entity string) []string {
	if entity == subscriptionTable {
		return subscriptionColumns
	}
	return recipientColumns(conn, entity)
}

// subscriptionTable is the connector solution's table of per-group subscriptions.
const subscriptionTable = "cs_subscription"

// tableSet is the Web API entity set of a table. Dataverse derives it from the
// table's plural name; for the standard tables and the connector's own that is the
// English plural of the logical name (account → accounts, territory →
// territories, transactioncurrency → transactioncurrencies).
func tableSet(logical string) string {
	switch {
	case strings.HasSuffix(logical, "y") && len(logical) > 1 && !strings.ContainsRune("aeiou", rune(logical[len(logical)-2])):
		return logical[:len(logical)-1] + "ies"
	case strings.HasSuffix(logical, "s"), strings.HasSuffix(logical, "x"), strings.HasSuffix(logical, "ch"), strings.HasSuffix(logical, "sh"):
		return logical + "es"
	}
	return logical + "s"
}

// webDateTime matches the Web API's date-and-time values (UTC, ISO 8601), the only
// strings that become times: a webhook carries those columns as DateTime.
var webDateTime = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$`)

// rowEntity turns a Web API row into the Entity a webhook would have carried, so
// the same rules apply to it: lookups (_<name>_value) become EntityReferences
// under their column's name, whole numbers int64 (choice columns included, which
// the rules read either way), date-and-time strings times; annotations are dropped.
func rowEntity(logical, id string, row dataverse.Row) *dataverse.Entity {
	e := &dataverse.Entity{LogicalName: logical, ID: id, Attributes: make(map[string]any, len(row))}
	for k, v := range row {
		if strings.Contains(k, "@") {
			continue
		}
		if name, ok := strings.CutPrefix(k, "_"); ok && strings.HasSuffix(name, "_value") {
			name = strings.TrimSuffix(name, "_value")
			if target, _ := v.(string); target != "" {
				e.Attributes[name] = dataverse.EntityReference{LogicalName: row.LookupTable(name), ID: strings.ToLower(target)}
			} else {
				e.Attributes[name] = nil
			}
			continue
		}
		e.Attributes[k] = webValue(v)
	}
	return e
}

// webValue turns one Web API column value into the type a webhook decodes it to.
func webValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case string:
		if webDateTime.MatchString(x) {
			if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return t.UTC()
			}
		}
	}
	return v
}

// allColumns is the changed-column test of a row read through the Web API: what
// changed is not known, so every column read counts as changed.
func allColumns(string) bool { return true }

// eventRow is the row a CRM event is about and which of its columns changed: the
// event's own (images, then Target), or, when the webhook came without it (a body
// over 256 KB), the row as it is now, read through the Web API with the columns
// the rules need. row is nil when the row no longer exists in the CRM; a warning
// says so.
func eventRow(ctx context.Context, ev *Event, api webAPI) (row *dataverse.Entity, changed func(string) bool, err error) {
	ec := ev.Context
	if !ec.NeedsReread() {
		return ec.Merged(), changedColumns(ec), nil
	}
	client, err := clientFor(api, ev.Connection)
	if err != nil {
		return nil, nil, Permanent(fmt.Errorf("the event does not carry the row (body over 256 KB) and it cannot be read back through the Web API: %w", err))
	}
	got, err := client.Get(ctx, tableSet(ec.PrimaryEntityName), ec.PrimaryEntityID, readColumns(ev.Connection, ec.PrimaryEntityName))
	if errors.Is(err, dataverse.ErrNotFound) {
		ev.Warn(fmt.Sprintf("the event does not carry the row (body over 256 KB) and %s %s no longer exists in the CRM; nothing was applied", ec.PrimaryEntityName, ec.PrimaryEntityID))
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, crmError(fmt.Errorf("re-read the row of an event over 256 KB: %w", err))
	}
	return rowEntity(ec.PrimaryEntityName, ec.PrimaryEntityID, got), allColumns, nil
}

// lookupTarget is one related row to read and the attributes wanted of it, each
// under the lookup path of the mapping that wants it.
type lookupTarget struct {
	table, id string
	attrs     []string
	paths     []string
}

// resolveLookups reads, through the Web API, the related rows' attributes that the
// connection's LOOKUP mappings of the row's table name, for the lookups the event
// changed, and puts each value in row under its lookup path
// ("parentcustomerid.name"), where applyMappings finds it; a cleared lookup puts
// nil there, which clears the field. One related row is read once per event,
// whatever number of mappings want it. A lookup that cannot be resolved (no CRM
// credentials, a related row that is gone) is a warning and leaves its field alone;
// a Web API failure worth retrying fails the event, to be retried.
func resolveLookups(ctx context.Context, ev *Event, api webAPI, row *dataverse.Entity, changed func(string) bool) error {
	var targets []*lookupTarget
	for _, m := range ev.Connection.FieldMappings {
		if m.Kind != store.MappingLookup || m.CRMEntity != row.LogicalName {
			continue
		}
		path := deref(m.LookupPath)
		lookup, attr, _ := strings.Cut(path, ".")
		raw, present := row.Attributes[lookup]
		if !present || !changed(lookup) {
			continue
		}
		if raw == nil {
			row.Attributes[path] = nil
			continue
		}
		ref, ok := raw.(dataverse.EntityReference)
		if !ok || ref.ID == "" || ref.LogicalName == "" {
			ev.Warn(fmt.Sprintf("%s is not a lookup the Web API can follow; %s was not changed", lookup, m.SubscriberField))
			continue
		}
		i := slices.IndexFunc(targets, func(t *lookupTarget) bool { return t.table == ref.LogicalName && t.id == ref.ID })
		if i < 0 {
			targets = append(targets, &lookupTarget{table: ref.LogicalName, id: ref.ID})
			i = len(targets) - 1
		}
		targets[i].attrs = append(targets[i].attrs, attr)
		targets[i].paths = append(targets[i].paths, path)
	}
	if len(targets) == 0 {
		return nil
	}
	client, err := clientFor(api, ev.Connection)
	if err != nil {
		reason := err.Error()
		if errors.Is(err, ErrNoCredentials) {
			reason = "the connection has no clientId and clientSecret, so crmsync cannot read the related row through the Web API"
		}
		for _, t := range targets {
			ev.Warn(fmt.Sprintf("lookup mapping %s not applied: %s", strings.Join(t.paths, ", "), reason))
		}
		return nil
	}
	for _, t := range targets {
		related, err := client.Get(ctx, tableSet(t.table), t.id, slices.Compact(slices.Sorted(slices.Values(t.attrs))))
		if err != nil {
			if errors.Is(err, dataverse.ErrNotFound) || isPermanent(crmError(err)) {
				ev.Warn(fmt.Sprintf("lookup mapping %s not applied: the related %s %s cannot be read: %v", strings.Join(t.paths, ", "), t.table, t.id, err))
				continue
			}
			return fmt.Errorf("read %s %s for a lookup mapping: %w", t.table, t.id, err)
		}
		for i, path := range t.paths {
			row.Attributes[path] = webValue(related[t.attrs[i]])
		}
	}
	return nil
}

// mappedColumn is the row attribute a mapping reads: the column itself, or for a
// LOOKUP the lookup path under which resolveLookups put the related row's value.
func mappedColumn(m store.FieldMapping) string {
	if m.Kind == store.MappingLookup {
		return cmp.Or(deref(m.LookupPath), m.CRMAttribute)
	}
	return m.CRMAttribute
}
