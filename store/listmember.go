package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// listMember records that a CRM record is a member of a list, and which subscriber
// of the list's group it is. Members that leave the list are kept with RemovedAt, so
// their subscriber keeps its history and comes back as itself when re-added.
type listMember struct {
	ID           string        `bson:"_id"` // tenant|list|record id
	Tenant       string        `bson:"tenant"`
	CRMListID    string        `bson:"crmListId"`
	Entity       RecipientType `bson:"entity"`
	RecordID     string        `bson:"recordId"`
	SubscriberID string        `bson:"subscriberId"`
	Email        string        `bson:"email"`
	RemovedAt    *time.Time    `bson:"removedAt,omitempty"`
}

func listMemberID(tenant, crmListID, recordID string) string {
	return tenant + "|" + crmListID + "|" + strings.ToLower(recordID)
}

// CRMMember is a member row of a CRM list as a run or a membership event reads it.
type CRMMember struct {
	Ref   CRMRecordRef
	Email string // normalised; "" when the record has no valid address
}

// MemberApply is the engine's part of applying CRM members to a group: it brings
// sub (new, or found by CRM link or address) in line with the member's CRM row and
// reports whether it changed anything. It returns skip with a reason when the
// member must not be applied to sub (the address belongs to a subscriber linked to
// another record).
type MemberApply func(m CRMMember, sub *Subscriber, isNew bool) (changed bool, skip string)

// MemberOutcome is what happened to one member.
type MemberOutcome struct {
	Member CRMMember
	// SubscriberID is the member's subscriber; "" when skipped.
	SubscriberID string
	Skipped      string
	Created      bool
	// Joined is true when the member was not an active member of the list before.
	Joined  bool
	Changed bool
}

