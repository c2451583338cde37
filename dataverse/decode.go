package dataverse

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of JSON objects and arrays, so a hostile body cannot
// exhaust the stack; real bodies stay below 20 even with a ParentContext.
const maxDepth = 64

// internAbove is the body size from which names are interned (see decoder.name).
const internAbove = 16 << 10

// Decode parses a webhook body. It never panics; a body that is not a RemoteExecutionContext
// (not a JSON object, or missing/empty MessageName, missing PrimaryEntityName or PrimaryEntityId)
// returns a *DecodeError whose Field names the offending field (e.g. "MessageName",
// "PrimaryEntityId", "InputParameters[2].value", or "" for "not JSON") and Reason says what is
// wrong; errors.Is(err, ErrNotContext) is true for all of them.
//
// The body is read in a single pass without reflection, because decoding sits on the hot
// ingest path; strings are copied out of body, so the caller may reuse it afterwards.
func Decode(body []byte) (*ExecutionContext, error) {
	d := decoder{data: body}
	if len(body) >= 3 && body[0] == 0xEF && body[1] == 0xBB && body[2] == 0xBF {
		d.pos = 3 // .NET writers may prefix a UTF-8 byte-order mark
	}
	if d.next() != '{' {
		return nil, d.notObject()
	}
	c, seen, err := d.context()
	if err != nil {
		return nil, err
	}
	if d.skipWS(); d.pos < len(d.data) {
		return nil, d.syntaxError("after top-level object")
	}
	switch {
	case seen&seenMessageName == 0:
		return nil, &DecodeError{Field: "MessageName", Reason: "missing"}
	case c.MessageName == "":
		return nil, &DecodeError{Field: "MessageName", Reason: "empty"}
	case seen&seenPrimaryEntityName == 0:
		return nil, &DecodeError{Field: "PrimaryEntityName", Reason: "missing"}
	case seen&seenPrimaryEntityID == 0:
		return nil, &DecodeError{Field: "PrimaryEntityId", Reason: "missing"}
	}
	return c, nil
}

// decoder is a single-pass reader over one body; it lives for one Decode call.
type decoder struct {
	data    []byte
	pos     int
	depth   int
	scratch []byte            // unescaped string bytes, reused between strings
	names   map[string]string // interned attribute and table names
}

// seenFields records which top-level fields were present and not null.
type seenFields uint8

const (
	seenMessageName seenFields = 1 << iota
	seenPrimaryEntityName
	seenPrimaryEntityID
	seenInputParameters
)

// context reads one RemoteExecutionContext object (the body or a ParentContext).
func (d *decoder) context() (*ExecutionContext, seenFields, error) {
	c := &ExecutionContext{}
	var seen seenFields
	err := d.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "MessageName":
			seen |= d.present(seenMessageName)
			c.MessageName, err = d.stringField()
		case "PrimaryEntityName":
			seen |= d.present(seenPrimaryEntityName)
			c.PrimaryEntityName, err = d.stringField()
		case "PrimaryEntityId":
			seen |= d.present(seenPrimaryEntityID)
			c.PrimaryEntityID, err = d.stringField()
		case "SecondaryEntityName":
			c.SecondaryEntityName, err = d.stringField()
		case "Stage":
			c.Stage, err = d.intField()
		case "Mode":
			c.Mode, err = d.intField()
		case "Depth":
			c.Depth, err = d.intField()
		case "IsolationMode":
			c.IsolationMode, err = d.intField()
		case "IsInTransaction":
			c.IsInTransaction, err = d.boolField()
		case "IsExecutingOffline":
			c.IsExecutingOffline, err = d.boolField()
		case "IsOfflinePlayback":
			c.IsOfflinePlayback, err = d.boolField()
		case "OperationId":
			c.OperationID, err = d.stringField()
		case "CorrelationId":
			c.CorrelationID, err = d.stringField()
		case "RequestId":
			c.RequestID, err = d.stringField()
		case "OrganizationId":
			c.OrganizationID, err = d.stringField()
		case "OrganizationName":
			c.OrganizationName, err = d.stringField()
		case "BusinessUnitId":
			c.BusinessUnitID, err = d.stringField()
		case "UserId":
			c.UserID, err = d.stringField()
		case "InitiatingUserId":
			c.InitiatingUserID, err = d.stringField()
		case "OperationCreatedOn":
			c.OperationCreatedOn, err = d.timeField()
		case "OwningExtension":
			c.OwningExtension, err = d.referenceOrNull()
		case "InputParameters":
			seen |= d.present(seenInputParameters)
			c.InputParameters, err = kvMap(d, d.param)
		case "OutputParameters":
			c.OutputParameters, err = kvMap(d, d.param)
		case "SharedVariables":
			c.SharedVariables, err = kvMap(d, d.param)
		case "PreEntityImages":
			c.PreEntityImages, err = kvMap(d, d.image)
		case "PostEntityImages":
			c.PostEntityImages, err = kvMap(d, d.image)
		case "ParentContext":
			switch d.peek() {
			case 'n':
				err = d.literal("null")
			case '{':
				c.ParentContext, _, err = d.context()
			default:
				err = d.typeError("an object")
			}
		default:
			err = d.skipValue()
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if seen&seenInputParameters == 0 && needsInput(c.MessageName) {
		c.SizeExceeded = true
	}
	return c, seen, nil
}

