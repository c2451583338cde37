package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// SendStatus is where a campaign send stands: DRAFT → SCHEDULED → SENDING → SENT,
// or FAILED, or CANCELLED.
type SendStatus string

// The send statuses.
const (
	SendDraft     SendStatus = "DRAFT"
	SendScheduled SendStatus = "SCHEDULED"
	SendSending   SendStatus = "SENDING"
	SendSent      SendStatus = "SENT"
	SendFailed    SendStatus = "FAILED"
	SendCancelled SendStatus = "CANCELLED"
)

// Done reports whether a send has reached an end state.
func (st SendStatus) Done() bool {
	return st == SendSent || st == SendFailed || st == SendCancelled
}

// CampaignSend is one e-mail campaign going out to the subscribed members of a
// group and/or marketing lists. Only the runner holding the send's job lease (its
// Fence) writes its progress; the API writes a send only before it starts, and
// asks a running one to stop through CancelRequested.
type CampaignSend struct {
	ID           string `bson:"_id"`
	Tenant       string `bson:"tenant"`
	ConnectionID string `bson:"connectionId,omitempty"`
	// The CRM campaign and activity a send came from (the "Send campaign" button);
	// reactions become campaign responses only for such sends.
	CRMCampaignID         *string `bson:"crmCampaignId,omitempty"`
	CRMCampaignActivityID *string `bson:"crmCampaignActivityId,omitempty"`
	GroupID               string  `bson:"groupId,omitempty"`
	// ListIDs are CRM list ids of marketing lists crmsync keeps.
	ListIDs     []string `bson:"listIds,omitempty"`
	Subject     string   `bson:"subject"`
	SenderName  string   `bson:"senderName"`
	SenderEmail string   `bson:"senderEmail"`
	HTMLBody    string   `bson:"htmlBody,omitempty"`
	TextBody    string   `bson:"textBody,omitempty"`
	// Links are the tracked links of HTMLBody, in order: a click token names one by
	// its index, so the redirect goes only to a URL that was in the message.
	Links       []string   `bson:"links,omitempty"`
	ScheduledAt *time.Time `bson:"scheduledAt,omitempty"`
	Status      SendStatus `bson:"status"`
	Trigger     string     `bson:"trigger"`
	CreatedBy   string     `bson:"createdBy,omitempty"`
	CreatedAt   time.Time  `bson:"createdAt"`
	StartedAt   *time.Time `bson:"startedAt,omitempty"`
	FinishedAt  *time.Time `bson:"finishedAt,omitempty"`
	Error       *string    `bson:"error,omitempty"`

	// Recipients, once resolved (Resolved): how many, and how many members were
	// left out, by reason (unsubscribed, bounced, duplicate, pendingOptIn).
	Resolved       bool           `bson:"resolved"`
	RecipientCount int            `bson:"recipientCount"`
	Excluded       map[string]int `bson:"excluded,omitempty"`
	// Delivery progress, written by the runner: recipients before NextSeq have
	// been handled in this pass.
	NextSeq int `bson:"nextSeq"`
	// ClaimedTo is the end of the furthest page whose messages were claimed; it is
	// recorded before the claims, so pages beyond it need no lookup of claims.
	ClaimedTo   int `bson:"claimedTo"`
	Sent        int `bson:"sent"`
	Bounced     int `bson:"bounced"`
	Deferred    int `bson:"deferred"`
	Failed      int `bson:"failed"`
	Unconfirmed int `bson:"unconfirmed"`
	// Pass counts delivery passes; a pass retries deferred recipients.
	Pass            int       `bson:"pass"`
	Attempts        int       `bson:"attempts"`
	NextAttemptAt   time.Time `bson:"nextAttemptAt"`
	CancelRequested bool      `bson:"cancelRequested,omitempty"`
	Fence           int64     `bson:"fence"`
}

// SendRequest is a campaign send as the API or the CRM's "Send campaign" button
// asks for it; the engine checks it and makes the CampaignSend.
type SendRequest struct {
	Tenant      string
	GroupID     string
	ListIDs     []string // CRM list ids
	Subject     string
	SenderName  string
	SenderEmail string
	HTMLBody    string
	TextBody    string
	ScheduledAt *time.Time
	// Draft keeps the send as a DRAFT: it goes out when the CRM's "Send campaign"
	// names it (CampaignSendId), not before.
	Draft bool
	// The CRM campaign and activity, for sends from the CRM.
	CRMCampaignID         string
	CRMCampaignActivityID string
	Trigger               string
	CreatedBy             string
	// ID makes the send idempotent (an event's id); default a new id.
	ID string
}