// ApplyListMembers brings a page of a list's members into its group with a handful
// of bulk commands: it finds each member's subscriber by CRM link or by
// address (creating it, with its address claim, when there is none), lets apply
// merge the CRM row, and writes the changed subscribers, their links and the
// memberships. With dry set it writes nothing and reports what would happen.
// Members without a valid address are skipped with that reason.
func (s *Store) ApplyListMembers(ctx context.Context, l *MarketingList, dry bool, members []CRMMember, apply MemberApply) ([]MemberOutcome, error) {
	out := make([]MemberOutcome, len(members))
	lmIDs := make(bson.A, len(members))
	for i, m := range members {
		out[i].Member = m
		lmIDs[i] = listMemberID(l.Tenant, l.CRMListID, m.Ref.ID)
	}
	var lms []listMember
	if err := s.findIn(ctx, colListMembers, lmIDs, &lms); err != nil {
		return nil, err
	}
	known := make(map[string]listMember, len(lms))
	for _, lm := range lms {
		known[lm.ID] = lm
	}

	// A known member's membership names its subscriber (linked when it joined);
	// the others are found by CRM link, then by address. A known member whose
	// subscriber is gone (deleted since) is looked up like a new one.
	subOf := make(map[string]string, len(members)) // link id → subscriber id
	claimed := map[string]string{}                 // claim id → subscriber id
	byID := make(map[string]*Subscriber, len(members))
	pending := make([]CRMMember, 0, len(members))
	subIDs := bson.A{}
	for _, m := range members {
		if lm, ok := known[listMemberID(l.Tenant, l.CRMListID, m.Ref.ID)]; ok {
			subOf[crmLinkID(l.Tenant, l.GroupID, m.Ref)] = lm.SubscriberID
			subIDs = append(subIDs, lm.SubscriberID)
		} else {
			pending = append(pending, m)
		}
	}
	for round := 0; round < 2; round++ {
		linkIDs, claimIDs := bson.A{}, bson.A{}
		for _, m := range pending {
			linkIDs = append(linkIDs, crmLinkID(l.Tenant, l.GroupID, m.Ref))
		}
		var links []crmLink
		if err := s.findIn(ctx, colCRMLinks, linkIDs, &links); err != nil {
			return nil, err
		}
		for _, k := range links {
			subOf[k.ID] = k.SubscriberID
			subIDs = append(subIDs, k.SubscriberID)
		}
		for _, m := range pending {
			if _, ok := subOf[crmLinkID(l.Tenant, l.GroupID, m.Ref)]; !ok && m.Email != "" {
				claimIDs = append(claimIDs, claimID(l.Tenant, l.GroupID, m.Email))
			}
		}
		var claims []addressClaim
		if err := s.findIn(ctx, colAddresses, claimIDs, &claims); err != nil {
			return nil, err
		}
		for _, c := range claims {
			claimed[c.ID] = c.SubscriberID
			subIDs = append(subIDs, c.SubscriberID)
		}
		var found []*Subscriber
		if err := s.findIn(ctx, colSubscribers, subIDs, &found); err != nil {
			return nil, err
		}
		for _, sub := range found {
			byID[sub.ID] = sub
		}
		pending, subIDs = pending[:0], bson.A{}
		for _, m := range members {
			lid := crmLinkID(l.Tenant, l.GroupID, m.Ref)
			if id, ok := subOf[lid]; ok && byID[id] == nil && round == 0 {
				if _, isKnown := known[listMemberID(l.Tenant, l.CRMListID, m.Ref.ID)]; isKnown {
					delete(subOf, lid)
					pending = append(pending, m)
				}
			}
		}
		if len(pending) == 0 {
			break
		}
	}

	g, err := s.Group(ctx, l.Tenant, l.GroupID)
	if err != nil {
		return nil, err
	}
	defaultLang := DefaultLanguage
	if c, err := s.Connection(ctx, l.Tenant, l.ConnectionID); err == nil {
		defaultLang = c.DefaultLanguage
	}
	now := s.now().UTC()
	// Writes in bulk, since each command is a transaction of the embedded store:
	// new documents in one InsertMany per collection, replaces only for what
	// really changed.
	var newClaims, inserts, newLinks, newMembers []any
	var replaces, memberWrites []mongo.WriteModel
	pendingNew := map[string]*Subscriber{} // address → subscriber created in this call
	linking := map[string]*Subscriber{}    // link id → subscriber linked in this call
	for i, m := range members {
		o := &out[i]
		lid := crmLinkID(l.Tenant, l.GroupID, m.Ref)
		sub := byID[subOf[lid]]
		linked := sub != nil && sub.CRMRecord != nil && *sub.CRMRecord == m.Ref
		if sub == nil && m.Email != "" {
			sub = byID[claimed[claimID(l.Tenant, l.GroupID, m.Email)]]
		}
		if sub == nil && m.Email != "" {
			sub = pendingNew[m.Email]
		}
		if sub == nil {
			if m.Email == "" {
				o.Skipped = "the record has no valid e-mail address"
				continue
			}
			sub = &Subscriber{ID: uuid.Must(uuid.NewV7()).String(), Tenant: g.Tenant, GroupID: g.ID, Email: m.Email, Fields: map[string]any{},
				Language: defaultLang, SubscriptionState: Subscribed, DoubleOptInStatus: OptInUnknown, CreatedAt: now, UpdatedAt: now}
			sub.SetStamp("email", now, SideCRM)
			o.Created = true
			pendingNew[m.Email] = sub
		}
		changed, skip := apply(m, sub, o.Created)
		if skip != "" {
			o.Skipped = skip
			continue
		}
		o.SubscriberID = sub.ID
		lmID := listMemberID(l.Tenant, l.CRMListID, m.Ref.ID)
		prev, wasMember := known[lmID]
		o.Joined = !wasMember || prev.RemovedAt != nil
		if sub.RemovedAt != nil {
			sub.RemovedAt = nil
			changed = true
		}
		o.Changed = changed || o.Created
		if dry {
			continue
		}
		switch {
		case o.Created && byID[sub.ID] == nil:
			byID[sub.ID] = sub
			newClaims = append(newClaims, addressClaim{ID: claimID(g.Tenant, g.ID, sub.Email), Tenant: g.Tenant, GroupID: g.ID, SubscriberID: sub.ID})
			inserts = append(inserts, sub)
		case changed:
			sub.UpdatedAt = now
			replaces = append(replaces, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: sub.ID}}).SetReplacement(sub))
		}
		if !linked {
			newLinks = append(newLinks, crmLink{ID: lid, Tenant: g.Tenant, SubscriberID: sub.ID})
			linking[lid] = sub
		}
		lm := listMember{ID: lmID, Tenant: l.Tenant, CRMListID: l.CRMListID,
			Entity: m.Ref.Entity, RecordID: strings.ToLower(m.Ref.ID), SubscriberID: sub.ID, Email: sub.Email}
		switch {
		case !wasMember:
			newMembers = append(newMembers, lm)
			known[lmID] = lm
		case o.Joined || prev.SubscriberID != lm.SubscriberID || prev.Email != lm.Email:
			memberWrites = append(memberWrites, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: lmID}}).SetReplacement(lm))
		}
	}
	if dry {
		return out, nil
	}
	if err := s.takePending(ctx, linking); err != nil {
		return nil, err
	}
	if len(newClaims) > 0 {
		dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colAddresses), newClaims)
		if err != nil {
			return nil, err
		}
		for _, d := range dup {
			if d {
				// Another writer claimed one of these addresses since we looked: let
				// the caller retry, and find the address taken then.
				return nil, &ConflictError{Field: "email", Reason: "an address of the list was claimed concurrently; try again"}
			}
		}
	}
	if len(inserts) > 0 {
		if _, err := s.db.Collection(colSubscribers).InsertMany(ctx, inserts, options.InsertMany().SetOrdered(false)); err != nil {
			return nil, unavailable("add list members", err)
		}
	}
	for _, w := range []struct {
		col  string
		docs []any
	}{{colCRMLinks, newLinks}, {colListMembers, newMembers}} {
		if len(w.docs) == 0 {
			continue
		}
		dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(w.col), w.docs)
		if err != nil {
			return nil, err
		}
		if slices.Contains(dup, true) {
			return nil, &ConflictError{Field: "listId", Reason: "the list's members were changed concurrently; try again"}
		}
	}
	for _, w := range []struct {
		col   string
		batch []mongo.WriteModel
	}{{colSubscribers, replaces}, {colListMembers, memberWrites}} {
		if len(w.batch) == 0 {
			continue
		}
		if err := s.bulkWrite(ctx, w.col, "write list members", w.batch); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RemovedMember is a member that left a list.
type RemovedMember struct {
	SubscriberID string
	Email        string
}

// RemoveListMembers removes CRM records from a list's membership (a RemoveMember or
// Disassociate event): their subscribers leave the group, keeping their history.
func (s *Store) RemoveListMembers(ctx context.Context, l *MarketingList, recordIDs []string) ([]RemovedMember, error) {
	ids := make(bson.A, len(recordIDs))
	for i, id := range recordIDs {
		ids[i] = listMemberID(l.Tenant, l.CRMListID, id)
	}
	var lms []listMember
	if err := s.findIn(ctx, colListMembers, ids, &lms); err != nil {
		return nil, err
	}
	return s.removeMembers(ctx, l, lms)
}

// ListMember is an active member of a list, as EachListMember hands it out.
type ListMember struct {
	ID           string
	RecordID     string
	SubscriberID string
	Email        string
}

// EachListMember streams a list's active members to fn in batches of up to batch,
// in no particular order; memory stays bounded by the batch. fn may remove members
// (RemoveMembersByID) while the stream goes on.
func (s *Store) EachListMember(ctx context.Context, l *MarketingList, batch int, fn func([]ListMember) error) error {
	cur, err := s.db.Collection(colListMembers).Find(ctx,
		bson.D{{Key: "tenant", Value: l.Tenant}, {Key: "crmListId", Value: l.CRMListID}, {Key: "removedAt", Value: nil}},
		options.Find().SetBatchSize(int32(batch)))
	if err != nil {
		return unavailable("read list members", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	page := make([]ListMember, 0, batch)
	for cur.Next(ctx) {
		var lm listMember
		if err := cur.Decode(&lm); err != nil {
			return fmt.Errorf("decode list member: %w", err)
		}
		page = append(page, ListMember{ID: lm.ID, RecordID: lm.RecordID, SubscriberID: lm.SubscriberID, Email: lm.Email})
		if len(page) == batch {
			if err := fn(page); err != nil {
				return err
			}
			page = page[:0]
		}
	}
	if err := cur.Err(); err != nil {
		return unavailable("read list members", err)
	}
	if len(page) > 0 {
		return fn(page)
	}
	return nil
}

// RemoveMembersByID removes the members EachListMember handed out.
func (s *Store) RemoveMembersByID(ctx context.Context, l *MarketingList, members []ListMember) error {
	lms := make([]listMember, len(members))
	for i, m := range members {
		lms[i] = listMember{ID: m.ID, SubscriberID: m.SubscriberID, Email: m.Email}
	}
	_, err := s.removeMembers(ctx, l, lms)
	return err
}

// removeMembers marks memberships removed and their subscribers out of the group.
func (s *Store) removeMembers(ctx context.Context, l *MarketingList, lms []listMember) ([]RemovedMember, error) {
	now := s.now().UTC()
	var out []RemovedMember
	ids, subIDs := bson.A{}, bson.A{}
	for _, lm := range lms {
		if lm.RemovedAt != nil {
			continue
		}
		ids = append(ids, lm.ID)
		subIDs = append(subIDs, lm.SubscriberID)
		out = append(out, RemovedMember{SubscriberID: lm.SubscriberID, Email: lm.Email})
	}
	if len(ids) == 0 {
		return nil, nil
	}
	set := bson.D{{Key: "$set", Value: bson.D{{Key: "removedAt", Value: now}}}}
	if _, err := s.db.Collection(colListMembers).UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, set); err != nil {
		return nil, unavailable("remove list members", err)
	}
	// A subscriber stays in the group while another list of it still holds it.
	still := map[string]bool{}
	others, err := findAll[listMember](ctx, s.db.Collection(colListMembers), "list members", bson.D{
		{Key: "tenant", Value: l.Tenant}, {Key: "subscriberId", Value: bson.D{{Key: "$in", Value: subIDs}}}, {Key: "removedAt", Value: nil},
	})
	if err != nil {
		return nil, err
	}
	for _, o := range others {
		still[o.SubscriberID] = true
	}
	leave := bson.A{}
	for _, id := range subIDs {
		if !still[id.(string)] {
			leave = append(leave, id)
		}
	}
	if len(leave) > 0 {
		upd := bson.D{{Key: "$set", Value: bson.D{{Key: "removedAt", Value: now}, {Key: "updatedAt", Value: now}}}}
		if _, err := s.db.Collection(colSubscribers).UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: leave}}}}, upd); err != nil {
			return nil, unavailable("remove list members", err)
		}
	}
	return out, nil
}

// CountListMembers counts a list's active members.
func (s *Store) CountListMembers(ctx context.Context, tenant, crmListID string) (int, error) {
	n, err := s.db.Collection(colListMembers).CountDocuments(ctx, bson.D{
		{Key: "tenant", Value: tenant}, {Key: "crmListId", Value: crmListID}, {Key: "removedAt", Value: nil},
	})
	if err != nil {
		return 0, unavailable("count list members", err)
	}
	return int(n), nil
}

// MarkListSynced records when a list's last run finished.
func (s *Store) MarkListSynced(ctx context.Context, l *MarketingList, at time.Time) error {
	_, err := s.db.Collection(colLists).UpdateOne(ctx, bson.D{{Key: "_id", Value: l.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "lastSyncedAt", Value: at.UTC()}}}})
	if err != nil {
		return unavailable("mark list synced", err)
	}
	return nil
}
