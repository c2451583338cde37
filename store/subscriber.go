package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// SubscriberInput is one row of an upsert: omitted language and state keep their
// current values (new subscribers get the defaults).
type SubscriberInput struct {
	Email             string
	Fields            map[string]any
	Language          *string
	SubscriptionState *SubscriptionState
}

// UpsertResult counts what an upsert did; rejected rows carry their reason.
type UpsertResult struct {
	Created  int
	Updated  int
	Merged   int
	Rejected []RejectedRow
	// Changed are the ids of the subscribers created or updated, for the sync to
	// the CRM.
	Changed []string
	// Ignored are the values not taken because the field belongs to the CRM: a
	// mapped field of a subscriber whose CRM record has set it follows the CRM.
	Ignored []IgnoredField
}

// IgnoredField is a value of an input row that was not taken, and why.
type IgnoredField struct {
	Email  string
	Field  string
	Reason string
}

// RejectedRow is an input row that was not stored, and why.
type RejectedRow struct {
	Email  string
	Reason string
}

// MaxUpsertRows bounds one upsert call, so a single request cannot hold the store for long.
const MaxUpsertRows = 10000

// addressClaim makes an address exist once per group: its _id is tenant|group|email.
type addressClaim struct {
	ID           string `bson:"_id"`
	Tenant       string `bson:"tenant"`
	GroupID      string `bson:"groupId"`
	SubscriberID string `bson:"subscriberId"`
}

func claimID(tenant, groupID, email string) string {
	return tenant + "|" + groupID + "|" + email
}

// crmLink maps a CRM row to the subscriber linked to it in one group, so that a CRM
// update without the e-mail address still finds its subscriber.
type crmLink struct {
	ID           string `bson:"_id"`
	Tenant       string `bson:"tenant"`
	SubscriberID string `bson:"subscriberId"`
}

func crmLinkID(tenant, groupID string, ref CRMRecordRef) string {
	return tenant + "|" + groupID + "|" + string(ref.Entity) + "|" + ref.ID
}

// NormalizeEmail trims and lower-cases an address and checks that it is a plain
// addr-spec (no display name), as stored and sent everywhere in crmsync.
func NormalizeEmail(raw string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(raw))
	if e == "" {
		return "", errors.New("e-mail address is empty")
	}
	if len(e) > 254 {
		return "", errors.New("e-mail address is longer than 254 characters")
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Name != "" || a.Address != e || !strings.Contains(e[strings.LastIndexByte(e, '@')+1:], ".") {
		return "", errors.New("not a valid e-mail address")
	}
	return e, nil
}

type upsertRow struct {
	email  string
	fields map[string]any
	lang   *string
	state  *SubscriptionState
}

// upsertCtx is what every row of one upsert shares.
type upsertCtx struct {
	defaultLang string
	// owned are the fields the connection maps from the CRM ("firstName" for
	// fields.firstName).
	owned map[string]bool
	res   *UpsertResult
	// consent collects the ledger entries of the call's subscription changes.
	consent []*ConsentEvent
	actor   string
}

// noteConsent records in the ledger (written after the call's subscribers) a
// subscription state the call changed, or gave a new subscriber explicitly; a row
// without subscriptionState that creates a subscriber says nothing about consent.
func (uc *upsertCtx) noteConsent(sub *Subscriber, was SubscriptionState, created, stated bool) {
	if created && !stated || !created && sub.SubscriptionState == was {
		return
	}
	action := ConsentSubscribed
	if sub.SubscriptionState == Unsubscribed {
		action = ConsentUnsubscribed
	}
	uc.consent = append(uc.consent, &ConsentEvent{
		Tenant: sub.Tenant, SubscriberID: sub.ID, GroupID: sub.GroupID, Email: sub.Email, Action: action,
		Source: SourceOperator, At: sub.UpdatedAt, Actor: uc.actor, Detail: "upsertSubscribers",
	})
}

type actorKey struct{}

