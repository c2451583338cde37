package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
	"crmsync/store"
	"crmsync/store/storetest"
)

// Tests of the sync rules (design.md, "Rules from the product brief"), one per rule,
// applying webhook bodies to a real store through the registered steps.

type opt int

type ref struct{ entity, id string }

type attrs map[string]any

func encodeValue(v any) any {
	switch x := v.(type) {
	case opt:
		return map[string]any{"__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": int(x)}
	case ref:
		return map[string]any{"__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts", "Id": x.id, "KeyAttributes": []any{}, "LogicalName": x.entity, "Name": nil, "RowVersion": nil}
	case time.Time:
		return fmt.Sprintf("/Date(%d)/", x.UnixMilli())
	default:
		return v
	}
}

func kv(a attrs) []any {
	out := []any{}
	for k, v := range a {
		out = append(out, map[string]any{"key": k, "value": encodeValue(v)})
	}
	return out
}

func entity(logical, id string, a attrs) map[string]any {
	return map[string]any{"__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts", "Attributes": kv(a), "EntityState": nil,
		"FormattedValues": []any{}, "Id": id, "KeyAttributes": []any{}, "LogicalName": logical, "RelatedEntities": []any{}, "RowVersion": nil}
}

// webhookBody builds a RemoteExecutionContext as Dataverse sends it.
func webhookBody(msg, logical, id string, at time.Time, target attrs, pre attrs) []byte {
	ctx := map[string]any{
		"MessageName": msg, "PrimaryEntityName": logical, "PrimaryEntityId": id, "Stage": 40, "Mode": 1, "Depth": 1,
		"BusinessUnitId": rootBU, "OperationId": fmt.Sprintf("op-%s-%d", id, at.UnixNano()),
		"OperationCreatedOn": fmt.Sprintf("/Date(%d)/", at.UnixMilli()), "SecondaryEntityName": "none",
	}
	switch msg {
	case dataverse.MessageDelete:
		ctx["InputParameters"] = []any{map[string]any{"key": "Target", "value": encodeValue(ref{logical, id})}}
	case dataverse.MessageSetState:
		ctx["InputParameters"] = []any{
			map[string]any{"key": "EntityMoniker", "value": encodeValue(ref{logical, id})},
			map[string]any{"key": "State", "value": encodeValue(target["statecode"])},
			map[string]any{"key": "Status", "value": encodeValue(target["statuscode"])},
		}
	default:
		if _, ok := target["modifiedon"]; !ok {
			target["modifiedon"] = at
		}
		ctx["InputParameters"] = []any{map[string]any{"key": "Target", "value": entity(logical, id, target)}}
	}
	if pre != nil {
		ctx["PreEntityImages"] = []any{map[string]any{"key": "PreImage", "value": entity(logical, id, pre)}}
	}
	b, _ := json.Marshal(ctx)
	return b
}

const (
	rootBU    = "c3ec0cc2-d836-eb11-bf68-0022489b563d"
	otherBU   = "d4fd1dd3-e947-fc22-c079-1133590c674e"
	contactID = "7f3c1a52-4b1e-4f0a-9a3e-2d5b6c7d8e9f"
)

type rules struct {
	t     *testing.T
	st    *store.Store
	conn  *store.Connection
	group *store.Group
	reg   *Registry
	t0    time.Time
}

func newRules(t *testing.T, mappings ...store.FieldMapping) *rules {
	t.Helper()
	return newRulesFor(t, storetest.Open(t), store.ConnectionInput{OrganizationURL: "https://acme.crm4.dynamics.com"}, mappings...)
}

// newCRMRules is newRules with a connection to an emulator of its own, with the
// application user's credentials, so the steps can read through the Web API.
func newCRMRules(t *testing.T, mappings ...store.FieldMapping) (*rules, *emulator.Emulator) {
	t.Helper()
	dv := emulator.New(emulator.Config{})
	if err := dv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dv.Close() })
	return newRulesFor(t, storetest.Open(t), store.ConnectionInput{OrganizationURL: dv.URL(), TokenURL: dv.URL() + "/t/oauth2/v2.0/token",
		ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret}, mappings...), dv
}

