package dataverse

// Message names as they appear in MessageName and the x-ms-dynamics-request-name
// header; engine steps register on these, so they are spelled once, here.
const (
	MessageCreate                = "Create"
	MessageUpdate                = "Update"
	MessageDelete                = "Delete"
	MessageSetState              = "SetState"
	MessageSetStateDynamicEntity = "SetStateDynamicEntity"
	MessageAssign                = "Assign"
	MessageAssociate             = "Associate"
	MessageDisassociate          = "Disassociate"
	MessageAddMember             = "AddMember"      // Web API action AddMemberList
	MessageAddListMembers        = "AddListMembers" // Web API action AddListMembersList
	MessageRemoveMember          = "RemoveMember"   // Web API action RemoveMemberList
	// MessageSendCampaign is crmsync's custom API behind the "Send campaign" button,
	// bound to campaignactivity.
	MessageSendCampaign = "cs_SendCampaign"
	// MessageSyncMarketingList is crmsync's custom API behind the "Synchronize"
	// button, bound to list.
	MessageSyncMarketingList = "cs_SyncMarketingList"
)

// Pipeline stages of ExecutionContext.Stage, so steps can be registered per stage
// the way plug-in steps are.
const (
	StagePreValidation = 10
	StagePreOperation  = 20
	StageMainOperation = 30 // only seen in a ParentContext
	StagePostOperation = 40
)

// Execution modes of ExecutionContext.Mode: a synchronous step's failure rolls back
// the user's change, an asynchronous one's does not.
const (
	ModeSynchronous  = 0
	ModeAsynchronous = 1
)

// N:N relationship schema names that crmsync routes Associate/Disassociate on.
const (
	RelationshipListContact          = "listcontact_association"
	RelationshipListLead             = "listlead_association"
	RelationshipListAccount          = "listaccount_association"
	RelationshipCampaignList         = "campaignlist_association"
	RelationshipCampaignActivityList = "campaignactivitylist_association"
)

// InputParameters keys of the messages above, so callers never misspell them.
const (
	ParamTarget          = "Target"          // Entity (Create, Update) or EntityReference
	ParamEntityMoniker   = "EntityMoniker"   // EntityReference (SetState)
	ParamState           = "State"           // OptionSetValue (SetState)
	ParamStatus          = "Status"          // OptionSetValue (SetState)
	ParamAssignee        = "Assignee"        // EntityReference (Assign)
	ParamRelationship    = "Relationship"    // Relationship (Associate, Disassociate)
	ParamRelatedEntities = "RelatedEntities" // []any of EntityReference
	ParamListID          = "ListId"          // Guid string (AddMember, AddListMembers, RemoveMember)
	ParamEntityID        = "EntityId"        // Guid string (AddMember, RemoveMember)
	ParamMemberIDs       = "MemberIds"       // []any of Guid strings (AddListMembers)
	ParamSubject         = "Subject"         // string (cs_SendCampaign)
	ParamSenderName      = "SenderName"      // string (cs_SendCampaign)
	ParamSenderEmail     = "SenderEmail"     // string (cs_SendCampaign)
	ParamCampaignSendID  = "CampaignSendId"  // string (cs_SendCampaign), reuses a send
)

// needsInput reports whether a message always carries InputParameters, so their
// absence means Dataverse stripped an oversized body.
func needsInput(message string) bool {
	switch message {
	case MessageCreate, MessageUpdate, MessageDelete, MessageSetState, MessageSetStateDynamicEntity,
		MessageAssign, MessageAssociate, MessageDisassociate, MessageAddMember, MessageAddListMembers,
		MessageRemoveMember, MessageSendCampaign, MessageSyncMarketingList:
		return true
	}
	return false
}

// ListMembership is a marketing-list membership change in one shape, whichever of the
// several messages Dataverse used to express it.
type ListMembership struct {
	ListID    string
	MemberIDs []string
	// MemberEntity is contact, lead or account when the message says so (the
	// Associate relationships do, AddMember and friends do not), else "".
	MemberEntity string
	Remove       bool
}

// ListMembership reads AddMember, AddListMembers, RemoveMember, and Associate or
// Disassociate over listcontact/listlead/listaccount_association; ok is false for any
// other message or when the list is unknown.
func (c *ExecutionContext) ListMembership() (ListMembership, bool) {
	switch c.MessageName {
	case MessageAddMember, MessageRemoveMember:
		m := ListMembership{ListID: c.listID(), Remove: c.MessageName == MessageRemoveMember}
		if id := guid(c.InputParameters[ParamEntityID]); id != "" {
			m.MemberIDs = []string{id}
		}
		return m.known()
	case MessageAddListMembers:
		m := ListMembership{ListID: c.listID()}
		switch v := c.InputParameters[ParamMemberIDs].(type) {
		case []any:
			for _, item := range v {
				if id := guid(item); id != "" {
					m.MemberIDs = append(m.MemberIDs, id)
				}
			}
		default:
			if id := guid(v); id != "" {
				m.MemberIDs = []string{id}
			}
		}
		return m.known()
	case MessageAssociate, MessageDisassociate:
		rel, ok := c.Relationship()
		if !ok {
			return ListMembership{}, false
		}
		m := ListMembership{Remove: c.MessageName == MessageDisassociate}
		switch rel.SchemaName {
		case RelationshipListContact:
			m.MemberEntity = "contact"
		case RelationshipListLead:
			m.MemberEntity = "lead"
		case RelationshipListAccount:
			m.MemberEntity = "account"
		default:
			return ListMembership{}, false
		}
		target, ok := c.TargetReference()
		if !ok {
			return ListMembership{}, false
		}
		related := c.RelatedEntities()
		if target.LogicalName == "list" {
			m.ListID = target.ID
			for _, r := range related {
				if r.LogicalName != "list" && r.ID != "" {
					m.MemberIDs = append(m.MemberIDs, r.ID)
				}
			}
		} else {
			// Associated from the member's side: the list is among the related rows.
			m.MemberIDs = []string{target.ID}
			for _, r := range related {
				if r.LogicalName == "list" {
					m.ListID = r.ID
					break
				}
			}
		}
		return m.known()
	}
	return ListMembership{}, false
}

// listID reads ListId, falling back to the primary row when the event is on list.
func (c *ExecutionContext) listID() string {
	if id := guid(c.InputParameters[ParamListID]); id != "" {
		return id
	}
	if c.PrimaryEntityName == "list" {
		return c.PrimaryEntityID
	}
	return ""
}

// guid reads a Guid parameter, which may arrive as a string or as a reference.
func guid(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case EntityReference:
		return v.ID
	}
	return ""
}

// known returns m, or the zero value with false when the list is unknown.
func (m ListMembership) known() (ListMembership, bool) {
	if m.ListID == "" {
		return ListMembership{}, false
	}
	return m, true
}
