package emulator

// dataTables are the platform tables crmsync reads and writes, with the columns of
// reference/dataverse.md §5 and §5.1 and the usual person columns; the connector
// solution's columns and choice values are added to them by schemaOf
// (solution.go). A table is added by appending an entry here; the primary key,
// statecode/statuscode (from states), createdon, modifiedon, createdby,
// modifiedby, versionnumber and, for user-owned tables,
// ownerid/owninguser/owningbusinessunit are added by newRegistry.
//
// A table's tracked, bulk and keys fields say whether it has change tracking, takes
// the bulk messages and which alternate keys it defines.
//
// It is a function, not a variable, so no emulator shares mutable table state with
// another.
func dataTables() []*table {
	return []*table{
		{
			logical: "contact", set: "contacts", pk: "contactid", primaryName: "fullname", stateEnum: "ContactState",
			columns: concat(personColumns(), consentColumns(), addressColumns(), []*column{
				text("jobtitle", 100),
				text("salutation", 100),
				dateOnly("birthdate"),
				choice("gendercode", opts(1, "Male", 2, "Female")...),
				choice("preferredcontactmethodcode", opts(1, "Any", 2, "Email", 3, "Phone", 4, "Fax", 5, "Mail")...).withDefault(1),
				multiLookup("parentcustomerid", "", "account", "contact"),
				memo("description", 2000),
			}),
			states:  activeInactive(),
			derive:  fullName,
			tracked: true, bulk: true,
		},
		{
			logical: "account", set: "accounts", pk: "accountid", primaryName: "name", stateEnum: "AccountState",
			columns: concat([]*column{
				text("name", 160),
				text("accountnumber", 20),
				text("emailaddress1", 100), text("emailaddress2", 100), text("emailaddress3", 100),
				text("telephone1", 50),
				text("websiteurl", 200),
				lookup("primarycontactid", "contact"),
				lookup("parentaccountid", "account"),
				memo("description", 2000),
			}, consentColumns(), addressColumns()),
			states:  activeInactive(),
			tracked: true, bulk: true,
		},
		{
			logical: "lead", set: "leads", pk: "leadid", primaryName: "fullname", stateEnum: "LeadState",
			columns: concat(personColumns(), consentColumns(), addressColumns(), []*column{
				text("subject", 300),
				text("companyname", 100),
				text("jobtitle", 100),
				choice("leadsourcecode", opts(1, "Advertisement", 2, "Employee Referral", 3, "External Referral", 4, "Partner",
					5, "Public Relations", 6, "Seminar", 7, "Trade Show", 8, "Web", 9, "Word of Mouth", 10, "Other")...),
				lookup("parentaccountid", "account"),
				lookup("parentcontactid", "contact"),
				multiLookup("customerid", "", "account", "contact"),
				memo("description", 2000),
			}),
			states: []stateDef{
				{value: 0, label: "Open", defaultStatus: 1, statuses: opts(1, "New", 2, "Contacted")},
				{value: 1, label: "Qualified", defaultStatus: 3, statuses: opts(3, "Qualified")},
				{value: 2, label: "Disqualified", defaultStatus: 4, statuses: opts(4, "Lost", 5, "Cannot Contact", 6, "No Longer Interested", 7, "Canceled")},
			},
			derive:  fullName,
			tracked: true, bulk: true,
		},
		{
			logical: "list", set: "lists", pk: "listid", primaryName: "listname", stateEnum: "ListState",
			columns: []*column{
				text("listname", 128).require(),
				yesNo("type", false).notUpdatable(), // false = static, true = dynamic
				choice("createdfromcode", opts(1, "Account", 2, "Contact", 4, "Lead")...).require().notUpdatable(),
				memo("query", 1048576),
				whole("membercount").readOnly().withDefault(int64(0)),
				yesNo("lockstatus", false),
				yesNo("donotsendonoptout", true),
				yesNo("ignoreinactivelistmembers", true),
				whole("membertype"),
				memo("purpose", 512),
				text("source", 128),
				money("cost"),
				dateTime("lastusedon"),
				memo("description", 2000),
			},
			states: []stateDef{
				{value: 0, label: "Active", defaultStatus: 0, statuses: opts(0, "Active")},
				{value: 1, label: "Inactive", defaultStatus: 1, statuses: opts(1, "Inactive")},
			},
			check:   checkList,
			tracked: true,
		},
		{
			// listmember is the intersect of list ↔ account/contact/lead. Real Dataverse
			// fills it through AddMemberList and the list*_association relationships; the
			// emulator also accepts a plain create so tests can arrange membership.
			logical: "listmember", set: "listmembers", pk: "listmemberid", primaryName: "name",
			columns: []*column{
				lookup("listid", "list").require().notUpdatable(),
				multiLookup("entityid", "", "account", "contact", "lead").require().notUpdatable(),
				{name: "entitytype", typ: typeEntityName, access: readOnly},
				text("name", 100).readOnly(),
			},
		},
		{
			logical: "campaign", set: "campaigns", pk: "campaignid", primaryName: "name", stateEnum: "CampaignState",
			columns: []*column{
				text("name", 128),
				text("codename", 32),
				choice("typecode", opts(1, "Advertisement", 2, "Direct Marketing", 3, "Event", 4, "Co-branding", 5, "Other")...),
				dateOnly("proposedstart"), dateOnly("proposedend"),
				dateOnly("actualstart"), dateOnly("actualend"),
				money("budgetedcost"),
				yesNo("istemplate", false),
				memo("description", 2000),
			},
			states: []stateDef{
				{value: 0, label: "Active", defaultStatus: 0, statuses: opts(0, "Proposed", 1, "Ready To Launch", 2, "Launched", 3, "Completed", 4, "Canceled", 5, "Suspended")},
				{value: 1, label: "Inactive", defaultStatus: 6, statuses: opts(6, "Inactive")},
			},
		},
		{
			logical: "campaignactivity", set: "campaignactivities", pk: "activityid", primaryName: "subject", stateEnum: "CampaignActivityState",
			columns: []*column{
				text("subject", 200),
				memo("description", 2000),
				// The connector solution adds its channel, 100000001 "eMS Campaign".
				choice("channeltypecode", opts(1, "Phone", 2, "Appointment", 3, "Letter", 4, "Letter via Mail Merge", 5, "Fax",
					6, "Fax via Mail Merge", 7, "Email", 8, "Email via Mail Merge", 9, "Other")...),
				choice("typecode", opts(1, "Research", 2, "Content Preparation", 3, "Target Marketing List Creation", 4, "Lead Qualification",
					5, "Content Distribution", 6, "Direct Initial Contact", 7, "Direct Follow-Up Contact", 8, "Reminder Distribution")...),
				choice("prioritycode", opts(0, "Low", 1, "Normal", 2, "High")...).withDefault(1),
				multiLookup("regardingobjectid", "_campaignactivity", "campaign"),
				dateOnly("scheduledstart"), dateOnly("scheduledend"),
				dateOnly("actualstart"), dateOnly("actualend"),
				money("budgetedcost"), money("actualcost"),
				yesNo("donotsendonoptout", true),
				yesNo("ignoreinactivelistmembers", true),
				{name: "activitytypecode", typ: typeEntityName, access: readOnly, def: "campaignactivity"},
			},
			states: []stateDef{
				{value: 0, label: "Open", defaultStatus: 1, statuses: opts(0, "In Progress", 1, "Proposed", 4, "Pending", 5, "System Aborted", 6, "Completed")},
				{value: 1, label: "Closed", defaultStatus: 2, statuses: opts(2, "Closed")},
				{value: 2, label: "Canceled", defaultStatus: 3, statuses: opts(3, "Canceled")},
			},
		},
		{
			// subject and regardingobjectid are ApplicationRequired (§5); the emulator
			// refuses a create without them as it does for list.listname.
			logical: "campaignresponse", set: "campaignresponses", pk: "activityid", primaryName: "subject", stateEnum: "CampaignResponseState",
			columns: []*column{
				text("subject", 200).require(),
				memo("description", 2000),
				multiLookup("regardingobjectid", "_campaignresponse", "campaign").require(),
				choice("responsecode", opts(1, "Interested", 2, "Not Interested", 3, "Do Not Send Marketing Materials", 4, "Error")...).withDefault(1),
				choice("channeltypecode", opts(1, "Email", 2, "Phone", 3, "Fax", 4, "Letter", 5, "Appointment", 6, "Others")...),
				dateOnly("receivedon"),
				text("firstname", 50), text("lastname", 50),
				text("emailaddress", 100),
				text("telephone", 50),
				text("companyname", 100),
				text("promotioncodename", 128),
				{name: "activitytypecode", typ: typeEntityName, access: readOnly, def: "campaignresponse"},
			},
			states: []stateDef{
				{value: 0, label: "Open", defaultStatus: 1, statuses: opts(1, "Open")},
				{value: 1, label: "Closed", defaultStatus: 2, statuses: opts(2, "Closed")},
				{value: 2, label: "Canceled", defaultStatus: 3, statuses: opts(3, "Canceled")},
			},
			// The customer and from party lists, written by deep insert (party.go).
			children: []oneToMany{{name: "campaignresponse_activity_parties", table: "activityparty", col: "activityid"}},
			bulk:     true,
		},
		{
			// campaignitem is the intersect of campaignlist_association (campaign ↔
			// list): AddItemCampaign and $ref write it (campaign.go). A campaign also
			// takes campaigns, products and sales literature as items; the emulator
			// stores campaign items of campaigns but has no product or sales
			// literature table.
			logical: "campaignitem", set: "campaignitems", pk: "campaignitemid", primaryName: "name", ownership: businessOwned,
			columns: []*column{
				lookup("campaignid", "campaign").require().notUpdatable().cascadeDelete(),
				guid("entityid").require().notUpdatable(),
				entityName("entitytype").require().notUpdatable(),
				text("name", 100),
			},
			check: checkItem(campaignItems, "campaign", "list", "product", "salesliterature"),
		},
		{
			// campaignactivityitem is the intersect of campaignactivitylist_association
			// (campaignactivity ↔ list), written by AddItemCampaignActivity and $ref.
			logical: "campaignactivityitem", set: "campaignactivityitems", pk: "campaignactivityitemid", primaryName: "name", ownership: businessOwned,
			columns: []*column{
				lookup("campaignactivityid", "campaignactivity").require().notUpdatable().cascadeDelete(),
				guid("itemid").require().notUpdatable(),
				entityName("itemobjecttypecode").require().notUpdatable(),
				text("name", 100),
			},
			check: checkItem(campaignActivityItems, "list", "salesliterature"),
		},
		{
			// activityparty is one party of an activity's party lists. It is written
			// only with its activity, by deep insert (party.go), and read like any
			// table; a create, update or delete of its own is refused, as Dataverse
			// refuses them.
			logical: "activityparty", set: "activityparties", pk: "activitypartyid", ownership: businessOwned,
			noWrite: true, noDelete: true,
			columns: []*column{
				multiLookup("activityid", "", "campaignresponse").require().notUpdatable().cascadeDelete(),
				multiLookup("partyid", "", "account", "contact", "lead", "systemuser").notUpdatable(),
				choice("participationtypemask", opts(1, "Sender", 2, "To Recipient", 3, "CC Recipient", 4, "BCC Recipient",
					5, "Required attendee", 6, "Optional attendee", 7, "Organizer", 8, "Regarding", 9, "Owner", 10, "Resource",
					11, "Customer", 12, "Chat Participant", 13, "Related")...).require().notUpdatable(),
				text("addressused", 320),
			},
			check: checkActivityParty,
		},
	}
}