// newRulesFor makes, in st, the connection of in (a contact connection named CRM
// with a webhook key) with the default mappings and the given ones, and a synced
// group.
func newRulesFor(t *testing.T, st *store.Store, in store.ConnectionInput, mappings ...store.FieldMapping) *rules {
	t.Helper()
	ctx := context.Background()
	in.Name, in.WebhookAuthMode, in.WebhookAuthValue, in.RecipientType = "CRM", store.WebhookKey, "0123456789abcdef-secret", store.RecipientContact
	conn, err := st.CreateConnection(ctx, "acme", in)
	if err != nil {
		t.Fatal(err)
	}
	if len(mappings) > 0 {
		all := append(store.DefaultFieldMappings(store.RecipientContact), mappings...)
		if _, err := st.SetFieldMappings(ctx, "acme", conn.ID, all); err != nil {
			t.Fatal(err)
		}
		conn, _ = st.Connection(ctx, "acme", conn.ID)
	}
	g, err := st.CreateGroup(ctx, "acme", store.GroupInput{Name: "News", ConnectionID: conn.ID, CRMSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &rules{t: t, st: st, conn: conn, group: g, reg: NewRegistry(), t0: time.Now().UTC().Truncate(time.Millisecond)}
	registerRecipientSteps(r.reg, st, time.Now)
	return r
}

func (r *rules) addSubscriber(groupID, email string, fields map[string]any) {
	r.t.Helper()
	if _, err := r.st.UpsertSubscribers(context.Background(), "acme", groupID, []store.SubscriberInput{{Email: email, Fields: fields}}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rules) reloadConnection() {
	c, err := r.st.Connection(context.Background(), "acme", r.conn.ID)
	if err != nil {
		r.t.Fatal(err)
	}
	r.conn = c
}

// apply runs the steps registered for the body and returns the event (its warnings).
func (r *rules) apply(body []byte) *Event {
	r.t.Helper()
	ev, err := r.applyContext(r.decode(body))
	if err != nil {
		r.t.Fatal(err)
	}
	return ev
}

func (r *rules) decode(body []byte) *dataverse.ExecutionContext {
	r.t.Helper()
	ec, err := dataverse.Decode(body)
	if err != nil {
		r.t.Fatal(err)
	}
	return ec
}

// applyContext runs the steps registered for a decoded event, up to the first error.
func (r *rules) applyContext(ec *dataverse.ExecutionContext) (*Event, error) {
	ev := &Event{Inbox: &store.InboxEvent{ReceivedAt: time.Now()}, Context: ec, Connection: r.conn}
	for _, s := range r.reg.Steps(StepKey{Message: ec.MessageName, Entity: ec.PrimaryEntityName, Stage: ec.Stage}) {
		if err := s.Apply(context.Background(), ev); err != nil {
			return ev, err
		}
	}
	return ev, nil
}

func (r *rules) sub(groupID, email string) *store.Subscriber {
	r.t.Helper()
	s, err := r.st.SubscriberByEmail(context.Background(), "acme", groupID, email)
	if err != nil {
		r.t.Fatalf("subscriber %s: %v", email, err)
	}
	return s
}

func (r *rules) at(minutes int) time.Time { return r.t0.Add(time.Duration(minutes) * time.Minute) }

func TestMappedFieldsFollowTheCRMAndUnmappedKeepTheirValues(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	r.addSubscriber(r.group.ID, "erika@example.de", map[string]any{"firstName": "Eri", "city": "Köln"})
	// The eMS edited firstName just now; the CRM's older change still wins: mapped
	// fields belong to the CRM.
	r.apply(webhookBody("Create", "contact", contactID, r.at(-60), attrs{"firstname": "Erika", "lastname": "Mustermann", "emailaddress1": "Erika@Example.de"}, nil))
	s := r.sub(r.group.ID, "erika@example.de")
	if s.Fields["firstName"] != "Erika" || s.Fields["lastName"] != "Mustermann" || s.Fields["city"] != "Köln" {
		t.Errorf("fields = %v", s.Fields)
	}
	if s.CRMRecord == nil || s.CRMRecord.ID != contactID {
		t.Errorf("not linked: %+v", s.CRMRecord)
	}
	// An older CRM change arriving late does not overwrite the newer one; a null clears.
	r.apply(webhookBody("Update", "contact", contactID, r.at(1), attrs{"lastname": "Musterfrau", "firstname": nil}, attrs{"emailaddress1": "erika@example.de"}))
	r.apply(webhookBody("Update", "contact", contactID, r.at(0), attrs{"lastname": "Stale"}, attrs{"emailaddress1": "erika@example.de"}))
	s = r.sub(r.group.ID, "erika@example.de")
	if s.Fields["lastName"] != "Musterfrau" {
		t.Errorf("lastName = %v, want the newer Musterfrau", s.Fields["lastName"])
	}
	if _, ok := s.Fields["firstName"]; ok {
		t.Errorf("firstName set to null in the CRM is still %v", s.Fields["firstName"])
	}
}

func TestOptionSetsMapValueToLabelAndUnknownValuesAreReported(t *testing.T) {
	t.Parallel()
	r := newRules(t, store.FieldMapping{CRMEntity: "contact", CRMAttribute: "gendercode", SubscriberField: "fields.salutation",
		Kind: store.MappingOptionSet, OptionLabels: map[string]any{"1": "Herr", "2": "Frau"}})
	r.addSubscriber(r.group.ID, "erika@example.de", nil)
	r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "erika@example.de", "gendercode": opt(2)}, nil))
	if s := r.sub(r.group.ID, "erika@example.de"); s.Fields["salutation"] != "Frau" {
		t.Errorf("salutation = %v", s.Fields["salutation"])
	}
	ev := r.apply(webhookBody("Update", "contact", contactID, r.at(1), attrs{"gendercode": opt(9)}, attrs{"emailaddress1": "erika@example.de"}))
	if s := r.sub(r.group.ID, "erika@example.de"); s.Fields["salutation"] != "Frau" {
		t.Errorf("an unknown value was guessed: %v", s.Fields["salutation"])
	}
	if len(ev.warnings) != 1 || !strings.Contains(ev.warnings[0], "option value 9") {
		t.Errorf("warnings = %v", ev.warnings)
	}
}

