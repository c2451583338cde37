package emulator

import (
	"fmt"
	"strings"
)

// colType is how the Web API reads and writes a column; one registry entry drives write
// validation, $filter typing and JSON output alike.
type colType uint8

const (
	typeString     colType = iota + 1 // Edm.String, with a maximum length
	typeMemo                          // multi-line text; Edm.String
	typeBool                          // Yes/No; Edm.Boolean
	typeInt                           // whole number; Edm.Int32
	typeBigInt                        // Edm.Int64 (versionnumber)
	typeDecimal                       // Edm.Decimal
	typeMoney                         // currency; Edm.Decimal
	typeChoice                        // picklist; Edm.Int32
	typeState                         // statecode; Edm.Int32
	typeStatus                        // statuscode; Edm.Int32
	typeDateTime                      // Edm.DateTimeOffset, written back as UTC seconds
	typeDateOnly                      // Edm.Date
	typeGUID                          // uniqueidentifier (primary keys and plain GUID columns)
	typeLookup                        // lookup, customer and owner columns: read as _x_value, written through @odata.bind
	typeEntityName                    // the logical name of a related table (listmember.entitytype)
)

// edm names the OData type, for error messages that match the server's wording.
func (t colType) edm() string {
	switch t {
	case typeString, typeMemo, typeEntityName:
		return "Edm.String"
	case typeBool:
		return "Edm.Boolean"
	case typeInt, typeChoice, typeState, typeStatus:
		return "Edm.Int32"
	case typeBigInt:
		return "Edm.Int64"
	case typeDecimal, typeMoney:
		return "Edm.Decimal"
	case typeDateTime:
		return "Edm.DateTimeOffset"
	case typeDateOnly:
		return "Edm.Date"
	case typeGUID, typeLookup:
		return "Edm.Guid"
	}
	return "Edm.Untyped"
}

// access says when a column may be written; columns that are not writable are
// silently dropped from a request body, as Dataverse drops attributes that are not
// valid for create or update.
type access uint8

const (
	readWrite  access = iota
	createOnly        // IsValidForUpdate = false (list.type, list.createdfromcode)
	readOnly          // system-maintained (createdon, membercount, fullname…)
)

// ownership is the table's OwnershipType, which decides the system columns it gets.
type ownership uint8

const (
	userOwned     ownership = iota // ownerid, owninguser, owningbusinessunit
	businessOwned                  // no owner; belongs to a business unit through its own lookup
)

// option is one value of a choice, state or status column.
type option struct {
	value int
	label string
	state int // for statuscode options: the statecode they belong to
}

// nav is a single-valued navigation property through which a lookup is written with
// "<name>@odata.bind"; polymorphic lookups have one per target
// (parentcustomerid_account, parentcustomerid_contact), the owner lookup has one for
// both systemuser and team.
type nav struct {
	name    string
	targets []string // logical names
}

// column is one attribute of a table as the Web API exposes it.
type column struct {
	name     string
	typ      colType
	maxLen   int      // strings and memos; 0 = unlimited
	options  []option // choices with a closed set of values; nil accepts any int
	def      any      // value set on create when the body does not name the column
	required bool     // SystemRequired: a create without it is refused
	access   access
	navs     []nav // lookups only
	// secret columns can be written but never read (IsValidForRead = false, like
	// serviceendpoint.authvalue): reads leave them out, $select and $filter do not
	// know them, webhook bodies never carry them.
	secret bool
	// cascade deletes the row when the row its lookup points at is deleted
	// (a step with its endpoint, an image with its step), instead of clearing it.
	cascade bool
}

// property is the name a column has in JSON and in $select/$filter: lookups read as
// _<name>_value.
func (c *column) property() string {
	if c.typ == typeLookup {
		return "_" + c.name + "_value"
	}
	return c.name
}

// stateDef is one statecode value with the statuscode values valid in it (§7.4).
type stateDef struct {
	value         int
	label         string
	defaultStatus int
	statuses      []option
}

