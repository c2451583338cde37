package emulator

import (
	"fmt"
	"slices"

	"crmsync/solution"
)

// The emulator plays an organisation with crmsync's Dataverse solution installed,
// and it learns what that solution adds from the solution itself (package
// solution), so the emulator, the solution and the engine cannot drift apart: the
// cs_ columns on list, the eMS Campaign channel value on campaignactivity, the
// cs_subscription table with its lookups, states and alternate keys, and the
// custom APIs with their parameters.
//
// An alternate key holds only rows whose key columns are all set (one key per
// member type, since a key's columns are fixed), as Dataverse's filtered key
// indexes are taken to do (unverified).

// schema is the emulator's tables and custom APIs.
type schema struct {
	tables []*table
	apis   []customAPI
}

// builtinSchema is the emulator's schema: its platform tables with the connector
// solution applied. The solution is embedded in the binary, so a solution the
// emulator cannot model is a programming error, and so is a panic here.
func builtinSchema() schema {
	sol, err := solution.Load()
	if err != nil {
		panic(fmt.Errorf("emulator: %w", err))
	}
	s, err := schemaOf(sol)
	if err != nil {
		panic(err)
	}
	return s
}

// builtinTables is the tables of builtinSchema.
func builtinTables() []*table { return builtinSchema().tables }

// schemaOf applies a solution to the platform tables: columns and choice values it
// adds to them, the tables it creates (listed after the data tables, before the
// system ones) and its custom APIs.
func schemaOf(sol *solution.Solution) (schema, error) {
	data := dataTables()
	var created []*table
	for _, st := range sol.Tables {
		if st.Created {
			t, err := createdTable(st)
			if err != nil {
				return schema{}, err
			}
			created = append(created, t)
			continue
		}
		i := slices.IndexFunc(data, func(t *table) bool { return t.logical == st.LogicalName })
		if i < 0 {
			return schema{}, fmt.Errorf("emulator: the solution extends table %s, which the emulator does not have", st.LogicalName)
		}
		if err := extendTable(data[i], st); err != nil {
			return schema{}, err
		}
	}
	apis, err := customAPIsOf(sol)
	if err != nil {
		return schema{}, err
	}
	return schema{tables: slices.Concat(data, created, systemTables()), apis: apis}, nil
}

// extendTable adds a solution's columns to a platform table, and the choice values
// it adds to one of the table's own choices.
func extendTable(t *table, st solution.Table) error {
	for _, sc := range st.Columns {
		i := slices.IndexFunc(t.columns, func(c *column) bool { return c.name == sc.LogicalName })
		if i < 0 {
			c, err := solutionColumn(st.LogicalName, sc)
			if err != nil {
				return err
			}
			t.columns = append(t.columns, c)
			continue
		}
		c := t.columns[i]
		if c.typ != typeChoice || sc.Type != "picklist" {
			return fmt.Errorf("emulator: the solution redefines %s.%s, which the emulator models as a platform column", st.LogicalName, sc.LogicalName)
		}
		for _, o := range sc.Options {
			if !slices.ContainsFunc(c.options, func(have option) bool { return have.value == o.Value }) {
				c.options = append(c.options, option{value: o.Value, label: o.Label})
			}
		}
	}
	return nil
}

// createdTable is a table the solution creates: its primary key, primary name,
// states, columns, alternate keys and change tracking come from the solution. Such
// a table takes the bulk messages, as Dataverse's standard custom tables do; its
// state enumeration is named <SchemaName>State, as ContactState is.
func createdTable(st solution.Table) (*table, error) {
	t := &table{
		logical: st.LogicalName, set: st.EntitySetName, pk: st.PrimaryID(), primaryName: st.PrimaryName(),
		stateEnum: st.SchemaName + "State",
		tracked:   st.ChangeTracking, bulk: true,
	}
	if t.pk == "" {
		return nil, fmt.Errorf("emulator: the solution's table %s has no primary key column", st.LogicalName)
	}
	if st.Ownership == "OrgOwned" {
		t.ownership = businessOwned
	}
	var states, statuses []solution.Option
	for _, sc := range st.Columns {
		switch sc.Type {
		case "primarykey":
			continue // newRegistry adds it
		case "state":
			states = sc.Options
			continue
		case "status":
			statuses = sc.Options
			continue
		}
		c, err := solutionColumn(st.LogicalName, sc)
		if err != nil {
			return nil, err
		}
		t.columns = append(t.columns, c)
	}
	for _, s := range states {
		def := stateDef{value: s.Value, label: s.Label, defaultStatus: s.DefaultStatus}
		for _, r := range statuses {
			if r.State == s.Value {
				def.statuses = append(def.statuses, option{value: r.Value, label: r.Label})
			}
		}
		t.states = append(t.states, def)
	}
	for _, k := range st.Keys {
		t.keys = append(t.keys, altKey{name: k.LogicalName, cols: k.Columns})
	}
	return t, nil
}

// solutionColumn models one of the solution's columns.
func solutionColumn(table string, sc solution.Column) (*column, error) {
	var c *column
	switch sc.Type {
	case "nvarchar":
		c = text(sc.LogicalName, sc.MaxLength)
	case "ntext", "memo":
		c = memo(sc.LogicalName, sc.MaxLength)
	case "int":
		c = whole(sc.LogicalName)
	case "bit":
		c = yesNo(sc.LogicalName, sc.Default != nil && *sc.Default == 1)
	case "picklist":
		var options []option
		for _, o := range sc.Options {
			options = append(options, option{value: o.Value, label: o.Label})
		}
		c = choice(sc.LogicalName, options...)
		if sc.Default != nil && *sc.Default != -1 {
			c.withDefault(*sc.Default)
		}
	case "datetime":
		c = dateTime(sc.LogicalName)
		if sc.Format == "date" {
			c = dateOnly(sc.LogicalName)
		}
	case "lookup":
		c = lookupNav(sc.LogicalName, sc.NavigationProperty, sc.Target)
		if sc.CascadeDelete {
			c.cascadeDelete()
		}
	default:
		return nil, fmt.Errorf("emulator: the solution's column %s.%s has type %s, which the emulator does not model", table, sc.LogicalName, sc.Type)
	}
	if sc.Required {
		c.require()
	}
	return c, nil
}

// customAPIsOf models the solution's custom APIs. The emulator calls entity-bound
// ones with String parameters; any other parameter type is refused here, so a
// solution change cannot pass unnoticed.
func customAPIsOf(sol *solution.Solution) ([]customAPI, error) {
	var apis []customAPI
	for _, a := range sol.CustomAPIs {
		api := customAPI{
			uniqueName: a.UniqueName, displayName: a.DisplayName, boundTable: a.BoundEntity,
			bindingType: a.BindingType, stepType: a.AllowedStepType, isFunction: a.IsFunction,
		}
		for _, p := range a.Parameters {
			if p.Type != solution.ParamString {
				return nil, fmt.Errorf("emulator: parameter %s of %s has type %d; the emulator takes String parameters only", p.UniqueName, a.UniqueName, p.Type)
			}
			api.params = append(api.params, apiParam{name: p.UniqueName, fullName: p.Name, optional: p.Optional})
		}
		apis = append(apis, api)
	}
	return apis, nil
}