// Triggers of a send.
const (
	SendTriggerAPI = "api"
	SendTriggerCRM = "crm"
)

// CampaignRecipient is one address a send goes to, numbered in order: its _id is
// the send id and its sequence number, so a runner reads a page of recipients by
// their ids (no scan on the embedded store). Message is the random id that the
// recipient's message and tracking tokens carry.
type CampaignRecipient struct {
	ID           string        `bson:"_id"`
	Tenant       string        `bson:"tenant"`
	SendID       string        `bson:"sendId"`
	Seq          int           `bson:"seq"`
	Email        string        `bson:"email"`
	SubscriberID string        `bson:"subscriberId"`
	GroupID      string        `bson:"groupId"`
	CRMRecord    *CRMRecordRef `bson:"crmRecord,omitempty"`
	Message      string        `bson:"message"`
	// Fields are the subscriber's fields when the send started: its messages are
	// personalised from this snapshot.
	Fields map[string]any `bson:"fields,omitempty"`
}

func recipientID(sendID string, seq int) string { return fmt.Sprintf("%s|%09d", sendID, seq) }

// MessageState is where one recipient's message stands.
type MessageState string

// The message states. A message is CLAIMED before it is handed to the sender and
// gets its outcome after; a runner that finds a message CLAIMED by an earlier,
// interrupted attempt does not send it again (it may have gone out) and marks it
// UNCONFIRMED. DEFERRED messages (a transient refusal) are tried again by a later
// pass; FAILED ones gave up.
const (
	MessageClaimed     MessageState = "CLAIMED"
	MessageSent        MessageState = "SENT"
	MessageBounced     MessageState = "BOUNCED"
	MessageDeferred    MessageState = "DEFERRED"
	MessageFailed      MessageState = "FAILED"
	MessageUnconfirmed MessageState = "UNCONFIRMED"
)

// CampaignMessage is the claim and outcome of one recipient's message, keyed by the
// recipient's random message id: inserting it is the claim (one winner, even on
// the embedded store), and tracking routes find it by the id their token carries.
type CampaignMessage struct {
	ID           string        `bson:"_id"`
	Tenant       string        `bson:"tenant"`
	ConnectionID string        `bson:"connectionId,omitempty"`
	SendID       string        `bson:"sendId"`
	Recipient    string        `bson:"recipient"`
	Email        string        `bson:"email"`
	SubscriberID string        `bson:"subscriberId"`
	GroupID      string        `bson:"groupId"`
	CRMRecord    *CRMRecordRef `bson:"crmRecord,omitempty"`
	State        MessageState  `bson:"state"`
	Tries        int           `bson:"tries"`
	Error        string        `bson:"error,omitempty"`
	At           time.Time     `bson:"at"`
}

// NewSendID returns a new campaign send id.
func NewSendID() string { return uuid.NewString() }

// NewMessageID returns a random message id (16 bytes, hex).
func NewMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CreateSend stores a new send. A send whose id exists already is left alone and
// reported with created false, so a send derived from an event id happens once.
func (s *Store) CreateSend(ctx context.Context, cs *CampaignSend) (created bool, err error) {
	if cs.ID == "" {
		cs.ID = NewSendID()
	}
	if cs.CreatedAt.IsZero() {
		cs.CreatedAt = s.now().UTC()
	}
	if cs.NextAttemptAt.IsZero() {
		cs.NextAttemptAt = cs.CreatedAt
		if cs.ScheduledAt != nil {
			cs.NextAttemptAt = cs.ScheduledAt.UTC()
		}
	}
	dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colSends), []any{cs})
	if err != nil {
		return false, err
	}
	return !dup[0], nil
}

// Send loads one of the tenant's campaign sends.
func (s *Store) Send(ctx context.Context, tenant, id string) (*CampaignSend, error) {
	var cs CampaignSend
	if err := s.findOwned(ctx, colSends, tenant, id, &cs); err != nil {
		return nil, err
	}
	return &cs, nil
}

// SendByID loads a send of any tenant; for the runner and tracking routes, which
// reach it through an id they hold.
func (s *Store) SendByID(ctx context.Context, id string) (*CampaignSend, error) {
	var cs CampaignSend
	if err := s.findByID(ctx, colSends, id, &cs); err != nil {
		return nil, err
	}
	return &cs, nil
}

