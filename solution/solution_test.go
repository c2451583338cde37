package solution

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// load parses the embedded solution.
func load(t *testing.T) *Solution {
	t.Helper()
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSolutionManifest: an unmanaged solution of the publisher with prefix cs,
// whose every table is a root component — created ones with all their objects,
// platform ones with only the parts the solution adds — and whose web resources
// are root components too.
func TestSolutionManifest(t *testing.T) {
	t.Parallel()
	s := load(t)
	if s.UniqueName != "crmsync" || s.Managed || len(strings.Split(s.Version, ".")) != 4 {
		t.Errorf("solution %s %s managed=%v", s.UniqueName, s.Version, s.Managed)
	}
	if s.Publisher.Prefix != "cs" || s.Publisher.OptionValuePrefix != 10000 {
		t.Errorf("publisher %+v, want prefix cs and option value prefix 10000", s.Publisher)
	}

	var m struct {
		Roots []struct {
			Type       int    `xml:"type,attr"`
			SchemaName string `xml:"schemaName,attr"`
			Behavior   int    `xml:"behavior,attr"`
		} `xml:"SolutionManifest>RootComponents>RootComponent"`
	}
	if err := decodeFile(Source(), "solution.xml", &m); err != nil {
		t.Fatal(err)
	}
	roots := map[string]int{}
	for _, r := range m.Roots {
		roots[fmt.Sprint(r.Type, " ", r.SchemaName)] = r.Behavior
	}
	for _, tb := range s.Tables {
		behavior, ok := roots["1 "+tb.LogicalName]
		want := 2 // only the subcomponents the solution adds
		if tb.Created {
			want = 0
		}
		if !ok || behavior != want {
			t.Errorf("table %s: root component behavior %d (listed %v), want %d", tb.LogicalName, behavior, ok, want)
		}
		if !strings.HasPrefix(tb.LogicalName, "cs_") && tb.Created {
			t.Errorf("table %s lacks the publisher prefix", tb.LogicalName)
		}
		for _, c := range tb.Columns {
			switch {
			case strings.HasPrefix(c.LogicalName, "cs_"), tb.Created && (c.Type == "state" || c.Type == "status"):
			case !tb.Created && c.Type == "picklist":
				// A platform choice the solution adds values to: they carry the
				// option value prefix, so they cannot collide with the platform's.
				for _, o := range c.Options {
					if o.Value/10000 != s.Publisher.OptionValuePrefix {
						t.Errorf("choice value %d added to %s.%s does not carry the option value prefix", o.Value, tb.LogicalName, c.LogicalName)
					}
				}
			default:
				t.Errorf("column %s.%s lacks the publisher prefix", tb.LogicalName, c.LogicalName)
			}
		}
	}
	for _, w := range s.WebResources {
		if _, ok := roots["61 "+w.Name]; !ok {
			t.Errorf("web resource %s is not a root component", w.Name)
		}
	}
}

// TestSolutionDefinesTheDesignSchema checks the solution against design.md's
// "CRM-side schema that the connector expects" and contract.md's custom API
// messages.
func TestSolutionDefinesTheDesignSchema(t *testing.T) {
	t.Parallel()
	s := load(t)
	column := func(table, name string) *Column {
		t.Helper()
		tb, ok := s.Table(table)
		if !ok {
			t.Fatalf("the solution has no table %s", table)
		}
		c, ok := tb.Column(name)
		if !ok {
			t.Fatalf("the solution has no column %s.%s", table, name)
		}
		return c
	}
	for _, tt := range []struct{ table, column, typ string }{
		{"list", "cs_synctoems", "bit"},
		{"list", "cs_periodicsync", "bit"},
		{"list", "cs_syncinterval", "picklist"},
		{"list", "cs_syncat", "datetime"},
		{"list", "cs_emsgroupid", "nvarchar"},
		{"cs_subscription", "cs_subscriptionid", "primarykey"},
		{"cs_subscription", "cs_name", "nvarchar"},
		{"cs_subscription", "cs_subscribed", "bit"},
		{"cs_subscription", "cs_emailstate", "picklist"},
		{"cs_subscription", "cs_groupid", "nvarchar"},
		{"cs_subscription", "cs_lastsyncedon", "datetime"},
	} {
		if c := column(tt.table, tt.column); c.Type != tt.typ {
			t.Errorf("%s.%s has type %s, want %s", tt.table, tt.column, c.Type, tt.typ)
		}
	}
	if got := fmt.Sprint(column("list", "cs_syncinterval").Options); got != "[{1 Hourly 0 0} {2 Daily 0 0} {3 Weekly 0 0} {4 Point in time 0 0}]" {
		t.Errorf("cs_syncinterval options %s", got)
	}
	if len(column("cs_subscription", "cs_emailstate").Options) == 0 {
		t.Error("cs_emailstate defines no values")
	}
	if got := fmt.Sprint(column("campaignactivity", "channeltypecode").Options); got != "[{100000001 eMS Campaign 0 0}]" {
		t.Errorf("channeltypecode adds %s, want 100000001 eMS Campaign", got)
	}

	sub, _ := s.Table("cs_subscription")
	if sub.EntitySetName != "cs_subscriptions" || !sub.Created || !sub.ChangeTracking || sub.PrimaryName() != "cs_name" {
		t.Errorf("cs_subscription: set %s, created %v, change tracking %v, primary name %s", sub.EntitySetName, sub.Created, sub.ChangeTracking, sub.PrimaryName())
	}
	for _, member := range []string{"contact", "lead", "account"} {
		c := column("cs_subscription", "cs_"+member+"id")
		if c.Type != "lookup" || c.Target != member || c.NavigationProperty != "cs_"+strings.ToUpper(member[:1])+member[1:]+"Id" {
			t.Errorf("lookup %s: type %s, target %s, navigation property %s", c.LogicalName, c.Type, c.Target, c.NavigationProperty)
		}
		// One key per member type: UpsertMultiple names a row by record and group.
		want := Key{LogicalName: "cs_" + member + "group", Columns: []string{c.LogicalName, "cs_groupid"}}
		if !slices.ContainsFunc(sub.Keys, func(k Key) bool { return k.LogicalName == want.LogicalName && slices.Equal(k.Columns, want.Columns) }) {
			t.Errorf("cs_subscription has no key %v (keys %v)", want, sub.Keys)
		}
	}

	apis := map[string]CustomAPI{}
	for _, a := range s.CustomAPIs {
		apis[a.UniqueName] = a
	}
	for _, tt := range []struct {
		name, bound string
		params      []string
	}{
		{"cs_SendCampaign", "campaignactivity", []string{"CampaignSendId", "SenderEmail", "SenderName", "Subject"}},
		{"cs_SyncMarketingList", "list", nil},
	} {
		a, ok := apis[tt.name]
		if !ok {
			t.Errorf("the solution has no custom API %s", tt.name)
			continue
		}
		// Bound to the table, an action, and open to async steps: crmsync's webhook
		// step on it is asynchronous.
		if a.BindingType != 1 || a.BoundEntity != tt.bound || a.IsFunction || a.AllowedStepType == 0 {
			t.Errorf("%s: binding %d to %q, function %v, step type %d", tt.name, a.BindingType, a.BoundEntity, a.IsFunction, a.AllowedStepType)
		}
		var names []string
		for _, p := range a.Parameters {
			names = append(names, p.UniqueName)
			if p.Type != ParamString || !p.Optional || p.Name != tt.name+"."+p.UniqueName {
				t.Errorf("%s parameter %s: type %d, optional %v, name %s", tt.name, p.UniqueName, p.Type, p.Optional, p.Name)
			}
		}
		if !slices.Equal(names, tt.params) {
			t.Errorf("%s parameters %v, want %v", tt.name, names, tt.params)
		}
	}
}

// csName is how crmsync's code names what the solution defines.
var csName = regexp.MustCompile(`cs_[A-Za-z]+`)

// TestSolutionDefinesEveryEngineName scans the Go string literals of engine/,
// dataverse/ and store/ for cs_ names, so a name the code starts to use without a
// definition in the solution fails here rather than at a customer's import.
func TestSolutionDefinesEveryEngineName(t *testing.T) {
	t.Parallel()
	s := load(t)
	defined := map[string]bool{}
	for _, tb := range s.Tables {
		defined[tb.LogicalName], defined[tb.SchemaName], defined[tb.EntitySetName] = true, true, true
		for _, c := range tb.Columns {
			defined[c.LogicalName], defined[c.SchemaName], defined[c.NavigationProperty] = true, true, true
		}
		for _, k := range tb.Keys {
			defined[k.LogicalName] = true
		}
	}
	for _, a := range s.CustomAPIs {
		defined[a.UniqueName] = true
	}
	for _, w := range s.WebResources {
		defined[strings.TrimSuffix(w.Name, filepath.Ext(w.Name))] = true
	}

	used := map[string]string{} // name → first place
	fset := token.NewFileSet()
	for _, dir := range []string{"../engine", "../dataverse", "../store"} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					return true
				}
				for _, name := range csName.FindAllString(v, -1) {
					if _, seen := used[name]; !seen {
						used[name] = fset.Position(lit.Pos()).String()
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Guard the scan itself: these are certainly in use.
	for _, name := range []string{"cs_subscriptions", "cs_synctoems", "cs_SendCampaign"} {
		if _, ok := used[name]; !ok {
			t.Fatalf("the scan did not find %s; used: %v", name, used)
		}
	}
	for name, where := range used {
		if !defined[name] {
			t.Errorf("%s (%s) is not defined by the solution", name, where)
		}
	}
}

// TestSolutionWebResourceCallsTheCustomAPIs: each command-bar button runs a
// function of the solution's web resource, and that script calls the custom APIs
// through Xrm.WebApi.online.execute with exactly the solution's parameter names.
func TestSolutionWebResourceCallsTheCustomAPIs(t *testing.T) {
	t.Parallel()
	s := load(t)
	scripts := map[string]string{} // $webresource:<name> → content
	for _, w := range s.WebResources {
		b, err := fs.ReadFile(Source(), strings.TrimPrefix(w.FileName, "/"))
		if err != nil {
			t.Fatalf("web resource %s: %v", w.Name, err)
		}
		scripts["$webresource:"+w.Name] = string(b)
	}

	type command struct {
		ID        string `xml:"Id,attr"`
		Functions []struct {
			Name    string `xml:"FunctionName,attr"`
			Library string `xml:"Library,attr"`
		} `xml:"Actions>JavaScriptFunction"`
	}
	var c struct {
		Entities []struct {
			Name   string `xml:"Name"`
			Ribbon struct {
				Buttons []struct {
					Label   string `xml:"LabelText,attr"`
					Command string `xml:"Command,attr"`
				} `xml:"CustomActions>CustomAction>CommandUIDefinition>Button"`
				Commands []command `xml:"CommandDefinitions>CommandDefinition"`
			} `xml:"RibbonDiffXml"`
		} `xml:"Entities>Entity"`
	}
	if err := decodeFile(Source(), "customizations.xml", &c); err != nil {
		t.Fatal(err)
	}
	buttons := map[string]string{} // entity → label
	for _, e := range c.Entities {
		for _, btn := range e.Ribbon.Buttons {
			buttons[strings.ToLower(e.Name)] = btn.Label
			i := slices.IndexFunc(e.Ribbon.Commands, func(cmd command) bool { return cmd.ID == btn.Command })
			if i < 0 || len(e.Ribbon.Commands[i].Functions) != 1 {
				t.Errorf("button %q: command %s is not defined with one JavaScript function", btn.Label, btn.Command)
				continue
			}
			fn := e.Ribbon.Commands[i].Functions[0]
			script, ok := scripts[fn.Library]
			method, found := strings.CutPrefix(fn.Name, "CrmSync.")
			if !ok || !found || !strings.Contains(script, "ns."+method+" = function") {
				t.Errorf("button %q runs %s from %s, which the solution's web resources do not define", btn.Label, fn.Name, fn.Library)
			}
		}
	}
	if buttons["campaignactivity"] != "Send eMS campaign" || buttons["list"] != "Synchronize with eMS" {
		t.Errorf("buttons %v", buttons)
	}

	script := scripts["$webresource:cs_emscommands.js"]
	if !strings.Contains(script, "Xrm.WebApi.online.execute(") {
		t.Error("the web resource does not call Xrm.WebApi.online.execute")
	}
	for _, a := range s.CustomAPIs {
		re := regexp.MustCompile(`operationName: "` + a.UniqueName + `",\s*entityType: "` + a.BoundEntity + `",\s*parameters: \[([^\]]*)\]`)
		m := re.FindStringSubmatch(script)
		if m == nil {
			t.Errorf("the web resource does not describe %s bound to %s", a.UniqueName, a.BoundEntity)
			continue
		}
		var got, want []string
		for _, q := range strings.Split(m[1], ",") {
			if q = strings.TrimSpace(q); q != "" {
				name, err := strconv.Unquote(q)
				if err != nil {
					t.Fatalf("%s parameter %s: %v", a.UniqueName, q, err)
				}
				got = append(got, name)
			}
		}
		for _, p := range a.Parameters {
			want = append(want, p.UniqueName)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("the web resource sends %s parameters %v, the solution defines %v", a.UniqueName, got, want)
		}
	}
}

// sourceCopy is a writable copy of the solution's source.
func sourceCopy(t *testing.T) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(Source(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Source(), name)
		m[name] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSolutionParseErrors: Parse names the file and the definition that is wrong.
func TestSolutionParseErrors(t *testing.T) {
	t.Parallel()
	edit := func(name, old, new string) func(fstest.MapFS) {
		return func(m fstest.MapFS) {
			m[name] = &fstest.MapFile{Data: []byte(strings.Replace(string(m[name].Data), old, new, 1))}
		}
	}
	tests := []struct {
		name   string
		change func(fstest.MapFS)
		want   string
	}{
		{"malformed XML", edit("customizations.xml", "</Entities>", "</Entitie>"), "parse customizations.xml"},
		{"lookup without relationship", edit("customizations.xml", "<ReferencingAttributeName>cs_LeadId<", "<ReferencingAttributeName>cs_Other<"), "has no lookup cs_Other"},
		{"key on an unknown column", edit("customizations.xml", "<AttributeName>cs_leadid<", "<AttributeName>cs_missing<"), "unknown column cs_missing"},
		{"custom API in the wrong folder", edit("customapis/cs_SyncMarketingList/customapi.xml", `uniquename="cs_SyncMarketingList"`, `uniquename="cs_Other"`), "differs from its folder"},
		{"no solution.xml", func(m fstest.MapFS) { delete(m, "solution.xml") }, "read solution.xml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := sourceCopy(t)
			tt.change(m)
			_, err := Parse(m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := Parse(sourceCopy(t)); err != nil {
		t.Errorf("the unchanged copy: %v", err)
	}
}
