package emulator

import (
	"bytes"
	"strconv"
	"time"
)

// The webhook body: Microsoft.Xrm.Sdk.RemoteExecutionContext as
// DataContractJsonSerializer writes it (reference/dataverse.md §3): properties in
// ordinal order ("__type" first), keyed collections as [{"key":…,"value":…}],
// typed values with "__type", dates as "\/Date(ms)\/", every "/" escaped.

// maxWebhookBody is the payload size above which Dataverse strips
// InputParameters, images and ParentContext and sets
// x-ms-dynamics-msg-size-exceeded (§2.2).
const maxWebhookBody = 256 << 10

// Data contract type names of §3.2.
const (
	contractsNS       = ":http://schemas.microsoft.com/xrm/2011/Contracts"
	typeEntityWire    = "Entity" + contractsNS
	typeReferenceWire = "EntityReference" + contractsNS
	typeOptionWire    = "OptionSetValue" + contractsNS
	typeMoneyWire     = "Money" + contractsNS
	typeCollWire      = "EntityCollection" + contractsNS
	typeRelationWire  = "Relationship" + contractsNS
	zeroGUID          = "00000000-0000-0000-0000-000000000000"
)

// Wire values: what a stored column becomes in a webhook body.
type (
	wireEntity struct {
		typed     bool // Targets carry "__type"; images do not
		logical   string
		id        string
		attrs     []wireKV
		formatted []wireKV // string values
	}
	wireRef struct {
		logical, id, name string // name "" is null
	}
	wireOption int64
	wireMoney  float64
	wireDate   time.Time
	wireKV     struct {
		key   string
		value any
	}
	// wireCollection is an EntityCollection (Targets of the bulk messages); its
	// entities carry no "__type", as in the party-list captures of §3.2.
	wireCollection struct {
		entity   string
		entities []*wireEntity
	}
	// wireRelationship is the Relationship of Associate and Disassociate: its
	// schema name.
	wireRelationship string
)

// wireContext is one RemoteExecutionContext.
type wireContext struct {
	businessUnitID, correlationID, userID, initiatingUserID string
	message, entity, entityID                               string
	operationID, requestID, orgID, orgName                  string
	stage, mode                                             int
	inTransaction                                           bool
	createdOn                                               time.Time
	input, output, shared                                   []wireKV
	preImages, postImages                                   []wireKV // values are *wireEntity
	owner                                                   *wireRef // OwningExtension; nil is null
	parent                                                  *wireContext
}

// webhookBody builds the body of one delivery; stripped reports that it was over
// 256 KB and lost InputParameters, images and ParentContext.
func (e *Emulator) webhookBody(sc *stepCall, operationID string) (body []byte, stripped bool) {
	wc := e.wireContext(sc, operationID)
	body = wc.append(make([]byte, 0, 16<<10), false)
	if len(body) <= maxWebhookBody {
		return body, false
	}
	return wc.append(make([]byte, 0, 4<<10), true), true
}

// wireContext assembles the context of one event for one step.
func (e *Emulator) wireContext(sc *stepCall, operationID string) *wireContext {
	c, o, s := sc.change, sc.op, sc.step
	wc := &wireContext{
		businessUnitID: o.caller.businessUnit, correlationID: o.correlationID,
		userID: o.caller.user, initiatingUserID: o.caller.user,
		message: c.message, entity: c.t.logical, entityID: c.id,
		operationID: operationID, requestID: o.requestID, orgID: e.orgID, orgName: e.OrganizationName(),
		stage: s.stage, mode: s.mode, inTransaction: s.mode == 0, createdOn: o.at,
		shared: []wireKV{{"IsAutoTransact", true}},
		owner:  &wireRef{logical: "sdkmessageprocessingstep", id: s.id, name: s.name},
	}
	wc.input = c.input
	if wc.input == nil {
		wc.input = e.inputParameters(c)
	}
	switch {
	case s.stage != 40:
	case c.output != nil:
		wc.output = c.output
	case c.message == msgCreate:
		wc.output = []wireKV{{"id", c.id}}
	}
	for _, img := range s.images {
		if (img.kind == imagePre || img.kind == imageBoth) && c.pre != nil {
			wc.preImages = append(wc.preImages, wireKV{img.alias, image(c.t, c.id, c.pre, img.attrs)})
		}
		if (img.kind == imagePost || img.kind == imageBoth) && c.post != nil && s.stage == 40 {
			wc.postImages = append(wc.postImages, wireKV{img.alias, image(c.t, c.id, c.post, img.attrs)})
		}
	}
	if s.mode == 1 {
		if c.post != nil {
			// Every asynchronous capture carries the primary key and name (§3.1).
			attrs := []string{c.t.primaryName}
			wc.postImages = append(wc.postImages, wireKV{"AsynchronousStepPrimaryName", image(c.t, c.id, c.post, attrs)})
		}
		// …and the MainOperation context the step ran after.
		parent := *wc
		parent.stage, parent.mode, parent.inTransaction = 30, 0, true
		parent.operationID, parent.owner = zeroGUID, nil
		parent.preImages, parent.postImages, parent.parent = nil, nil, nil
		wc.parent = &parent
	}
	return wc
}

