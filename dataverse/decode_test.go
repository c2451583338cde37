package dataverse

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const contracts = `http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts`

func TestDecodeCreateContact(t *testing.T) {
	t.Parallel()

	const id = "44bfc2a7-903e-eb11-a813-000d3ad9c2e1"
	const user = "a0bde583-0537-eb11-bf68-0022489b563d"
	want := &ExecutionContext{
		MessageName: "Create", PrimaryEntityName: "contact", PrimaryEntityID: id, SecondaryEntityName: "none",
		Stage: 40, Mode: 1, Depth: 1, IsolationMode: 1,
		OperationID:        "45bfc2a7-903e-eb11-a813-000d3ad9c2e1",
		CorrelationID:      "9d4c7524-a578-4783-b608-73f7b0b68fd2",
		RequestID:          "3fab629b-b795-4834-a2ca-5a09b2cc6934",
		OrganizationID:     "0ba4ce62-d2d6-4681-bc25-b3bfb695d4d6",
		OrganizationName:   "org0ba4ce62",
		BusinessUnitID:     "c3ec0cc2-d836-eb11-bf68-0022489b563d",
		UserID:             user,
		InitiatingUserID:   user,
		OperationCreatedOn: ms(1608007658000),
		OwningExtension:    &EntityReference{LogicalName: "sdkmessageprocessingstep", ID: "2c28fe56-903e-eb11-a813-000d3ad9c2e1"},
		InputParameters: map[string]any{
			"Target": &Entity{
				LogicalName: "contact",
				ID:          id,
				Attributes: map[string]any{
					"firstname":                  "Anna",
					"lastname":                   "Schmidt",
					"emailaddress1":              "anna.schmidt@example.de",
					"donotbulkemail":             false,
					"parentcustomerid":           EntityReference{LogicalName: "account", ID: "b76b3f4b-1be7-e611-8101-e0071b6af231"},
					"ownerid":                    EntityReference{LogicalName: "systemuser", ID: user},
					"transactioncurrencyid":      EntityReference{LogicalName: "transactioncurrency", ID: "083081e1-0737-eb11-bf68-0022489b563d"},
					"annualincome":               Money{Value: 52000},
					"preferredcontactmethodcode": OptionSetValue{Value: 2},
					"statecode":                  OptionSetValue{Value: 0},
					"statuscode":                 OptionSetValue{Value: 1},
					"createdon":                  ms(1608007658000),
					"modifiedonbehalfby":         nil,
					"contactid":                  id,
				},
				FormattedValues: map[string]string{"statecode": "Active", "createdon": "2020-12-15T05:47:38+01:00"},
			},
		},
		OutputParameters: map[string]any{"id": id},
		SharedVariables:  map[string]any{"IsAutoTransact": true, "DefaultsAddedFlag": true},
		PostEntityImages: map[string]*Entity{
			"AsynchronousStepPrimaryName": {
				LogicalName: "contact", ID: id,
				Attributes: map[string]any{"fullname": "Anna Schmidt", "contactid": id},
			},
		},
	}
	got := decodeFixture(t, "create_contact.json")
	diff(t, "Decode(create_contact.json)", want, got)
}

func TestDecodeUpdateWithPreImageAndParent(t *testing.T) {
	t.Parallel()

	const id = "6d81597f-0f9f-e711-8122-000d3aa2331c"
	got := decodeFixture(t, "update_contact_preimage.json")

	diff(t, "Target", &Entity{
		LogicalName: "contact", ID: id,
		Attributes: map[string]any{
			"emailaddress1":      "new@example.de",
			"donotbulkemail":     true,
			"contactid":          id,
			"modifiedon":         ms(1506384247000),
			"modifiedby":         EntityReference{LogicalName: "systemuser", ID: "75c2dd85-e89e-e711-8122-000d3aa2331c"},
			"modifiedonbehalfby": nil,
		},
	}, got.InputParameters["Target"])
	diff(t, "PreEntityImages", map[string]*Entity{"PreImage": {
		LogicalName: "contact", ID: id,
		Attributes: map[string]any{"emailaddress1": "old@example.de", "donotbulkemail": false, "contactid": id},
	}}, got.PreEntityImages)
	diff(t, "OperationCreatedOn", ms(1506409448000), got.OperationCreatedOn)

	p := got.ParentContext
	if p == nil {
		t.Fatal("ParentContext = nil")
	}
	diff(t, "ParentContext header", []any{"Update", "contact", id, 30, 0, true, ms(1506409447000), (*ExecutionContext)(nil)},
		[]any{p.MessageName, p.PrimaryEntityName, p.PrimaryEntityID, p.Stage, p.Mode, p.IsInTransaction, p.OperationCreatedOn, p.ParentContext})
	diff(t, "ParentContext.OwningExtension", &EntityReference{LogicalName: "sdkmessageprocessingstep",
		ID: "63cdbb1b-ea3e-db11-86a7-000a3a5473e8", Name: "ObjectModel Implementation"}, p.OwningExtension)
	diff(t, "ParentContext.InputParameters", map[string]any{
		"Target": &Entity{LogicalName: "contact", ID: id,
			Attributes: map[string]any{"emailaddress1": "new@example.de", "donotbulkemail": true, "contactid": id}},
		"SuppressDuplicateDetection": false,
	}, p.InputParameters)
	// An array of KeyValuePairOfstringstring is a key/value array, so it becomes a map.
	diff(t, "ParentContext.SharedVariables", map[string]any{"ChangedEntityTypes": map[string]any{"contact": "Update"}}, p.SharedVariables)
}

