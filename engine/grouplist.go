package engine

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"crmsync/dataverse"
	"crmsync/store"
)

// Marketing lists, eMS → CRM (issue #6): a CRM-synced group has at most three CRM
// lists, one per member type, named "<group> – contact|lead|account". crmsync
// creates the list of a type when the group first has a subscriber linked to a
// record of that type, and adds the group's linked subscribers to it with the list
// actions, many members per request. The lists are synced back: a member added in
// the CRM lands in the group (list.go).

// groupListStore is what the group lists need of the store.
type groupListStore interface {
	ListsOfGroup(ctx context.Context, tenant, groupID string) ([]*store.MarketingList, error)
	AddGroupList(ctx context.Context, g *store.Group, crmListID string, mt store.RecipientType) (*store.MarketingList, error)
	NotListMembers(ctx context.Context, l *store.MarketingList, subs []*store.Subscriber) ([]*store.Subscriber, error)
	RecordListMembers(ctx context.Context, l *store.MarketingList, subs []*store.Subscriber) error
}

// groupListSpace is the UUID namespace of the ids of the lists crmsync creates.
var groupListSpace = uuid.MustParse("0b6f3c52-8a1e-4d0e-9a57-6c1d2f7e4b90")

// groupListID is the CRM id of a group's list of one member type. It is derived
// from the group and the type, so workers that create the list at the same time
// (subscribers of one group travel in several partitions) make one list.
func groupListID(g *store.Group, mt store.RecipientType) string {
	return uuid.NewSHA1(groupListSpace, []byte(g.Tenant+"|"+g.ID+"|"+string(mt))).String()
}

// createdFromCode is list.createdfromcode of a member type.
func createdFromCode(mt store.RecipientType) int {
	for _, code := range []int{dataverse.ListMemberAccount, dataverse.ListMemberContact, dataverse.ListMemberLead} {
		if t, _ := memberType(int64(code)); t == mt {
			return code
		}
	}
	return dataverse.ListMemberContact
}

// writeListMemberships makes the linked subscribers of the batch members of their
// group's CRM list for their record's type.
func (w *OutboxWriter) writeListMemberships(ctx context.Context, client *dataverse.Client, items []*item) {
	ls, ok := w.Store.(groupListStore)
	if !ok {
		return
	}
	type key struct {
		group string
		mt    store.RecipientType
	}
	byKey := map[key][]*item{}
	groups := map[string]*store.Group{}
	for _, it := range items {
		if it.err != nil || it.sub == nil || it.sub.CRMRecord == nil || it.group == nil || !it.group.CRMSync {
			continue
		}
		k := key{it.group.ID, it.sub.CRMRecord.Entity}
		byKey[k] = append(byKey[k], it)
		groups[it.group.ID] = it.group
	}
	for k, its := range byKey {
		fail := func(err error) {
			for _, it := range its {
				it.fail(err)
			}
		}
		l, err := groupList(ctx, client, ls, groups[k.group], k.mt)
		if err != nil {
			fail(err)
			continue
		}
		// Subscribers linked by this batch are not members yet; the others are
		// looked up (a list created since, a group whose sync was turned on).
		var missing, linked []*store.Subscriber
		seen := map[string]bool{}
		for _, it := range its {
			if seen[it.sub.CRMRecord.ID] {
				continue
			}
			seen[it.sub.CRMRecord.ID] = true
			if it.ref != nil {
				missing = append(missing, it.sub)
			} else {
				linked = append(linked, it.sub)
			}
		}
		notYet, err := ls.NotListMembers(ctx, l, linked)
		if err != nil {
			fail(err)
			continue
		}
		if missing = append(missing, notYet...); len(missing) == 0 {
			continue
		}
		ids := make([]string, len(missing))
		for i, sub := range missing {
			ids[i] = sub.CRMRecord.ID
		}
		if err := client.AddListMembers(ctx, l.CRMListID, entitySet(k.mt), ids); err != nil {
			fail(crmError(err))
			continue
		}
		fail(ls.RecordListMembers(ctx, l, missing))
	}
}