// WithActor names who acts (a token's subject) for the consent ledger entries the
// store writes on their behalf.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func actorOf(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// UpsertSubscribers creates or updates subscribers of a group by e-mail address.
// Rows are validated one by one: a bad row is reported in Rejected and the others
// are stored. The same address twice in one call becomes one subscriber, later rows
// winning per field, and counts as merged.
func (s *Store) UpsertSubscribers(ctx context.Context, tenant, groupID string, rows []SubscriberInput) (*UpsertResult, error) {
	if len(rows) > MaxUpsertRows {
		return nil, invalid("subscribers", "at most %d rows per call, got %d", MaxUpsertRows, len(rows))
	}
	g, err := s.Group(ctx, tenant, groupID)
	if err != nil {
		return nil, err
	}
	uc, err := s.upsertContext(ctx, g)
	if err != nil {
		return nil, err
	}
	res := uc.res

	var order []string
	merged := map[string]*upsertRow{}
	for _, in := range rows {
		row, reason := validateRow(in)
		if reason != "" {
			res.Rejected = append(res.Rejected, RejectedRow{Email: in.Email, Reason: reason})
			continue
		}
		prev, dup := merged[row.email]
		if !dup {
			merged[row.email] = row
			order = append(order, row.email)
			continue
		}
		res.Merged++
		for k, v := range row.fields {
			prev.fields[k] = v
		}
		if row.lang != nil {
			prev.lang = row.lang
		}
		if row.state != nil {
			prev.state = row.state
		}
	}

	for start := 0; start < len(order); start += upsertChunk {
		chunk := order[start:min(len(order), start+upsertChunk)]
		if err := s.upsertChunk(ctx, g, chunk, merged, uc); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// upsertContext gives what every row written to g shares: the connection's default
// language and the fields it maps from the CRM.
func (s *Store) upsertContext(ctx context.Context, g *Group) (*upsertCtx, error) {
	res := &UpsertResult{Rejected: []RejectedRow{}, Ignored: []IgnoredField{}}
	uc := &upsertCtx{defaultLang: DefaultLanguage, owned: map[string]bool{}, res: res, actor: actorOf(ctx)}
	if g.ConnectionID != "" {
		if c, err := s.Connection(ctx, g.Tenant, g.ConnectionID); err == nil {
			uc.defaultLang = c.DefaultLanguage
			for _, m := range c.FieldMappings {
				if name, ok := strings.CutPrefix(m.SubscriberField, "fields."); ok {
					uc.owned[name] = true
				}
			}
		} else if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	return uc, nil
}

// upsertChunk is how many rows one round of bulk reads and writes handles.
const upsertChunk = 500

// upsertChunk stores a chunk of rows with a few bulk commands: the address claims
// and subscribers are read with one query each, new claims and subscribers are
// inserted together, existing subscribers replaced in one bulk write. Rows whose
// address another writer claimed meanwhile go the careful one-by-one way.
func (s *Store) upsertChunk(ctx context.Context, g *Group, emails []string, rows map[string]*upsertRow, uc *upsertCtx) error {
	res := uc.res
	now := s.now().UTC()
	ids := make(bson.A, len(emails))
	for i, e := range emails {
		ids[i] = claimID(g.Tenant, g.ID, e)
	}
	var claims []addressClaim
	if err := s.findIn(ctx, colAddresses, ids, &claims); err != nil {
		return err
	}
	claimed := make(map[string]string, len(claims)) // claim id → subscriber id
	subIDs := make(bson.A, 0, len(claims))
	for _, c := range claims {
		claimed[c.ID] = c.SubscriberID
		subIDs = append(subIDs, c.SubscriberID)
	}
	var existing []*Subscriber
	if len(subIDs) > 0 {
		if err := s.findIn(ctx, colSubscribers, subIDs, &existing); err != nil {
			return err
		}
	}
	byID := make(map[string]*Subscriber, len(existing))
	for _, sub := range existing {
		byID[sub.ID] = sub
	}

	var newClaims []any
	var newClaimEmails []string
	for _, e := range emails {
		cid := claimID(g.Tenant, g.ID, e)
		if _, ok := claimed[cid]; !ok {
			id := uuid.Must(uuid.NewV7()).String()
			claimed[cid] = id
			newClaims = append(newClaims, addressClaim{ID: cid, Tenant: g.Tenant, GroupID: g.ID, SubscriberID: id})
			newClaimEmails = append(newClaimEmails, e)
		}
	}
	raced := map[string]bool{}
	if len(newClaims) > 0 {
		dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colAddresses), newClaims)
		if err != nil {
			return err
		}
		for i, d := range dup {
			if d {
				raced[newClaimEmails[i]] = true
			}
		}
	}

	var inserts []any
	var replaces []mongo.WriteModel
	for _, e := range emails {
		if raced[e] {
			created, id, err := s.upsertOne(ctx, g, rows[e], uc)
			if err != nil {
				return err
			}
			res.count(created, id)
			continue
		}
		id := claimed[claimID(g.Tenant, g.ID, e)]
		sub, found := byID[id]
		if !found {
			// A new claim, or one left behind without its subscriber: create it.
			sub = &Subscriber{ID: id, Tenant: g.Tenant, GroupID: g.ID, Email: e, Fields: map[string]any{}, Language: uc.defaultLang,
				SubscriptionState: Subscribed, DoubleOptInStatus: OptInUnknown, CreatedAt: now}
			sub.SetStamp("email", now, SideEMS)
		}
		was := sub.SubscriptionState
		rows[e].applyTo(sub, now, uc)
		uc.noteConsent(sub, was, !found, rows[e].state != nil)
		if found {
			replaces = append(replaces, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: sub.ID}}).SetReplacement(sub))
		} else {
			inserts = append(inserts, sub)
		}
		res.count(!found, id)
	}
	if len(inserts) > 0 {
		if _, err := s.db.Collection(colSubscribers).InsertMany(ctx, inserts, options.InsertMany().SetOrdered(false)); err != nil {
			return unavailable("add subscribers", err)
		}
	}
	if len(replaces) > 0 {
		if err := s.bulkWrite(ctx, colSubscribers, "update subscribers", replaces); err != nil {
			return err
		}
	}
	err := s.AppendConsent(ctx, uc.consent...)
	uc.consent = uc.consent[:0]
	return err
}