// inputParameters are the message's request parameters (§3.2–§3.5, §7.4).
func (e *Emulator) inputParameters(c rowChange) []wireKV {
	self := wireRef{logical: c.t.logical, id: c.id}
	switch c.message {
	case msgCreate:
		t := &wireEntity{typed: true, logical: c.t.logical, id: c.id}
		for _, col := range c.t.columns {
			if v, ok := c.post[col.name]; ok && !col.secret && col.name != c.t.pk {
				t.attrs = append(t.attrs, wireKV{col.name, wireValue(col, v)})
				if label, ok := optionLabel(col, v); ok {
					t.formatted = append(t.formatted, wireKV{col.name, label})
				}
			}
		}
		t.attrs = append(t.attrs, wireKV{c.t.pk, c.id})
		return []wireKV{{"Target", t}}
	case msgUpdate:
		t := &wireEntity{typed: true, logical: c.t.logical, id: c.id}
		for _, name := range c.target {
			if col := c.t.byName[name]; !col.secret {
				t.attrs = append(t.attrs, wireKV{name, wireValue(col, c.post[name])})
			}
		}
		t.attrs = append(t.attrs,
			wireKV{c.t.pk, c.id},
			wireKV{"modifiedon", wireValue(c.t.byName["modifiedon"], c.post["modifiedon"])},
			wireKV{"modifiedby", wireValue(c.t.byName["modifiedby"], c.post["modifiedby"])},
			wireKV{"modifiedonbehalfby", nil})
		return []wireKV{{"Target", t}}
	case msgDelete:
		return []wireKV{{"Target", self}}
	case msgSetState:
		return []wireKV{
			{"EntityMoniker", self},
			{"State", wireOption(intVal(c.post["statecode"]))},
			{"Status", wireOption(intVal(c.post["statuscode"]))},
		}
	case msgAssign:
		return []wireKV{{"Target", self}, {"Assignee", wireValue(c.t.byName["ownerid"], c.post["ownerid"])}}
	case msgCreateMultiple, msgUpdateMultiple:
		coll := wireCollection{entity: c.t.logical, entities: make([]*wireEntity, 0, len(c.rows))}
		for _, row := range c.rows {
			for _, kv := range e.inputParameters(row) {
				if target, ok := kv.value.(*wireEntity); ok && kv.key == "Target" {
					untyped := *target
					untyped.typed = false
					coll.entities = append(coll.entities, &untyped)
				}
			}
		}
		return []wireKV{{"Targets", coll}}
	}
	return nil
}

// image is a pre- or post-image: the primary key and the named columns that have
// a value (all columns when attrs is nil), the way images leave nulls out.
func image(t *table, id string, vals map[string]any, attrs []string) *wireEntity {
	img := &wireEntity{logical: t.logical, id: id}
	add := func(col *column) {
		if v, ok := vals[col.name]; ok && v != nil && !col.secret && col.name != t.pk {
			img.attrs = append(img.attrs, wireKV{col.name, wireValue(col, v)})
		}
	}
	if attrs == nil {
		for _, col := range t.columns {
			add(col)
		}
	} else {
		for _, name := range attrs {
			if col := t.byName[name]; col != nil {
				add(col)
			}
		}
	}
	img.attrs = append(img.attrs, wireKV{t.pk, id})
	return img
}