// table is one entity type with its entity set; the emulator serves exactly the
// tables in its registry.
type table struct {
	logical     string // contact
	set         string // contacts
	pk          string // contactid
	primaryName string // fullname
	stateEnum   string // ContactState, as Dataverse names it in state errors
	ownership   ownership
	columns     []*column
	states      []stateDef
	noDelete    bool                      // systemuser, businessunit
	noWrite     bool                      // sdkmessage, sdkmessagefilter: the platform's own rows, read-only through the API
	derive      func(vals map[string]any) // recomputes read-only columns (fullname) after a write
	// check validates a row about to be written (vals is the row after the change),
	// for rules that span columns or rows; it runs under the emulator's lock.
	check func(e *Emulator, vals map[string]any) error
	// tracked is EntityMetadata.ChangeTrackingEnabled (§7.2): collection reads take
	// Prefer: odata.track-changes and answer a delta link (changetrack.go).
	tracked bool
	// bulk says the table has sdkmessagefilter rows for CreateMultiple and
	// UpdateMultiple, so it takes the bulk messages of §7.1 (bulk.go).
	bulk bool
	// keys are the table's alternate keys (§4.3), which UpsertMultiple names rows by
	// and which no two rows may share.
	keys []altKey
	// children are the table's collection-valued navigation properties of 1:N
	// relationships, which a create fills by deep insert and a GET of the row's
	// property reads (party.go).
	children []oneToMany

	byProp map[string]*column // by JSON property (_x_value for lookups)
	byName map[string]*column // by logical name
	byNav  map[string]navRef  // by navigation property
}

// altKey is an alternate key: a name and the columns (logical names) whose values
// together identify a row.
type altKey struct {
	name string
	cols []string
}

// oneToMany is a collection-valued navigation property of a 1:N relationship: the
// rows of table whose lookup col points at the row
// (campaignresponse_activity_parties: the activityparty rows whose activityid is
// the campaign response).
type oneToMany struct {
	name  string
	table string // logical name of the many side
	col   string // its lookup column
}

// child returns the 1:N navigation property called name.
func (t *table) child(name string) (oneToMany, bool) {
	for _, c := range t.children {
		if c.name == name {
			return c, true
		}
	}
	return oneToMany{}, false
}

// navRef is a navigation property resolved to its lookup column.
type navRef struct {
	col *column
	nav nav
}

// typeName is the OData type name used in messages ("Microsoft.Dynamics.CRM.contact").
func (t *table) typeName() string { return "Microsoft.Dynamics.CRM." + t.logical }

// state returns the definition of a statecode value.
func (t *table) state(v int) (stateDef, bool) {
	for _, s := range t.states {
		if s.value == v {
			return s, true
		}
	}
	return stateDef{}, false
}

// statusState returns the statecode a statuscode value belongs to.
func (t *table) statusState(status int) (int, bool) {
	for _, s := range t.states {
		for _, o := range s.statuses {
			if o.value == status {
				return s.value, true
			}
		}
	}
	return 0, false
}

// readable returns the column a read names by its JSON property ($select,
// $filter, $orderby); secret columns are unknown to reads.
func (t *table) readable(prop string) (*column, bool) {
	c, ok := t.byProp[prop]
	if !ok || c.secret {
		return nil, false
	}
	return c, true
}

// registry holds the tables by logical name and by entity set.
type registry struct {
	tables []*table
	byName map[string]*table
	bySet  map[string]*table
}

// newRegistry indexes the tables and adds the system columns each one's ownership
// and states imply, so table definitions list only their own columns.
func newRegistry(tables []*table) (*registry, error) {
	r := &registry{byName: map[string]*table{}, bySet: map[string]*table{}}
	for _, t := range tables {
		if t.logical == "" || t.set == "" || t.pk == "" {
			return nil, fmt.Errorf("emulator: table %q: logical name, entity set and primary key are required", t.logical)
		}
		if _, dup := r.byName[t.logical]; dup {
			return nil, fmt.Errorf("emulator: table %q defined twice", t.logical)
		}
		cols := append([]*column{{name: t.pk, typ: typeGUID, access: createOnly}}, t.columns...)
		if len(t.states) > 0 {
			var states, statuses []option
			for _, s := range t.states {
				states = append(states, option{value: s.value, label: s.label})
				for _, o := range s.statuses {
					o.state = s.value
					statuses = append(statuses, o)
				}
			}
			cols = append(cols,
				&column{name: "statecode", typ: typeState, options: states},
				&column{name: "statuscode", typ: typeStatus, options: statuses})
		}
		cols = append(cols,
			&column{name: "createdon", typ: typeDateTime, access: readOnly},
			&column{name: "modifiedon", typ: typeDateTime, access: readOnly},
			lookup("createdby", "systemuser").readOnly(),
			lookup("modifiedby", "systemuser").readOnly(),
			&column{name: "versionnumber", typ: typeBigInt, access: readOnly})
		if t.ownership == userOwned {
			cols = append(cols,
				&column{name: "ownerid", typ: typeLookup, navs: []nav{{name: "ownerid", targets: []string{"systemuser", "team"}}}},
				lookup("owninguser", "systemuser").readOnly(),
				lookup("owningbusinessunit", "businessunit").readOnly())
		}
		t.columns = cols
		t.byProp = map[string]*column{}
		t.byName = map[string]*column{}
		t.byNav = map[string]navRef{}
		for _, c := range cols {
			if _, dup := t.byName[c.name]; dup {
				return nil, fmt.Errorf("emulator: table %q: column %q defined twice", t.logical, c.name)
			}
			t.byName[c.name] = c
			t.byProp[c.property()] = c
			for _, n := range c.navs {
				t.byNav[n.name] = navRef{col: c, nav: n}
			}
		}
		for _, k := range t.keys {
			for _, name := range k.cols {
				if t.byName[name] == nil {
					return nil, fmt.Errorf("emulator: table %q: key %q names unknown column %q", t.logical, k.name, name)
				}
			}
		}
		r.tables = append(r.tables, t)
		r.byName[t.logical] = t
		r.bySet[t.set] = t
	}
	for _, t := range r.tables {
		for _, c := range t.columns {
			for _, n := range c.navs {
				for _, target := range n.targets {
					if _, ok := r.byName[target]; !ok && target != "team" {
						return nil, fmt.Errorf("emulator: table %q: lookup %q targets unknown table %q", t.logical, c.name, target)
					}
				}
			}
		}
		for _, ch := range t.children {
			if many := r.byName[ch.table]; many == nil || many.byName[ch.col] == nil || many.byName[ch.col].typ != typeLookup {
				return nil, fmt.Errorf("emulator: table %q: navigation property %q needs lookup %s.%s", t.logical, ch.name, ch.table, ch.col)
			}
		}
	}
	return r, nil
}