func TestLanguageMapsPerBusinessUnitWithGermanByDefault(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	if _, err := r.st.SetLanguageMapping(context.Background(), "acme", r.conn.ID, store.LanguageMapping{
		BusinessUnitID: otherBU, CRMAttribute: "cs_language", Values: map[string]string{"1031": "de", "1033": "EN"},
	}); err != nil {
		t.Fatal(err)
	}
	r.reloadConnection()
	r.addSubscriber(r.group.ID, "a@example.de", nil)
	r.addSubscriber(r.group.ID, "b@example.de", nil)
	r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "a@example.de", "cs_language": opt(1033), "owningbusinessunit": ref{"businessunit", otherBU}}, nil))
	r.apply(webhookBody("Create", "contact", "8f3c1a52-4b1e-4f0a-9a3e-2d5b6c7d8e9f", r.at(0), attrs{"emailaddress1": "b@example.de", "cs_language": opt(1033)}, nil))
	if s := r.sub(r.group.ID, "a@example.de"); s.Language != "en" {
		t.Errorf("mapped business unit: language %q, want en", s.Language)
	}
	if s := r.sub(r.group.ID, "b@example.de"); s.Language != "de" {
		t.Errorf("unmapped business unit: language %q, want the default de", s.Language)
	}
}

func TestLanguageConflictsGoToTheLaterChangeAndTiesToTheCRM(t *testing.T) {
	t.Parallel()
	r := newRules(t, store.FieldMapping{CRMEntity: "contact", CRMAttribute: "cs_lang", SubscriberField: "language", Kind: store.MappingSimple})
	en := "en"
	if _, err := r.st.UpsertSubscribers(context.Background(), "acme", r.group.ID, []store.SubscriberInput{{Email: "a@example.de", Language: &en}}); err != nil {
		t.Fatal(err)
	}
	emsAt := r.sub(r.group.ID, "a@example.de").Stamp("language").At
	r.apply(webhookBody("Create", "contact", contactID, emsAt.Add(-time.Minute), attrs{"emailaddress1": "a@example.de", "cs_lang": "fr"}, nil))
	if s := r.sub(r.group.ID, "a@example.de"); s.Language != "en" {
		t.Errorf("an older CRM change overwrote the eMS's: %q", s.Language)
	}
	r.apply(webhookBody("Update", "contact", contactID, emsAt, attrs{"cs_lang": "it"}, attrs{"emailaddress1": "a@example.de"}))
	if s := r.sub(r.group.ID, "a@example.de"); s.Language != "it" {
		t.Errorf("a tie did not go to the CRM: %q", s.Language)
	}
}