// groupList is the group's list of a member type: the one linked to it, or one
// created in the CRM now.
func groupList(ctx context.Context, client *dataverse.Client, ls groupListStore, g *store.Group, mt store.RecipientType) (*store.MarketingList, error) {
	lists, err := ls.ListsOfGroup(ctx, g.Tenant, g.ID)
	if err != nil {
		return nil, err
	}
	for _, l := range lists {
		if l.MemberType == mt && !l.Deleted && l.SyncToEMS {
			return l, nil
		}
	}
	id := groupListID(g, mt)
	_, err = client.Create(ctx, "lists", map[string]any{
		"listid": id, "listname": store.GroupListName(g.Name, mt), "createdfromcode": createdFromCode(mt), "type": false,
		"cs_synctoems": true, "cs_emsgroupid": g.ID,
	})
	if err != nil && !errors.Is(err, dataverse.ErrDuplicateRecord) {
		return nil, crmError(err)
	}
	return ls.AddGroupList(ctx, g, id, mt)
}

// Messages of eMS-side changes of groups and subscribers, as the step registry sees
// them.
const (
	MessageGroupRenamed      = "GroupRenamed"
	EntityGroup              = "subscribergroup"
	MessageSubscriberDeleted = "SubscriberDeleted"
)

// GroupRenamed queues the renaming of the CRM lists crmsync created for a group,
// through the same reliable path as subscriber changes.
func (o *Outbox) GroupRenamed(ctx context.Context, tenant, groupID string) error {
	return o.queue(ctx, tenant, groupID, MessageGroupRenamed, EntityGroup, []string{groupID})
}

// groupRenamed gives the CRM lists crmsync created for a group the group's name:
// "<group> – <type>". A list deleted in the CRM meanwhile is marked so.
func groupRenamed(st *store.Store, api webAPI) StepFunc {
	return func(ctx context.Context, ev *Event) error {
		g, err := st.Group(ctx, ev.Connection.Tenant, ev.Context.PrimaryEntityID)
		if errors.Is(err, store.ErrNotFound) {
			return nil // deleted since
		}
		if err != nil {
			return err
		}
		lists, err := st.RenameGroupLists(ctx, g)
		if err != nil || len(lists) == 0 {
			return err
		}
		client, err := clientFor(api, ev.Connection)
		if err != nil {
			return Permanent(err)
		}
		for _, l := range lists {
			err := client.Update(ctx, "lists", l.CRMListID, map[string]any{"listname": l.Name})
			if errors.Is(err, dataverse.ErrNotFound) {
				if err := st.MarkListDeleted(ctx, l.Tenant, l.CRMListID); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return crmError(err)
			}
		}
		return nil
	}
}

// SubscriberDeleted queues the end of a deleted subscriber's CRM list memberships.
func (o *Outbox) SubscriberDeleted(ctx context.Context, tenant, groupID, subscriberID string) error {
	return o.queue(ctx, tenant, groupID, MessageSubscriberDeleted, EntitySubscriber, []string{subscriberID})
}

// subscriberDeleted removes a deleted subscriber's records from the CRM lists it
// was a member of through the group (RemoveMember; one no longer there is fine),
// then forgets the memberships. The records themselves stay in the CRM.
func subscriberDeleted(st *store.Store, api webAPI) StepFunc {
	return func(ctx context.Context, ev *Event) error {
		tenant, id := ev.Connection.Tenant, ev.Context.PrimaryEntityID
		ms, err := st.SubscriberMemberships(ctx, tenant, id)
		if err != nil || len(ms) == 0 {
			return err
		}
		client, err := clientFor(api, ev.Connection)
		if err != nil {
			return Permanent(err)
		}
		for _, m := range ms {
			if err := client.RemoveListMember(ctx, m.CRMListID, m.RecordID); err != nil && !errors.Is(err, dataverse.ErrNotFound) {
				return crmError(err)
			}
		}
		return st.DropSubscriberMemberships(ctx, tenant, id)
	}
}
