package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"crmsync/dataverse"
)

// crmLists reads the CRM's lists: name → id.
func (c *listCRM) crmLists(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	rows := c.user.Query(ctx, "lists", dataverse.Query{Select: []string{"listid", "listname"}})
	for rows.Next(ctx) {
		id, _ := rows.Row().String("listid")
		name, _ := rows.Row().String("listname")
		out[name] = id
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// crmMembers reads a CRM list's member ids, sorted.
func (c *listCRM) crmMembers(t *testing.T, listID string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	rows := c.user.ListMembers(ctx, listID, []string{"emailaddress1"})
	for rows.Next(ctx) {
		email, _ := rows.Row().String("emailaddress1")
		out = append(out, email)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestGroupGetsOneCRMListPerMemberType: a CRM-synced group's subscribers, once
// linked to CRM records, become members of the group's CRM lists — at most three,
// one per member type, named "<group> – contact|lead|account"; renaming the group
// renames them; and, the lists being synced back, a member added in the CRM lands
// in the group.
func TestGroupGetsOneCRMListPerMemberType(t *testing.T) {
	t.Parallel()
	c := startListCRM(t)
	ctx := context.Background()
	c.register(t, [2]string{"AddMember", "list"}, [2]string{"AddListMembers", "list"})
	c.create(t, "accounts", map[string]any{"name": "Acme", "emailaddress1": "office@acme.de"})
	c.create(t, "leads", map[string]any{"subject": "Fair", "lastname": "Lead", "emailaddress1": "lead@example.de"})

	var group struct{ ID string }
	c.in.mustGraphQL(c.tok, `mutation($c: ID!) { createSubscriberGroup(input: {name: "News", connectionId: $c, crmSync: true}) { id } }`,
		map[string]any{"c": c.conn}, "createSubscriberGroup", &group)
	c.in.mustGraphQL(c.tok, `mutation($g: ID!) { upsertSubscribers(groupId: $g, subscribers: [
		{email: "new1@example.de"}, {email: "new2@example.de"}, {email: "office@acme.de"}, {email: "lead@example.de"}]) { created } }`,
		map[string]any{"g": group.ID}, "upsertSubscribers", &struct{ Created int }{})

	want := map[string][]string{
		"News – contact": {"new1@example.de", "new2@example.de"},
		"News – account": {"office@acme.de"},
		"News – lead":    {"lead@example.de"},
	}
	deadline := time.Now().Add(30 * time.Second)
	var lists map[string]string
	for {
		lists = c.crmLists(t)
		done := len(lists) == 3
		for name, members := range want {
			done = done && lists[name] != "" && slices.Equal(c.crmMembers(t, lists[name]), members)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRM lists %v; want exactly %v with their members", lists, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var g struct {
		LinkedLists []struct{ ID, Name, MemberType string }
	}
	c.in.mustGraphQL(c.tok, `query($g: ID!) { subscriberGroup(id: $g) { linkedLists { id name memberType } } }`, map[string]any{"g": group.ID}, "subscriberGroup", &g)
	if len(g.LinkedLists) != 3 {
		t.Errorf("group links %+v", g.LinkedLists)
	}

	// Renaming the group renames its lists in the CRM.
	c.in.mustGraphQL(c.tok, `mutation($g: ID!) { renameSubscriberGroup(id: $g, name: "Letters") { name } }`, map[string]any{"g": group.ID},
		"renameSubscriberGroup", &struct{ Name string }{})
	for deadline := time.Now().Add(30 * time.Second); ; {
		lists = c.crmLists(t)
		if lists["Letters – contact"] != "" && lists["Letters – account"] != "" && lists["Letters – lead"] != "" && len(lists) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lists after the rename: %v", lists)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A contact added to the group's list in the CRM lands in the group.
	late := c.create(t, "contacts", map[string]any{"lastname": "Late", "emailaddress1": "late@example.de"})
	if _, err := c.user.AddListMember(ctx, lists["Letters – contact"], late); err != nil {
		t.Fatal(err)
	}
	sub := c.in.waitSubscriber(c.tok, group.ID, "late@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	if sub.CRMRecord.ID != late {
		t.Errorf("late member linked to %+v, want %s", sub.CRMRecord, late)
	}

	// A subscriber deleted in the eMS leaves the CRM list; its contact stays.
	gone := c.in.waitSubscriber(c.tok, group.ID, "new1@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	c.in.mustGraphQL(c.tok, `mutation($s: ID!) { deleteSubscriber(id: $s) }`, map[string]any{"s": gone.ID}, "deleteSubscriber", new(bool))
	for deadline := time.Now().Add(30 * time.Second); ; {
		members := c.crmMembers(t, lists["Letters – contact"])
		if !slices.Contains(members, "new1@example.de") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted subscriber is still in the CRM list: %v", members)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.user.Get(ctx, "contacts", gone.CRMRecord.ID, []string{"contactid"}); err != nil {
		t.Errorf("the deleted subscriber's contact: %v; want it kept", err)
	}
}
