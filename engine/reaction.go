package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"crmsync/dataverse"
	"crmsync/store"
)

// Message and entity of reaction events (from the tracking routes, the reaction
// webhook and delivery), as the step registry sees them.
const (
	MessageReaction = "Reaction"
	EntityReaction  = "reaction"
	SourceReaction  = "reaction"
)

// reactionStep applies campaign reactions: it stores each once (duplicates within
// store.ReactionWindow count once), applies its effects on the subscriber, and
// writes campaign responses to the CRM for sends that came from a CRM campaign —
// those of one read in one $batch per connection.
type reactionStep struct {
	st     *store.Store
	outbox *Outbox
	writer *OutboxWriter
	api    webAPI
	now    func() time.Time
}

// responseNamespace derives a campaign response's row id from its reaction's id.
var responseNamespace = uuid.MustParse("0b5e7d3c-1f4a-4c59-a8e2-7d9c3b1e6f20")

// pendingResponse is a campaign response one event of a batch needs written.
type pendingResponse struct {
	event    int
	reaction string
	conn     *store.Connection
	row      dataverse.CampaignResponse
}

func (rs *reactionStep) Apply(ctx context.Context, ev *Event) error {
	return rs.ApplyBatch(ctx, []*Event{ev})[0]
}

func (rs *reactionStep) ApplyBatch(ctx context.Context, evs []*Event) []error {
	errs := make([]error, len(evs))
	var pending []pendingResponse
	for i, ev := range evs {
		p, err := rs.apply(ctx, ev)
		errs[i] = err
		if p != nil {
			p.event = i
			pending = append(pending, *p)
		}
	}
	rs.writeResponses(ctx, pending, errs)
	return errs
}