func TestDoubleOptInFromTheCRMOnlyUnknownOrExternallyDocumented(t *testing.T) {
	t.Parallel()
	r := newRules(t, store.FieldMapping{CRMEntity: "contact", CRMAttribute: "cs_doi", SubscriberField: "doubleOptInStatus",
		Kind: store.MappingOptionSet, OptionLabels: map[string]any{"1": "Unknown", "2": "Externally documented", "3": "Confirmed"}})
	r.addSubscriber(r.group.ID, "a@example.de", nil)
	r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "a@example.de", "cs_doi": opt(2)}, nil))
	if s := r.sub(r.group.ID, "a@example.de"); s.DoubleOptInStatus != store.OptInExternallyDocumented {
		t.Errorf("status = %s", s.DoubleOptInStatus)
	}
	ev := r.apply(webhookBody("Update", "contact", contactID, r.at(1), attrs{"cs_doi": opt(3)}, attrs{"emailaddress1": "a@example.de"}))
	if s := r.sub(r.group.ID, "a@example.de"); s.DoubleOptInStatus != store.OptInExternallyDocumented {
		t.Errorf("CONFIRMED from the CRM was applied: %s", s.DoubleOptInStatus)
	}
	if len(ev.warnings) != 1 || !strings.Contains(ev.warnings[0], "refused") {
		t.Errorf("warnings = %v", ev.warnings)
	}
	// Confirmed in the eMS is never downgraded.
	s := r.sub(r.group.ID, "a@example.de")
	s.DoubleOptInStatus = store.OptInConfirmed
	if err := r.st.SaveSubscriber(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	r.apply(webhookBody("Update", "contact", contactID, r.at(2), attrs{"cs_doi": opt(1)}, attrs{"emailaddress1": "a@example.de"}))
	if s := r.sub(r.group.ID, "a@example.de"); s.DoubleOptInStatus != store.OptInConfirmed {
		t.Errorf("CONFIRMED was downgraded to %s", s.DoubleOptInStatus)
	}
}

func TestDoNotBulkEmailUnsubscribesFromEveryGroup(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	g2, err := r.st.CreateGroup(context.Background(), "acme", store.GroupInput{Name: "Events", ConnectionID: r.conn.ID, CRMSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.addSubscriber(r.group.ID, "a@example.de", nil)
	r.addSubscriber(g2.ID, "a@example.de", nil)
	r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "a@example.de", "donotbulkemail": false}, nil))
	if s := r.sub(g2.ID, "a@example.de"); s.SubscriptionState != store.Subscribed {
		t.Fatalf("state = %s", s.SubscriptionState)
	}
	r.apply(webhookBody("Update", "contact", contactID, r.at(1), attrs{"donotbulkemail": true}, attrs{"emailaddress1": "a@example.de"}))
	for _, g := range []string{r.group.ID, g2.ID} {
		if s := r.sub(g, "a@example.de"); s.SubscriptionState != store.Unsubscribed {
			t.Errorf("group %s: state %s", g, s.SubscriptionState)
		}
	}
	// Clearing the flag gives no consent back.
	r.apply(webhookBody("Update", "contact", contactID, r.at(2), attrs{"donotbulkemail": false}, attrs{"emailaddress1": "a@example.de"}))
	if s := r.sub(r.group.ID, "a@example.de"); s.SubscriptionState != store.Unsubscribed {
		t.Errorf("cleared flag resubscribed: %s", s.SubscriptionState)
	}
}

