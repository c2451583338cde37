package solution

import (
	"cmp"
	"embed"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// src is the solution's source, laid out as in the zip.
//
//go:embed src
var src embed.FS

// Source returns the solution's files, rooted where the zip's root is, so tests and
// tools can read exactly what Build packs.
func Source() fs.FS {
	sub, err := fs.Sub(src, "src")
	if err != nil {
		panic(err) // src is embedded at build time; it always exists
	}
	return sub
}

// Solution is what crmsync needs to know of its Dataverse solution: the manifest,
// the tables it creates or extends, its custom APIs and web resources.
type Solution struct {
	UniqueName   string
	Version      string // four-part, as in solution.xml
	Managed      bool
	Publisher    Publisher
	Tables       []Table
	CustomAPIs   []CustomAPI
	WebResources []WebResource
}

// Publisher is the solution's publisher; its prefix starts every name the solution
// adds and its option value prefix every choice value.
type Publisher struct {
	UniqueName        string
	Prefix            string // CustomizationPrefix, without the underscore
	OptionValuePrefix int    // CustomizationOptionValuePrefix
}

// Table is one Entity of customizations.xml: a table the solution creates
// (Created), or a platform table it adds columns or choice values to.
type Table struct {
	LogicalName   string
	SchemaName    string
	EntitySetName string // tables the solution creates
	Created       bool   // its root component includes all objects (behavior 0)
	Ownership     string // OwnershipTypeMask: UserOwned or OrgOwned (tables the solution creates)
	// ChangeTracking is ChangeTrackingEnabled, which delta queries need.
	ChangeTracking bool
	Columns        []Column
	Keys           []Key
}

// Column is one attribute of a table as customizations.xml defines it, with the
// target and navigation property of lookups taken from the 1:N relationship whose
// referencing attribute it is.
type Column struct {
	LogicalName string
	SchemaName  string
	// Type is the attribute type as customizations.xml spells it: nvarchar, ntext,
	// bit, picklist, datetime, int, lookup, primarykey, state or status.
	Type        string
	Format      string // nvarchar: text…; datetime: date or datetime
	MaxLength   int
	Required    bool // RequiredLevel systemrequired or applicationrequired
	PrimaryName bool // DisplayMask names PrimaryName
	// Default is AppDefaultValue (bit: 0 or 1, picklist: a value or -1 for none);
	// nil when the attribute has none.
	Default *int
	Options []Option
	// Lookups only.
	Target             string // the referenced table's logical name
	NavigationProperty string // the single-valued navigation property (…@odata.bind)
	CascadeDelete      bool   // the relationship deletes this row with the referenced one
}

// Option is one value of a choice, Yes/No, state or status attribute.
type Option struct {
	Value int
	Label string // the 1033 label
	// State is the statecode a status value belongs to; DefaultStatus the
	// statuscode a state value starts with.
	State, DefaultStatus int
}

// Key is an alternate key: rows are unique in the key's columns together, and
// UpsertMultiple and URLs name rows by it.
type Key struct {
	LogicalName string
	Columns     []string // logical names
}

// CustomAPI is a custom API message the solution defines.
type CustomAPI struct {
	UniqueName  string
	DisplayName string
	// BindingType is 0 global, 1 entity, 2 entity collection.
	BindingType int
	BoundEntity string // boundentitylogicalname
	IsFunction  bool
	IsPrivate   bool
	// AllowedStepType is allowedcustomprocessingsteptype: 0 none, 1 async only,
	// 2 sync and async; a webhook step needs 1 or 2.
	AllowedStepType int
	Parameters      []Parameter
}

// Parameter is one request parameter of a custom API.
type Parameter struct {
	UniqueName string
	Name       string
	// Type is customapirequestparameter.type (ParamString for String).
	Type     int
	Optional bool
}

// ParamString is the customapirequestparameter.type of a String parameter.
const ParamString = 10

// WebResource is one entry of customizations.xml's WebResources.
type WebResource struct {
	Name     string // the unique name ribbon libraries refer to ($webresource:<name>)
	Type     int    // WebResourceType: 3 is JavaScript
	FileName string // path of the content inside the zip, with a leading slash
}

// Table returns the table with the logical name.
func (s *Solution) Table(logicalName string) (*Table, bool) {
	for i := range s.Tables {
		if s.Tables[i].LogicalName == logicalName {
			return &s.Tables[i], true
		}
	}
	return nil, false
}

// Column returns the table's column with the logical name.
func (t *Table) Column(logicalName string) (*Column, bool) {
	for i := range t.Columns {
		if t.Columns[i].LogicalName == logicalName {
			return &t.Columns[i], true
		}
	}
	return nil, false
}

// PrimaryID returns the logical name of the table's primary key column, if the
// solution defines it.
func (t *Table) PrimaryID() string {
	for _, c := range t.Columns {
		if c.Type == "primarykey" {
			return c.LogicalName
		}
	}
	return ""
}

// PrimaryName returns the logical name of the table's primary name column, if the
// solution defines it.
func (t *Table) PrimaryName() string {
	for _, c := range t.Columns {
		if c.PrimaryName {
			return c.LogicalName
		}
	}
	return ""
}

// Load parses the embedded source.
func Load() (*Solution, error) {
	return Parse(Source())
}

// Parse reads a solution laid out as in its zip: solution.xml, customizations.xml
// and customapis/.
func Parse(fsys fs.FS) (*Solution, error) {
	var m manifestXML
	if err := decodeFile(fsys, "solution.xml", &m); err != nil {
		return nil, err
	}
	s := &Solution{
		UniqueName: m.Manifest.UniqueName,
		Version:    m.Manifest.Version,
		Managed:    m.Manifest.Managed == 1,
		Publisher: Publisher{
			UniqueName:        m.Manifest.Publisher.UniqueName,
			Prefix:            m.Manifest.Publisher.Prefix,
			OptionValuePrefix: m.Manifest.Publisher.OptionValuePrefix,
		},
	}
	var c customizationsXML
	if err := decodeFile(fsys, "customizations.xml", &c); err != nil {
		return nil, err
	}
	created := map[string]bool{}
	for _, rc := range m.Manifest.RootComponents {
		if rc.Type == componentEntity && rc.Behavior == behaviorIncludeAll {
			created[strings.ToLower(rc.SchemaName)] = true
		}
	}
	for _, e := range c.Entities {
		t, err := e.table(created)
		if err != nil {
			return nil, err
		}
		s.Tables = append(s.Tables, t)
	}
	if err := s.resolveLookups(c.Relationships); err != nil {
		return nil, err
	}
	for _, w := range c.WebResources {
		s.WebResources = append(s.WebResources, WebResource{Name: w.Name, Type: w.Type, FileName: w.FileName})
	}
	apis, err := parseCustomAPIs(fsys)
	if err != nil {
		return nil, err
	}
	s.CustomAPIs = apis
	return s, nil
}

// Root component types and behaviours of solution.xml.
const (
	componentEntity    = 1
	behaviorIncludeAll = 0
)

// manifestXML is solution.xml.
type manifestXML struct {
	Manifest struct {
		UniqueName string `xml:"UniqueName"`
		Version    string `xml:"Version"`
		Managed    int    `xml:"Managed"`
		Publisher  struct {
			UniqueName        string `xml:"UniqueName"`
			Prefix            string `xml:"CustomizationPrefix"`
			OptionValuePrefix int    `xml:"CustomizationOptionValuePrefix"`
		} `xml:"Publisher"`
		RootComponents []struct {
			Type       int    `xml:"type,attr"`
			SchemaName string `xml:"schemaName,attr"`
			Behavior   int    `xml:"behavior,attr"`
		} `xml:"RootComponents>RootComponent"`
	} `xml:"SolutionManifest"`
}

// customizationsXML is the part of customizations.xml crmsync reads.
type customizationsXML struct {
	Entities      []entityXML       `xml:"Entities>Entity"`
	Relationships []relationshipXML `xml:"EntityRelationships>EntityRelationship"`
	WebResources  []struct {
		Name     string `xml:"Name"`
		Type     int    `xml:"WebResourceType"`
		FileName string `xml:"FileName"`
	} `xml:"WebResources>WebResource"`
}

type entityXML struct {
	Info struct {
		Name          string         `xml:"Name,attr"`
		Attributes    []attributeXML `xml:"attributes>attribute"`
		Keys          []keyXML       `xml:"EntityKeys>EntityKey"`
		EntitySetName string         `xml:"EntitySetName"`
		Ownership     string         `xml:"OwnershipTypeMask"`
		Tracking      int            `xml:"ChangeTrackingEnabled"`
	} `xml:"EntityInfo>entity"`
}

type attributeXML struct {
	SchemaName    string        `xml:"PhysicalName,attr"`
	Type          string        `xml:"Type"`
	LogicalName   string        `xml:"LogicalName"`
	RequiredLevel string        `xml:"RequiredLevel"`
	DisplayMask   string        `xml:"DisplayMask"`
	Format        string        `xml:"Format"`
	MaxLength     int           `xml:"MaxLength"`
	Default       *int          `xml:"AppDefaultValue"`
	OptionSet     *optionSetXML `xml:"optionset"`
}

type optionSetXML struct {
	Options []struct {
		Value  int        `xml:"value,attr"`
		Labels []labelXML `xml:"labels>label"`
	} `xml:"options>option"`
	States []struct {
		Value         int        `xml:"value,attr"`
		DefaultStatus int        `xml:"defaultstatus,attr"`
		Labels        []labelXML `xml:"labels>label"`
	} `xml:"states>state"`
	Statuses []struct {
		Value  int        `xml:"value,attr"`
		State  int        `xml:"state,attr"`
		Labels []labelXML `xml:"labels>label"`
	} `xml:"statuses>status"`
}

type labelXML struct {
	Description  string `xml:"description,attr"`
	LanguageCode int    `xml:"languagecode,attr"`
}

type keyXML struct {
	LogicalName string   `xml:"LogicalName"`
	Attributes  []string `xml:"EntityKeyAttributes>AttributeName"`
}

type relationshipXML struct {
	Name          string `xml:"Name,attr"`
	Type          string `xml:"EntityRelationshipType"`
	Referencing   string `xml:"ReferencingEntityName"`
	Referenced    string `xml:"ReferencedEntityName"`
	Attribute     string `xml:"ReferencingAttributeName"`
	CascadeDelete string `xml:"CascadeDelete"`
	Roles         []struct {
		NavigationProperty string `xml:"NavigationPropertyName"`
		RoleType           *int   `xml:"RelationshipRoleType"`
	} `xml:"EntityRelationshipRoles>EntityRelationshipRole"`
}

// relationshipRoleReferencing is the RelationshipRoleType of the role whose
// navigation property is the lookup's (the many side's single-valued one).
const relationshipRoleReferencing = 1

func (e entityXML) table(created map[string]bool) (Table, error) {
	info := e.Info
	t := Table{
		LogicalName:    strings.ToLower(info.Name),
		SchemaName:     info.Name,
		EntitySetName:  info.EntitySetName,
		Created:        created[strings.ToLower(info.Name)],
		Ownership:      info.Ownership,
		ChangeTracking: info.Tracking == 1,
	}
	if t.LogicalName == "" {
		return Table{}, fmt.Errorf("parse customizations.xml: an entity has no name")
	}
	if t.Created && t.EntitySetName == "" {
		return Table{}, fmt.Errorf("parse customizations.xml: table %s has no EntitySetName", t.LogicalName)
	}
	for _, a := range info.Attributes {
		c := Column{
			LogicalName: a.LogicalName,
			SchemaName:  a.SchemaName,
			Type:        a.Type,
			Format:      a.Format,
			MaxLength:   a.MaxLength,
			Required:    a.RequiredLevel == "systemrequired" || a.RequiredLevel == "applicationrequired",
			PrimaryName: slices.Contains(strings.Split(a.DisplayMask, "|"), "PrimaryName"),
			Default:     a.Default,
		}
		if c.LogicalName == "" || c.Type == "" {
			return Table{}, fmt.Errorf("parse customizations.xml: table %s: attribute %q has no LogicalName or Type", t.LogicalName, a.SchemaName)
		}
		if os := a.OptionSet; os != nil {
			for _, o := range os.Options {
				c.Options = append(c.Options, Option{Value: o.Value, Label: label(o.Labels)})
			}
			for _, o := range os.States {
				c.Options = append(c.Options, Option{Value: o.Value, Label: label(o.Labels), DefaultStatus: o.DefaultStatus})
			}
			for _, o := range os.Statuses {
				c.Options = append(c.Options, Option{Value: o.Value, Label: label(o.Labels), State: o.State})
			}
		}
		t.Columns = append(t.Columns, c)
	}
	for _, k := range info.Keys {
		for _, col := range k.Attributes {
			if _, ok := t.Column(col); !ok && t.Created {
				return Table{}, fmt.Errorf("parse customizations.xml: table %s: key %s names unknown column %s", t.LogicalName, k.LogicalName, col)
			}
		}
		t.Keys = append(t.Keys, Key{LogicalName: k.LogicalName, Columns: k.Attributes})
	}
	return t, nil
}

// label picks the English (1033) label, else the first.
func label(ls []labelXML) string {
	for _, l := range ls {
		if l.LanguageCode == 1033 {
			return l.Description
		}
	}
	if len(ls) > 0 {
		return ls[0].Description
	}
	return ""
}

// resolveLookups gives each lookup column of the solution's tables the target and
// navigation property of its 1:N relationship; a lookup without one is an error,
// since Dataverse would not know what it points at.
func (s *Solution) resolveLookups(rels []relationshipXML) error {
	for _, r := range rels {
		if r.Type != "OneToMany" {
			continue
		}
		t, ok := s.Table(strings.ToLower(r.Referencing))
		if !ok {
			continue // a relationship of tables the solution does not define columns of
		}
		c, ok := t.Column(strings.ToLower(r.Attribute))
		if !ok || c.Type != "lookup" {
			return fmt.Errorf("parse customizations.xml: relationship %s: %s has no lookup %s", r.Name, t.LogicalName, r.Attribute)
		}
		c.Target = strings.ToLower(r.Referenced)
		c.CascadeDelete = r.CascadeDelete == "Cascade"
		for _, role := range r.Roles {
			if role.RoleType != nil && *role.RoleType == relationshipRoleReferencing {
				c.NavigationProperty = role.NavigationProperty
			}
		}
		c.NavigationProperty = cmp.Or(c.NavigationProperty, c.SchemaName)
	}
	for _, t := range s.Tables {
		for _, c := range t.Columns {
			if c.Type == "lookup" && c.Target == "" {
				return fmt.Errorf("parse customizations.xml: lookup %s.%s has no relationship", t.LogicalName, c.LogicalName)
			}
		}
	}
	return nil
}

// customAPIXML is customapis/<uniquename>/customapi.xml.
type customAPIXML struct {
	UniqueName      string   `xml:"uniquename,attr"`
	DisplayName     labelSet `xml:"displayname"`
	BindingType     int      `xml:"bindingtype"`
	BoundEntity     string   `xml:"boundentitylogicalname"`
	IsFunction      int      `xml:"isfunction"`
	IsPrivate       int      `xml:"isprivate"`
	AllowedStepType int      `xml:"allowedcustomprocessingsteptype"`
}

// parameterXML is customapirequestparameters/<uniquename>/customapirequestparameter.xml.
type parameterXML struct {
	UniqueName string `xml:"uniquename,attr"`
	Name       string `xml:"name"`
	Type       int    `xml:"type"`
	IsOptional int    `xml:"isoptional"`
}

// labelSet is a localised property: a default and labels by language.
type labelSet struct {
	Default string     `xml:"default,attr"`
	Labels  []labelXML `xml:"label"`
}

// parseCustomAPIs reads customapis/: one folder per custom API, named by its unique
// name, with its request parameters in folders of their own.
func parseCustomAPIs(fsys fs.FS) ([]CustomAPI, error) {
	dirs, err := fs.ReadDir(fsys, "customapis")
	if err != nil {
		return nil, fmt.Errorf("read customapis: %w", err)
	}
	var apis []CustomAPI
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := path.Join("customapis", d.Name())
		var x customAPIXML
		if err := decodeFile(fsys, path.Join(dir, "customapi.xml"), &x); err != nil {
			return nil, err
		}
		if x.UniqueName != d.Name() {
			return nil, fmt.Errorf("parse %s/customapi.xml: uniquename %q differs from its folder", dir, x.UniqueName)
		}
		api := CustomAPI{
			UniqueName:      x.UniqueName,
			DisplayName:     cmp.Or(label(x.DisplayName.Labels), x.DisplayName.Default),
			BindingType:     x.BindingType,
			BoundEntity:     x.BoundEntity,
			IsFunction:      x.IsFunction == 1,
			IsPrivate:       x.IsPrivate == 1,
			AllowedStepType: x.AllowedStepType,
		}
		params, err := fs.ReadDir(fsys, path.Join(dir, "customapirequestparameters"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read %s: %w", dir, err)
		}
		for _, p := range params {
			file := path.Join(dir, "customapirequestparameters", p.Name(), "customapirequestparameter.xml")
			var px parameterXML
			if err := decodeFile(fsys, file, &px); err != nil {
				return nil, err
			}
			if px.UniqueName != p.Name() {
				return nil, fmt.Errorf("parse %s: uniquename %q differs from its folder", file, px.UniqueName)
			}
			api.Parameters = append(api.Parameters, Parameter{UniqueName: px.UniqueName, Name: px.Name, Type: px.Type, Optional: px.IsOptional == 1})
		}
		apis = append(apis, api)
	}
	return apis, nil
}

// decodeFile unmarshals one XML file of the solution.
func decodeFile(fsys fs.FS, name string, v any) error {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := xml.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	return nil
}