// systemTables are the platform's own tables the emulator serves: users, business
// units, the webhook registration tables and the custom API definitions.
func systemTables() []*table {
	return append([]*table{
		{
			logical: "systemuser", set: "systemusers", pk: "systemuserid", primaryName: "fullname", ownership: businessOwned, noDelete: true,
			columns: []*column{
				text("domainname", 1024),
				text("firstname", 64), text("lastname", 64),
				text("fullname", 200).readOnly(),
				text("internalemailaddress", 100),
				lookup("businessunitid", "businessunit").require(),
				yesNo("isdisabled", false).readOnly(),
				choice("accessmode", opts(0, "Read-Write", 1, "Administrative", 2, "Read", 3, "Support User", 4, "Non-interactive", 5, "Delegated Admin")...).withDefault(0),
				guid("applicationid"),
				guid("azureactivedirectoryobjectid"),
			},
			derive: fullName,
		},
		{
			logical: "businessunit", set: "businessunits", pk: "businessunitid", primaryName: "name", ownership: businessOwned, noDelete: true,
			columns: []*column{
				text("name", 160).require(),
				lookup("parentbusinessunitid", "businessunit"),
				yesNo("isdisabled", false).readOnly(),
				text("divisionname", 100),
			},
		},
	}, append(registrationTables(), customAPITables()...)...)
}