// TestDecodeMessages checks every fixture against what a step needs from it.
func TestDecodeMessages(t *testing.T) {
	t.Parallel()

	const (
		contact = "6d81597f-0f9f-e711-8122-000d3aa2331c"
		list    = "e0b5a3d2-1c4f-ef11-a316-000d3a2b4c5d"
		c1      = "44bfc2a7-903e-eb11-a813-000d3ad9c2e1"
		lead    = "5a1c0e7b-2d3f-ef11-a316-000d3a2b4c5d"
	)
	tests := []struct {
		file  string
		check func(t *testing.T, c *ExecutionContext)
	}{
		{"create_contact.json", func(t *testing.T, c *ExecutionContext) {
			ref, ok := c.TargetReference()
			diff(t, "TargetReference", []any{&EntityReference{LogicalName: "contact", ID: c1}, true}, []any{ref, ok})
			diff(t, "NeedsReread", false, c.NeedsReread())
		}},
		{"delete_contact.json", func(t *testing.T, c *ExecutionContext) {
			diff(t, "MessageName", MessageDelete, c.MessageName)
			ref, ok := c.TargetReference()
			diff(t, "TargetReference", []any{&EntityReference{LogicalName: "contact", ID: contact}, true}, []any{ref, ok})
			_, isEntity := c.Target()
			diff(t, "Target() ok", false, isEntity)
			diff(t, "NeedsReread", false, c.NeedsReread())
			email, _ := c.PreEntityImages["PreImage"].String("emailaddress1")
			diff(t, "PreImage emailaddress1", "old@example.de", email)
			diff(t, "Merged", &Entity{LogicalName: "contact", ID: contact,
				Attributes: map[string]any{"emailaddress1": "old@example.de"}}, c.Merged())
		}},
		{"setstate_contact.json", func(t *testing.T, c *ExecutionContext) {
			ref, ok := c.TargetReference()
			diff(t, "TargetReference (EntityMoniker)", []any{&EntityReference{LogicalName: "contact", ID: contact}, true}, []any{ref, ok})
			diff(t, "State/Status", []any{OptionSetValue{Value: 1}, OptionSetValue{Value: 2}},
				[]any{c.InputParameters[ParamState], c.InputParameters[ParamStatus]})
		}},
		{"assign_contact.json", func(t *testing.T, c *ExecutionContext) {
			ref, _ := c.TargetReference()
			diff(t, "TargetReference", &EntityReference{LogicalName: "contact", ID: contact}, ref)
			diff(t, "Assignee", EntityReference{LogicalName: "team", ID: "8db66f44-8d23-e311-a2cb-0050569c0f02"}, c.InputParameters[ParamAssignee])
		}},
		{"associate_listcontact.json", func(t *testing.T, c *ExecutionContext) {
			rel, ok := c.Relationship()
			diff(t, "Relationship", []any{Relationship{SchemaName: RelationshipListContact}, true}, []any{rel, ok})
			diff(t, "RelatedEntities", []EntityReference{{LogicalName: "contact", ID: c1}, {LogicalName: "contact", ID: contact}}, c.RelatedEntities())
			m, ok := c.ListMembership()
			diff(t, "ListMembership", []any{ListMembership{ListID: list, MemberIDs: []string{c1, contact}, MemberEntity: "contact"}, true}, []any{m, ok})
		}},
		{"disassociate_listlead.json", func(t *testing.T, c *ExecutionContext) {
			m, ok := c.ListMembership()
			diff(t, "ListMembership", []any{ListMembership{ListID: list, MemberIDs: []string{lead}, MemberEntity: "lead", Remove: true}, true}, []any{m, ok})
		}},
		{"addmember_list.json", func(t *testing.T, c *ExecutionContext) {
			m, ok := c.ListMembership()
			diff(t, "ListMembership", []any{ListMembership{ListID: list, MemberIDs: []string{c1}}, true}, []any{m, ok})
		}},
		{"addlistmembers_list.json", func(t *testing.T, c *ExecutionContext) {
			diff(t, "MemberIds", []any{c1, contact, "3b8f1e2a-4c5d-ef11-a316-000d3a2b4c5d"}, c.InputParameters[ParamMemberIDs])
			m, ok := c.ListMembership()
			diff(t, "ListMembership", []any{ListMembership{ListID: list, MemberIDs: []string{c1, contact, "3b8f1e2a-4c5d-ef11-a316-000d3a2b4c5d"}}, true}, []any{m, ok})
		}},
		{"removemember_list.json", func(t *testing.T, c *ExecutionContext) {
			m, ok := c.ListMembership()
			diff(t, "ListMembership", []any{ListMembership{ListID: list, MemberIDs: []string{contact}, Remove: true}, true}, []any{m, ok})
		}},
		{"cs_sendcampaign.json", func(t *testing.T, c *ExecutionContext) {
			diff(t, "MessageName", MessageSendCampaign, c.MessageName)
			diff(t, "InputParameters", map[string]any{
				"Target":         EntityReference{LogicalName: "campaignactivity", ID: "9f0e1d2c-3b4a-ef11-a316-000d3a2b4c5d"},
				"Subject":        "Frühjahrsaktion 2025 – jetzt \"sparen\"",
				"SenderName":     "Marketing Team",
				"SenderEmail":    "news@example.de",
				"CampaignSendId": "cs_01JH8ZQ3N4V6W7X8Y9Z0ABCDEF",
			}, c.InputParameters)
			_, ok := c.ListMembership()
			diff(t, "ListMembership ok", false, ok)
		}},
		{"cs_syncmarketinglist.json", func(t *testing.T, c *ExecutionContext) {
			diff(t, "MessageName", MessageSyncMarketingList, c.MessageName)
			ref, _ := c.TargetReference()
			diff(t, "TargetReference", &EntityReference{LogicalName: "list", ID: list}, ref)
		}},
		{"update_account_sync_wrappers.json", func(t *testing.T, c *ExecutionContext) {
			const account = "ec4e2f7d-9d60-e811-a95a-000d3af24950"
			diff(t, "Mode/IsInTransaction", []any{ModeSynchronous, true}, []any{c.Mode, c.IsInTransaction})
			tgt, _ := c.Target()
			diff(t, "Target", &Entity{LogicalName: "account", ID: account, Attributes: map[string]any{
				"telephone1":         "1111",
				"accountid":          account,
				"modifiedon":         ms(1527757524000),
				"modifiedby":         EntityReference{LogicalName: "systemuser", ID: "df010dad-f103-4589-ba66-76a5a04c2a11"},
				"modifiedonbehalfby": nil,
			}}, tgt)
			diff(t, "OwningExtension.Name", "D365WebHookHttpTrigger: Update of account", c.OwningExtension.Name)
			diff(t, "ParentContext.SharedVariables", map[string]any{"ChangedEntityTypes": map[string]any{"account": "Update"}}, c.ParentContext.SharedVariables)
		}},
		{"create_campaignresponse_partylist.json", func(t *testing.T, c *ExecutionContext) {
			tgt, _ := c.Target()
			party := func(id string, ref EntityReference, mask int, label string) *Entity {
				return &Entity{LogicalName: "activityparty", ID: id, RowVersion: "1447321",
					Attributes: map[string]any{
						"partyid": ref, "participationtypemask": OptionSetValue{Value: mask},
						"activityid":     EntityReference{LogicalName: "activitypointer", ID: c.PrimaryEntityID},
						"ispartydeleted": false, "activitypartyid": id,
					},
					FormattedValues: map[string]string{"participationtypemask": label, "partyid": ref.Name}}
			}
			diff(t, "customer", &EntityCollection{EntityName: "activityparty", Entities: []*Entity{
				party("861579d9-7e63-ef11-9e4a-00155d0001ea", EntityReference{LogicalName: "contact", ID: c1, Name: "Anna Schmidt"}, 11, "Customer"),
			}}, tgt.Attributes["customer"])
			diff(t, "from", &EntityCollection{EntityName: "activityparty", Entities: []*Entity{
				party("871579d9-7e63-ef11-9e4a-00155d0001ea", EntityReference{LogicalName: "systemuser", ID: "a0bde583-0537-eb11-bf68-0022489b563d", Name: "Integration"}, 1, "Sender"),
				party("881579d9-7e63-ef11-9e4a-00155d0001ea", EntityReference{LogicalName: "account", ID: "b76b3f4b-1be7-e611-8101-e0071b6af231"}, 1, "Sender"),
			}}, tgt.Attributes["from"])
			diff(t, "scalars", []any{"Opened: Frühjahrsaktion 2025", OptionSetValue{Value: 1}, ms(1736899200000), 1.0,
				EntityReference{LogicalName: "campaign", ID: "2d4e6f80-1a3b-ef11-a316-000d3a2b4c5d", Name: "Frühjahrsaktion"}},
				[]any{tgt.Attributes["subject"], tgt.Attributes["responsecode"], tgt.Attributes["receivedon"], tgt.Attributes["exchangerate"],
					tgt.Attributes["regardingobjectid"]})
		}},
		{"size_exceeded_update.json", func(t *testing.T, c *ExecutionContext) {
			diff(t, "SizeExceeded/NeedsReread", []any{true, true}, []any{c.SizeExceeded, c.NeedsReread()})
			diff(t, "stripped", []any{map[string]any(nil), map[string]*Entity(nil), (*ExecutionContext)(nil)},
				[]any{c.InputParameters, c.PreEntityImages, c.ParentContext})
			diff(t, "row", []string{"Update", "contact", "6d81597f-0f9f-e711-8122-000d3aa2331c"},
				[]string{c.MessageName, c.PrimaryEntityName, c.PrimaryEntityID})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			tt.check(t, decodeFixture(t, tt.file))
		})
	}
}

