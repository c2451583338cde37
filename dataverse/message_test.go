package dataverse

import "testing"

func TestListMembership(t *testing.T) {
	t.Parallel()

	rel := func(s string) Relationship { return Relationship{SchemaName: s} }
	list := EntityReference{LogicalName: "list", ID: "L"}
	tests := []struct {
		name   string
		c      *ExecutionContext
		want   ListMembership
		wantOK bool
	}{
		{"AddMember", &ExecutionContext{MessageName: MessageAddMember,
			InputParameters: map[string]any{"ListId": "L", "EntityId": "m1"}},
			ListMembership{ListID: "L", MemberIDs: []string{"m1"}}, true},
		{"AddMember without ListId on list", &ExecutionContext{MessageName: MessageAddMember, PrimaryEntityName: "list", PrimaryEntityID: "L",
			InputParameters: map[string]any{"EntityId": "m1"}},
			ListMembership{ListID: "L", MemberIDs: []string{"m1"}}, true},
		{"AddMember with a reference ListId", &ExecutionContext{MessageName: MessageAddMember,
			InputParameters: map[string]any{"ListId": list, "EntityId": "m1"}},
			ListMembership{ListID: "L", MemberIDs: []string{"m1"}}, true},
		{"RemoveMember", &ExecutionContext{MessageName: MessageRemoveMember,
			InputParameters: map[string]any{"ListId": "L", "EntityId": "m1"}},
			ListMembership{ListID: "L", MemberIDs: []string{"m1"}, Remove: true}, true},
		{"AddListMembers", &ExecutionContext{MessageName: MessageAddListMembers,
			InputParameters: map[string]any{"ListId": "L", "MemberIds": []any{"m1", 5, "m2"}}},
			ListMembership{ListID: "L", MemberIDs: []string{"m1", "m2"}}, true},
		{"AddListMembers with one id", &ExecutionContext{MessageName: MessageAddListMembers,
			InputParameters: map[string]any{"ListId": "L", "MemberIds": "m1"}},
			ListMembership{ListID: "L", MemberIDs: []string{"m1"}}, true},
		{"AddMember without list", &ExecutionContext{MessageName: MessageAddMember, PrimaryEntityName: "contact", PrimaryEntityID: "m1"},
			ListMembership{}, false},
		{"Associate listaccount from the list", &ExecutionContext{MessageName: MessageAssociate, InputParameters: map[string]any{
			"Target": list, "Relationship": rel(RelationshipListAccount),
			"RelatedEntities": []any{EntityReference{LogicalName: "account", ID: "a1"}}}},
			ListMembership{ListID: "L", MemberIDs: []string{"a1"}, MemberEntity: "account"}, true},
		{"Disassociate listcontact from the contact", &ExecutionContext{MessageName: MessageDisassociate, InputParameters: map[string]any{
			"Target": EntityReference{LogicalName: "contact", ID: "c1"}, "Relationship": rel(RelationshipListContact),
			"RelatedEntities": []any{list}}},
			ListMembership{ListID: "L", MemberIDs: []string{"c1"}, MemberEntity: "contact", Remove: true}, true},
		{"Associate campaignlist is not membership", &ExecutionContext{MessageName: MessageAssociate, InputParameters: map[string]any{
			"Target": list, "Relationship": rel(RelationshipCampaignList),
			"RelatedEntities": []any{EntityReference{LogicalName: "campaign", ID: "k1"}}}},
			ListMembership{}, false},
		{"Associate without Relationship", &ExecutionContext{MessageName: MessageAssociate, InputParameters: map[string]any{"Target": list}},
			ListMembership{}, false},
		{"Associate without Target", &ExecutionContext{MessageName: MessageAssociate, InputParameters: map[string]any{
			"Relationship": rel(RelationshipListLead)}},
			ListMembership{}, false},
		{"Associate from the member without a list", &ExecutionContext{MessageName: MessageAssociate, InputParameters: map[string]any{
			"Target": EntityReference{LogicalName: "lead", ID: "l1"}, "Relationship": rel(RelationshipListLead)}},
			ListMembership{}, false},
		{"Update is not membership", decodeFixture(t, "update_contact_preimage.json"), ListMembership{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := tt.c.ListMembership()
			diff(t, "ListMembership", []any{tt.want, tt.wantOK}, []any{got, ok})
		})
	}
}