func (r *UpsertResult) count(created bool, id string) {
	r.Changed = append(r.Changed, id)
	if created {
		r.Created++
	} else {
		r.Updated++
	}
}

// applyTo merges a validated row into a subscriber, stamping what it changed. A
// mapped field the CRM has set belongs to the CRM: its value in the row is
// ignored, and reported, so that the field follows the CRM whatever the order in
// which the two sides' changes arrive.
func (row *upsertRow) applyTo(sub *Subscriber, now time.Time, uc *upsertCtx) {
	if sub.Fields == nil {
		sub.Fields = map[string]any{}
	}
	for k, v := range row.fields {
		if uc.owned[k] && sub.Stamp("fields."+k).Side == SideCRM {
			uc.res.Ignored = append(uc.res.Ignored, IgnoredField{Email: row.email, Field: "fields." + k,
				Reason: "mapped from the CRM, which set it: it follows the CRM record"})
			continue
		}
		sub.Fields[k] = v
		sub.SetStamp("fields."+k, now, SideEMS)
	}
	if row.lang != nil {
		sub.Language = *row.lang
		sub.SetStamp("language", now, SideEMS)
	}
	if row.state != nil {
		sub.SubscriptionState = *row.state
		sub.SetStamp("subscriptionState", now, SideEMS)
	}
	sub.UpdatedAt = now
}

func validateRow(in SubscriberInput) (*upsertRow, string) {
	email, err := NormalizeEmail(in.Email)
	if err != nil {
		return nil, err.Error()
	}
	row := &upsertRow{email: email, fields: map[string]any{}}
	for k, v := range in.Fields {
		if k == "" || strings.ContainsAny(k, ".$") {
			return nil, fmt.Sprintf("field name %q must be non-empty and contain neither '.' nor '$'", k)
		}
		nv, err := plainJSON(v, 0)
		if err != nil {
			return nil, fmt.Sprintf("field %q: %v", k, err)
		}
		row.fields[k] = nv
	}
	if in.Language != nil {
		lang := strings.ToLower(strings.TrimSpace(*in.Language))
		if !languagePattern.MatchString(lang) {
			return nil, "language must be a two-letter ISO 639-1 code such as \"de\""
		}
		row.lang = &lang
	}
	if in.SubscriptionState != nil {
		switch *in.SubscriptionState {
		case Subscribed, Unsubscribed:
			row.state = in.SubscriptionState
		default:
			return nil, "subscriptionState must be SUBSCRIBED or UNSUBSCRIBED"
		}
	}
	return row, ""
}