// wireValue turns a stored value into its webhook form by the column's type.
func wireValue(c *column, v any) any {
	if v == nil || c == nil {
		return v
	}
	switch c.typ {
	case typeChoice, typeState, typeStatus:
		return wireOption(intVal(v))
	case typeMoney:
		f, _ := v.(float64)
		return wireMoney(f)
	case typeDateTime, typeDateOnly:
		if tm, ok := v.(time.Time); ok {
			return wireDate(tm)
		}
	case typeLookup:
		if r, ok := v.(ref); ok {
			return wireRef{logical: r.table, id: r.id}
		}
	}
	return v
}

// optionLabel is the FormattedValue of a choice, state or status value.
func optionLabel(c *column, v any) (string, bool) {
	if c.typ != typeChoice && c.typ != typeState && c.typ != typeStatus {
		return "", false
	}
	n, _ := v.(int64)
	for _, o := range c.options {
		if int64(o.value) == n {
			return o.label, true
		}
	}
	return "", false
}

// append writes the context; stripped leaves out what Dataverse removes from an
// oversized body.
func (wc *wireContext) append(b []byte, stripped bool) []byte {
	str := func(key, v string) {
		b = appendKey(b, key)
		b = appendDCString(b, v)
	}
	num := func(key string, n int) {
		b = appendKey(b, key)
		b = strconv.AppendInt(b, int64(n), 10)
	}
	flag := func(key string, v bool) {
		b = appendKey(b, key)
		b = strconv.AppendBool(b, v)
	}
	pairs := func(key string, kvs []wireKV) {
		b = appendKey(b, key)
		b = appendPairs(b, kvs)
	}
	b = append(b, '{')
	str("BusinessUnitId", wc.businessUnitID)
	str("CorrelationId", wc.correlationID)
	num("Depth", 1)
	str("InitiatingUserAzureActiveDirectoryObjectId", zeroGUID)
	str("InitiatingUserId", wc.initiatingUserID)
	if !stripped {
		pairs("InputParameters", wc.input)
	}
	flag("IsExecutingOffline", false)
	flag("IsInTransaction", wc.inTransaction)
	flag("IsOfflinePlayback", false)
	num("IsolationMode", 1)
	str("MessageName", wc.message)
	num("Mode", wc.mode)
	b = appendKey(b, "OperationCreatedOn")
	b = appendDate(b, wc.createdOn, "+0000")
	str("OperationId", wc.operationID)
	str("OrganizationId", wc.orgID)
	str("OrganizationName", wc.orgName)
	pairs("OutputParameters", wc.output)
	b = appendKey(b, "OwningExtension")
	if wc.owner != nil {
		b = wc.owner.append(b, false)
	} else {
		b = append(b, "null"...)
	}
	if !stripped {
		b = appendKey(b, "ParentContext")
		if wc.parent != nil {
			b = wc.parent.append(b, false)
		} else {
			b = append(b, "null"...)
		}
		pairs("PostEntityImages", wc.postImages)
		pairs("PreEntityImages", wc.preImages)
	}
	str("PrimaryEntityId", wc.entityID)
	str("PrimaryEntityName", wc.entity)
	str("RequestId", wc.requestID)
	str("SecondaryEntityName", "none")
	pairs("SharedVariables", wc.shared)
	num("Stage", wc.stage)
	str("UserAzureActiveDirectoryObjectId", zeroGUID)
	str("UserId", wc.userID)
	return append(b, '}')
}

// appendKey writes a property name, preceded by a comma unless it is the first.
func appendKey(b []byte, key string) []byte {
	if len(b) > 0 && b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = appendString(b, key)
	return append(b, ':')
}

