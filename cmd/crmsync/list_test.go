package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
)

// Scenario tests of marketing-list sync (issue #6) against the emulator, through
// its real webhooks and crmsync's GraphQL API.

type listView struct {
	ID, Name, Type, MemberType string
	SyncToEms, Periodic        bool
	Interval                   *string
	NextSyncAt                 *time.Time
	MemberCount                int
	LastSyncedAt               *time.Time
	Warning                    *string
	Group                      *struct {
		ID, Name        string
		SubscriberCount int
	}
}

const listFields = `id name type memberType syncToEms periodic interval nextSyncAt memberCount lastSyncedAt warning group { id name subscriberCount }`

type runView struct {
	ID, Status, Trigger     string
	DryRun                  bool
	Added, Removed, Updated int
	Attempts                int
	Error                   *string
	Changes                 struct {
		TotalCount int
		Edges      []struct {
			Node struct {
				Email, Action string
				Applied       bool
			}
		}
	}
}

const runFields = `id status trigger dryRun added removed updated attempts error changes(first: 500) { totalCount edges { node { email action applied } } }`

// listCRM is the emulator as crmsync's tests use it for lists: the human user's
// client, the application user's client and crmsync's webhook address.
type listCRM struct {
	dv   *emulator.Emulator
	user *dataverse.Client
	in   *instance
	conn string
	tok  string
}

func startListCRM(t *testing.T) *listCRM {
	t.Helper()
	dv, user := startEmulator(t)
	in := startInstance(t)
	admin := in.token("acme", "admin")
	return &listCRM{dv: dv, user: user, in: in, conn: in.createCRMConnection(admin, dv.URL(), "crmsync@emulator.test"), tok: admin}
}

// register registers crmsync's webhook for the given messages on the given tables.
func (c *listCRM) register(t *testing.T, steps ...[2]string) {
	t.Helper()
	var conn struct{ WebhookURL string }
	c.in.mustGraphQL(c.tok, `query($c: ID!) { connection(id: $c) { webhookUrl } }`, map[string]any{"c": c.conn}, "connection", &conn)
	app, err := dataverse.NewClient(dataverse.Config{OrganizationURL: c.dv.URL(), TokenURL: c.dv.URL() + "/t/oauth2/v2.0/token",
		ClientID: "emulator", ClientSecret: "emulator-secret"})
	if err != nil {
		t.Fatal(err)
	}
	registerSteps(t, app, conn.WebhookURL, "emulator-webhook-key-123", steps...)
}