// Column constructors keep the table definitions in tables.go to one line a column.

func text(name string, maxLen int) *column {
	return &column{name: name, typ: typeString, maxLen: maxLen}
}
func memo(name string, maxLen int) *column { return &column{name: name, typ: typeMemo, maxLen: maxLen} }
func yesNo(name string, def bool) *column  { return &column{name: name, typ: typeBool, def: def} }
func whole(name string) *column            { return &column{name: name, typ: typeInt} }
func money(name string) *column            { return &column{name: name, typ: typeMoney} }
func dateTime(name string) *column         { return &column{name: name, typ: typeDateTime} }
func dateOnly(name string) *column         { return &column{name: name, typ: typeDateOnly} }
func guid(name string) *column             { return &column{name: name, typ: typeGUID} }
func entityName(name string) *column       { return &column{name: name, typ: typeEntityName} }

// choice is a picklist; without options it accepts any whole number.
func choice(name string, opts ...option) *column {
	return &column{name: name, typ: typeChoice, options: opts}
}

// lookup is a single-target lookup whose navigation property has the column's name
// (parentaccountid, listid, businessunitid).
func lookup(name, target string) *column {
	return &column{name: name, typ: typeLookup, navs: []nav{{name: name, targets: []string{target}}}}
}

// lookupNav is a single-target lookup whose navigation property is named apart from
// the column, as custom lookups are (their SchemaName, case-sensitive: cs_ContactId).
func lookupNav(name, navName, target string) *column {
	return &column{name: name, typ: typeLookup, navs: []nav{{name: navName, targets: []string{target}}}}
}

// multiLookup is a customer or regarding lookup with one navigation property per
// target, named <name>_<target><suffix> (parentcustomerid_account,
// regardingobjectid_campaign_campaignactivity).
func multiLookup(name, suffix string, targets ...string) *column {
	c := &column{name: name, typ: typeLookup}
	for _, t := range targets {
		c.navs = append(c.navs, nav{name: name + "_" + t + suffix, targets: []string{t}})
	}
	return c
}

func (c *column) readOnly() *column      { c.access = readOnly; return c }
func (c *column) writeOnly() *column     { c.secret = true; return c }
func (c *column) cascadeDelete() *column { c.cascade = true; return c }
func (c *column) notUpdatable() *column  { c.access = createOnly; return c }
func (c *column) require() *column       { c.required = true; return c }

// withDefault sets the value a create takes when the body does not name the
// column; an int becomes the int64 stored values use.
func (c *column) withDefault(v any) *column {
	if n, ok := v.(int); ok {
		v = int64(n)
	}
	c.def = v
	return c
}

// opts builds options from value/label pairs.
func opts(pairs ...any) []option {
	var out []option
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, option{value: pairs[i].(int), label: pairs[i+1].(string)})
	}
	return out
}

// fullName derives fullname from firstname and lastname, as Dataverse's default
// full-name format does.
func fullName(vals map[string]any) {
	first, _ := vals["firstname"].(string)
	last, _ := vals["lastname"].(string)
	if name := strings.TrimSpace(first + " " + last); name != "" {
		vals["fullname"] = name
	} else {
		delete(vals, "fullname")
	}
}
