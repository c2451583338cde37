package dataverse

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// memberIDs reads the ids of a list's members.
func memberIDs(t *testing.T, c *Client, listID string) []string {
	t.Helper()
	rows := c.ListMembers(t.Context(), listID, []string{"fullname"})
	var ids []string
	for rows.Next(t.Context()) {
		id, _ := rows.Row().String("contactid")
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("members of %s: %v", listID, err)
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...string) []string { return slices.Sorted(slices.Values(ids)) }

func memberCount(t *testing.T, c *Client, listID string) int64 {
	t.Helper()
	row, err := c.Get(t.Context(), "lists", listID, []string{"membercount"})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := row.Int("membercount")
	return n
}

func TestListActions(t *testing.T) {
	t.Parallel()
	h := hookedSetup(t, nil)
	ctx := t.Context()
	c := h.c
	steps := map[string]string{}
	for _, m := range []string{MessageAddMember, MessageAddListMembers, MessageRemoveMember} {
		steps[m] = h.step(t, m, "list", "")
	}
	for _, m := range []string{MessageAssociate, MessageDisassociate} {
		steps[m] = h.step(t, m, "", "")
	}
	mk := func(set string, row map[string]any) string {
		t.Helper()
		id, err := c.Create(ctx, set, row)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	list := mk("lists", map[string]any{"listname": "Newsletter – contact", "createdfromcode": ListMemberContact})
	locked := mk("lists", map[string]any{"listname": "Locked", "createdfromcode": ListMemberContact, "lockstatus": true})
	dynamic := mk("lists", map[string]any{"listname": "Dynamic", "createdfromcode": ListMemberContact, "type": true,
		"query": `<fetch><entity name="contact"><attribute name="fullname"/></entity></fetch>`})
	var contacts []string
	for i := range 4 {
		contacts = append(contacts, mk("contacts", map[string]any{"lastname": fmt.Sprintf("Member %d", i)}))
	}
	account := mk("accounts", map[string]any{"name": "Not a contact"})

	// AddMemberList: the listmember id; adding again finds the same membership.
	lm, err := c.AddListMember(ctx, list, contacts[0])
	if err != nil || !isGUID(lm) {
		t.Fatalf("AddListMember: %q %v", lm, err)
	}
	if again, err := c.AddListMember(ctx, list, contacts[0]); err != nil || again != lm {
		t.Errorf("adding a member twice: %q %v, want %q", again, err, lm)
	}
	// AddListMembersList: all or nothing, members of the list's type only.
	if err := c.AddListMembers(ctx, list, "contacts", contacts[1:3]); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.AddListMembers(ctx, list, "accounts", []string{account}), http.StatusBadRequest, "0x80040203")
	wantAPIError(t, c.AddListMembers(ctx, list, "contacts", []string{contacts[3], "00000000-0000-4000-8000-0000000000dd"}), http.StatusNotFound, "")
	if got := memberCount(t, c, list); got != 3 {
		t.Errorf("membercount %d, want 3 (refused adds add nothing)", got)
	}
	// AddMemberList takes the member type from the list: an account id is no contact.
	_, err = c.AddListMember(ctx, list, account)
	wantAPIError(t, err, http.StatusNotFound, "")
	// Locked and dynamic lists refuse new members.
	_, err = c.AddListMember(ctx, locked, contacts[0])
	if ae := wantAPIError(t, err, http.StatusBadRequest, ""); !strings.Contains(ae.Message, "locked") {
		t.Errorf("locked list: %v", ae)
	}
	if ae := wantAPIError(t, c.AddListMembers(ctx, dynamic, "contacts", contacts[:1]), http.StatusBadRequest, ""); !strings.Contains(ae.Message, "dynamic") {
		t.Errorf("dynamic list: %v", ae)
	}

	if err := c.RemoveListMember(ctx, list, contacts[1]); err != nil {
		t.Fatal(err)
	}
	if got, want := memberIDs(t, c, list), sorted(contacts[0], contacts[2]); !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}

	// The N:N relationship, from the list's side and from the member's.
	if err := c.Associate(ctx, "lists", list, RelationshipListContact, "contacts", contacts[3]); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.Associate(ctx, "lists", list, RelationshipListContact, "contacts", contacts[3]), http.StatusPreconditionFailed, "0x80040237")
	if err := c.Associate(ctx, "contacts", contacts[1], RelationshipListContact, "lists", list); err != nil {
		t.Fatal(err)
	}
	if err := c.Disassociate(ctx, "lists", list, RelationshipListContact, contacts[0]); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.Associate(ctx, "lists", locked, RelationshipListContact, "contacts", contacts[0]), http.StatusBadRequest, "")
	if got, want := memberIDs(t, c, list), sorted(contacts[1], contacts[2], contacts[3]); !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
	if got := memberCount(t, c, list); got != 3 {
		t.Errorf("membercount %d, want 3", got)
	}

	// Every action reached the webhook steps as §3.6 describes it.
	h.flush(t)
	events, _ := h.receiver.take(t)
	var got []string
	for _, ec := range events {
		m, ok := ec.ListMembership()
		if !ok || m.ListID != list && m.ListID != "" {
			t.Errorf("%s: ListMembership %+v %v", ec.MessageName, m, ok)
		}
		if ec.PrimaryEntityName != "list" && ec.MessageName != MessageAssociate {
			t.Errorf("%s on %s", ec.MessageName, ec.PrimaryEntityName)
		}
		got = append(got, fmt.Sprintf("%s %s %v remove=%v", ec.MessageName, m.MemberEntity, m.MemberIDs, m.Remove))
	}
	slices.Sort(got)
	want := []string{
		fmt.Sprintf("AddListMembers  %v remove=false", contacts[1:3]),
		fmt.Sprintf("AddMember  [%s] remove=false", contacts[0]),
		fmt.Sprintf("AddMember  [%s] remove=false", contacts[0]),
		fmt.Sprintf("Associate contact [%s] remove=false", contacts[1]),
		fmt.Sprintf("Associate contact [%s] remove=false", contacts[3]),
		fmt.Sprintf("Disassociate contact [%s] remove=true", contacts[0]),
		fmt.Sprintf("RemoveMember  [%s] remove=true", contacts[1]),
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, ec := range events {
		if ec.MessageName == MessageAddMember {
			if id, _ := ec.OutputParameters["Id"].(string); id != lm {
				t.Errorf("AddMember OutputParameters %v, want Id %s", ec.OutputParameters, lm)
			}
		}
	}
}