func (c *listCRM) create(t *testing.T, set string, row map[string]any) string {
	t.Helper()
	id, err := c.user.Create(context.Background(), set, row)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (c *listCRM) list(t *testing.T, id string) listView {
	t.Helper()
	var l listView
	c.in.mustGraphQL(c.tok, `query($id: ID!) { marketingList(id: $id) { `+listFields+` } }`, map[string]any{"id": id}, "marketingList", &l)
	return l
}

// waitList polls the list until done holds.
func (c *listCRM) waitList(t *testing.T, id string, done func(listView) bool) listView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var l listView
	for time.Now().Before(deadline) {
		res := c.in.graphql(c.tok, `query($id: ID!) { marketingList(id: $id) { `+listFields+` } }`, map[string]any{"id": id})
		if len(res.Errors) == 0 {
			c.in.mustGraphQL(c.tok, `query($id: ID!) { marketingList(id: $id) { `+listFields+` } }`, map[string]any{"id": id}, "marketingList", &l)
			if done(l) {
				return l
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("list %s did not reach the expected state; it is %+v", id, l)
	return l
}

// syncList starts a run through the API and waits for it to finish.
func (c *listCRM) syncList(t *testing.T, id string, dry bool) runView {
	t.Helper()
	var r runView
	c.in.mustGraphQL(c.tok, `mutation($l: ID!, $d: Boolean) { syncMarketingList(listId: $l, dryRun: $d) { `+runFields+` } }`,
		map[string]any{"l": id, "d": dry}, "syncMarketingList", &r)
	if r.Status != "PENDING" || r.DryRun != dry || r.Trigger != "manual" {
		t.Fatalf("syncMarketingList answered %+v; want a PENDING manual run", r)
	}
	return c.waitRun(t, r.ID)
}

func (c *listCRM) waitRun(t *testing.T, id string) runView {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var r runView
	for time.Now().Before(deadline) {
		c.in.mustGraphQL(c.tok, `query($id: ID!) { syncRun(id: $id) { `+runFields+` } }`, map[string]any{"id": id}, "syncRun", &r)
		if r.Status != "PENDING" {
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("run %s did not finish: %+v", id, r)
	return r
}

func (r runView) changes(action string, applied bool) []string {
	var out []string
	for _, e := range r.Changes.Edges {
		if e.Node.Action == action && e.Node.Applied == applied {
			out = append(out, e.Node.Email)
		}
	}
	slices.Sort(out)
	return out
}

func (c *listCRM) groupEmails(t *testing.T, groupID string) []string {
	t.Helper()
	var g struct {
		Subscribers struct {
			Edges []struct{ Node struct{ Email string } }
		}
	}
	c.in.mustGraphQL(c.tok, `query($g: ID!) { subscriberGroup(id: $g) { subscribers(first: 500) { edges { node { email } } } } }`,
		map[string]any{"g": groupID}, "subscriberGroup", &g)
	var out []string
	for _, e := range g.Subscribers.Edges {
		out = append(out, e.Node.Email)
	}
	slices.Sort(out)
	return out
}

// TestListWithSyncToEmsBecomesLinkedGroup: a static list created with "Synchronize
// to eMS" = Yes becomes a group named after it, linked to it, with its member type;
// members added and removed in the CRM (AddMember, AddListMembers, RemoveMember, and
// the listcontact_association from either side) follow in real time; a member
// removed keeps its subscriber (history, consent) and returns as itself.
func TestListWithSyncToEmsBecomesLinkedGroup(t *testing.T) {
	t.Parallel()
	c := startListCRM(t)
	ctx := context.Background()
	c.register(t, [2]string{"Create", "list"}, [2]string{"Update", "list"}, [2]string{"AddMember", "list"}, [2]string{"AddListMembers", "list"},
		[2]string{"RemoveMember", "list"}, [2]string{"Associate", ""}, [2]string{"Disassociate", ""})
	ann := c.create(t, "contacts", map[string]any{"firstname": "Ann", "lastname": "A", "emailaddress1": "Ann@Example.de"})
	bob := c.create(t, "contacts", map[string]any{"firstname": "Bob", "lastname": "B", "emailaddress1": "bob@example.de"})
	cid := c.create(t, "contacts", map[string]any{"firstname": "Cid", "lastname": "C", "emailaddress1": "cid@example.de"})
	dan := c.create(t, "contacts", map[string]any{"firstname": "Dan", "lastname": "D", "emailaddress1": "dan@example.de"})
	listID := c.create(t, "lists", map[string]any{"listname": "Fair visitors", "createdfromcode": dataverse.ListMemberContact, "type": false, "cs_synctoems": true})

	l := c.waitList(t, listID, func(l listView) bool { return l.Group != nil && l.LastSyncedAt != nil })
	if l.Name != "Fair visitors" || l.Type != "STATIC" || l.MemberType != "CONTACT" || !l.SyncToEms || l.Group.Name != "Fair visitors" || l.Warning != nil {
		t.Fatalf("list = %+v, group %+v", l, l.Group)
	}
	var g struct {
		CrmSync     bool
		LinkedLists []struct{ ID string }
	}
	c.in.mustGraphQL(c.tok, `query($g: ID!) { subscriberGroup(id: $g) { crmSync linkedLists { id } } }`, map[string]any{"g": l.Group.ID}, "subscriberGroup", &g)
	if !g.CrmSync || len(g.LinkedLists) != 1 || g.LinkedLists[0].ID != listID {
		t.Errorf("group = %+v", g)
	}

	// The list's schedule columns set the group's schedule.
	if err := c.user.Update(ctx, "lists", listID, map[string]any{"cs_periodicsync": true, "cs_syncinterval": 2}); err != nil {
		t.Fatal(err)
	}
	l = c.waitList(t, listID, func(l listView) bool { return l.Periodic })
	if l.Interval == nil || *l.Interval != "DAILY" || l.NextSyncAt == nil || l.NextSyncAt.Sub(time.Now().Add(24*time.Hour)).Abs() > time.Minute {
		t.Errorf("scheduled from the CRM: interval %v, next %v; want DAILY, a day from now", l.Interval, l.NextSyncAt)
	}

	if _, err := c.user.AddListMember(ctx, listID, ann); err != nil {
		t.Fatal(err)
	}
	if err := c.user.AddListMembers(ctx, listID, "contacts", []string{bob, cid}); err != nil {
		t.Fatal(err)
	}
	if err := c.user.Associate(ctx, "contacts", dan, dataverse.RelationshipListContact, "lists", listID); err != nil {
		t.Fatal(err)
	}
	l = c.waitList(t, listID, func(l listView) bool { return l.MemberCount == 4 })
	if got := c.groupEmails(t, l.Group.ID); !slices.Equal(got, []string{"ann@example.de", "bob@example.de", "cid@example.de", "dan@example.de"}) {
		t.Fatalf("group members %v", got)
	}
	annSub := c.in.waitSubscriber(c.tok, l.Group.ID, "ann@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	if annSub.CRMRecord.ID != ann || annSub.Fields["firstName"] != "Ann" {
		t.Errorf("ann = %+v", annSub)
	}
	// Ann unsubscribes in the eMS, then leaves the list: her subscriber stays, out
	// of the group, unsubscribed.
	c.in.mustGraphQL(c.tok, `mutation($s: ID!) { unsubscribe(subscriberId: $s) { id } }`, map[string]any{"s": annSub.ID}, "unsubscribe", &struct{ ID string }{})
	if err := c.user.RemoveListMember(ctx, listID, ann); err != nil {
		t.Fatal(err)
	}
	if err := c.user.Disassociate(ctx, "lists", listID, dataverse.RelationshipListContact, bob); err != nil {
		t.Fatal(err)
	}
	l = c.waitList(t, listID, func(l listView) bool { return l.MemberCount == 2 })
	if got := c.groupEmails(t, l.Group.ID); !slices.Equal(got, []string{"cid@example.de", "dan@example.de"}) {
		t.Errorf("group members after the removals %v", got)
	}
	var gone struct {
		RemovedAt         *time.Time
		SubscriptionState string
	}
	c.in.mustGraphQL(c.tok, `query($s: ID!) { subscriber(id: $s) { removedAt subscriptionState } }`, map[string]any{"s": annSub.ID}, "subscriber", &gone)
	if gone.RemovedAt == nil || gone.SubscriptionState != "UNSUBSCRIBED" {
		t.Errorf("removed member = %+v; want kept, removed, still unsubscribed", gone)
	}
	// Back in the list: the same subscriber, still unsubscribed.
	if _, err := c.user.AddListMember(ctx, listID, ann); err != nil {
		t.Fatal(err)
	}
	back := c.in.waitSubscriber(c.tok, l.Group.ID, "ann@example.de", func(s subscriberView) bool { return true })
	c.waitList(t, listID, func(l listView) bool { return l.MemberCount == 3 })
	c.in.mustGraphQL(c.tok, `query($s: ID!) { subscriber(id: $s) { removedAt subscriptionState } }`, map[string]any{"s": annSub.ID}, "subscriber", &gone)
	if back.ID != annSub.ID || gone.RemovedAt != nil || gone.SubscriptionState != "UNSUBSCRIBED" {
		t.Errorf("re-added member = %+v %+v; want the same subscriber, unsubscribed", back, gone)
	}
}

// TestListMemberTypeMismatchIsAllowedWithWarning: a lead list on a contact
// connection syncs, and says why records created from the eMS will be contacts.
func TestListMemberTypeMismatchIsAllowedWithWarning(t *testing.T) {
	t.Parallel()
	c := startListCRM(t)
	lead := c.create(t, "leads", map[string]any{"subject": "Fair", "lastname": "Lee", "emailaddress1": "lee@example.de"})
	listID := c.create(t, "lists", map[string]any{"listname": "Leads", "createdfromcode": dataverse.ListMemberLead, "type": false})
	if _, err := c.user.AddListMember(context.Background(), listID, lead); err != nil {
		t.Fatal(err)
	}
	r := c.syncList(t, listID, false)
	if r.Status != "APPLIED" || r.Added != 1 || !slices.Equal(r.changes("ADD", true), []string{"lee@example.de"}) {
		t.Fatalf("run = %+v", r)
	}
	l := c.list(t, listID)
	if l.MemberType != "LEAD" || l.Warning == nil || !strings.Contains(*l.Warning, "leads but the connection's recipient type is contact") {
		t.Errorf("list = %+v (warning %v)", l, l.Warning)
	}
	sub := c.in.waitSubscriber(c.tok, l.Group.ID, "lee@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	if sub.CRMRecord.Entity != "LEAD" || sub.CRMRecord.ID != lead {
		t.Errorf("lead member linked to %+v", sub.CRMRecord)
	}
}

// TestDynamicListReconcileDryRunAndRemoval: syncMarketingList links a dynamic list
// crmsync has not seen and reconciles it by its FetchXML; after the CRM changes, a
// dry run lists the plan and changes nothing; the real run adds the new match and
// removes the member the query no longer returns, keeping its subscriber.
func TestDynamicListReconcileDryRunAndRemoval(t *testing.T) {
	t.Parallel()
	c := startListCRM(t)
	ctx := context.Background()
	person := func(last, email, job string) string {
		return c.create(t, "contacts", map[string]any{"lastname": last, "emailaddress1": email, "jobtitle": job})
	}
	person("Buyer", "buyer@example.de", "Buyer")
	ceo := person("Ceo", "ceo@example.de", "CEO")
	clerk := person("Clerk", "clerk@example.de", "Clerk")
	person("Nomail", "", "Buyer") // no address: skipped
	query := `<fetch><entity name="contact"><attribute name="fullname"/><filter><condition attribute="jobtitle" operator="in"><value>Buyer</value><value>CEO</value></condition></filter></entity></fetch>`
	listID := c.create(t, "lists", map[string]any{"listname": "Buyers", "createdfromcode": dataverse.ListMemberContact, "type": true, "query": query})

	first := c.syncList(t, listID, false)
	if first.Status != "APPLIED" || first.Added != 2 || first.Removed != 0 || first.Attempts != 1 {
		t.Fatalf("first run = %+v", first)
	}
	l := c.list(t, listID)
	if l.Type != "DYNAMIC" || !l.SyncToEms || l.Group == nil || l.MemberCount != 2 || l.LastSyncedAt == nil {
		t.Fatalf("list after the first run = %+v", l)
	}

	// The CEO changes job (drops out), the clerk becomes a buyer (joins).
	if err := c.user.Update(ctx, "contacts", ceo, map[string]any{"jobtitle": "Retired"}); err != nil {
		t.Fatal(err)
	}
	if err := c.user.Update(ctx, "contacts", clerk, map[string]any{"jobtitle": "Buyer"}); err != nil {
		t.Fatal(err)
	}
	dry := c.syncList(t, listID, true)
	if dry.Status != "SKIPPED" || dry.Added != 1 || dry.Removed != 1 ||
		!slices.Equal(dry.changes("ADD", false), []string{"clerk@example.de"}) || !slices.Equal(dry.changes("REMOVE", false), []string{"ceo@example.de"}) {
		t.Fatalf("dry run = %+v", dry)
	}
	if got := c.groupEmails(t, l.Group.ID); !slices.Equal(got, []string{"buyer@example.de", "ceo@example.de"}) {
		t.Fatalf("a dry run changed the group: %v", got)
	}

	real := c.syncList(t, listID, false)
	if real.Status != "APPLIED" || real.Added != 1 || real.Removed != 1 || !slices.Equal(real.changes("REMOVE", true), []string{"ceo@example.de"}) {
		t.Fatalf("run = %+v", real)
	}
	if got := c.groupEmails(t, l.Group.ID); !slices.Equal(got, []string{"buyer@example.de", "clerk@example.de"}) {
		t.Errorf("group after the run %v", got)
	}
	ceoSub := c.in.subscriber(l.Group.ID, "ceo@example.de")
	if ceoSub == nil || ceoSub.RemovedAt == nil {
		t.Errorf("the removed member's subscriber = %+v; want kept with removedAt", ceoSub)
	}

	var runs struct {
		TotalCount int
		Edges      []struct{ Node struct{ ID string } }
	}
	c.in.mustGraphQL(c.tok, `query($l: ID!) { syncRuns(listId: $l, first: 2) { totalCount edges { node { id } } } }`, map[string]any{"l": listID}, "syncRuns", &runs)
	if runs.TotalCount != 3 || len(runs.Edges) != 2 || runs.Edges[0].Node.ID != real.ID {
		t.Errorf("syncRuns = %+v; want 3, newest (%s) first", runs, real.ID)
	}

	// The group deleted in the eMS: the next sync makes the list a group again.
	c.in.mustGraphQL(c.tok, `mutation($g: ID!) { deleteSubscriberGroup(id: $g) }`, map[string]any{"g": l.Group.ID}, "deleteSubscriberGroup", new(bool))
	if again := c.syncList(t, listID, false); again.Status != "APPLIED" || again.Added != 2 {
		t.Fatalf("run after the group was deleted = %+v", again)
	}
	if l2 := c.list(t, listID); l2.Group == nil || l2.Group.ID == l.Group.ID || l2.Group.SubscriberCount != 2 {
		t.Errorf("list after the group was deleted = %+v", l2.Group)
	}
}

// TestSyncCommandLinksAList: the CRM's "Synchronize" button (the custom API
// cs_SyncMarketingList, bound to the list) links a list not synchronised yet and
// runs a sync.
func TestSyncCommandLinksAList(t *testing.T) {
	t.Parallel()
	c := startListCRM(t)
	c.register(t, [2]string{"cs_SyncMarketingList", "list"}, [2]string{"Update", "list"})
	ctx := context.Background()
	eve := c.create(t, "contacts", map[string]any{"lastname": "Eve", "emailaddress1": "eve@example.de"})
	listID := c.create(t, "lists", map[string]any{"listname": "Press", "createdfromcode": dataverse.ListMemberContact, "type": false})
	if _, err := c.user.AddListMember(ctx, listID, eve); err != nil {
		t.Fatal(err)
	}
	if err := c.user.InvokeBound(ctx, "lists", listID, "cs_SyncMarketingList", nil); err != nil {
		t.Fatal(err)
	}
	l := c.waitList(t, listID, func(l listView) bool { return l.MemberCount == 1 && l.LastSyncedAt != nil })
	if !l.SyncToEms || l.Group == nil || l.Group.SubscriberCount != 1 {
		t.Errorf("list = %+v", l)
	}
	// The CRM shows the list as synchronised, and its next change keeps it so.
	row, err := c.user.Get(ctx, "lists", listID, []string{"cs_synctoems"})
	if synced, _ := row.Bool("cs_synctoems"); err != nil || !synced {
		t.Errorf("the CRM's list after the command: %v, %v", row, err)
	}
	if err := c.user.Update(ctx, "lists", listID, map[string]any{"listname": "Press (renamed)"}); err != nil {
		t.Fatal(err)
	}
	l = c.waitList(t, listID, func(l listView) bool { return l.Name == "Press (renamed)" })
	if !l.SyncToEms || l.Group == nil {
		t.Errorf("list after a change in the CRM = %+v", l)
	}
}

// TestListSyncBadInput: malformed, unknown and another tenant's list ids, a
// viewer's mutation, a schedule without its interval, and a run that cannot
// succeed — each a clear error, or a FAILED run with the reason.
func TestListSyncBadInput(t *testing.T) {
	t.Parallel()
	c := startListCRM(t)
	code := func(res gqlResponse) string {
		if len(res.Errors) == 0 {
			return ""
		}
		s, _ := res.Errors[0].Extensions["code"].(string)
		return s
	}
	sync := `mutation($l: ID!) { syncMarketingList(listId: $l) { id } }`
	if got := code(c.in.graphql(c.tok, sync, map[string]any{"l": "not-a-guid"})); got != "BAD_USER_INPUT" {
		t.Errorf("malformed id: %q", got)
	}
	if got := code(c.in.graphql(c.tok, sync, map[string]any{"l": "6f1c1c43-0000-4000-8000-000000000000"})); got != "NOT_FOUND" {
		t.Errorf("unknown list: %q", got)
	}
	broken := c.create(t, "lists", map[string]any{"listname": "Soon gone", "createdfromcode": dataverse.ListMemberContact, "type": false})
	if got := code(c.in.graphql(c.in.token("acme", "viewer"), sync, map[string]any{"l": broken})); got != "FORBIDDEN" {
		t.Errorf("viewer: %q", got)
	}
	if r := c.syncList(t, broken, false); r.Status != "APPLIED" {
		t.Fatalf("first run = %+v", r)
	}
	unsynced := c.create(t, "lists", map[string]any{"listname": "Never synced", "createdfromcode": dataverse.ListMemberContact, "type": false})
	if r := c.syncList(t, unsynced, true); r.Status != "SKIPPED" {
		t.Fatalf("dry run = %+v", r)
	}
	for _, id := range []string{broken, unsynced} {
		if err := c.user.Delete(context.Background(), "lists", id); err != nil {
			t.Fatal(err)
		}
	}
	// A synced list deleted in the CRM (its webhook lost): the run fails with the reason.
	r := c.syncList(t, broken, false)
	if r.Status != "FAILED" || r.Error == nil || !strings.Contains(*r.Error, "404") {
		t.Errorf("run of a list deleted in the CRM = %+v (error %v)", r, r.Error)
	}
	// An unsynced list deleted in the CRM cannot be linked: NOT_FOUND, and no group.
	if got := code(c.in.graphql(c.tok, sync, map[string]any{"l": unsynced})); got != "NOT_FOUND" {
		t.Errorf("syncing an unsynced list deleted in the CRM: %q", got)
	}
	other := c.in.token("globex", "admin")
	if got := code(c.in.graphql(other, `query($l: ID!) { marketingList(id: $l) { id } }`, map[string]any{"l": broken})); got != "NOT_FOUND" {
		t.Errorf("other tenant's list: %q", got)
	}
	if got := code(c.in.graphql(other, sync, map[string]any{"l": broken})); got != "NOT_FOUND" {
		t.Errorf("other tenant syncing the list: %q", got)
	}
	sched := `mutation($l: ID!, $in: ListScheduleInput!) { setListSchedule(listId: $l, input: $in) { id } }`
	if got := code(c.in.graphql(c.tok, sched, map[string]any{"l": broken, "in": map[string]any{"periodic": true}})); got != "BAD_USER_INPUT" {
		t.Errorf("schedule without an interval: %q", got)
	}
}

// TestTwoInstancesOneScheduleOneRun: two instances share the store and Redis; a
// list's point-in-time schedule fires once, and one run reconciles the list.
func TestTwoInstancesOneScheduleOneRun(t *testing.T) {
	t.Parallel()
	dv, user := startEmulator(t)
	env := testEnv(t)
	a := startInstanceEnv(t, env)
	b := startInstanceEnv(t, env)
	c := &listCRM{dv: dv, user: user, in: a, tok: a.token("acme", "admin")}
	c.conn = a.createCRMConnection(c.tok, dv.URL(), "crmsync@emulator.test")
	fay := c.create(t, "contacts", map[string]any{"lastname": "Fay", "emailaddress1": "fay@example.de"})
	listID := c.create(t, "lists", map[string]any{"listname": "Weekly", "createdfromcode": dataverse.ListMemberContact, "type": false})
	if _, err := user.AddListMember(context.Background(), listID, fay); err != nil {
		t.Fatal(err)
	}
	// A dry run makes the list known without linking it.
	if r := c.syncList(t, listID, true); r.Status != "SKIPPED" || r.Added != 1 {
		t.Fatalf("dry run = %+v", r)
	}
	c.in.mustGraphQL(c.tok, `mutation($l: ID!) { syncMarketingList(listId: $l, dryRun: false) { id } }`, map[string]any{"l": listID}, "syncMarketingList", &struct{ ID string }{})
	c.waitList(t, listID, func(l listView) bool { return l.LastSyncedAt != nil })

	at := time.Now().Add(1500 * time.Millisecond).UTC()
	var l listView
	b.mustGraphQL(b.token("acme", "editor"), `mutation($l: ID!, $in: ListScheduleInput!) { setListSchedule(listId: $l, input: $in) { `+listFields+` } }`,
		map[string]any{"l": listID, "in": map[string]any{"periodic": true, "interval": "POINT_IN_TIME", "syncAt": at.Format(time.RFC3339Nano)}}, "setListSchedule", &l)
	if !l.Periodic || l.NextSyncAt == nil || !l.NextSyncAt.Equal(at) {
		t.Fatalf("scheduled list = %+v", l)
	}
	c.waitList(t, listID, func(l listView) bool { return l.NextSyncAt == nil })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var runs struct {
			Edges []struct{ Node runView }
		}
		c.in.mustGraphQL(c.tok, `query($l: ID!) { syncRuns(listId: $l) { edges { node { `+runFields+` } } } }`, map[string]any{"l": listID}, "syncRuns", &runs)
		var scheduled []runView
		for _, e := range runs.Edges {
			if e.Node.Trigger == "schedule" {
				scheduled = append(scheduled, e.Node)
			}
		}
		if len(scheduled) > 1 {
			t.Fatalf("%d scheduled runs for one due time: %+v", len(scheduled), scheduled)
		}
		if len(scheduled) == 1 && scheduled[0].Status == "APPLIED" {
			time.Sleep(time.Second) // both instances ticked again: still one run
			c.in.mustGraphQL(c.tok, `query($l: ID!) { syncRuns(listId: $l) { edges { node { `+runFields+` } } } }`, map[string]any{"l": listID}, "syncRuns", &runs)
			n := 0
			for _, e := range runs.Edges {
				if e.Node.Trigger == "schedule" {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d scheduled runs, want 1", n)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the schedule did not run")
}

// registerSteps registers crmsync's webhook for each (message, table) through the
// Web API, as `crmsync register` will, and returns the steps' ids; an empty table
// registers the message for every table.
func registerSteps(t *testing.T, c *dataverse.Client, url, key string, steps ...[2]string) []string {
	t.Helper()
	ctx := context.Background()
	ep, err := c.Create(ctx, "serviceendpoints", map[string]any{
		"name": "crmsync", "url": url, "contract": 8, "authtype": 4, "authvalue": key, "messageformat": 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	one := func(set, pk, filter string) string {
		rows := c.Query(ctx, set, dataverse.Query{Select: []string{pk}, Filter: filter})
		if !rows.Next(ctx) {
			t.Fatalf("no %s for %s: %v", set, filter, rows.Err())
		}
		id, _ := rows.Row().String(pk)
		return id
	}
	var ids []string
	for _, s := range steps {
		msg, table := s[0], s[1]
		row := map[string]any{
			"name": "crmsync: " + msg + " of " + table, "stage": 40, "mode": 1, "rank": 1, "supporteddeployment": 0,
			"eventhandler_serviceendpoint@odata.bind": dataverse.Bind("serviceendpoints", ep),
			"sdkmessageid@odata.bind":                 dataverse.Bind("sdkmessages", one("sdkmessages", "sdkmessageid", "name eq '"+msg+"'")),
		}
		if table != "" {
			row["sdkmessagefilterid@odata.bind"] = dataverse.Bind("sdkmessagefilters", one("sdkmessagefilters", "sdkmessagefilterid",
				"sdkmessageid/name eq '"+msg+"' and primaryobjecttypecode eq '"+table+"'"))
		}
		id, err := c.Create(ctx, "sdkmessageprocessingsteps", row)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}