// SendsPage lists the tenant's sends, newest first, after the given send id.
func (s *Store) SendsPage(ctx context.Context, tenant, afterID string, first int) ([]*CampaignSend, bool, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}}
	if afterID != "" {
		after, err := s.Send(ctx, tenant, afterID)
		if err != nil {
			return nil, false, invalid("after", "the cursor names no campaign send")
		}
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "createdAt", Value: bson.D{{Key: "$lt", Value: after.CreatedAt}}}},
			bson.D{{Key: "createdAt", Value: after.CreatedAt}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: after.ID}}}},
		}})
	}
	return findPage[CampaignSend](ctx, s.db.Collection(colSends), "campaign sends", filter, bson.D{{Key: "createdAt", Value: -1}, {Key: "_id", Value: -1}}, first)
}

// CountSends counts the tenant's sends.
func (s *Store) CountSends(ctx context.Context, tenant string) (int, error) {
	n, err := s.db.Collection(colSends).CountDocuments(ctx, bson.D{{Key: "tenant", Value: tenant}})
	if err != nil {
		return 0, unavailable("count campaign sends", err)
	}
	return int(n), nil
}

// GroupHasActiveSends reports whether a group has a send that is scheduled or
// going out; such a group cannot be deleted.
func (s *Store) GroupHasActiveSends(ctx context.Context, tenant, groupID string) (bool, error) {
	n, err := s.db.Collection(colSends).CountDocuments(ctx, bson.D{
		{Key: "tenant", Value: tenant}, {Key: "groupId", Value: groupID},
		{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{SendScheduled, SendSending}}}},
	}, options.Count().SetLimit(1))
	if err != nil {
		return false, unavailable("find a group's campaign sends", err)
	}
	return n > 0, nil
}

// RunnableSends lists sends, of every tenant, that are scheduled or sending and
// whose next attempt is due.
func (s *Store) RunnableSends(ctx context.Context, now time.Time, limit int) ([]*CampaignSend, error) {
	return findAll[CampaignSend](ctx, s.db.Collection(colSends), "runnable campaign sends", bson.D{
		{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{SendScheduled, SendSending}}}},
		{Key: "nextAttemptAt", Value: bson.D{{Key: "$lte", Value: now.UTC()}}},
	}, options.Find().SetSort(bson.D{{Key: "nextAttemptAt", Value: 1}}).SetLimit(int64(limit)))
}

// CancelSend stops a send: one that has not started is CANCELLED at once; one that
// is going out is asked to stop, and its runner cancels it before its next page.
// A finished send is a conflict.
func (s *Store) CancelSend(ctx context.Context, tenant, id string) (*CampaignSend, error) {
	cs, err := s.Send(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if cs.Status.Done() {
		return nil, &ConflictError{Field: "id", Reason: "the campaign send has finished (" + string(cs.Status) + ")"}
	}
	col := s.db.Collection(colSends)
	now := s.now().UTC()
	res, err := col.UpdateOne(ctx, bson.D{
		{Key: "_id", Value: id}, {Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{SendDraft, SendScheduled}}}}, {Key: "resolved", Value: false},
	}, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: SendCancelled}, {Key: "finishedAt", Value: now}}}})
	if err != nil {
		return nil, unavailable("cancel campaign send", err)
	}
	if res.MatchedCount == 0 {
		if _, err := col.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "cancelRequested", Value: true}}}}); err != nil {
			return nil, unavailable("cancel campaign send", err)
		}
	}
	return s.Send(ctx, tenant, id)
}

// StartSend hands a send to the runner holding fencing token fence; ErrFenced when
// it has ended or a runner with a newer token has it. Unlike a list run, a send
// never starts over: it goes on from its recorded progress.
func (s *Store) StartSend(ctx context.Context, cs *CampaignSend, fence int64) error {
	res, err := s.db.Collection(colSends).UpdateOne(ctx, bson.D{
		{Key: "_id", Value: cs.ID},
		{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{SendScheduled, SendSending}}}},
		{Key: "fence", Value: bson.D{{Key: "$lt", Value: fence}}},
	}, bson.D{{Key: "$set", Value: bson.D{{Key: "fence", Value: fence}}}})
	if err != nil {
		return unavailable("start campaign send", err)
	}
	if res.MatchedCount == 0 {
		return ErrFenced
	}
	fresh, err := s.SendByID(ctx, cs.ID)
	if err != nil {
		return err
	}
	*cs = *fresh
	return nil
}