// present returns flag unless the value about to be read is null.
func (d *decoder) present(flag seenFields) seenFields {
	if d.peek() == 'n' {
		return 0
	}
	return flag
}

// notObject explains a body that does not start with '{': not JSON at all, or JSON
// of another kind.
func (d *decoder) notObject() error {
	if d.pos >= len(d.data) {
		return &DecodeError{Reason: "empty body"}
	}
	got := d.kind()
	err := d.skipValue()
	if err == nil {
		if d.skipWS(); d.pos < len(d.data) {
			err = d.syntaxError("after top-level value")
		}
	}
	if err != nil {
		reason := err.Error()
		if de, ok := err.(*DecodeError); ok {
			reason = de.Reason
		}
		return &DecodeError{Reason: "not JSON: " + reason}
	}
	return &DecodeError{Reason: "not a JSON object: got " + got}
}

// ---- typed values (the __type dispatch) ----

// valueKind is the SDK type named before the first ':' of "__type".
type valueKind uint8

const (
	kindOther valueKind = iota
	kindEntity
	kindReference
	kindOption
	kindMoney
	kindCollection
	kindRelationship
)

func kindOf(prefix []byte) valueKind {
	switch string(prefix) {
	case "Entity":
		return kindEntity
	case "EntityReference":
		return kindReference
	case "OptionSetValue":
		return kindOption
	case "Money":
		return kindMoney
	case "EntityCollection":
		return kindCollection
	case "Relationship":
		return kindRelationship
	}
	return kindOther
}

// typePrefix cuts "Entity:http://…" to "Entity".
func typePrefix(name []byte) []byte {
	for i, c := range name {
		if c == ':' {
			return name[:i]
		}
	}
	return name
}

// typeAhead looks at the object at d.pos without consuming it: DataContractJsonSerializer
// always writes "__type" first, so the common case is dispatched before any field is read.
func (d *decoder) typeAhead() valueKind {
	save := d.pos
	defer func() { d.pos = save }()
	d.pos++
	if d.next() != '"' {
		return kindOther
	}
	if key, err := d.str(); err != nil || string(key) != "__type" {
		return kindOther
	}
	if d.next() != ':' {
		return kindOther
	}
	d.pos++
	if d.next() != '"' {
		return kindOther
	}
	name, err := d.str()
	if err != nil {
		return kindOther
	}
	return kindOf(typePrefix(name))
}

// param reads an InputParameters/OutputParameters/SharedVariables value.
func (d *decoder) param() (any, bool, error) {
	v, err := d.value()
	return v, true, err
}

// image reads a Pre/PostEntityImages value; a null image is left out of the map.
func (d *decoder) image() (*Entity, bool, error) {
	switch d.peek() {
	case 'n':
		return nil, false, d.literal("null")
	case '{':
		e, err := d.entity()
		return e, true, err
	}
	return nil, false, d.typeError("an entity object")
}

// formatted reads a FormattedValues value; null is left out of the map.
func (d *decoder) formatted() (string, bool, error) {
	switch d.peek() {
	case 'n':
		return "", false, d.literal("null")
	case '"':
		b, err := d.str()
		return string(b), true, err
	}
	return "", false, d.typeError("a string")
}