func TestSubscriptionRowsSetOneGroupsState(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	g2, _ := r.st.CreateGroup(context.Background(), "acme", store.GroupInput{Name: "Events", ConnectionID: r.conn.ID, CRMSync: true})
	r.addSubscriber(r.group.ID, "a@example.de", nil)
	r.addSubscriber(g2.ID, "a@example.de", nil)
	r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "a@example.de"}, nil))
	r.apply(webhookBody("Create", "cs_subscription", "5a5a5a5a-0000-4000-8000-000000000001", r.at(1),
		attrs{"cs_groupid": g2.ID, "cs_subscribed": false, "cs_contactid": ref{"contact", contactID}}, nil))
	if s := r.sub(g2.ID, "a@example.de"); s.SubscriptionState != store.Unsubscribed {
		t.Errorf("the row's group: %s", s.SubscriptionState)
	}
	if s := r.sub(r.group.ID, "a@example.de"); s.SubscriptionState != store.Subscribed {
		t.Errorf("another group changed: %s", s.SubscriptionState)
	}
	ev := r.apply(webhookBody("Create", "cs_subscription", "5a5a5a5a-0000-4000-8000-000000000002", r.at(2),
		attrs{"cs_groupid": "not-a-group", "cs_subscribed": true, "cs_contactid": ref{"contact", contactID}}, nil))
	if len(ev.warnings) != 1 {
		t.Errorf("unknown group: warnings %v", ev.warnings)
	}
}

func TestDeactivatedDeletedOrQualifiedRecordsUnlinkAndTheSubscriberStays(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	for _, e := range []string{"a@example.de", "b@example.de", "c@example.de"} {
		r.addSubscriber(r.group.ID, e, nil)
	}
	ids := []string{contactID, "8f3c1a52-4b1e-4f0a-9a3e-2d5b6c7d8e9f", "9f3c1a52-4b1e-4f0a-9a3e-2d5b6c7d8e9f"}
	r.apply(webhookBody("Create", "contact", ids[0], r.at(0), attrs{"emailaddress1": "a@example.de"}, nil))
	r.apply(webhookBody("Create", "contact", ids[1], r.at(0), attrs{"emailaddress1": "b@example.de"}, nil))
	r.apply(webhookBody("Create", "contact", ids[2], r.at(0), attrs{"emailaddress1": "c@example.de"}, nil))

	r.apply(webhookBody("Update", "contact", ids[0], r.at(1), attrs{"statecode": opt(1), "statuscode": opt(2)}, attrs{"emailaddress1": "a@example.de"}))
	r.apply(webhookBody("Delete", "contact", ids[1], r.at(1), nil, attrs{"emailaddress1": "b@example.de"}))
	r.apply(webhookBody("SetState", "contact", ids[2], r.at(1), attrs{"statecode": opt(1), "statuscode": opt(2)}, nil))
	for email, want := range map[string]string{"a@example.de": reasonDeactivated, "b@example.de": reasonDeleted, "c@example.de": reasonDeactivated} {
		s := r.sub(r.group.ID, email)
		if s.CRMRecord != nil || s.CRMUnlinkedReason == nil || *s.CRMUnlinkedReason != want {
			t.Errorf("%s: record %+v, reason %v; want unlinked: %s", email, s.CRMRecord, s.CRMUnlinkedReason, want)
		}
	}
}

func TestQualifiedLeadsAreNeverUpdated(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	all := append(store.DefaultFieldMappings(store.RecipientContact), store.DefaultFieldMappings(store.RecipientLead)...)
	if _, err := r.st.SetFieldMappings(context.Background(), "acme", r.conn.ID, all); err != nil {
		t.Fatal(err)
	}
	r.reloadConnection()
	r.addSubscriber(r.group.ID, "lead@example.de", map[string]any{"lastName": "Before"})
	lead := "aaaa1a52-4b1e-4f0a-9a3e-2d5b6c7d8e9f"
	r.apply(webhookBody("Update", "lead", lead, r.at(0), attrs{"lastname": "Qualified", "statecode": opt(1), "statuscode": opt(3)}, attrs{"emailaddress1": "lead@example.de"}))
	s := r.sub(r.group.ID, "lead@example.de")
	if s.Fields["lastName"] != "Before" || s.CRMRecord != nil {
		t.Errorf("a qualified lead changed its subscriber: %+v", s)
	}
}