// activeInactive are the states of contacts and accounts.
func activeInactive() []stateDef {
	return []stateDef{
		{value: 0, label: "Active", defaultStatus: 1, statuses: opts(1, "Active")},
		{value: 1, label: "Inactive", defaultStatus: 2, statuses: opts(2, "Inactive")},
	}
}

// personColumns are the name and e-mail columns contacts and leads share.
func personColumns() []*column {
	return []*column{
		text("firstname", 50), text("middlename", 50), text("lastname", 50),
		text("fullname", 160).readOnly(),
		text("emailaddress1", 100), text("emailaddress2", 100), text("emailaddress3", 100),
		text("telephone1", 50), text("mobilephone", 50),
	}
}

// consentColumns are the do-not-contact flags of §5.1 (contact, account and lead).
func consentColumns() []*column {
	return []*column{
		yesNo("donotbulkemail", false),
		yesNo("donotemail", false),
		yesNo("donotbulkpostalmail", false),
		yesNo("donotpostalmail", false),
		yesNo("donotphone", false),
		yesNo("donotfax", false),
		yesNo("donotsendmm", false),
		yesNo("followemail", true),
		yesNo("msdyn_gdproptout", false),
	}
}

// addressColumns are the first address's columns.
func addressColumns() []*column {
	return []*column{
		text("address1_line1", 250), text("address1_city", 80),
		text("address1_postalcode", 20), text("address1_country", 80),
	}
}

func concat(parts ...[]*column) []*column {
	var out []*column
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