// TestDecodeFixturesAreValid makes sure a new fixture is not silently left out above and
// that none of them looks stripped by accident.
func TestDecodeFixturesAreValid(t *testing.T) {
	t.Parallel()

	files, err := filepath.Glob(filepath.Join("testdata", "webhooks", "*.json"))
	if err != nil || len(files) < 15 {
		t.Fatalf("fixtures: %v, %d files", err, len(files))
	}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Decode(body)
		if err != nil {
			t.Errorf("Decode(%s): %v", f, err)
			continue
		}
		if want := strings.HasPrefix(filepath.Base(f), "size_exceeded"); c.SizeExceeded != want {
			t.Errorf("Decode(%s).SizeExceeded = %v, want %v", f, c.SizeExceeded, want)
		}
	}
}

// param wraps one value as InputParameters["v"] of a minimal context.
func param(raw string) []byte {
	return []byte(`{"MessageName":"custom","PrimaryEntityName":"none","PrimaryEntityId":"","InputParameters":[{"key":"v","value":` + raw + `}]}`)
}

func TestDecodeValues(t *testing.T) {
	t.Parallel()

	ref := EntityReference{LogicalName: "account", ID: "b76b3f4b-1be7-e611-8101-e0071b6af231", Name: "Contoso"}
	tests := []struct {
		name string
		raw  string
		want any
	}{
		{"date", `"\/Date(1608015600000)\/"`, ms(1608015600000)},
		{"date plus offset", `"\/Date(1608007658000+0000)\/"`, ms(1608007658000)},
		{"date minus offset is still UTC millis", `"\/Date(1506409448000-0700)\/"`, ms(1506409448000)},
		{"date unescaped slashes", `"/Date(0)/"`, ms(0)},
		{"date before 1970", `"\/Date(-62135596800000)\/"`, ms(-62135596800000)},
		{"not a date: letters", `"\/Date(12x)\/"`, "/Date(12x)/"},
		{"not a date: empty", `"/Date()/"`, "/Date()/"},
		{"not a date: short offset", `"/Date(1+01)/"`, "/Date(1+01)/"},
		{"not a date: no suffix", `"/Date(1)"`, "/Date(1)"},
		{"whole number", `987654321`, int64(987654321)},
		{"negative", `-5`, int64(-5)},
		{"zero", `0`, int64(0)},
		{"decimal", `10.01`, 10.01},
		{"decimal with zero fraction stays float", `1.0000000000`, 1.0},
		{"exponent is float", `1e3`, 1000.0},
		{"int64 min", `-9223372036854775808`, int64(-9223372036854775808)},
		{"int64 overflow becomes float", `9223372036854775808`, 9223372036854775808.0},
		{"true", `true`, true},
		{"false", `false`, false},
		{"null", `null`, nil},
		{"string", `"plain"`, "plain"},
		{"escapes", `"a\u00fcb\ud83d\ude00\n\t\"\\\/"`, "aüb😀\n\t\"\\/"},
		{"lone surrogate", `"x\ud800y"`, "x\uFFFDy"},
		{"guid wrapper", `{"__type":"Guid:#System","__value":"ec4e2f7d-9d60-e811-a95a-000d3af24950"}`, "ec4e2f7d-9d60-e811-a95a-000d3af24950"},
		{"datetime wrapper", `{"__type":"DateTime:#System","__value":"\/Date(1527757524000)\/"}`, ms(1527757524000)},
		{"wrapper with __type last", `{"__value":"x","__type":"Guid:#System"}`, "x"},
		{"int wrapper", `{"__type":"Int32:#System","__value":5}`, int64(5)},
		{"option", `{"__type":"OptionSetValue:` + contracts + `","Value":257760001}`, OptionSetValue{Value: 257760001}},
		{"option __type last", `{"Value":3,"__type":"OptionSetValue:` + contracts + `"}`, OptionSetValue{Value: 3}},
		{"money", `{"__type":"Money:` + contracts + `","Value":2154.32}`, Money{Value: 2154.32}},
		{"money whole", `{"__type":"Money:` + contracts + `","Value":52000}`, Money{Value: 52000}},
		{"multi-select", `[{"__type":"OptionSetValue:` + contracts + `","Value":1},{"__type":"OptionSetValue:` + contracts + `","Value":2}]`,
			OptionSetValues{{Value: 1}, {Value: 2}}},
		{"empty array", `[]`, []any{}},
		{"string array", `["a","b"]`, []any{"a", "b"}},
		{"mixed array", `[1,"a",null,[true]]`, []any{int64(1), "a", nil, []any{true}}},
		{"reference", `{"__type":"EntityReference:` + contracts + `","Id":"b76b3f4b-1be7-e611-8101-e0071b6af231","KeyAttributes":[],"LogicalName":"account","Name":"Contoso","RowVersion":null}`, ref},
		{"reference without __type", `{"Id":"b76b3f4b-1be7-e611-8101-e0071b6af231","LogicalName":"account","Name":"Contoso"}`, ref},
		{"reference __type last", `{"Id":"b76b3f4b-1be7-e611-8101-e0071b6af231","LogicalName":"account","Name":"Contoso","__type":"EntityReference:x"}`, ref},
		{"entity", `{"__type":"Entity:` + contracts + `","Attributes":[{"key":"a","value":1},{"key":"b","value":"\/Date(5)\/"}],"EntityState":null,"FormattedValues":[{"key":"a","value":"One"}],"Id":"e1","KeyAttributes":[{"key":"k","value":"v"}],"LogicalName":"contact","RelatedEntities":[],"RowVersion":"5948260"}`,
			&Entity{LogicalName: "contact", ID: "e1", RowVersion: "5948260", Attributes: map[string]any{"a": int64(1), "b": ms(5)},
				FormattedValues: map[string]string{"a": "One"}, KeyAttributes: map[string]any{"k": "v"}}},
		{"entity without __type", `{"Attributes":[{"key":"a","value":true}],"FormattedValues":[],"Id":"e1","KeyAttributes":[],"LogicalName":"contact"}`,
			&Entity{LogicalName: "contact", ID: "e1", Attributes: map[string]any{"a": true}}},
		{"entity __type last", `{"Attributes":[{"key":"a","value":true}],"FormattedValues":[{"key":"a","value":"Yes"}],"Id":"e1","LogicalName":"contact","__type":"Entity:x"}`,
			&Entity{LogicalName: "contact", ID: "e1", Attributes: map[string]any{"a": true}, FormattedValues: map[string]string{"a": "Yes"}}},
		{"entity collection", `{"__type":"EntityCollection:` + contracts + `","Entities":[{"Attributes":[{"key":"partyid","value":{"__type":"EntityReference:` + contracts + `","Id":"p","LogicalName":"contact","Name":null}}],"Id":"ap","LogicalName":"activityparty"},null],"EntityName":"activityparty","MinActiveRowVersion":"-1","MoreRecords":true,"PagingCookie":null,"TotalRecordCount":-1}`,
			&EntityCollection{EntityName: "activityparty", MoreRecords: true, Entities: []*Entity{
				{LogicalName: "activityparty", ID: "ap", Attributes: map[string]any{"partyid": EntityReference{LogicalName: "contact", ID: "p"}}}}}},
		{"entity collection __type last", `{"Entities":[{"Attributes":[],"Id":"ap","LogicalName":"activityparty"}],"EntityName":"activityparty","MoreRecords":false,"__type":"EntityCollection:x"}`,
			&EntityCollection{EntityName: "activityparty", Entities: []*Entity{{LogicalName: "activityparty", ID: "ap"}}}},
		{"relationship", `{"__type":"Relationship:` + contracts + `","PrimaryEntityRole":null,"SchemaName":"listcontact_association"}`,
			Relationship{SchemaName: "listcontact_association"}},
		{"relationship with role", `{"__type":"Relationship:` + contracts + `","PrimaryEntityRole":1,"SchemaName":"x"}`,
			Relationship{SchemaName: "x", PrimaryEntityRole: "Referenced"}},
		{"key value pair", `{"__type":"KeyValuePairOfstringstring:#System.Collections.Generic","key":"account","value":"Update"}`, "Update"},
		{"key value pair array", `[{"__type":"KeyValuePairOfstringstring:#System.Collections.Generic","key":"account","value":"Update"},{"__type":"KeyValuePairOfstringstring:#System.Collections.Generic","key":"contact","value":"Create"}]`,
			map[string]any{"account": "Update", "contact": "Create"}},
		{"plain key/value array", `[{"key":"a","value":1},{"key":"b","value":{"key":"c","value":2}}]`,
			map[string]any{"a": int64(1), "b": map[string]any{"key": "c", "value": int64(2)}}},
		{"key/value objects mixed with others", `[{"key":"a","value":1},2]`, []any{map[string]any{"key": "a", "value": int64(1)}, int64(2)}},
		{"unknown __type keeps the map", `{"__type":"QueryExpression:` + contracts + `","EntityName":"contact","PageInfo":{"Count":5},"Owner":{"Id":"u","LogicalName":"systemuser"}}`,
			map[string]any{"__type": "QueryExpression:http://schemas.microsoft.com/xrm/2011/Contracts", "EntityName": "contact",
				"PageInfo": map[string]any{"Count": int64(5)}, "Owner": EntityReference{LogicalName: "systemuser", ID: "u"}}},
		{"plain object", `{"a":1,"b":{}}`, map[string]any{"a": int64(1), "b": map[string]any{}}},
		{"entity-like object with wrong Attributes stays a map", `{"Attributes":5,"LogicalName":"x"}`, map[string]any{"Attributes": int64(5), "LogicalName": "x"}},
		{"whitespace everywhere", " {\n\t\"__type\" : \"OptionSetValue:x\" ,\r\n \"Value\" : 7 } ", OptionSetValue{Value: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Decode(param(tt.raw))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			diff(t, "InputParameters[v]", tt.want, c.InputParameters["v"])
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()

	valid := string(fixture(t, "create_contact.json"))
	const head = `{"MessageName":"Create","PrimaryEntityName":"contact","PrimaryEntityId":"x",`
	tests := []struct {
		name       string
		body       string
		wantField  string
		wantReason string // substring
	}{
		{"empty body", ``, "", "empty body"},
		{"whitespace only", " \n\t", "", "empty body"},
		{"not JSON", `hello`, "", "not JSON: invalid character 'h'"},
		{"not JSON after a valid start", `[1,2`, "", "not JSON: unexpected end of input"},
		{"JSON array", `[{"MessageName":"Create"}]`, "", "not a JSON object: got array"},
		{"JSON string", `"Create"`, "", "not a JSON object: got string"},
		{"JSON null", `null`, "", "not a JSON object: got null"},
		{"two values", `1 2`, "", "not JSON: invalid character '2' after top-level value"},
		{"empty object", `{}`, "MessageName", "missing"},
		{"empty MessageName", `{"MessageName":"","PrimaryEntityName":"contact","PrimaryEntityId":"x"}`, "MessageName", "empty"},
		{"null MessageName", `{"MessageName":null,"PrimaryEntityName":"contact","PrimaryEntityId":"x"}`, "MessageName", "missing"},
		{"MessageName a number", `{"MessageName":5,"PrimaryEntityName":"contact","PrimaryEntityId":"x"}`, "MessageName", "want a string, got number"},
		{"MessageName an array", `{"MessageName":["Create"]}`, "MessageName", "want a string, got array"},
		{"MessageName a Guid-less object", `{"MessageName":{"a":1}}`, "MessageName", "want a string, got object"},
		{"missing PrimaryEntityName", `{"MessageName":"Create","PrimaryEntityId":"x"}`, "PrimaryEntityName", "missing"},
		{"missing PrimaryEntityId", `{"MessageName":"Create","PrimaryEntityName":"contact"}`, "PrimaryEntityId", "missing"},
		{"null PrimaryEntityId", `{"MessageName":"Create","PrimaryEntityName":"contact","PrimaryEntityId":null}`, "PrimaryEntityId", "missing"},
		{"PrimaryEntityId a bool", `{"MessageName":"Create","PrimaryEntityName":"contact","PrimaryEntityId":true}`, "PrimaryEntityId", "want a string, got boolean"},
		{"Stage a string", head + `"Stage":"40"}`, "Stage", "want a whole number, got string"},
		{"Stage a fraction", head + `"Stage":40.5}`, "Stage", "want a whole number, got a fraction"},
		{"Depth too big", head + `"Depth":99999999999999999999}`, "Depth", "number out of range"},
		{"IsInTransaction a string", head + `"IsInTransaction":"true"}`, "IsInTransaction", "want a boolean, got string"},
		{"OperationCreatedOn not a date", head + `"OperationCreatedOn":"yesterday"}`, "OperationCreatedOn", "want a \"/Date(ms)/\" date"},
		{"OwningExtension a string", head + `"OwningExtension":"step"}`, "OwningExtension", "want an object, got string"},
		{"InputParameters an object", head + `"InputParameters":{"Target":1}}`, "InputParameters", "want an array of key/value pairs, got object"},
		{"InputParameters element a number", head + `"InputParameters":[1]}`, "InputParameters[0]", "want a key/value object, got number"},
		{"InputParameters element without key", head + `"InputParameters":[{"key":"a","value":1},{"value":1}]}`, "InputParameters[1].key", "missing"},
		{"InputParameters key a number", head + `"InputParameters":[{"key":1,"value":1}]}`, "InputParameters[0].key", "want a string, got number"},
		{"bad value in third parameter", head + `"InputParameters":[{"key":"a","value":1},{"key":"b","value":2},{"key":"c","value":tru}]}`,
			"InputParameters[2].value", "invalid character '}' in literal true"},
		{"option value a string", head + `"InputParameters":[{"key":"v","value":{"__type":"OptionSetValue:x","Value":"1"}}]}`,
			"InputParameters[0].value.Value", "want a whole number, got string"},
		{"entity attributes an object", head + `"InputParameters":[{"key":"Target","value":{"__type":"Entity:x","Attributes":{}}}]}`,
			"InputParameters[0].value.Attributes", "want an array of key/value pairs, got object"},
		{"formatted value a number", head + `"InputParameters":[{"key":"Target","value":{"__type":"Entity:x","FormattedValues":[{"key":"a","value":1}]}}]}`,
			"InputParameters[0].value.FormattedValues[0].value", "want a string, got number"},
		{"image a string", head + `"PreEntityImages":[{"key":"PreImage","value":"x"}]}`, "PreEntityImages[0].value", "want an entity object, got string"},
		{"party list entities an object", head + `"InputParameters":[{"key":"Target","value":{"__type":"Entity:x","Attributes":[{"key":"to","value":{"__type":"EntityCollection:x","Entities":{}}}]}}]}`,
			"InputParameters[0].value.Attributes[0].value.Entities", "want an array, got object"},
		{"ParentContext a number", head + `"ParentContext":5}`, "ParentContext", "want an object, got number"},
		{"ParentContext with a bad field", head + `"ParentContext":{"MessageName":5}}`, "ParentContext.MessageName", "want a string, got number"},
		{"control character in string", head + "\"OrganizationName\":\"a\nb\"}", "OrganizationName", "invalid character byte 0xa in string literal"},
		{"bad escape", head + `"OrganizationName":"a\qb"}`, "OrganizationName", `invalid character 'q' in string escape code`},
		{"bad unicode escape", head + `"OrganizationName":"\u12G4"}`, "OrganizationName", `invalid character 'G' in \u hexadecimal character escape`},
		{"leading zero", head + `"Stage":040}`, "", "invalid character '4' after object key:value pair"},
		{"bad number", head + `"Stage":-}`, "Stage", "invalid character '}' in numeric literal"},
		{"huge float", head + `"InputParameters":[{"key":"v","value":1e999}]}`, "InputParameters[0].value", "number out of range"},
		{"odd key in path is quoted", head + `"a.b\n":{"x":tru}}`, `"a.b\n".x`, "in literal true"},
		{"long key in path is cut", head + `"` + strings.Repeat("k", 100) + `":tru}`, strings.Repeat("k", 64) + "…", "in literal true"},
		{"trailing data", valid + `x`, "", "invalid character 'x' after top-level object"},
		{"missing colon", `{"MessageName" "Create"}`, "", "invalid character '\"' after object key"},
		{"unquoted key", `{MessageName:"Create"}`, "", "invalid character 'M' looking for beginning of object key string"},
		{"trailing comma", head + `"Stage":40,}`, "", "invalid character '}' looking for beginning of object key string"},
		{"truncated in a value", valid[:strings.Index(valid, `"Schmidt"`)+3], "InputParameters[0].value.Attributes[1].value", "unexpected end of input"},
		{"truncated after a key", valid[:strings.Index(valid, `"IsExecutingOffline":`)+len(`"IsExecutingOffline":`)], "IsExecutingOffline", "unexpected end of input"},
		{"deep value", head + `"InputParameters":[{"key":"v","value":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}]}`,
			"InputParameters[0].value" + strings.Repeat("[0]", 61), "nesting deeper than 64 levels"},
		{"deep ParentContext", strings.Repeat(`{"ParentContext":`, 70) + `null` + strings.Repeat(`}`, 70),
			strings.TrimSuffix(strings.Repeat("ParentContext.", 64), "."), "nesting deeper than 64 levels"},
		{"deep array body", strings.Repeat("[", 1_000_000), "", "not JSON: nesting deeper than 64 levels"},
		{"deep object body", strings.Repeat(`{"a":`, 1_000_000), "", "nesting deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Decode([]byte(tt.body))
			if c != nil || err == nil {
				t.Fatalf("Decode = %v, %v; want a DecodeError", c, err)
			}
			if !errors.Is(err, ErrNotContext) {
				t.Errorf("errors.Is(%v, ErrNotContext) = false", err)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if tt.name == "deep object body" {
				// The path is 64 "a"s deep; only its start matters.
				if !strings.HasPrefix(de.Field, "a.a.a") {
					t.Errorf("Field = %q, want a.a.a…", de.Field)
				}
			} else if de.Field != tt.wantField {
				t.Errorf("Field = %q, want %q", de.Field, tt.wantField)
			}
			if !strings.Contains(de.Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", de.Reason, tt.wantReason)
			}
		})
	}
}

// TestDecodeEveryTruncation cuts a real body at every byte: each cut must fail cleanly.
func TestDecodeEveryTruncation(t *testing.T) {
	t.Parallel()

	body := fixture(t, "update_contact_preimage.json")
	end := len(strings.TrimRight(string(body), " \n"))
	for i := range end {
		c, err := Decode(body[:i])
		var de *DecodeError
		if c != nil || !errors.As(err, &de) {
			t.Fatalf("Decode(body[:%d]) = %v, %v; want a DecodeError", i, c, err)
		}
	}
}

// TestDecodeStringsLikeEncodingJSON pins string decoding to encoding/json's, including
// its handling of invalid UTF-8 and lone surrogates.
func TestDecodeStringsLikeEncodingJSON(t *testing.T) {
	t.Parallel()

	for _, raw := range []string{
		`""`, `"abc"`, `"\u00e4\u00F6"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00"`, `"\ud83dx"`, `"\ud83d\u0041"`,
		`"\ud83d\ud83d\ude00"`, `"\b\f\n\r\t\/\\\""`, "\"\xff\xfe\"", "\"a\xc3\"", "\"€ – ü\"", "\"\xed\xa0\x80\"",
		`"\u0000"`, `"x\/Date(1)\/"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatalf("json.Unmarshal(%q): %v", raw, err)
		}
		c, err := Decode(param(raw))
		if err != nil {
			t.Fatalf("Decode(%q): %v", raw, err)
		}
		if got := c.InputParameters["v"]; got != any(want) {
			t.Errorf("Decode(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestDecodeToleratesByteOrderMarkAndUnknownFields(t *testing.T) {
	t.Parallel()

	body := append([]byte("\xEF\xBB\xBF"), fixture(t, "delete_contact.json")...)
	body = []byte(strings.Replace(string(body), `"Depth"`, `"FutureField":{"x":[1,{"y":null}]},"Depth"`, 1))
	c, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "MessageName", MessageDelete, c.MessageName)
}

// FuzzDecode checks that Decode never panics, fails only with a DecodeError, accepts only
// valid JSON, and that whatever it returns is safe to use.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "webhooks", "*.json"))
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	for _, s := range []string{``, `{}`, `[]`, `{"MessageName":"x","PrimaryEntityName":"y","PrimaryEntityId":"z"}`,
		`"\ud800"`, `{"a":` + strings.Repeat("[", 70)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := Decode(body)
		if err != nil {
			var de *DecodeError
			if c != nil || !errors.As(err, &de) || !errors.Is(err, ErrNotContext) {
				t.Fatalf("Decode = %v, %#v", c, err)
			}
			return
		}
		if !json.Valid(body) && !(len(body) >= 3 && string(body[:3]) == "\xEF\xBB\xBF" && json.Valid(body[3:])) {
			t.Fatalf("Decode accepted invalid JSON %q", body)
		}
		if c.MessageName == "" {
			t.Fatal("Decode accepted an empty MessageName")
		}
		for ; c != nil; c = c.ParentContext {
			c.NeedsReread()
			c.Target()
			c.TargetReference()
			c.Relationship()
			c.RelatedEntities()
			c.ListMembership()
			m := c.Merged()
			for k := range m.Attributes {
				m.String(k)
				m.Int(k)
				m.Option(k)
			}
		}
	})
}

// FuzzDecodeString pins the hand-written string reader to encoding/json on any input.
func FuzzDecodeString(f *testing.F) {
	for _, s := range []string{`"abc"`, `"\ud83d\ude00"`, "\"\xff\"", `"\u12"`, `"\/Date(1)\/"`, `"a" `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if raw == "" || raw[0] != '"' {
			return
		}
		var want string
		wantErr := json.Unmarshal([]byte(raw), &want)
		d := decoder{data: []byte(raw)}
		b, err := d.str()
		if err == nil {
			if d.skipWS(); d.pos != len(d.data) {
				err = d.syntaxError("after string")
			}
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("str(%q): err = %v, encoding/json: %v", raw, err, wantErr)
		}
		if err == nil && string(b) != want {
			t.Fatalf("str(%q) = %q, encoding/json: %q", raw, b, want)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	small := fixture(b, "create_contact.json")
	large := largeBody(b, 200<<10)
	for _, bb := range []struct {
		name string
		body []byte
	}{{"4KB", small}, {"200KB", large}} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.body)))
			for b.Loop() {
				if _, err := Decode(bb.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// largeBody grows the party-list fixture to at least size bytes, the way a campaign
// response or e-mail with many recipients and columns looks: more party rows, more
// attributes.
func largeBody(tb testing.TB, size int) []byte {
	tb.Helper()
	body := string(fixture(tb, "create_campaignresponse_partylist.json"))
	var parties, attrs strings.Builder
	for i := 0; parties.Len()+attrs.Len()+len(body) < size; i++ {
		id := strings.Replace("00000000-7e63-ef11-9e4a-00155d0001ea", "00000000", strings.Repeat(string(rune('a'+i%6)), 8), 1)
		parties.WriteString(`,{"Attributes":[{"key":"partyid","value":{"__type":"EntityReference:` + contracts + `","Id":"` + id +
			`","KeyAttributes":[],"LogicalName":"contact","Name":"Recipient ` + strconv.Itoa(i) + `","RowVersion":null}},` +
			`{"key":"participationtypemask","value":{"__type":"OptionSetValue:` + contracts + `","Value":2}},` +
			`{"key":"addressused","value":"recipient` + strconv.Itoa(i) + `@example.de"},{"key":"ispartydeleted","value":false},` +
			`{"key":"activitypartyid","value":"` + id + `"}],"EntityState":null,"FormattedValues":[{"key":"participationtypemask","value":"To Recipient"}],` +
			`"Id":"` + id + `","KeyAttributes":[],"LogicalName":"activityparty","RelatedEntities":[],"RowVersion":"1447321"}`)
		attrs.WriteString(`,{"key":"cs_field` + strconv.Itoa(i) + `","value":"\/Date(1736899200000)\/"},{"key":"cs_amount` + strconv.Itoa(i) +
			`","value":{"__type":"Money:` + contracts + `","Value":` + strconv.Itoa(i) + `.25}},{"key":"cs_note` + strconv.Itoa(i) + `","value":"Zeile ` + strconv.Itoa(i) + ` \u00e4\u00f6\u00fc"}`)
	}
	// Append the party rows to the first party list ("customer") and the columns to
	// the Target's attributes.
	marker := `"LogicalName": "activityparty",`
	i := strings.Index(body, marker)
	j := strings.Index(body[i:], "}\n") + i + 1
	body = body[:j] + parties.String() + body[j:]
	k := strings.Index(body, `"key": "statecode"`)
	k = strings.LastIndex(body[:k], "{")
	body = body[:k] + strings.TrimPrefix(attrs.String(), ",") + "," + body[k:]
	out := []byte(body)
	if _, err := Decode(out); err != nil || len(out) < size {
		tb.Fatalf("largeBody: %d bytes, %v", len(out), err)
	}
	return out
}

// ---- test helpers shared by this package's tests ----

// fixture reads testdata/webhooks/<name>.
func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "webhooks", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// decodeFixture decodes a fixture that must be valid.
func decodeFixture(tb testing.TB, name string) *ExecutionContext {
	tb.Helper()
	c, err := Decode(fixture(tb, name))
	if err != nil {
		tb.Fatalf("Decode(%s): %v", name, err)
	}
	return c
}

// ms is how every decoded "/Date(ms)/" looks.
func ms(n int64) time.Time { return time.UnixMilli(n).UTC() }

// diff reports want and got, which must be reflect.DeepEqual, as a line diff
// "(-want +got)" of a rendering that shows dynamic types, so an int64 that should have
// been a float64 is visible.
func diff(tb testing.TB, what string, want, got any) {
	tb.Helper()
	if reflect.DeepEqual(want, got) {
		return
	}
	w, g := render(want), render(got)
	if w == g {
		tb.Errorf("%s mismatch (-want +got): renderings equal, values not:\n%s", what, w)
		return
	}
	tb.Errorf("%s mismatch (-want +got):\n%s", what, lineDiff(w, g))
}

func render(v any) string {
	var b strings.Builder
	renderValue(&b, reflect.ValueOf(v), 0)
	return b.String()
}

func renderValue(b *strings.Builder, v reflect.Value, indent int) {
	pad := strings.Repeat("  ", indent)
	if !v.IsValid() {
		b.WriteString("nil")
		return
	}
	if t, ok := v.Interface().(time.Time); ok {
		fmt.Fprintf(b, "time(%s)", t.Format(time.RFC3339Nano))
		return
	}
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		renderValue(b, v.Elem(), indent)
	case reflect.Pointer:
		if v.IsNil() {
			fmt.Fprintf(b, "(%s)(nil)", v.Type())
			return
		}
		b.WriteString("&")
		renderValue(b, v.Elem(), indent)
	case reflect.Struct:
		fmt.Fprintf(b, "%s{\n", v.Type())
		for i := range v.NumField() {
			if !v.Type().Field(i).IsExported() || v.Field(i).IsZero() {
				continue
			}
			fmt.Fprintf(b, "%s  %s: ", pad, v.Type().Field(i).Name)
			renderValue(b, v.Field(i), indent+1)
			b.WriteString("\n")
		}
		b.WriteString(pad + "}")
	case reflect.Map:
		if v.IsNil() {
			fmt.Fprintf(b, "%s(nil)", v.Type())
			return
		}
		fmt.Fprintf(b, "%s{\n", v.Type())
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, c reflect.Value) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(c)) })
		for _, k := range keys {
			fmt.Fprintf(b, "%s  %q: ", pad, fmt.Sprint(k))
			renderValue(b, v.MapIndex(k), indent+1)
			b.WriteString("\n")
		}
		b.WriteString(pad + "}")
	case reflect.Slice:
		if v.IsNil() {
			fmt.Fprintf(b, "%s(nil)", v.Type())
			return
		}
		fmt.Fprintf(b, "%s{\n", v.Type())
		for i := range v.Len() {
			b.WriteString(pad + "  ")
			renderValue(b, v.Index(i), indent+1)
			b.WriteString("\n")
		}
		b.WriteString(pad + "}")
	case reflect.String:
		fmt.Fprintf(b, "%q", v.String())
	default:
		fmt.Fprintf(b, "%s(%v)", v.Type(), v)
	}
}

// lineDiff is a small LCS diff, enough for test output.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			out.WriteString("  " + x[i] + "\n")
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out.WriteString("+ " + y[j] + "\n")
			j++
		default:
			out.WriteString("- " + x[i] + "\n")
			i++
		}
	}
	return out.String()
}