// appendPairs writes a keyed collection.
func appendPairs(b []byte, kvs []wireKV) []byte {
	b = append(b, '[')
	for i, kv := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendDCString(b, kv.key)
		b = append(b, `,"value":`...)
		b = appendWire(b, kv.value)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendWire writes one value of an attribute, parameter or shared variable.
func appendWire(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case *wireEntity:
		return v.append(b)
	case wireRef:
		return v.append(b, true)
	case wireOption:
		b = append(b, `{"__type":`...)
		b = appendDCString(b, typeOptionWire)
		b = append(b, `,"Value":`...)
		b = strconv.AppendInt(b, int64(v), 10)
		return append(b, '}')
	case wireMoney:
		b = append(b, `{"__type":`...)
		b = appendDCString(b, typeMoneyWire)
		b = append(b, `,"Value":`...)
		b = strconv.AppendFloat(b, float64(v), 'f', -1, 64)
		return append(b, '}')
	case wireDate:
		return appendDate(b, time.Time(v), "")
	case wireCollection:
		b = append(b, `{"__type":`...)
		b = appendDCString(b, typeCollWire)
		b = append(b, `,"Entities":[`...)
		for i, ent := range v.entities {
			if i > 0 {
				b = append(b, ',')
			}
			b = ent.append(b)
		}
		b = append(b, `],"EntityName":`...)
		b = appendDCString(b, v.entity)
		return append(b, `,"MinActiveRowVersion":"-1","MoreRecords":false,"PagingCookie":null,"TotalRecordCount":-1,"TotalRecordCountLimitExceeded":false}`...)
	case wireRelationship:
		b = append(b, `{"__type":`...)
		b = appendDCString(b, typeRelationWire)
		b = append(b, `,"PrimaryEntityRole":null,"SchemaName":`...)
		b = appendDCString(b, string(v))
		return append(b, '}')
	case []any:
		// Guid[] (MemberIds, Ids) and EntityReferenceCollection (RelatedEntities).
		b = append(b, '[')
		for i, item := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendWire(b, item)
		}
		return append(b, ']')
	case string:
		return appendDCString(b, v)
	case bool:
		return strconv.AppendBool(b, v)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case float64:
		return strconv.AppendFloat(b, v, 'f', -1, 64)
	}
	return append(b, "null"...)
}

// append writes an Entity: a Target with "__type", an image without.
func (w *wireEntity) append(b []byte) []byte {
	b = append(b, '{')
	if w.typed {
		b = appendKey(b, "__type")
		b = appendDCString(b, typeEntityWire)
	}
	b = appendKey(b, "Attributes")
	b = appendPairs(b, w.attrs)
	b = appendKey(b, "EntityState")
	b = append(b, "null"...)
	b = appendKey(b, "FormattedValues")
	b = appendPairs(b, w.formatted)
	b = appendKey(b, "Id")
	b = appendDCString(b, w.id)
	b = append(b, `,"KeyAttributes":[],"LogicalName":`...)
	b = appendDCString(b, w.logical)
	b = append(b, `,"RelatedEntities":[],"RowVersion":null}`...)
	return b
}

// append writes an EntityReference; OwningExtension has no "__type".
func (r wireRef) append(b []byte, typed bool) []byte {
	b = append(b, '{')
	if typed {
		b = append(b, `"__type":`...)
		b = appendDCString(b, typeReferenceWire)
		b = append(b, ',')
	}
	b = append(b, `"Id":`...)
	b = appendDCString(b, r.id)
	b = append(b, `,"KeyAttributes":[],"LogicalName":`...)
	b = appendDCString(b, r.logical)
	b = append(b, `,"Name":`...)
	if r.name == "" {
		b = append(b, "null"...)
	} else {
		b = appendDCString(b, r.name)
	}
	return append(b, `,"RowVersion":null}`...)
}

// appendDate writes "\/Date(ms)\/", with an offset suffix such as "+0000" when
// given (it marks the kind only; the number is UTC).
func appendDate(b []byte, t time.Time, suffix string) []byte {
	b = append(b, `"\/Date(`...)
	b = strconv.AppendInt(b, t.UnixMilli(), 10)
	b = append(b, suffix...)
	return append(b, `)\/"`...)
}

// appendDCString writes a JSON string with "/" escaped as "\/", as
// DataContractJsonSerializer does. appendString never writes "/" inside an escape,
// so replacing afterwards is safe.
func appendDCString(b []byte, s string) []byte {
	start := len(b)
	b = appendString(b, s)
	if bytes.IndexByte(b[start:], '/') < 0 {
		return b
	}
	escaped := bytes.ReplaceAll(b[start:], []byte("/"), []byte(`\/`))
	return append(b[:start], escaped...)
}