// SaveSendProgress writes the runner's view of a send (status, counts, resume
// point, outcome) while it still holds the send; ErrFenced otherwise.
func (s *Store) SaveSendProgress(ctx context.Context, cs *CampaignSend) error {
	set := bson.D{
		{Key: "status", Value: cs.Status}, {Key: "resolved", Value: cs.Resolved},
		{Key: "recipientCount", Value: cs.RecipientCount}, {Key: "excluded", Value: cs.Excluded},
		{Key: "nextSeq", Value: cs.NextSeq}, {Key: "claimedTo", Value: cs.ClaimedTo}, {Key: "sent", Value: cs.Sent}, {Key: "bounced", Value: cs.Bounced},
		{Key: "deferred", Value: cs.Deferred}, {Key: "failed", Value: cs.Failed}, {Key: "unconfirmed", Value: cs.Unconfirmed},
		{Key: "pass", Value: cs.Pass}, {Key: "attempts", Value: cs.Attempts}, {Key: "nextAttemptAt", Value: cs.NextAttemptAt},
	}
	if cs.StartedAt != nil {
		set = append(set, bson.E{Key: "startedAt", Value: *cs.StartedAt})
	}
	if cs.FinishedAt != nil {
		set = append(set, bson.E{Key: "finishedAt", Value: *cs.FinishedAt})
	}
	update := bson.D{{Key: "$set", Value: set}}
	if cs.Error != nil {
		set = append(set, bson.E{Key: "error", Value: *cs.Error})
		update[0].Value = set
	} else {
		update = append(update, bson.E{Key: "$unset", Value: bson.D{{Key: "error", Value: ""}}})
	}
	// A send the API cancelled before it started delivering stays cancelled: the
	// runner's save then fails as if fenced, and the runner stops.
	res, err := s.db.Collection(colSends).UpdateOne(ctx, bson.D{
		{Key: "_id", Value: cs.ID}, {Key: "fence", Value: cs.Fence}, {Key: "status", Value: bson.D{{Key: "$ne", Value: SendCancelled}}},
	}, update)
	if err != nil {
		return unavailable("save campaign send", err)
	}
	if res.MatchedCount == 0 {
		return ErrFenced
	}
	return nil
}

// CancelRequested reports whether the API asked a running send to stop.
func (s *Store) CancelRequested(ctx context.Context, id string) (bool, error) {
	var doc struct {
		Cancel bool `bson:"cancelRequested"`
	}
	if err := s.db.Collection(colSends).FindOne(ctx, bson.D{{Key: "_id", Value: id}},
		options.FindOne().SetProjection(bson.D{{Key: "cancelRequested", Value: 1}})).Decode(&doc); err != nil {
		return false, unavailable("read campaign send", err)
	}
	return doc.Cancel, nil
}

// ResetRecipients removes the recipients an interrupted resolution stored, so it
// can number them again from the start. Only a send that has not started
// delivering (Resolved false) has its recipients reset.
func (s *Store) ResetRecipients(ctx context.Context, sendID string) error {
	if _, err := s.db.Collection(colRecipients).DeleteMany(ctx, bson.D{{Key: "sendId", Value: sendID}}); err != nil {
		return unavailable("reset campaign recipients", err)
	}
	return nil
}

// AddRecipients stores a page of numbered recipients; a recipient stored already
// (the same send and number) is left as it is.
func (s *Store) AddRecipients(ctx context.Context, rs []*CampaignRecipient) error {
	if len(rs) == 0 {
		return nil
	}
	docs := make([]any, len(rs))
	for i, r := range rs {
		r.ID = recipientID(r.SendID, r.Seq)
		if r.Message == "" {
			r.Message = NewMessageID()
		}
		docs[i] = r
	}
	_, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colRecipients), docs)
	return err
}

// Recipients loads the recipients numbered from..to-1 of a send.
func (s *Store) Recipients(ctx context.Context, sendID string, from, to int) ([]*CampaignRecipient, error) {
	ids := make(bson.A, 0, to-from)
	for seq := from; seq < to; seq++ {
		ids = append(ids, recipientID(sendID, seq))
	}
	var out []*CampaignRecipient
	if err := s.findIn(ctx, colRecipients, ids, &out); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *CampaignRecipient) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// Recipient loads the recipient with the given id (a message's Recipient), of any
