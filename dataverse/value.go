package dataverse

import (
	"strconv"
	"time"
)

// Entity is a row as Dataverse sends it in Targets, images and party lists; attribute
// values are already decoded (see the package documentation), so callers read typed
// values without knowing the wire format.
type Entity struct {
	LogicalName string
	ID          string
	RowVersion  string
	// Attributes holds the columns that were sent, by logical name; a column present
	// with a nil value was set to null (or is null in an image).
	Attributes map[string]any
	// FormattedValues holds display strings (option labels, formatted money and
	// dates in the user's time zone), by logical name.
	FormattedValues map[string]string
	// KeyAttributes holds alternate-key values when the row was addressed by key.
	KeyAttributes map[string]any
}

// String reads a text, memo or uniqueidentifier column (wrapped Guids arrive as
// plain strings too), so callers need not type-switch on Attributes.
func (e *Entity) String(name string) (string, bool) {
	v, ok := e.attr(name).(string)
	return v, ok
}

// Bool reads a Yes/No column such as donotbulkemail.
func (e *Entity) Bool(name string) (bool, bool) {
	v, ok := e.attr(name).(bool)
	return v, ok
}

// Int reads a whole-number column, or the value of a choice column, because code that
// only compares codes (statecode, statuscode) should not care which of the two it got.
func (e *Entity) Int(name string) (int64, bool) {
	switch v := e.attr(name).(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case OptionSetValue:
		return int64(v.Value), true
	}
	return 0, false
}

// Float reads a decimal, float, currency or whole-number column as float64, because
// Dataverse sends integral decimals without a fraction only sometimes.
func (e *Entity) Float(name string) (float64, bool) {
	switch v := e.attr(name).(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case int:
		return float64(v), true
	case Money:
		return v.Value, true
	}
	return 0, false
}

// Time reads a date/time column, always in UTC.
func (e *Entity) Time(name string) (time.Time, bool) {
	v, ok := e.attr(name).(time.Time)
	return v, ok
}

// Reference reads a lookup, owner or customer column.
func (e *Entity) Reference(name string) (EntityReference, bool) {
	v, ok := e.attr(name).(EntityReference)
	return v, ok
}

// Option reads a choice (OptionSetValue) column such as statecode or
// preferredcontactmethodcode.
func (e *Entity) Option(name string) (int, bool) {
	v, ok := e.attr(name).(OptionSetValue)
	return v.Value, ok
}

// attr is nil-safe so accessors work on a missing image without a check first.
func (e *Entity) attr(name string) any {
	if e == nil {
		return nil
	}
	return e.Attributes[name]
}

// EntityReference points at a row (lookups, owners, the Target of Delete and
// Associate), which is all a caller needs to address the row through the Web API.
type EntityReference struct {
	LogicalName string
	ID          string
	Name        string
}

// OptionSetValue is a choice value; it keeps its own type so a choice is never
// mistaken for a whole-number column.
type OptionSetValue struct {
	Value int
}

// OptionSetValues is a multi-select choice value, sent as a plain JSON array of
// OptionSetValue objects.
type OptionSetValues []OptionSetValue

// Money is a currency value; it keeps its own type so callers know the column is in
// the row's transaction currency.
type Money struct {
	Value float64
}

// EntityCollection carries several rows in one value, above all the activity party
// lists (from, to, customer) that say who a campaign response or e-mail involves.
type EntityCollection struct {
	EntityName  string
	Entities    []*Entity
	MoreRecords bool
}

// Relationship names the N:N relationship of an Associate or Disassociate, which is
// how those messages must be routed (their PrimaryEntityName is not reliable).
type Relationship struct {
	SchemaName string
	// PrimaryEntityRole is "" (null on the wire), "Referencing" or "Referenced".
	PrimaryEntityRole string
}

// entityRole maps the EntityRole enum number, as DataContractJsonSerializer writes
// enums, to its name.
func entityRole(n int64) string {
	switch n {
	case 0:
		return "Referencing"
	case 1:
		return "Referenced"
	}
	return strconv.FormatInt(n, 10)
}