func TestCRMEmailChangeKeepsTheSubscriberAndMergesATakenAddress(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	r.addSubscriber(r.group.ID, "old@example.de", map[string]any{"city": "Köln"})
	r.addSubscriber(r.group.ID, "new@example.de", map[string]any{"phone": "123", "city": "Bonn"})
	r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "old@example.de"}, nil))
	linked := r.sub(r.group.ID, "old@example.de")
	ev := r.apply(webhookBody("Update", "contact", contactID, r.at(1), attrs{"emailaddress1": "New@Example.de"}, attrs{"emailaddress1": "old@example.de"}))
	s := r.sub(r.group.ID, "new@example.de")
	if s.ID != linked.ID || s.Email != "new@example.de" || s.Fields["city"] != "Köln" || s.Fields["phone"] != "123" {
		t.Errorf("after the change: %+v (linked was %s)", s, linked.ID)
	}
	if _, err := r.st.SubscriberByEmail(context.Background(), "acme", r.group.ID, "old@example.de"); err == nil {
		t.Error("the old address is still claimed")
	}
	if n, _ := r.st.CountSubscribers(context.Background(), "acme", r.group.ID); n != 1 {
		t.Errorf("%d subscribers, want the two merged into one", n)
	}
	if len(ev.warnings) != 1 || !strings.Contains(ev.warnings[0], "merged") {
		t.Errorf("warnings = %v", ev.warnings)
	}
}

func TestLookupMappingsReadTheRelatedRowThroughTheWebAPI(t *testing.T) {
	t.Parallel()
	lookup := store.FieldMapping{CRMEntity: "contact", CRMAttribute: "parentcustomerid", SubscriberField: "fields.company",
		Kind: store.MappingLookup, LookupPath: ptr("parentcustomerid.name")}
	r, dv := newCRMRules(t, lookup)
	acme, err := dv.Create("accounts", map[string]any{"name": "Acme GmbH"})
	if err != nil {
		t.Fatal(err)
	}
	r.addSubscriber(r.group.ID, "a@example.de", nil)
	r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "a@example.de", "parentcustomerid": ref{"account", acme}}, nil))
	if s := r.sub(r.group.ID, "a@example.de"); s.Fields["company"] != "Acme GmbH" {
		t.Errorf("company = %v, want the related account's name", s.Fields["company"])
	}
	// An update that leaves the lookup alone keeps the field; clearing the lookup clears it.
	r.apply(webhookBody("Update", "contact", contactID, r.at(1), attrs{"lastname": "X"}, attrs{"emailaddress1": "a@example.de", "parentcustomerid": ref{"account", acme}}))
	if s := r.sub(r.group.ID, "a@example.de"); s.Fields["company"] != "Acme GmbH" {
		t.Errorf("after an unrelated update: company = %v", s.Fields["company"])
	}
	r.apply(webhookBody("Update", "contact", contactID, r.at(2), attrs{"parentcustomerid": nil}, attrs{"emailaddress1": "a@example.de"}))
	if s := r.sub(r.group.ID, "a@example.de"); s.Fields["company"] != nil {
		t.Errorf("after clearing the lookup: company = %v", s.Fields["company"])
	}
	// A related row that is gone is reported and changes nothing.
	ev := r.apply(webhookBody("Update", "contact", contactID, r.at(3), attrs{"parentcustomerid": ref{"account", "0b0b0b0b-0000-4000-8000-000000000001"}}, attrs{"emailaddress1": "a@example.de"}))
	if len(ev.warnings) != 1 || !strings.Contains(ev.warnings[0], "cannot be read") {
		t.Errorf("missing related row: warnings %v", ev.warnings)
	}
}

func TestLookupMappingsWithoutCRMCredentialsWarn(t *testing.T) {
	t.Parallel()
	r := newRules(t, store.FieldMapping{CRMEntity: "contact", CRMAttribute: "parentcustomerid", SubscriberField: "fields.company",
		Kind: store.MappingLookup, LookupPath: ptr("parentcustomerid.name")})
	r.addSubscriber(r.group.ID, "a@example.de", map[string]any{"company": "Kept"})
	ev := r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "a@example.de", "lastname": "L",
		"parentcustomerid": ref{"account", "0b0b0b0b-0000-4000-8000-000000000001"}}, nil))
	s := r.sub(r.group.ID, "a@example.de")
	if s.Fields["company"] != "Kept" || s.Fields["lastName"] != "L" {
		t.Errorf("fields = %v, want company kept and the rest applied", s.Fields)
	}
	if len(ev.warnings) != 1 || !strings.Contains(ev.warnings[0], "parentcustomerid.name not applied: the connection has no clientId and clientSecret") {
		t.Errorf("warnings = %v", ev.warnings)
	}
}