// tenant: a click on a personalised link reads the fields its message was
// personalised from.
func (s *Store) Recipient(ctx context.Context, id string) (*CampaignRecipient, error) {
	var r CampaignRecipient
	if err := s.findByID(ctx, colRecipients, id, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Messages loads the messages with the given ids (those claimed so far).
func (s *Store) Messages(ctx context.Context, ids []string) (map[string]*CampaignMessage, error) {
	in := make(bson.A, len(ids))
	for i, id := range ids {
		in[i] = id
	}
	var found []*CampaignMessage
	if err := s.findIn(ctx, colMessages, in, &found); err != nil {
		return nil, err
	}
	out := make(map[string]*CampaignMessage, len(found))
	for _, m := range found {
		out[m.ID] = m
	}
	return out, nil
}

// ClaimMessages inserts the claims of messages about to be sent and reports which
// were claimed by this call; a message claimed before (by an earlier attempt)
// is not.
func (s *Store) ClaimMessages(ctx context.Context, ms []*CampaignMessage) ([]bool, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	docs := make([]any, len(ms))
	for i, m := range ms {
		m.State = MessageClaimed
		docs[i] = m
	}
	dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colMessages), docs)
	if err != nil {
		return nil, err
	}
	for i := range dup {
		dup[i] = !dup[i]
	}
	return dup, nil
}

// RecordMessages writes the outcomes (state, tries, error, time) of messages.
func (s *Store) RecordMessages(ctx context.Context, ms []*CampaignMessage) error {
	if len(ms) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, len(ms))
	for i, m := range ms {
		models[i] = mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: m.ID}}).SetReplacement(m)
	}
	return s.bulkWrite(ctx, colMessages, "record campaign messages", models)
}

// Message loads the message with the given id, of any tenant: the tracking routes
// hold only the id their token carries.
func (s *Store) Message(ctx context.Context, id string) (*CampaignMessage, error) {
	var m CampaignMessage
	if err := s.findByID(ctx, colMessages, id, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// MessageByEmail finds the message a send addressed to email (the reaction
// webhook names a recipient by address or subscriber id).
func (s *Store) MessageByEmail(ctx context.Context, tenant, sendID, email, subscriberID string) (*CampaignMessage, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}, {Key: "sendId", Value: sendID}}
	if subscriberID != "" {
		filter = append(filter, bson.E{Key: "subscriberId", Value: subscriberID})
	} else {
		filter = append(filter, bson.E{Key: "email", Value: strings.ToLower(strings.TrimSpace(email))})
	}
	var m CampaignMessage
	err := s.db.Collection(colMessages).FindOne(ctx, filter).Decode(&m)
	if err == mongo.ErrNoDocuments {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable("find campaign message", err)
	}
	return &m, nil
}

// ScheduleDraft schedules a DRAFT send for the CRM campaign activity that sends
// it. A send already scheduled for that activity is answered as it is (the button
// pressed twice); any other state is a conflict.
func (s *Store) ScheduleDraft(ctx context.Context, tenant, id, campaignID, activityID string, now time.Time) (*CampaignSend, error) {
	cs, err := s.Send(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if cs.Status != SendDraft {
		if cs.CRMCampaignActivityID != nil && strings.EqualFold(*cs.CRMCampaignActivityID, activityID) {
			return cs, nil
		}
		return nil, &ConflictError{Field: "CampaignSendId", Reason: "the campaign send is " + string(cs.Status) + ", not a draft"}
	}
	next := now
	if cs.ScheduledAt != nil && cs.ScheduledAt.After(now) {
		next = *cs.ScheduledAt
	}
	set := bson.D{{Key: "status", Value: SendScheduled}, {Key: "nextAttemptAt", Value: next}, {Key: "trigger", Value: SendTriggerCRM}}
	if campaignID != "" {
		set = append(set, bson.E{Key: "crmCampaignId", Value: campaignID})
	}
	if activityID != "" {
		set = append(set, bson.E{Key: "crmCampaignActivityId", Value: activityID})
	}
	if _, err := s.db.Collection(colSends).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "status", Value: SendDraft}}, bson.D{{Key: "$set", Value: set}}); err != nil {
		return nil, unavailable("schedule campaign send", err)
	}
	return s.Send(ctx, tenant, id)
}