// apply stores one reaction and applies its effects; it answers the campaign
// response to write, if one is due.
func (rs *reactionStep) apply(ctx context.Context, ev *Event) (*pendingResponse, error) {
	var body store.ReactionEvent
	if err := json.Unmarshal([]byte(ev.Inbox.Body), &body); err != nil {
		return nil, Permanent(fmt.Errorf("decode reaction: %w", err))
	}
	t := store.ReactionType(strings.ToUpper(body.Type))
	if !t.Valid() {
		return nil, Permanent(fmt.Errorf("unknown reaction type %q", body.Type))
	}
	tenant := ev.Inbox.Tenant
	var m *store.CampaignMessage
	var err error
	if body.Message != "" {
		m, err = rs.st.Message(ctx, body.Message)
		if err == nil && m.Tenant != tenant {
			err = store.ErrNotFound
		}
	} else {
		m, err = rs.st.MessageByEmail(ctx, tenant, body.CampaignSendID, body.Email, body.SubscriberID)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, Permanent(fmt.Errorf("campaign send %s sent no message to this recipient", body.CampaignSendID))
	}
	if err != nil {
		return nil, err
	}
	cs, err := rs.st.Send(ctx, tenant, m.SendID)
	if err != nil {
		return nil, notFoundPermanent(err, "the reaction's campaign send no longer exists")
	}
	at := body.OccurredAt
	if at.IsZero() {
		at = ev.Inbox.ReceivedAt
	}
	r, _, err := rs.st.AddReaction(ctx, &store.Reaction{
		Tenant: tenant, SendID: cs.ID, Message: m.ID, SubscriberID: m.SubscriberID, Email: m.Email,
		Type: t, URL: body.URL, BounceType: body.BounceType, OccurredAt: at.UTC(),
	})
	if err != nil {
		return nil, err
	}
	sub, err := rs.st.Subscriber(ctx, tenant, m.SubscriberID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if !r.Applied {
		if sub != nil {
			if err := rs.effects(ctx, ev, &body, r, sub); err != nil {
				return nil, err
			}
		}
		if err := rs.st.MarkReactionApplied(ctx, r.ID); err != nil {
			return nil, err
		}
	}
	return rs.response(ctx, ev, cs, m, r, sub)
}

func notFoundPermanent(err error, msg string) error {
	if errors.Is(err, store.ErrNotFound) {
		return Permanent(errors.New(msg))
	}
	return err
}

// effects applies what a reaction means for its subscriber: an unsubscribe or a
// complaint unsubscribes (and reaches the CRM through the outbox; a complaint
// also sets donotbulkemail); a hard bounce, or soft ones reaching the
// connection's limit, mark the address invalid. The consent ledger records each
// such change — an unsubscribe through a message's link (a tracking route's
// event names the message) as from the link.
func (rs *reactionStep) effects(ctx context.Context, ev *Event, body *store.ReactionEvent, r *store.Reaction, sub *store.Subscriber) error {
	consent := consentOf(sub, "", store.SourceReaction, r.OccurredAt)
	consent.IP, consent.UserAgent, consent.Detail = body.IP, body.UserAgent, "campaign send "+r.SendID
	switch r.Type {
	case store.ReactionUnsubscribe, store.ReactionComplaint:
		wasSubscribed := sub.SubscriptionState != store.Unsubscribed
		if wasSubscribed {
			if _, err := rs.st.Unsubscribe(ctx, sub.Tenant, sub.ID); err != nil {
				return err
			}
			if err := rs.outbox.SubscribersChanged(ctx, sub.Tenant, sub.GroupID, []string{sub.ID}); err != nil {
				return err
			}
		}
		if r.Type == store.ReactionComplaint && sub.CRMRecord != nil && ev.Connection != nil && rs.writer != nil {
			if err := rs.writer.OptOutOfBulkEmail(ctx, ev.Connection, []store.CRMRecordRef{*sub.CRMRecord})[0]; err != nil {
				return err
			}
		}
		switch {
		case r.Type == store.ReactionComplaint:
			consent.Action = store.ConsentComplained
		case wasSubscribed:
			consent.Action = store.ConsentUnsubscribed
			if body.Message != "" {
				consent.Source, consent.TokenID = store.SourceUnsubscribeLink, body.Message
			}
		}
	case store.ReactionBounce:
		limit := store.DefaultSoftBounceLimit
		if ev.Connection != nil {
			limit = ev.Connection.Campaigns.SoftBounces()
		}
		invalid, err := rs.st.RecordBounce(ctx, sub.Tenant, sub.ID, r.BounceType != "soft", limit)
		if err != nil {
			return err
		}
		if invalid && !sub.AddressInvalid {
			consent.Action, consent.Detail = store.ConsentBounced, r.BounceType+" bounce of campaign send "+r.SendID
		}
	}
	if consent.Action == "" {
		return nil
	}
	return rs.st.AppendConsent(ctx, consent)
}

// response gives the campaign response a reaction needs: only for sends from a
// CRM campaign, to a recipient with a CRM record, once per reaction — or once per
// recipient and type when the connection says so.
func (rs *reactionStep) response(ctx context.Context, ev *Event, cs *store.CampaignSend, m *store.CampaignMessage, r *store.Reaction, sub *store.Subscriber) (*pendingResponse, error) {
	if cs.CRMCampaignID == nil || r.CRMResponseID != nil || ev.Connection == nil || ev.Connection.ID != cs.ConnectionID {
		return nil, nil
	}
	ref := m.CRMRecord
	if sub != nil && sub.CRMRecord != nil {
		ref = sub.CRMRecord
	}
	if ref == nil {
		return nil, nil
	}
	if ev.Connection.Campaigns.ResponseMode() == store.ResponseFirstPerType {
		first, err := rs.st.ClaimFirstResponse(ctx, m.ID, r.Type, r.ID)
		if err != nil || !first {
			return nil, err
		}
	}
	code, label := responseOf(r)
	return &pendingResponse{reaction: r.ID, conn: ev.Connection, row: dataverse.CampaignResponse{
		// The row's id comes from the reaction's, so writing it again (a retried
		// event) finds the row instead of making a second one.
		ID:         uuid.NewSHA1(responseNamespace, []byte(r.ID)).String(),
		CampaignID: *cs.CRMCampaignID, Subject: truncate(label+": "+cs.Subject, 200), ResponseCode: code,
		ChannelTypeCode: dataverse.ResponseChannelEmail, ReceivedOn: r.OccurredAt, EmailAddress: m.Email,
		Customer: dataverse.EntityReference{LogicalName: ref.Entity.Entity(), ID: ref.ID},
	}}, nil
}

// responseOf maps a reaction to a campaignresponse response code and a label.
func responseOf(r *store.Reaction) (int, string) {
	switch r.Type {
	case store.ReactionOpen:
		return dataverse.ResponseInterested, "Opened"
	case store.ReactionClick:
		return dataverse.ResponseInterested, "Clicked " + r.URL
	case store.ReactionUnsubscribe:
		return dataverse.ResponseDoNotSendMarketingMaterials, "Unsubscribed"
	case store.ReactionComplaint:
		return dataverse.ResponseDoNotSendMarketingMaterials, "Complained"
	}
	return dataverse.ResponseError, "Bounced (" + r.BounceType + ")"
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// writeResponses writes the due campaign responses, one $batch per connection,
// and records their ids; an event whose response failed fails (and is retried:
// its reaction is stored and applied already, so only the response is written).
func (rs *reactionStep) writeResponses(ctx context.Context, pending []pendingResponse, errs []error) {
	byConn := map[string][]pendingResponse{}
	for _, p := range pending {
		byConn[p.conn.ID] = append(byConn[p.conn.ID], p)
	}
	for _, ps := range byConn {
		client, err := clientFor(rs.api, ps[0].conn)
		if err != nil {
			for _, p := range ps {
				errs[p.event] = Permanent(err)
			}
			continue
		}
		rows := make([]dataverse.CampaignResponse, len(ps))
		for i, p := range ps {
			rows[i] = p.row
		}
		results, err := client.CreateCampaignResponses(ctx, rows)
		if err != nil {
			for _, p := range ps {
				errs[p.event] = fmt.Errorf("write campaign responses: %w", crmError(err))
			}
			continue
		}
		ids := map[string]string{}
		for i, res := range results {
			if errors.Is(res.Err, dataverse.ErrDuplicateRecord) {
				res.ID, res.Err = rows[i].ID, nil // written by an earlier attempt
			}
			if res.Err != nil {
				errs[ps[i].event] = fmt.Errorf("write campaign response: %w", crmError(res.Err))
				continue
			}
			ids[ps[i].reaction] = res.ID
		}
		if err := rs.st.SetCRMResponses(ctx, ids); err != nil {
			for _, p := range ps {
				if errs[p.event] == nil {
					errs[p.event] = err
				}
			}
		}
	}
}