func TestEventsOverTheSizeLimitAreReadBackThroughTheWebAPI(t *testing.T) {
	t.Parallel()
	r, dv := newCRMRules(t)
	id, err := dv.Create("contacts", map[string]any{"emailaddress1": "big@example.de", "firstname": "Groß", "donotbulkemail": true})
	if err != nil {
		t.Fatal(err)
	}
	r.addSubscriber(r.group.ID, "big@example.de", nil)
	stripped := func(id string) *dataverse.ExecutionContext {
		ec := r.decode(webhookBody("Update", "contact", id, r.at(0), attrs{}, nil))
		ec.InputParameters = nil
		ec.MarkSizeExceeded()
		return ec
	}
	if _, err := r.applyContext(stripped(id)); err != nil {
		t.Fatal(err)
	}
	s := r.sub(r.group.ID, "big@example.de")
	if s.Fields["firstName"] != "Groß" || s.CRMRecord == nil || s.CRMRecord.ID != id || s.SubscriptionState != store.Unsubscribed {
		t.Errorf("after the re-read: fields %v, record %+v, state %s", s.Fields, s.CRMRecord, s.SubscriptionState)
	}
	ev, err := r.applyContext(stripped("0c0c0c0c-0000-4000-8000-000000000001"))
	if err != nil || len(ev.warnings) != 1 || !strings.Contains(ev.warnings[0], "no longer exists") {
		t.Errorf("a row gone since: %v, warnings %v", err, ev.warnings)
	}
	// Without credentials the event fails for good, saying why.
	noCRM := newRules(t)
	_, err = noCRM.applyContext(stripped(id))
	var perm *PermanentError
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), "cannot be read back through the Web API") {
		t.Errorf("without credentials: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestSubscriptionRowBeforeItsRecordIsLinkedAppliesOnceItIs(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	r.addSubscriber(r.group.ID, "early@example.de", nil)
	const early = "5b5b5b5b-0000-4000-8000-000000000001"
	// The subscription row comes first: no subscriber is linked to the contact yet.
	ev := r.apply(webhookBody("Create", "cs_subscription", "5a5a5a5a-0000-4000-8000-000000000009", r.at(2),
		attrs{"cs_groupid": r.group.ID, "cs_subscribed": false, "cs_contactid": ref{"contact", early}}, nil))
	if len(ev.warnings) != 1 || r.sub(r.group.ID, "early@example.de").SubscriptionState != store.Subscribed {
		t.Fatalf("before the link: warnings %v", ev.warnings)
	}
	// The contact's Create links the subscriber, which then takes the kept state.
	r.apply(webhookBody("Create", "contact", early, r.at(1), attrs{"emailaddress1": "early@example.de"}, nil))
	s := r.sub(r.group.ID, "early@example.de")
	if s.SubscriptionState != store.Unsubscribed || !s.Stamp("subscriptionState").At.Equal(r.at(2)) {
		t.Errorf("after the link: %s stamped %v; want UNSUBSCRIBED from the row", s.SubscriptionState, s.Stamp("subscriptionState"))
	}
}

func TestMappedFieldsTheCRMSetIgnoreEMSEdits(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	ctx := context.Background()
	r.addSubscriber(r.group.ID, "own@example.de", map[string]any{"firstName": "Eva"})
	r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "own@example.de", "lastname": "Muster"}, nil))
	res, err := r.st.UpsertSubscribers(ctx, "acme", r.group.ID, []store.SubscriberInput{
		{Email: "own@example.de", Fields: map[string]any{"lastName": "Edited", "firstName": "Eve", "city": "Bonn"}}})
	if err != nil {
		t.Fatal(err)
	}
	// lastName: mapped and set by the CRM → ignored, reported. firstName: mapped but
	// never set by the CRM → taken. city: unmapped → taken.
	if len(res.Ignored) != 1 || res.Ignored[0].Field != "fields.lastName" || res.Ignored[0].Email != "own@example.de" {
		t.Errorf("ignored = %+v", res.Ignored)
	}
	s := r.sub(r.group.ID, "own@example.de")
	if s.Fields["lastName"] != "Muster" || s.Fields["firstName"] != "Eve" || s.Fields["city"] != "Bonn" {
		t.Errorf("fields = %v", s.Fields)
	}
}
