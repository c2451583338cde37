package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/google/uuid"

	"crmsync/dataverse"
	"crmsync/store"
)

// Marketing lists, CRM → eMS (issue #6): a list with cs_synctoems = Yes becomes a
// subscriber group named after it; static membership follows the list actions and
// the list N:N associations as they happen; a full reconcile (a SyncRun) streams
// the list's members — a dynamic list's by its FetchXML — and diffs them against
// the group. Runs do not run inside the event steps: a step only records a pending
// run, and the Scheduler executes it under a fenced job lease, so one slow list
// cannot hold an event partition and two instances never run one list at once.

// Lists is the list sync: the steps for list events and the reconcile of runs.
type Lists struct {
	Store *store.Store
	// API gives the connections' Web API clients: list sync reads the list and its
	// members through it.
	API webAPI
	Now func() time.Time
}

// listColumns are the columns of list that list sync reads.
var listColumns = []string{"listname", "type", "createdfromcode", "query", "cs_synctoems", "cs_periodicsync", "cs_syncinterval", "cs_syncat"}

// memberType is the recipient type of a list's members, by its createdfromcode.
func memberType(code int64) (store.RecipientType, bool) {
	table, _, ok := dataverse.ListMemberTable(int(code))
	if !ok {
		return "", false
	}
	return store.RecipientTypeOf(table)
}

// intervals maps cs_syncinterval to the schedule's interval.
var intervals = map[int64]store.SyncInterval{1: store.IntervalHourly, 2: store.IntervalDaily, 3: store.IntervalWeekly, 4: store.IntervalPointInTime}

func registerListSteps(r *Registry, ls *Lists) {
	at := func(msg, entity string, s StepFunc) {
		r.Handle(StepKey{Message: msg, Entity: entity, Stage: dataverse.StagePostOperation}, s)
	}
	for _, msg := range []string{dataverse.MessageCreate, dataverse.MessageUpdate} {
		at(msg, "list", ls.listChanged)
	}
	at(dataverse.MessageDelete, "list", ls.listDeleted)
	at(dataverse.MessageSyncMarketingList, "list", ls.syncCommand)
	for _, msg := range []string{dataverse.MessageAddMember, dataverse.MessageAddListMembers, dataverse.MessageRemoveMember} {
		at(msg, "list", ls.membership)
	}
	for _, entity := range []string{"list", "contact", "lead", "account"} {
		for _, msg := range []string{dataverse.MessageAssociate, dataverse.MessageDisassociate} {
			at(msg, entity, ls.membership)
		}
	}
}