// kvMap reads a DataContract key/value array ([{"key":…,"value":…},…]) into a map;
// an empty array or null gives a nil map.
func kvMap[V any](d *decoder, parse func() (V, bool, error)) (map[string]V, error) {
	switch d.peek() {
	case 'n':
		return nil, d.literal("null")
	case '[':
	default:
		return nil, d.typeError("an array of key/value pairs")
	}
	var m map[string]V
	err := d.array(func(int) error {
		if d.peek() != '{' {
			return d.typeError("a key/value object")
		}
		var (
			key          string
			val          V
			hasKey, keep bool
		)
		err := d.object(func(k []byte) error {
			var err error
			switch string(k) {
			case "key":
				if d.peek() != '"' {
					return d.typeError("a string")
				}
				var b []byte
				if b, err = d.str(); err == nil {
					key, hasKey = d.name(b), true
				}
			case "value":
				val, keep, err = parse()
			default:
				err = d.skipValue()
			}
			return err
		})
		if err != nil {
			return err
		}
		if !hasKey {
			return &DecodeError{Field: "key", Reason: "missing"}
		}
		if keep {
			if m == nil {
				m = make(map[string]V)
			}
			m[key] = val
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// entity reads an Entity object, with or without "__type".
func (d *decoder) entity() (*Entity, error) {
	e := &Entity{}
	err := d.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "LogicalName":
			e.LogicalName, err = d.nameField()
		case "Id":
			e.ID, err = d.stringField()
		case "RowVersion":
			e.RowVersion, err = d.rowVersion()
		case "Attributes":
			e.Attributes, err = kvMap(d, d.param)
		case "FormattedValues":
			e.FormattedValues, err = kvMap(d, d.formatted)
		case "KeyAttributes":
			e.KeyAttributes, err = kvMap(d, d.param)
		default:
			err = d.skipValue()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// reference reads an EntityReference object, with or without "__type".
func (d *decoder) reference() (EntityReference, error) {
	var r EntityReference
	err := d.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "LogicalName":
			r.LogicalName, err = d.nameField()
		case "Id":
			r.ID, err = d.stringField()
		case "Name":
			r.Name, err = d.stringField()
		default:
			err = d.skipValue()
		}
		return err
	})
	return r, err
}

func (d *decoder) referenceOrNull() (*EntityReference, error) {
	switch d.peek() {
	case 'n':
		return nil, d.literal("null")
	case '{':
		r, err := d.reference()
		if err != nil {
			return nil, err
		}
		return &r, nil
	}
	return nil, d.typeError("an object")
}

func (d *decoder) option() (OptionSetValue, error) {
	var o OptionSetValue
	err := d.object(func(key []byte) error {
		if string(key) != "Value" {
			return d.skipValue()
		}
		var err error
		o.Value, err = d.intField()
		return err
	})
	return o, err
}

func (d *decoder) money() (Money, error) {
	var m Money
	err := d.object(func(key []byte) error {
		if string(key) != "Value" {
			return d.skipValue()
		}
		var err error
		m.Value, err = d.floatField()
		return err
	})
	return m, err
}

func (d *decoder) collection() (*EntityCollection, error) {
	c := &EntityCollection{}
	err := d.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "EntityName":
			c.EntityName, err = d.nameField()
		case "MoreRecords":
			c.MoreRecords, err = d.boolField()
		case "Entities":
			switch d.peek() {
			case 'n':
				return d.literal("null")
			case '[':
			default:
				return d.typeError("an array")
			}
			err = d.array(func(int) error {
				e, _, err := d.image()
				if e != nil {
					c.Entities = append(c.Entities, e)
				}
				return err
			})
		default:
			err = d.skipValue()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (d *decoder) relationship() (Relationship, error) {
	var r Relationship
	err := d.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "SchemaName":
			r.SchemaName, err = d.nameField()
		case "PrimaryEntityRole":
			if c := d.peek(); c == '-' || isDigit(c) {
				var n int
				n, err = d.intField()
				r.PrimaryEntityRole = entityRole(int64(n))
			} else {
				r.PrimaryEntityRole, err = d.stringField()
			}
		default:
			err = d.skipValue()
		}
		return err
	})
	return r, err
}

// ---- generic values ----

// kvPair is an object of exactly {"key","value"} (or a KeyValuePairOf… type) met
// where no schema says so; arrays of them become maps, lone ones are finished.
type kvPair struct {
	key   string
	value any
	typed bool // a KeyValuePairOf… __type: stands for its value
}

