package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"crmsync/solution"
)

// loadSolution parses crmsync's Dataverse solution.
func loadSolution(t *testing.T) *solution.Solution {
	t.Helper()
	sol, err := solution.Load()
	if err != nil {
		t.Fatal(err)
	}
	return sol
}

// TestEmulatorFollowsTheSolution: every table, column, choice value, lookup, key
// and custom API the solution defines is the emulator's, as the solution defines
// it, so the emulator cannot drift from what a customer imports.
func TestEmulatorFollowsTheSolution(t *testing.T) {
	t.Parallel()
	sol := loadSolution(t)
	reg, err := newRegistry(builtinTables())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sol.Tables {
		tb := reg.byName[st.LogicalName]
		if tb == nil {
			t.Errorf("the emulator has no table %s", st.LogicalName)
			continue
		}
		if st.Created && (tb.set != st.EntitySetName || tb.pk != st.PrimaryID() || tb.primaryName != st.PrimaryName() ||
			tb.tracked != st.ChangeTracking || len(tb.states) == 0 || !tb.bulk) {
			t.Errorf("table %s: set %s, pk %s, primary name %s, tracked %v, %d states, bulk %v", tb.logical, tb.set, tb.pk, tb.primaryName, tb.tracked, len(tb.states), tb.bulk)
		}
		for _, sc := range st.Columns {
			if sc.Type == "state" || sc.Type == "status" {
				continue
			}
			c := tb.byName[sc.LogicalName]
			if c == nil {
				t.Errorf("the emulator has no column %s.%s", st.LogicalName, sc.LogicalName)
				continue
			}
			for _, o := range sc.Options {
				if c.typ == typeChoice && !slices.ContainsFunc(c.options, func(have option) bool { return have.value == o.Value && have.label == o.Label }) {
					t.Errorf("%s.%s lacks option %d %q", st.LogicalName, sc.LogicalName, o.Value, o.Label)
				}
			}
			if sc.Type == "lookup" {
				nav, ok := tb.byNav[sc.NavigationProperty]
				if !ok || nav.col != c || !slices.Equal(nav.nav.targets, []string{sc.Target}) {
					t.Errorf("%s.%s: navigation property %s → %v", st.LogicalName, sc.LogicalName, sc.NavigationProperty, nav.nav.targets)
				}
			}
		}
		var keys []string
		for _, k := range tb.keys {
			keys = append(keys, k.name+"("+strings.Join(k.cols, ",")+")")
		}
		var want []string
		for _, k := range st.Keys {
			want = append(want, k.LogicalName+"("+strings.Join(k.Columns, ",")+")")
		}
		if !slices.Equal(keys, want) {
			t.Errorf("%s keys %v, want %v", st.LogicalName, keys, want)
		}
	}

	b := setup(t, Config{})
	for _, api := range sol.CustomAPIs {
		a := b.call(t, http.MethodGet, "customapis?"+query("$select", "customapiid,bindingtype,boundentitylogicalname,allowedcustomprocessingsteptype",
			"$filter", "uniquename eq '"+api.UniqueName+"'"), nil)
		rows := values(t, a)
		if len(rows) != 1 || rows[0]["boundentitylogicalname"] != api.BoundEntity || fmt.Sprint(rows[0]["bindingtype"]) != fmt.Sprint(api.BindingType) ||
			fmt.Sprint(rows[0]["allowedcustomprocessingsteptype"]) != fmt.Sprint(api.AllowedStepType) {
			t.Errorf("custom API %s: %v", api.UniqueName, rows)
			continue
		}
		a = b.call(t, http.MethodGet, "customapirequestparameters?"+query("$select", "uniquename,isoptional,type",
			"$filter", "_customapiid_value eq "+rows[0]["customapiid"].(string)), nil)
		var got, want []string
		for _, p := range values(t, a) {
			got = append(got, p["uniquename"].(string))
		}
		for _, p := range api.Parameters {
			want = append(want, p.UniqueName)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s parameters %v, want %v", api.UniqueName, got, want)
		}
	}

	// A choice of the solution is closed to values it does not define.
	email, _ := solutionColumnOf(sol, "cs_subscription", "cs_emailstate")
	if a := b.call(t, http.MethodPost, "cs_subscriptions", map[string]any{"cs_groupid": "g1", "cs_emailstate": email.Options[0].Value}); a.status != http.StatusNoContent {
		t.Errorf("a defined e-mail state: %d %s", a.status, a.raw)
	}
	if a := b.call(t, http.MethodPost, "cs_subscriptions", map[string]any{"cs_groupid": "g2", "cs_emailstate": 7}); a.status != http.StatusBadRequest {
		t.Errorf("an undefined e-mail state: %d %s", a.status, a.raw)
	}
}

// solutionColumnOf finds a column of the solution.
func solutionColumnOf(sol *solution.Solution, table, column string) (*solution.Column, bool) {
	tb, ok := sol.Table(table)
	if !ok {
		return nil, false
	}
	return tb.Column(column)
}

// TestEmulatorRefusesASolutionItCannotModel: a solution change the emulator does
// not model fails loudly instead of being skipped.
func TestEmulatorRefusesASolutionItCannotModel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*solution.Solution)
		want   string
	}{
		{"unknown column type", func(s *solution.Solution) {
			c, _ := solutionColumnOf(s, "list", "cs_syncat")
			c.Type = "money"
		}, "type money"},
		{"unknown platform table", func(s *solution.Solution) {
			tb, _ := s.Table("list")
			tb.LogicalName = "opportunity"
		}, "extends table opportunity"},
		{"platform column redefined", func(s *solution.Solution) {
			tb, _ := s.Table("list")
			tb.Columns = append(tb.Columns, solution.Column{LogicalName: "listname", Type: "nvarchar"})
		}, "redefines list.listname"},
		{"parameter that is not a string", func(s *solution.Solution) {
			s.CustomAPIs[0].Parameters = append(s.CustomAPIs[0].Parameters, solution.Parameter{UniqueName: "Count", Type: 7})
		}, "String parameters only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sol := loadSolution(t)
			tt.change(sol)
			_, err := schemaOf(sol)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