// plainJSON turns a decoded JSON value into the plain types that are stored:
// json.Number becomes int64 or float64, nesting is bounded.
func plainJSON(v any, depth int) (any, error) {
	if depth > 16 {
		return nil, errors.New("nested too deeply")
	}
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("bad number %q", x)
		}
		return f, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if strings.ContainsAny(k, ".$") {
				return nil, fmt.Errorf("key %q must contain neither '.' nor '$'", k)
			}
			ne, err := plainJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = ne
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			ne, err := plainJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = ne
		}
		return out, nil
	default:
		return v, nil
	}
}

func (s *Store) upsertOne(ctx context.Context, g *Group, row *upsertRow, uc *upsertCtx) (created bool, id string, err error) {
	now := s.now().UTC()
	cid := claimID(g.Tenant, g.ID, row.email)
	for attempt := 0; attempt < 3; attempt++ {
		var claim addressClaim
		err := s.findByID(ctx, colAddresses, cid, &claim)
		if errors.Is(err, ErrNotFound) {
			claim = addressClaim{ID: cid, Tenant: g.Tenant, GroupID: g.ID, SubscriberID: uuid.Must(uuid.NewV7()).String()}
			if _, err := s.db.Collection(colAddresses).InsertOne(ctx, claim); err != nil {
				if mongo.IsDuplicateKeyError(err) {
					continue // someone claimed it first: update theirs
				}
				return false, "", unavailable("claim address", err)
			}
		} else if err != nil {
			return false, "", err
		}

		var sub Subscriber
		err = s.findByID(ctx, colSubscribers, claim.SubscriberID, &sub)
		switch {
		case errors.Is(err, ErrNotFound):
			// A fresh claim, or one left behind by a crash before its subscriber was
			// written: either way the subscriber is created under the claimed id.
			sub = Subscriber{
				ID: claim.SubscriberID, Tenant: g.Tenant, GroupID: g.ID, Email: row.email,
				Fields: map[string]any{}, Language: uc.defaultLang,
				SubscriptionState: Subscribed, DoubleOptInStatus: OptInUnknown, CreatedAt: now,
			}
			created = true
		case err != nil:
			return false, "", err
		}
		if created {
			sub.SetStamp("email", now, SideEMS)
		}
		was := sub.SubscriptionState
		row.applyTo(&sub, now, uc)
		uc.noteConsent(&sub, was, created, row.state != nil)
		return created, sub.ID, s.replaceByID(ctx, colSubscribers, sub.ID, &sub)
	}
	return false, "", &ConflictError{Field: "email", Reason: "address " + row.email + " is being changed concurrently; try again"}
}

// Subscriber loads one of the tenant's subscribers.
func (s *Store) Subscriber(ctx context.Context, tenant, id string) (*Subscriber, error) {
	var sub Subscriber
	if err := s.findOwned(ctx, colSubscribers, tenant, id, &sub); err != nil {
		return nil, err
	}
	return &sub, nil
}

// SubscriberByEmail finds the subscriber that holds an address in a group.
func (s *Store) SubscriberByEmail(ctx context.Context, tenant, groupID, email string) (*Subscriber, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return nil, ErrNotFound
	}
	var claim addressClaim
	if err := s.findByID(ctx, colAddresses, claimID(tenant, groupID, e), &claim); err != nil {
		return nil, err
	}
	return s.Subscriber(ctx, tenant, claim.SubscriberID)
}

// SubscriberByCRMRecord finds the subscriber of a group linked to a CRM row.
func (s *Store) SubscriberByCRMRecord(ctx context.Context, tenant, groupID string, ref CRMRecordRef) (*Subscriber, error) {
	var link crmLink
	if err := s.findByID(ctx, colCRMLinks, crmLinkID(tenant, groupID, ref), &link); err != nil {
		return nil, err
	}
	sub, err := s.Subscriber(ctx, tenant, link.SubscriberID)
	if err != nil {
		return nil, err
	}
	sub.storedLink = link.ID
	return sub, nil
}