func (p kvPair) finish() any {
	if p.typed {
		return p.value
	}
	return map[string]any{"key": p.key, "value": p.value}
}

// value reads any JSON value and converts it as the package documentation describes.
func (d *decoder) value() (any, error) {
	v, err := d.anyValue()
	if p, ok := v.(kvPair); ok {
		return p.finish(), err
	}
	return v, err
}

// anyValue is value without finishing a kvPair, so arrays can still collect pairs.
func (d *decoder) anyValue() (any, error) {
	switch c := d.peek(); {
	case c == '"':
		b, err := d.str()
		if err != nil {
			return nil, err
		}
		if t, ok := parseDate(b); ok {
			return t, nil
		}
		return string(b), nil
	case c == '{':
		return d.objectValue()
	case c == '[':
		return d.arrayValue()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || isDigit(c):
		return d.numberValue()
	}
	return nil, d.syntaxError("looking for beginning of value")
}

func (d *decoder) objectValue() (any, error) {
	switch d.typeAhead() {
	case kindEntity:
		e, err := d.entity()
		if err != nil {
			return nil, err
		}
		return e, nil
	case kindReference:
		r, err := d.reference()
		if err != nil {
			return nil, err
		}
		return r, nil
	case kindOption:
		o, err := d.option()
		if err != nil {
			return nil, err
		}
		return o, nil
	case kindMoney:
		m, err := d.money()
		if err != nil {
			return nil, err
		}
		return m, nil
	case kindCollection:
		c, err := d.collection()
		if err != nil {
			return nil, err
		}
		return c, nil
	case kindRelationship:
		r, err := d.relationship()
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	m := make(map[string]any)
	err := d.object(func(key []byte) error {
		k := d.name(key)
		v, err := d.value()
		if err != nil {
			return err
		}
		m[k] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return classify(m), nil
}

func (d *decoder) arrayValue() (any, error) {
	var items []any
	allOptions, allPairs := true, true
	err := d.array(func(int) error {
		v, err := d.anyValue()
		if err != nil {
			return err
		}
		switch v.(type) {
		case OptionSetValue:
			allPairs = false
		case kvPair:
			allOptions = false
		default:
			allOptions, allPairs = false, false
		}
		items = append(items, v)
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case len(items) == 0:
		return []any{}, nil
	case allOptions:
		out := make(OptionSetValues, len(items))
		for i, v := range items {
			out[i] = v.(OptionSetValue)
		}
		return out, nil
	case allPairs:
		m := make(map[string]any, len(items))
		for _, v := range items {
			p := v.(kvPair)
			m[p.key] = p.value
		}
		return m, nil
	}
	for i, v := range items {
		if p, ok := v.(kvPair); ok {
			items[i] = p.finish()
		}
	}
	return items, nil
}

func (d *decoder) numberValue() (any, error) {
	raw, isInt, err := d.number()
	if err != nil {
		return nil, err
	}
	if isInt {
		if n, ok := parseInt(raw); ok {
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return nil, &DecodeError{Reason: "number out of range"}
	}
	return f, nil
}

// classify turns a generically read object into a typed value when its fields say
// what it is: a "__type" that was not written first, an image-like Entity, a bare
// EntityReference, a wrapped primitive or a key/value pair. Anything else stays a map.
func classify(m map[string]any) any {
	if t, ok := m["__type"].(string); ok {
		return fromTyped(t, m)
	}
	if len(m) == 2 {
		if k, ok := m["key"].(string); ok {
			if v, ok := m["value"]; ok {
				return kvPair{key: k, value: v}
			}
		}
	}
	if _, ok := m["LogicalName"]; ok {
		if _, ok := m["Attributes"]; ok {
			if e, ok := entityFromMap(m); ok {
				return e
			}
			return m
		}
		if _, ok := m["Id"]; ok {
			if r, ok := referenceFromMap(m); ok {
				return r
			}
		}
	}
	return m
}

func fromTyped(t string, m map[string]any) any {
	switch kindOf(typePrefix([]byte(t))) {
	case kindEntity:
		if e, ok := entityFromMap(m); ok {
			return e
		}
	case kindReference:
		if r, ok := referenceFromMap(m); ok {
			return r
		}
	case kindOption:
		switch v := m["Value"].(type) {
		case nil:
			return OptionSetValue{}
		case int64:
			if int64(int(v)) == v {
				return OptionSetValue{Value: int(v)}
			}
		}
	case kindMoney:
		switch v := m["Value"].(type) {
		case nil:
			return Money{}
		case float64:
			return Money{Value: v}
		case int64:
			return Money{Value: float64(v)}
		}
	case kindCollection:
		if c, ok := collectionFromMap(m); ok {
			return c
		}
	case kindRelationship:
		if r, ok := relationshipFromMap(m); ok {
			return r
		}
	default:
		if v, ok := m["__value"]; ok {
			return v // Guid:#System, DateTime:#System and other wrapped primitives
		}
		if strings.HasPrefix(t, "KeyValuePairOf") {
			if k, ok := m["key"].(string); ok {
				return kvPair{key: k, value: m["value"], typed: true}
			}
		}
	}
	return m
}

func entityFromMap(m map[string]any) (*Entity, bool) {
	e := &Entity{}
	var ok1, ok2, ok3, ok4, ok5 bool
	e.LogicalName, ok1 = optString(m["LogicalName"])
	e.ID, ok2 = optString(m["Id"])
	e.RowVersion, ok3 = optString(m["RowVersion"])
	e.Attributes, ok4 = optMap(m["Attributes"])
	e.KeyAttributes, ok5 = optMap(m["KeyAttributes"])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return nil, false
	}
	fv, ok := optMap(m["FormattedValues"])
	if !ok {
		return nil, false
	}
	for k, v := range fv {
		switch s := v.(type) {
		case nil:
		case string:
			if e.FormattedValues == nil {
				e.FormattedValues = make(map[string]string, len(fv))
			}
			e.FormattedValues[k] = s
		default:
			return nil, false
		}
	}
	return e, true
}

func referenceFromMap(m map[string]any) (EntityReference, bool) {
	var r EntityReference
	var ok1, ok2, ok3 bool
	r.LogicalName, ok1 = optString(m["LogicalName"])
	r.ID, ok2 = optString(m["Id"])
	r.Name, ok3 = optString(m["Name"])
	return r, ok1 && ok2 && ok3
}

func collectionFromMap(m map[string]any) (*EntityCollection, bool) {
	c := &EntityCollection{}
	var ok bool
	if c.EntityName, ok = optString(m["EntityName"]); !ok {
		return nil, false
	}
	switch v := m["MoreRecords"].(type) {
	case nil:
	case bool:
		c.MoreRecords = v
	default:
		return nil, false
	}
	switch v := m["Entities"].(type) {
	case nil:
	case []any:
		for _, item := range v {
			switch e := item.(type) {
			case nil:
			case *Entity:
				c.Entities = append(c.Entities, e)
			case map[string]any:
				if ent, ok := entityFromMap(e); ok {
					c.Entities = append(c.Entities, ent)
				} else {
					return nil, false
				}
			default:
				return nil, false
			}
		}
	default:
		return nil, false
	}
	return c, true
}

func relationshipFromMap(m map[string]any) (Relationship, bool) {
	var r Relationship
	var ok bool
	if r.SchemaName, ok = optString(m["SchemaName"]); !ok {
		return r, false
	}
	switch v := m["PrimaryEntityRole"].(type) {
	case nil:
	case string:
		r.PrimaryEntityRole = v
	case int64:
		r.PrimaryEntityRole = entityRole(v)
	default:
		return r, false
	}
	return r, true
}

func optString(v any) (string, bool) {
	switch s := v.(type) {
	case nil:
		return "", true
	case string:
		return s, true
	}
	return "", false
}

// optMap accepts what a key/value array becomes when read generically: a map, or an
// empty slice for "[]".
func optMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case nil:
		return nil, true
	case map[string]any:
		if len(m) == 0 {
			return nil, true
		}
		return m, true
	case []any:
		return nil, len(m) == 0
	}
	return nil, false
}

// parseDate reads DataContractJsonSerializer's "/Date(ms)/", "/Date(ms+hhmm)/" and
// "/Date(ms-hhmm)/": ms is UTC milliseconds, the offset only marks a Local kind.
func parseDate(b []byte) (time.Time, bool) {
	const prefix, suffix = "/Date(", ")/"
	if len(b) < len(prefix)+1+len(suffix) || string(b[:len(prefix)]) != prefix || string(b[len(b)-len(suffix):]) != suffix {
		return time.Time{}, false
	}
	s := b[len(prefix) : len(b)-len(suffix)]
	i := 0
	if s[0] == '-' {
		i = 1
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	digits := s[start:i]
	if len(digits) == 0 || len(digits) > 18 {
		return time.Time{}, false
	}
	if rest := s[i:]; len(rest) != 0 {
		if len(rest) != 5 || (rest[0] != '+' && rest[0] != '-') ||
			!isDigit(rest[1]) || !isDigit(rest[2]) || !isDigit(rest[3]) || !isDigit(rest[4]) {
			return time.Time{}, false
		}
	}
	var ms int64
	for _, c := range digits {
		ms = ms*10 + int64(c-'0')
	}
	if start == 1 {
		ms = -ms
	}
	return time.UnixMilli(ms).UTC(), true
}

// ---- typed fields ----

// stringField reads a string, null (""), or a wrapped string such as
// {"__type":"Guid:#System","__value":"…"}.
func (d *decoder) stringField() (string, error) {
	switch d.peek() {
	case '"':
		b, err := d.str()
		return string(b), err
	case 'n':
		return "", d.literal("null")
	case '{':
		v, err := d.value()
		if err != nil {
			return "", err
		}
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", &DecodeError{Reason: "want a string, got object"}
	}
	return "", d.typeError("a string")
}

// nameField is stringField for table and schema names, which repeat within a body.
func (d *decoder) nameField() (string, error) {
	if d.peek() == '"' {
		b, err := d.str()
		if err != nil {
			return "", err
		}
		return d.name(b), nil
	}
	return d.stringField()
}

// rowVersion accepts the string DataContractJsonSerializer writes and, leniently, a number.
func (d *decoder) rowVersion() (string, error) {
	if c := d.peek(); c == '-' || isDigit(c) {
		raw, _, err := d.number()
		return string(raw), err
	}
	return d.stringField()
}

func (d *decoder) intField() (int, error) {
	switch c := d.peek(); {
	case c == 'n':
		return 0, d.literal("null")
	case c == '-' || isDigit(c):
		raw, isInt, err := d.number()
		if err != nil {
			return 0, err
		}
		if !isInt {
			return 0, &DecodeError{Reason: "want a whole number, got a fraction"}
		}
		n, ok := parseInt(raw)
		if !ok || int64(int(n)) != n {
			return 0, &DecodeError{Reason: "number out of range"}
		}
		return int(n), nil
	}
	return 0, d.typeError("a whole number")
}

func (d *decoder) floatField() (float64, error) {
	switch c := d.peek(); {
	case c == 'n':
		return 0, d.literal("null")
	case c == '-' || isDigit(c):
		v, err := d.numberValue()
		if err != nil {
			return 0, err
		}
		if n, ok := v.(int64); ok {
			return float64(n), nil
		}
		return v.(float64), nil
	}
	return 0, d.typeError("a number")
}

func (d *decoder) boolField() (bool, error) {
	switch d.peek() {
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return false, d.literal("null")
	}
	return false, d.typeError("a boolean")
}

// timeField reads "/Date(…)/", a DateTime wrapper, RFC 3339 text or null.
func (d *decoder) timeField() (time.Time, error) {
	switch d.peek() {
	case 'n':
		return time.Time{}, d.literal("null")
	case '"':
		b, err := d.str()
		if err != nil {
			return time.Time{}, err
		}
		if t, ok := parseDate(b); ok {
			return t, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, string(b)); err == nil {
			return t.UTC(), nil
		}
		return time.Time{}, &DecodeError{Reason: `want a "/Date(ms)/" date`}
	case '{':
		v, err := d.value()
		if err != nil {
			return time.Time{}, err
		}
		if t, ok := v.(time.Time); ok {
			return t, nil
		}
		return time.Time{}, &DecodeError{Reason: "want a date, got object"}
	}
	return time.Time{}, d.typeError("a date")
}

// name interns short names (attribute keys, table names), which repeat across
// Target, images and party lists, so each is allocated once per body. Small bodies
// repeat too little to pay for the table.
func (d *decoder) name(b []byte) string {
	if len(b) > 40 || len(d.data) < internAbove {
		return string(b)
	}
	if s, ok := d.names[string(b)]; ok {
		return s
	}
	if d.names == nil {
		d.names = make(map[string]string, 64)
	}
	s := string(b)
	d.names[s] = s
	return s
}

// ---- JSON syntax ----

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (d *decoder) skipWS() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the byte at d.pos, or 0 at the end of input.
func (d *decoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// next skips whitespace, then peeks.
func (d *decoder) next() byte {
	d.skipWS()
	return d.peek()
}

// kind names the JSON value starting at d.pos, for error messages.
func (d *decoder) kind() string {
	switch c := d.peek(); {
	case c == '"':
		return "string"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	case c == '-' || isDigit(c):
		return "number"
	}
	return ""
}

func (d *decoder) typeError(want string) error {
	got := d.kind()
	if got == "" {
		return d.syntaxError("looking for beginning of value")
	}
	return &DecodeError{Reason: "want " + want + ", got " + got}
}

func (d *decoder) syntaxError(where string) error {
	if d.pos >= len(d.data) {
		return &DecodeError{Reason: "unexpected end of input"}
	}
	c := d.data[d.pos]
	var q string
	switch {
	case c == '\'':
		q = `'\''`
	case c >= 0x20 && c < 0x7f:
		q = "'" + string(rune(c)) + "'"
	default:
		q = "byte 0x" + strconv.FormatUint(uint64(c), 16)
	}
	return &DecodeError{Reason: "invalid character " + q + " " + where + " at byte " + strconv.Itoa(d.pos)}
}

func (d *decoder) push() error {
	d.depth++
	if d.depth > maxDepth {
		return &DecodeError{Reason: "nesting deeper than " + strconv.Itoa(maxDepth) + " levels"}
	}
	return nil
}

// object reads the object at d.pos, calling field for each member with d.pos at the
// start of its value; key is only valid until field reads another string. Errors from
// field get the member's name prepended to their Field.
func (d *decoder) object(field func(key []byte) error) error {
	if err := d.push(); err != nil {
		return err
	}
	d.pos++ // '{'
	c := d.next()
	if c == '}' {
		d.pos++
		d.depth--
		return nil
	}
	for {
		if c != '"' {
			return d.syntaxError("looking for beginning of object key string")
		}
		keyStart := d.pos
		key, err := d.str()
		if err != nil {
			return err
		}
		if d.next() != ':' {
			return d.syntaxError("after object key")
		}
		d.pos++
		d.skipWS()
		if err := field(key); err != nil {
			if de, ok := err.(*DecodeError); ok {
				de.prefix(d.keyAt(keyStart))
			}
			return err
		}
		switch c = d.next(); c {
		case ',':
			d.pos++
			c = d.next()
		case '}':
			d.pos++
			d.depth--
			return nil
		default:
			return d.syntaxError("after object key:value pair")
		}
	}
}

// keyAt re-reads the key that starts at pos; only used to build error paths, so it
// cuts long keys and quotes odd ones to keep error messages short and printable.
func (d *decoder) keyAt(pos int) string {
	save, saveScratch := d.pos, d.scratch
	d.pos, d.scratch = pos, nil
	b, _ := d.str()
	d.pos, d.scratch = save, saveScratch
	const maxKey = 64
	cut := len(b) > maxKey
	if cut {
		b = b[:maxKey]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	s := string(b)
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || strings.ContainsRune(".[]\"", r) }) {
		s = strconv.Quote(s)
	}
	if cut {
		s += "…"
	}
	return s
}

// array reads the array at d.pos, calling elem for each element with d.pos at its
// start. Errors from elem get "[i]" prepended to their Field.
func (d *decoder) array(elem func(i int) error) error {
	if err := d.push(); err != nil {
		return err
	}
	d.pos++ // '['
	if d.next() == ']' {
		d.pos++
		d.depth--
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			if de, ok := err.(*DecodeError); ok {
				de.prefix("[" + strconv.Itoa(i) + "]")
			}
			return err
		}
		switch d.next() {
		case ',':
			d.pos++
			d.skipWS()
		case ']':
			d.pos++
			d.depth--
			return nil
		default:
			return d.syntaxError("after array element")
		}
	}
}

// skipValue checks and skips one value whose content nobody needs.
func (d *decoder) skipValue() error {
	switch c := d.peek(); {
	case c == '"':
		_, err := d.str()
		return err
	case c == '{':
		return d.object(func([]byte) error { return d.skipValue() })
	case c == '[':
		return d.array(func(int) error { return d.skipValue() })
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || isDigit(c):
		_, _, err := d.number()
		return err
	}
	return d.syntaxError("looking for beginning of value")
}

func (d *decoder) literal(lit string) error {
	for i := 0; i < len(lit); i++ {
		if d.pos >= len(d.data) || d.data[d.pos] != lit[i] {
			return d.syntaxError("in literal " + lit)
		}
		d.pos++
	}
	return nil
}

// number checks the JSON number at d.pos and returns its text; isInt is true when it
// has neither fraction nor exponent.
func (d *decoder) number() (raw []byte, isInt bool, err error) {
	start, n := d.pos, len(d.data)
	i := start
	if i < n && d.data[i] == '-' {
		i++
	}
	switch {
	case i < n && d.data[i] == '0':
		i++
	case i < n && isDigit(d.data[i]):
		for i < n && isDigit(d.data[i]) {
			i++
		}
	default:
		d.pos = i
		return nil, false, d.syntaxError("in numeric literal")
	}
	isInt = true
	if i < n && d.data[i] == '.' {
		isInt = false
		i++
		if i >= n || !isDigit(d.data[i]) {
			d.pos = i
			return nil, false, d.syntaxError("after decimal point in numeric literal")
		}
		for i < n && isDigit(d.data[i]) {
			i++
		}
	}
	if i < n && (d.data[i] == 'e' || d.data[i] == 'E') {
		isInt = false
		i++
		if i < n && (d.data[i] == '+' || d.data[i] == '-') {
			i++
		}
		if i >= n || !isDigit(d.data[i]) {
			d.pos = i
			return nil, false, d.syntaxError("in exponent of numeric literal")
		}
		for i < n && isDigit(d.data[i]) {
			i++
		}
	}
	d.pos = i
	return d.data[start:i], isInt, nil
}

// parseInt parses a checked integer literal; ok is false when it overflows int64.
func parseInt(raw []byte) (int64, bool) {
	neg := raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	if len(raw) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range raw {
		u = u*10 + uint64(c-'0') // 19 digits never overflow uint64
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// str reads the string at d.pos and returns its unescaped bytes, which alias either
// the body or d.scratch and are valid until the next call.
func (d *decoder) str() ([]byte, error) {
	i := d.pos + 1
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			b := d.data[d.pos+1 : i]
			d.pos = i + 1
			return b, nil
		case c == '\\' || c < 0x20:
			return d.strSlow(i)
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				return d.strSlow(i)
			}
			i += size
		default:
			i++
		}
	}
	d.pos = len(d.data)
	return nil, d.syntaxError("")
}

// strSlow unescapes from i on, replacing invalid UTF-8 and lone surrogates with
// U+FFFD as encoding/json does.
func (d *decoder) strSlow(i int) ([]byte, error) {
	b := append(d.scratch[:0], d.data[d.pos+1:i]...)
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			d.scratch = b
			return b, nil
		case c < 0x20:
			d.pos = i
			return nil, d.syntaxError("in string literal")
		case c == '\\':
			if i+1 >= len(d.data) {
				d.pos = len(d.data)
				return nil, d.syntaxError("")
			}
			switch e := d.data[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, bad := hex4(d.data[i+2:])
				if bad >= 0 {
					d.pos = i + 2 + bad
					return nil, d.syntaxError("in \\u hexadecimal character escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+1 < len(d.data) && d.data[i] == '\\' && d.data[i+1] == 'u' {
						if v, bad := hex4(d.data[i+2:]); bad < 0 {
							r2 = v
						}
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				d.pos = i + 1
				return nil, d.syntaxError("in string escape code")
			}
			i += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, d.data[i:i+size]...)
			}
			i += size
		}
	}
	d.pos = len(d.data)
	d.scratch = b
	return nil, d.syntaxError("")
}

// hex4 reads four hex digits; bad is the index of the first non-hex byte (4 at the
// end of input), or -1 when all four are fine.
func hex4(b []byte) (r rune, bad int) {
	for i := range 4 {
		if i >= len(b) {
			return 0, len(b)
		}
		c := b[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, i
		}
		r = r<<4 | rune(c)
	}
	return r, -1
}
