package dataverse

import (
	"slices"
	"time"
)

// HeaderSizeExceeded is the request header Dataverse adds when it stripped
// InputParameters, images and ParentContext from a body over 256 KB; the webhook
// handler passes it on through MarkSizeExceeded.
const HeaderSizeExceeded = "x-ms-dynamics-msg-size-exceeded"

// ExecutionContext is a decoded RemoteExecutionContext: what happened (message, table,
// row, stage) and the data that came with it, so engine steps can be written like
// Dataverse plug-ins without touching JSON.
type ExecutionContext struct {
	MessageName, PrimaryEntityName, PrimaryEntityID, SecondaryEntityName    string
	Stage, Mode, Depth, IsolationMode                                       int
	IsInTransaction, IsExecutingOffline, IsOfflinePlayback                  bool
	OperationID, CorrelationID, RequestID, OrganizationID, OrganizationName string
	BusinessUnitID, UserID, InitiatingUserID                                string
	OperationCreatedOn                                                      time.Time          // UTC
	OwningExtension                                                         *EntityReference   // the step; may be nil
	InputParameters, OutputParameters, SharedVariables                      map[string]any     // nil when empty or absent
	PreEntityImages, PostEntityImages                                       map[string]*Entity // by alias
	ParentContext                                                           *ExecutionContext  // nested, may be nil
	// SizeExceeded is true when InputParameters and images were stripped: set by
	// MarkSizeExceeded, or by Decode when InputParameters is absent on a message that
	// always has it.
	SizeExceeded bool
}

// MarkSizeExceeded records that the request carried HeaderSizeExceeded, because the
// body alone cannot always tell that Dataverse stripped it.
func (c *ExecutionContext) MarkSizeExceeded() { c.SizeExceeded = true }

// NeedsReread reports that the event does not carry the row, so the row must be read
// back through the Web API by PrimaryEntityName and PrimaryEntityID.
func (c *ExecutionContext) NeedsReread() bool {
	if c.SizeExceeded {
		return true
	}
	switch c.MessageName {
	case MessageCreate, MessageUpdate:
		_, ok := c.Target()
		return !ok
	case MessageAssign:
		// Assign carries the row's reference and the new owner, not the row: the
		// owning business unit (and so the language) is read back.
		return true
	}
	return false
}

// Target returns the Entity that Create and Update carry in InputParameters["Target"].
func (c *ExecutionContext) Target() (*Entity, bool) {
	e, ok := c.InputParameters[ParamTarget].(*Entity)
	return e, ok && e != nil
}

// TargetReference says which row the message is about, whether the message carries a
// reference (Delete, Assign, Associate, custom APIs; EntityMoniker for SetState) or a
// whole Entity (Create, Update).
func (c *ExecutionContext) TargetReference() (*EntityReference, bool) {
	for _, name := range [...]string{ParamTarget, ParamEntityMoniker} {
		switch v := c.InputParameters[name].(type) {
		case EntityReference:
			return &v, true
		case *Entity:
			if v == nil {
				continue
			}
			id := v.ID
			if id == "" && v.LogicalName == c.PrimaryEntityName {
				id = c.PrimaryEntityID
			}
			return &EntityReference{LogicalName: v.LogicalName, ID: id}, true
		}
	}
	return nil, false
}

// Merged is how callers see the whole row: an Update Target carries only the changed
// columns, so pre-images come first, then the Target, then post-images, a later source
// winning per attribute (images with several aliases are applied in alias order).
// LogicalName and ID are those of the primary entity. It never returns nil.
func (c *ExecutionContext) Merged() *Entity {
	m := &Entity{LogicalName: c.PrimaryEntityName, ID: c.PrimaryEntityID, Attributes: map[string]any{}}
	mergeImages(m, c.PreEntityImages)
	if t, ok := c.Target(); ok {
		merge(m, t)
	}
	mergeImages(m, c.PostEntityImages)
	return m
}

func mergeImages(dst *Entity, images map[string]*Entity) {
	aliases := make([]string, 0, len(images))
	for alias := range images {
		aliases = append(aliases, alias)
	}
	slices.Sort(aliases)
	for _, alias := range aliases {
		merge(dst, images[alias])
	}
}

func merge(dst, src *Entity) {
	if src == nil {
		return
	}
	for k, v := range src.Attributes {
		dst.Attributes[k] = v
	}
	for k, v := range src.FormattedValues {
		if dst.FormattedValues == nil {
			dst.FormattedValues = make(map[string]string, len(src.FormattedValues))
		}
		dst.FormattedValues[k] = v
	}
	for k, v := range src.KeyAttributes {
		if dst.KeyAttributes == nil {
			dst.KeyAttributes = make(map[string]any, len(src.KeyAttributes))
		}
		dst.KeyAttributes[k] = v
	}
	if src.RowVersion != "" {
		dst.RowVersion = src.RowVersion
	}
}

// Relationship returns the N:N relationship of an Associate or Disassociate, which is
// what those messages must be routed on.
func (c *ExecutionContext) Relationship() (Relationship, bool) {
	r, ok := c.InputParameters[ParamRelationship].(Relationship)
	return r, ok
}

// RelatedEntities returns the rows an Associate or Disassociate links to or unlinks
// from its Target.
func (c *ExecutionContext) RelatedEntities() []EntityReference {
	switch v := c.InputParameters[ParamRelatedEntities].(type) {
	case []any:
		refs := make([]EntityReference, 0, len(v))
		for _, item := range v {
			if r, ok := item.(EntityReference); ok {
				refs = append(refs, r)
			}
		}
		return refs
	case EntityReference:
		return []EntityReference{v}
	case *EntityCollection:
		if v == nil {
			return nil
		}
		refs := make([]EntityReference, 0, len(v.Entities))
		for _, e := range v.Entities {
			if e != nil {
				refs = append(refs, EntityReference{LogicalName: e.LogicalName, ID: e.ID})
			}
		}
		return refs
	}
	return nil
}