func TestDynamicListRunsItsFetchXML(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	c := b.client
	mk := func(set string, row map[string]any) string {
		t.Helper()
		id, err := c.Create(ctx, set, row)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	berlin := mk("accounts", map[string]any{"name": "Contoso", "address1_city": "Berlin"})
	hamburg := mk("accounts", map[string]any{"name": "Fabrikam", "address1_city": "Hamburg"})
	person := func(last, email, job, parent string) string {
		row := map[string]any{"lastname": last, "emailaddress1": email, "jobtitle": job}
		if parent != "" {
			row["parentcustomerid_account@odata.bind"] = Bind("accounts", parent)
		}
		return mk("contacts", row)
	}
	buyer := person("Buyer", "buyer@Example.DE", "buyer", berlin) // case differs: still a match
	ceo := person("Ceo", "ceo@example.de", "CEO", berlin)
	person("Clerk", "clerk@example.de", "Clerk", berlin) // job not in the set
	person("Far", "far@example.de", "Buyer", hamburg)    // other city
	person("Gmail", "g@gmail.com", "Buyer", berlin)      // other domain
	person("Orphan", "orphan@example.de", "Buyer", "")   // no account: the inner join drops it
	query := `<fetch>
  <entity name="contact">
    <attribute name="fullname"/>
    <filter type="and">
      <condition attribute="emailaddress1" operator="like" value="%@example.de"/>
      <condition attribute="jobtitle" operator="in"><value>Buyer</value><value>CEO</value></condition>
    </filter>
    <link-entity name="account" from="accountid" to="parentcustomerid" alias="acc" link-type="inner">
      <attribute name="name"/>
      <filter><condition attribute="address1_city" operator="eq" value="berlin"/></filter>
    </link-entity>
  </entity>
</fetch>`
	list := mk("lists", map[string]any{"listname": "Berlin buyers", "createdfromcode": ListMemberContact, "type": true, "query": query})
	if got, want := memberIDs(t, c, list), sorted(buyer, ceo); !slices.Equal(got, want) {
		t.Errorf("dynamic members %v, want %v", got, want)
	}
	// The query runs at read time: a new match is a member at once.
	late := person("Late", "late@example.de", "Buyer", berlin)
	if got, want := memberIDs(t, c, list), sorted(buyer, ceo, late); !slices.Equal(got, want) {
		t.Errorf("dynamic members %v, want %v", got, want)
	}
	// The linked columns come back under the alias.
	rows := c.FetchXML(ctx, "contacts", query)
	for rows.Next(ctx) {
		if rows.Row()["acc.name"] != "Contoso" {
			t.Errorf("row %v lacks acc.name", rows.Row())
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	static, err := c.CopyDynamicListToStatic(ctx, list)
	if err != nil {
		t.Fatal(err)
	}
	row, err := c.Get(ctx, "lists", static, []string{"type", "membercount", "createdfromcode"})
	if err != nil {
		t.Fatal(err)
	}
	if dyn, _ := row.Bool("type"); dyn || memberCount(t, c, static) != 3 {
		t.Errorf("the static copy: %v", row)
	}
	if got, want := memberIDs(t, c, static), sorted(buyer, ceo, late); !slices.Equal(got, want) {
		t.Errorf("static copy members %v, want %v", got, want)
	}
	if _, err := c.CopyDynamicListToStatic(ctx, static); err == nil {
		t.Error("copying a static list succeeded")
	}
	// A dynamic list's query must be on its member type.
	_, err = c.Create(ctx, "lists", map[string]any{"listname": "Wrong", "createdfromcode": ListMemberLead, "type": true, "query": query})
	wantAPIError(t, err, http.StatusBadRequest, "")
	_, err = c.Create(ctx, "lists", map[string]any{"listname": "Broken", "createdfromcode": ListMemberContact, "type": true, "query": "<fetch><entity"})
	wantAPIError(t, err, http.StatusBadRequest, "")
}