// SaveSubscriber writes a subscriber changed by the engine, and the link from its
// CRM row back to it; a new link takes the record's pending subscription state.
func (s *Store) SaveSubscriber(ctx context.Context, sub *Subscriber) error {
	if sub.CRMRecord != nil {
		link := crmLink{ID: crmLinkID(sub.Tenant, sub.GroupID, *sub.CRMRecord), Tenant: sub.Tenant, SubscriberID: sub.ID}
		if link.ID != sub.storedLink {
			if err := s.takePending(ctx, map[string]*Subscriber{link.ID: sub}); err != nil {
				return err
			}
			if err := s.replaceByID(ctx, colCRMLinks, link.ID, &link); err != nil {
				return err
			}
			sub.storedLink = link.ID
		}
	}
	return s.replaceByID(ctx, colSubscribers, sub.ID, sub)
}

// SubscribersPage returns up to first subscribers of a group after the given id,
// in id order (ids grow with creation time), and whether more follow. Subscribers
// that left the group with their CRM list (RemovedAt) are not listed.
func (s *Store) SubscribersPage(ctx context.Context, tenant, groupID, afterID string, first int) ([]*Subscriber, bool, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}, {Key: "groupId", Value: groupID}, {Key: "removedAt", Value: nil}}
	if afterID != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: afterID}}})
	}
	return findPage[Subscriber](ctx, s.db.Collection(colSubscribers), "subscribers", filter, byID, first)
}

// CountSubscribers counts the subscribers of a group (not those that left it).
func (s *Store) CountSubscribers(ctx context.Context, tenant, groupID string) (int, error) {
	n, err := s.db.Collection(colSubscribers).CountDocuments(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "groupId", Value: groupID}, {Key: "removedAt", Value: nil}})
	if err != nil {
		return 0, unavailable("count subscribers", err)
	}
	return int(n), nil
}

// RemoveCRMLink forgets that a group's subscriber is linked to a CRM row (the row
// was deleted or deactivated); the subscriber itself stays.
func (s *Store) RemoveCRMLink(ctx context.Context, tenant, groupID string, ref CRMRecordRef) error {
	_, err := s.db.Collection(colCRMLinks).DeleteOne(ctx, bson.D{{Key: "_id", Value: crmLinkID(tenant, groupID, ref)}})
	if err != nil {
		return unavailable("remove CRM link", err)
	}
	return nil
}

// ChangeEmail moves a subscriber to a new address in its group: it claims the new
// address and releases the old one, so history and CRM links stay with the same
// subscriber. When another subscriber of the group holds the new address, the two
// merge into sub: fields sub lacks are taken from the other, which is deleted.
// It returns the merged-away subscriber's id, if any. The caller saves sub.
func (s *Store) ChangeEmail(ctx context.Context, sub *Subscriber, newEmail string) (mergedID string, err error) {
	e, err := NormalizeEmail(newEmail)
	if err != nil {
		return "", invalid("email", "%v", err)
	}
	if e == sub.Email {
		return "", nil
	}
	newClaim := addressClaim{ID: claimID(sub.Tenant, sub.GroupID, e), Tenant: sub.Tenant, GroupID: sub.GroupID, SubscriberID: sub.ID}
	_, err = s.db.Collection(colAddresses).InsertOne(ctx, newClaim)
	if mongo.IsDuplicateKeyError(err) {
		var held addressClaim
		if err := s.findByID(ctx, colAddresses, newClaim.ID, &held); err != nil {
			return "", err
		}
		if held.SubscriberID != sub.ID {
			var other Subscriber
			switch err := s.findByID(ctx, colSubscribers, held.SubscriberID, &other); {
			case err == nil:
				for k, v := range other.Fields {
					if _, ok := sub.Fields[k]; !ok {
						if sub.Fields == nil {
							sub.Fields = map[string]any{}
						}
						sub.Fields[k] = v
					}
				}
				if _, err := s.db.Collection(colSubscribers).DeleteOne(ctx, bson.D{{Key: "_id", Value: other.ID}}); err != nil {
					return "", unavailable("merge subscribers", err)
				}
				mergedID = other.ID
			case !errors.Is(err, ErrNotFound):
				return "", err
			}
			if err := s.replaceByID(ctx, colAddresses, newClaim.ID, &newClaim); err != nil {
				return "", err
			}
		}
	} else if err != nil {
		return "", unavailable("claim address", err)
	}
	if _, err := s.db.Collection(colAddresses).DeleteOne(ctx, bson.D{{Key: "_id", Value: claimID(sub.Tenant, sub.GroupID, sub.Email)}}); err != nil {
		return "", unavailable("release address", err)
	}
	sub.Email = e
	return mergedID, nil
}

