package store

import (
	"context"
	"errors"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// The eMS → CRM side of lists: a CRM-synced group gets up to three CRM marketing
// lists, one per member type, which crmsync creates when the group first has a
// linked subscriber of that type.

// GroupListName is the name of the list crmsync creates for a group's members of
// one type: "<group name> – contact" (an en dash, the type in lower case).
func GroupListName(group string, mt RecipientType) string {
	return group + " – " + strings.ToLower(string(mt))
}

// AddGroupList records a static list crmsync created in the CRM for a group's
// members of one type, linked to the group and synced back (a member added in the
// CRM lands in the group). Recording it again returns the list as it is.
func (s *Store) AddGroupList(ctx context.Context, g *Group, crmListID string, mt RecipientType) (*MarketingList, error) {
	l, err := s.List(ctx, g.Tenant, crmListID)
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	now := s.now().UTC()
	l = &MarketingList{
		ID: listDocID(g.Tenant, crmListID), Tenant: g.Tenant, ConnectionID: g.ConnectionID, CRMListID: strings.ToLower(crmListID),
		Name: GroupListName(g.Name, mt), Type: ListStatic, MemberType: mt, SyncToEMS: true, GroupID: g.ID,
		CreatedByCrmsync: true, UpdatedAt: now,
	}
	if _, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colLists), []any{l}); err != nil {
		return nil, err
	}
	return s.List(ctx, g.Tenant, crmListID)
}

// RenameGroupLists gives the lists crmsync created for a group the group's name
// and returns them, for the CRM to follow.
func (s *Store) RenameGroupLists(ctx context.Context, g *Group) ([]*MarketingList, error) {
	lists, err := s.ListsOfGroup(ctx, g.Tenant, g.ID)
	if err != nil {
		return nil, err
	}
	var out []*MarketingList
	for _, l := range lists {
		if !l.CreatedByCrmsync || l.Deleted {
			continue
		}
		l.Name, l.UpdatedAt = GroupListName(g.Name, l.MemberType), s.now().UTC()
		if err := s.replaceByID(ctx, colLists, l.ID, l); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// NotListMembers returns the subscribers, of those given, whose CRM record is not
// an active member of the list.
func (s *Store) NotListMembers(ctx context.Context, l *MarketingList, subs []*Subscriber) ([]*Subscriber, error) {
	ids := make(bson.A, 0, len(subs))
	for _, sub := range subs {
		ids = append(ids, listMemberID(l.Tenant, l.CRMListID, sub.CRMRecord.ID))
	}
	var lms []listMember
	if err := s.findIn(ctx, colListMembers, ids, &lms); err != nil {
		return nil, err
	}
	active := make(map[string]bool, len(lms))
	for _, lm := range lms {
		active[lm.ID] = lm.RemovedAt == nil
	}
	var out []*Subscriber
	for _, sub := range subs {
		if !active[listMemberID(l.Tenant, l.CRMListID, sub.CRMRecord.ID)] {
			out = append(out, sub)
		}
	}
	return out, nil
}

// RecordListMembers records linked subscribers as members of a list, after the CRM
// took them (AddListMembers): new memberships in one insert, former ones (removed
// since) rewritten.
func (s *Store) RecordListMembers(ctx context.Context, l *MarketingList, subs []*Subscriber) error {
	docs := make([]any, len(subs))
	for i, sub := range subs {
		docs[i] = listMember{ID: listMemberID(l.Tenant, l.CRMListID, sub.CRMRecord.ID), Tenant: l.Tenant, CRMListID: l.CRMListID,
			Entity: sub.CRMRecord.Entity, RecordID: strings.ToLower(sub.CRMRecord.ID), SubscriberID: sub.ID, Email: sub.Email}
	}
	if len(docs) == 0 {
		return nil
	}
	dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colListMembers), docs)
	if err != nil {
		return err
	}
	var models []mongo.WriteModel
	for i, d := range dup {
		if d {
			lm := docs[i].(listMember)
			models = append(models, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: lm.ID}}).SetReplacement(lm))
		}
	}
	if len(models) == 0 {
		return nil
	}
	return s.bulkWrite(ctx, colListMembers, "record list members", models)
}

// Membership is one CRM list a record is (or was) a member of through a subscriber.
type Membership struct {
	CRMListID string
	RecordID  string
}

// SubscriberMemberships lists the list memberships a subscriber had, ended or not.
func (s *Store) SubscriberMemberships(ctx context.Context, tenant, subscriberID string) ([]Membership, error) {
	lms, err := findAll[listMember](ctx, s.db.Collection(colListMembers), "memberships", bson.D{{Key: "tenant", Value: tenant}, {Key: "subscriberId", Value: subscriberID}})
	if err != nil {
		return nil, err
	}
	out := make([]Membership, len(lms))
	for i, lm := range lms {
		out[i] = Membership{CRMListID: lm.CRMListID, RecordID: lm.RecordID}
	}
	return out, nil
}

// DropSubscriberMemberships forgets a deleted subscriber's list memberships.
func (s *Store) DropSubscriberMemberships(ctx context.Context, tenant, subscriberID string) error {
	if _, err := s.db.Collection(colListMembers).DeleteMany(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "subscriberId", Value: subscriberID}}); err != nil {
		return unavailable("drop memberships", err)
	}
	return nil
}