// listChanged stores a created or updated list; one whose sync to the eMS was just
// turned on is linked to a group (created for it) and gets a first run.
func (ls *Lists) listChanged(ctx context.Context, ev *Event) error {
	prev, err := ls.Store.List(ctx, ev.Connection.Tenant, ev.Context.PrimaryEntityID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	wasOn := err == nil && prev.SyncToEMS && prev.GroupID != "" && !prev.Deleted
	l, _, err := ls.refresh(ctx, ev, ev.Context.PrimaryEntityID)
	if err != nil || l == nil || !l.SyncToEMS {
		return err
	}
	linked, err := ls.ensureLinked(ctx, ev.Connection, l)
	if err != nil {
		return err
	}
	if linked || !wasOn {
		return ls.queueRun(ctx, l, ev, false)
	}
	return nil
}

// listDeleted stops the sync of a list deleted in the CRM; its group stays.
func (ls *Lists) listDeleted(ctx context.Context, ev *Event) error {
	return ls.Store.MarkListDeleted(ctx, ev.Connection.Tenant, ev.Context.PrimaryEntityID)
}

// syncCommand is the list's "Synchronize" command (the custom API
// cs_SyncMarketingList): it links a list not synchronised yet, and runs a sync.
func (ls *Lists) syncCommand(ctx context.Context, ev *Event) error {
	id := ev.Context.PrimaryEntityID
	if t, ok := ev.Context.TargetReference(); ok && t.ID != "" {
		id = t.ID
	}
	l, syncedInCRM, err := ls.refresh(ctx, ev, id)
	if err != nil || l == nil {
		return err
	}
	if _, err := ls.ensureLinked(ctx, ev.Connection, l); err != nil {
		return err
	}
	if !syncedInCRM {
		if err := ls.markSynced(ctx, ev.Connection, l); err != nil {
			return err
		}
	}
	return ls.queueRun(ctx, l, ev, false)
}

// markSynced sets "Synchronize to eMS" on a list crmsync linked by command, so the
// CRM shows it, and the list's next change does not read as sync turned off.
func (ls *Lists) markSynced(ctx context.Context, conn *store.Connection, l *store.MarketingList) error {
	client, err := clientFor(ls.API, conn)
	if err != nil {
		return Permanent(err)
	}
	if err := client.Update(ctx, "lists", l.CRMListID, map[string]any{"cs_synctoems": true}); err != nil {
		return fmt.Errorf("set cs_synctoems on list %s: %w", l.CRMListID, crmError(err))
	}
	return nil
}

// refresh reads a list's row through the Web API (webhooks carry only what changed)
// and stores it; nil when the list no longer exists or cannot be read, with a
// warning. syncedInCRM is the row's "Synchronize to eMS".
func (ls *Lists) refresh(ctx context.Context, ev *Event, listID string) (l *store.MarketingList, syncedInCRM bool, err error) {
	client, err := clientFor(ls.API, ev.Connection)
	if err != nil {
		ev.Warn("list sync reads lists through the Web API: " + err.Error())
		return nil, false, nil
	}
	row, err := client.Get(ctx, "lists", listID, listColumns)
	if errors.Is(err, dataverse.ErrNotFound) {
		ev.Warn("the list no longer exists in the CRM")
		return nil, false, nil
	}
	if err != nil {
		return nil, false, crmError(err)
	}
	in, err := listFromRow(listID, row)
	if err != nil {
		return nil, false, Permanent(err)
	}
	syncedInCRM = in.SyncToEMS
	if ev.Context.MessageName == dataverse.MessageSyncMarketingList {
		in.SyncToEMS = true // the command links the list, whatever the column says
	}
	l, err = ls.Store.SaveListFromCRM(ctx, ev.Connection.Tenant, ev.Connection.ID, in)
	if errors.Is(err, store.ErrConflict) {
		return nil, false, Permanent(err)
	}
	return l, syncedInCRM, err
}

// listFromRow reads a list row of the Web API.
func listFromRow(id string, row dataverse.Row) (store.ListFromCRM, error) {
	code, _ := row.Int("createdfromcode")
	mt, ok := memberType(code)
	if !ok {
		return store.ListFromCRM{}, fmt.Errorf("list %s has the unknown member type (createdfromcode) %d", id, code)
	}
	in := store.ListFromCRM{CRMListID: id, MemberType: mt, Type: store.ListStatic}
	in.Name, _ = row.String("listname")
	if dynamic, _ := row.Bool("type"); dynamic {
		in.Type = store.ListDynamic
	}
	in.Query, _ = row.String("query")
	in.SyncToEMS, _ = row.Bool("cs_synctoems")
	in.Periodic, _ = row.Bool("cs_periodicsync")
	if v, ok := row.Int("cs_syncinterval"); ok {
		if iv, ok := intervals[v]; ok {
			in.Interval = &iv
		}
	}
	if t, ok := row.Time("cs_syncat"); ok {
		in.SyncAt = &t
	}
	return in, nil
}

// ensureLinked links a list to a group of its own, named after it, creating the
// group; it reports whether it did. A member type other than the connection's
// recipient type is allowed, with a warning.
func (ls *Lists) ensureLinked(ctx context.Context, conn *store.Connection, l *store.MarketingList) (bool, error) {
	switch exists, err := ls.groupExists(ctx, l); {
	case err != nil:
		return false, err
	case exists && !l.SyncToEMS:
		return false, ls.Store.LinkList(ctx, l, l.GroupID, l.Warning)
	case exists:
		return false, nil
	}
	g, err := ls.Store.CreateGroup(ctx, l.Tenant, store.GroupInput{Name: cmpName(l), ConnectionID: conn.ID, CRMSync: true})
	if err != nil {
		return false, err
	}
	var warning *string
	if l.MemberType != conn.RecipientType {
		w := fmt.Sprintf("the list's members are %ss but the connection's recipient type is %s: subscribers created in the eMS become %ss in the CRM",
			strings.ToLower(string(l.MemberType)), strings.ToLower(string(conn.RecipientType)), strings.ToLower(string(conn.RecipientType)))
		warning = &w
	}
	return true, ls.Store.LinkList(ctx, l, g.ID, warning)
}

// groupExists reports whether the list is linked to a group that still exists.
func (ls *Lists) groupExists(ctx context.Context, l *store.MarketingList) (bool, error) {
	if l.GroupID == "" {
		return false, nil
	}
	_, err := ls.Store.Group(ctx, l.Tenant, l.GroupID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func cmpName(l *store.MarketingList) string {
	if strings.TrimSpace(l.Name) == "" {
		return "List " + l.CRMListID
	}
	return l.Name
}

// queueRun records a pending run for the scheduler. Its id derives from the event,
// so a replayed or duplicated event queues no second run.
func (ls *Lists) queueRun(ctx context.Context, l *store.MarketingList, ev *Event, dry bool) error {
	sum := sha256.Sum256([]byte(ev.Inbox.ID))
	_, err := ls.Store.CreateRun(ctx, &store.SyncRun{
		ID: "crm-" + hex.EncodeToString(sum[:12]), Tenant: l.Tenant, ConnectionID: l.ConnectionID, CRMListID: l.CRMListID,
		DryRun: dry, Trigger: store.TriggerCRM, StartedAt: ls.Now().UTC(),
	})
	return err
}

// membership applies a membership change of a synced list as it happens: added
// records are read through the Web API and join the group; removed ones leave it.
func (ls *Lists) membership(ctx context.Context, ev *Event) error {
	m, ok := ev.Context.ListMembership()
	if !ok {
		return nil // an association that is not a list's
	}
	l, err := ls.Store.List(ctx, ev.Connection.Tenant, m.ListID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // a list not synced to the eMS
	}
	if err != nil {
		return err
	}
	if !l.SyncToEMS || l.GroupID == "" {
		return nil
	}
	if m.Remove {
		_, err := ls.Store.RemoveListMembers(ctx, l, m.MemberIDs)
		return err
	}
	rt := l.MemberType
	if t, ok := store.RecipientTypeOf(m.MemberEntity); ok {
		rt = t
	}
	client, err := clientFor(ls.API, ev.Connection)
	if err != nil {
		ev.Warn("list members are read through the Web API: " + err.Error())
		return nil
	}
	const chunk = 50 // ids per $filter, well inside the URL length limit
	for start := 0; start < len(m.MemberIDs); start += chunk {
		ids := m.MemberIDs[start:min(start+chunk, len(m.MemberIDs))]
		pk := rt.Entity() + "id"
		clauses := make([]string, len(ids))
		for i, id := range ids {
			clauses[i] = pk + " eq " + id
		}
		rows := client.Query(ctx, entitySet(rt), dataverse.Query{Select: recipientColumns(ev.Connection, rt.Entity()), Filter: strings.Join(clauses, " or ")})
		a := ls.newApplier(ev.Connection, rt)
		for rows.Next(ctx) {
			a.add(rows.Row())
		}
		if err := rows.Err(); err != nil {
			return crmError(err)
		}
		if _, err := a.flush(ctx, ls.Store, l, false); err != nil {
			return err
		}
		for _, w := range a.warnings {
			ev.Warn(w)
		}
	}
	return nil
}

// applier gathers member rows of one table and applies them to a list's group in
// one bulk call, with the CRM → eMS rules of recipients.
type applier struct {
	conn     *store.Connection
	rt       store.RecipientType
	rows     map[string]*dataverse.Entity
	members  []store.CRMMember
	warnings []string
	now      func() time.Time
}

func (ls *Lists) newApplier(conn *store.Connection, rt store.RecipientType) *applier {
	return &applier{conn: conn, rt: rt, rows: map[string]*dataverse.Entity{}, now: ls.Now}
}

// add takes one member row of the Web API.
func (a *applier) add(row dataverse.Row) {
	pk := a.rt.Entity() + "id"
	id, _ := row.String(pk)
	id = strings.ToLower(id)
	e := rowEntity(a.rt.Entity(), id, row)
	a.rows[id] = e
	email := ""
	if raw, ok := e.String("emailaddress1"); ok {
		email, _ = store.NormalizeEmail(raw)
	}
	a.members = append(a.members, store.CRMMember{Ref: store.CRMRecordRef{Entity: a.rt, ID: id}, Email: email})
}

// flush applies the gathered rows and starts a new batch.
func (a *applier) flush(ctx context.Context, st *store.Store, l *store.MarketingList, dry bool) ([]store.MemberOutcome, error) {
	if len(a.members) == 0 {
		return nil, nil
	}
	out, err := st.ApplyListMembers(ctx, l, dry, a.members, a.apply)
	if errors.Is(err, store.ErrConflict) {
		// An address was claimed concurrently: once more, finding it taken now.
		out, err = st.ApplyListMembers(ctx, l, dry, a.members, a.apply)
	}
	a.members, a.rows = a.members[:0], map[string]*dataverse.Entity{}
	return out, err
}

// apply merges a member's CRM row into its subscriber by the recipient rules.
func (a *applier) apply(m store.CRMMember, sub *store.Subscriber, isNew bool) (bool, string) {
	if sub.CRMRecord != nil && *sub.CRMRecord != m.Ref {
		return false, fmt.Sprintf("the address %s belongs to a subscriber linked to %s %s", sub.Email, strings.ToLower(string(sub.CRMRecord.Entity)), sub.CRMRecord.ID)
	}
	row := a.rows[m.Ref.ID]
	if reason := inactiveReason(a.rt, row); reason != "" {
		return false, reason
	}
	before := *sub
	before.Fields = maps.Clone(sub.Fields)
	if sub.Fields == nil {
		sub.Fields = map[string]any{}
	}
	at := a.now().UTC()
	if t, ok := row.Time("modifiedon"); ok {
		at = t
	}
	ev := &Event{Connection: a.conn, Context: &dataverse.ExecutionContext{PrimaryEntityName: a.rt.Entity(), PrimaryEntityID: m.Ref.ID}}
	applyMappings(ev, sub, a.conn.FieldMappings, a.rt.Entity(), row, allColumns, at)
	applyLanguage(ev, sub, a.conn, ev.Context, row, allColumns, at)
	applyConsent(sub, row, allColumns, at)
	a.warnings = append(a.warnings, ev.warnings...)
	ref := m.Ref
	sub.CRMRecord, sub.CRMUnlinkedReason = &ref, nil
	if at.After(sub.CRMModifiedOn) {
		sub.CRMModifiedOn = at
	}
	changed := before.CRMRecord == nil || before.Language != sub.Language || before.SubscriptionState != sub.SubscriptionState ||
		before.DoubleOptInStatus != sub.DoubleOptInStatus || before.CRMUnlinkedReason != nil || !maps.EqualFunc(before.Fields, sub.Fields, func(x, y any) bool { return fmt.Sprint(x) == fmt.Sprint(y) })
	return changed, ""
}

// SyncNow queues a run of a list for the API's syncMarketingList. A list crmsync
// has not seen yet is looked up in the CRM of each of the tenant's connections
// that can read it. Unless the run is dry, a list not synchronised yet is linked
// to a group of its own first (the "Synchronize" command).
func (ls *Lists) SyncNow(ctx context.Context, tenant, listID string, dryRun bool) (*store.SyncRun, error) {
	l, err := ls.Store.List(ctx, tenant, listID)
	if errors.Is(err, store.ErrNotFound) {
		l, err = ls.discover(ctx, tenant, listID)
	}
	if err != nil {
		return nil, err
	}
	if !dryRun && (!l.SyncToEMS || l.GroupID == "") {
		conn, err := ls.Store.ConnectionForWebhook(ctx, l.ConnectionID)
		if err != nil {
			return nil, err
		}
		if !l.SyncToEMS {
			err := ls.markSynced(ctx, conn, l)
			if errors.Is(err, dataverse.ErrNotFound) {
				return nil, store.ErrNotFound // deleted in the CRM since crmsync saw it
			}
			if err != nil {
				return nil, err
			}
		}
		if _, err := ls.ensureLinked(ctx, conn, l); err != nil {
			return nil, err
		}
	}
	r := &store.SyncRun{
		ID: uuid.Must(uuid.NewV7()).String(), Tenant: tenant, ConnectionID: l.ConnectionID, CRMListID: l.CRMListID,
		DryRun: dryRun, Trigger: store.TriggerManual, StartedAt: ls.Now().UTC(),
	}
	if _, err := ls.Store.CreateRun(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// discover finds a list in the CRM of one of the tenant's connections and stores it.
func (ls *Lists) discover(ctx context.Context, tenant, listID string) (*store.MarketingList, error) {
	conns, err := ls.Store.Connections(ctx, tenant)
	if err != nil {
		return nil, err
	}
	for _, conn := range conns {
		client, err := clientFor(ls.API, conn)
		if err != nil {
			continue // this connection cannot read the CRM
		}
		row, err := client.Get(ctx, "lists", listID, listColumns)
		if errors.Is(err, dataverse.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read list %s: %w", listID, err)
		}
		in, err := listFromRow(listID, row)
		if err != nil {
			return nil, err
		}
		return ls.Store.SaveListFromCRM(ctx, tenant, conn.ID, in)
	}
	return nil, store.ErrNotFound
}

// fetchColumns turns Web API column names into FetchXML's, which name a lookup by
// its logical name (owningbusinessunit) where the Web API says
// _owningbusinessunit_value; the rows come back in the Web API's form either way.
func fetchColumns(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		if name, ok := strings.CutPrefix(c, "_"); ok && strings.HasSuffix(name, "_value") {
			c = strings.TrimSuffix(name, "_value")
		}
		out[i] = c
	}
	return out
}