// tombstone is what remains of a deleted subscriber: when, by whom, and no personal
// data (GDPR erasure).
type tombstone struct {
	ID        string    `bson:"_id"`
	Tenant    string    `bson:"tenant"`
	GroupID   string    `bson:"groupId"`
	DeletedAt time.Time `bson:"deletedAt"`
	DeletedBy string    `bson:"deletedBy"`
}

// DeleteSubscriber erases a subscriber's data — the subscriber, its address claim,
// its CRM link, the address in its list memberships and consent ledger entries,
// and its waiting double opt-in requests — and keeps only a tombstone with the
// time and the actor.
func (s *Store) DeleteSubscriber(ctx context.Context, tenant, id, actor string) error {
	sub, err := s.Subscriber(ctx, tenant, id)
	if err != nil {
		return err
	}
	ts := tombstone{ID: sub.ID, Tenant: tenant, GroupID: sub.GroupID, DeletedAt: s.now().UTC(), DeletedBy: actor}
	if err := s.replaceByID(ctx, colTombstones, ts.ID, &ts); err != nil {
		return err
	}
	if err := s.eraseConsentAddress(ctx, tenant, sub.ID); err != nil {
		return err
	}
	if err := s.ForgetConfirmations(ctx, tenant, sub.ID); err != nil {
		return err
	}
	_, err = s.removeSubscriber(ctx, sub)
	return err
}

// removeSubscriber deletes a subscriber with its CRM link, address claim and the
// address in its list memberships; the subscriber goes last, so a retry after a
// failure finds it and finishes. Conditions beyond the id make the removal
// conditional instead: the subscriber goes first, and only when it matches them —
// removed is false, and nothing changed, when it does not (any more). (Such a
// filter scans the collection on FerretDB: it serves rare removals only.)
func (s *Store) removeSubscriber(ctx context.Context, sub *Subscriber, conditions ...bson.E) (removed bool, err error) {
	deleteIt := func() (bool, error) {
		res, err := s.db.Collection(colSubscribers).DeleteOne(ctx, append(bson.D{{Key: "_id", Value: sub.ID}}, conditions...))
		if err != nil {
			return false, unavailable("delete subscriber", err)
		}
		return res.DeletedCount > 0, nil
	}
	if len(conditions) > 0 {
		if removed, err := deleteIt(); !removed || err != nil {
			return false, err
		}
	}
	if sub.CRMRecord != nil {
		if err := s.RemoveCRMLink(ctx, sub.Tenant, sub.GroupID, *sub.CRMRecord); err != nil {
			return false, err
		}
	}
	if _, err := s.db.Collection(colAddresses).DeleteOne(ctx, bson.D{{Key: "_id", Value: claimID(sub.Tenant, sub.GroupID, sub.Email)}}); err != nil {
		return false, unavailable("delete subscriber", err)
	}
	// Its list memberships end, without the address; the CRM's side of them is
	// removed by the engine (SubscriberMemberships), which then drops them.
	if _, err := s.db.Collection(colListMembers).UpdateMany(ctx, bson.D{{Key: "tenant", Value: sub.Tenant}, {Key: "subscriberId", Value: sub.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "removedAt", Value: s.now().UTC()}, {Key: "email", Value: ""}}}}); err != nil {
		return false, unavailable("delete subscriber", err)
	}
	if len(conditions) == 0 {
		return deleteIt()
	}
	return true, nil
}

// Unsubscribe marks a subscriber unsubscribed from its group, now, on the eMS side.
func (s *Store) Unsubscribe(ctx context.Context, tenant, id string) (*Subscriber, error) {
	sub, err := s.Subscriber(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	sub.SubscriptionState = Unsubscribed
	sub.SetStamp("subscriptionState", now, SideEMS)
	sub.UpdatedAt = now
	if err := s.replaceByID(ctx, colSubscribers, sub.ID, sub); err != nil {
		return nil, err
	}
	return sub, nil
}
