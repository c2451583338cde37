package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"

	"crmsync/store"
)

// SendRequest is a campaign send as the API or the CRM's "Send campaign" button
// asks for it (store.SendRequest, shared with the API).
type SendRequest = store.SendRequest

// Limits of a send's content.
const (
	maxSubject  = 998 // one header line (RFC 5322)
	maxBody     = 2 << 20
	maxSendLink = 1000
)

// ErrNoDelivery is the reason a send cannot go out: neither SMTP nor a sending
// engine is configured for it.
var ErrNoDelivery = errors.New("SMTP delivery is off (CRMSYNC_SMTP_URL is unset) and the connection has no sending engine (setCampaignSettings sendingEngineUrl)")

// CreateSend validates a send request and stores the send, SCHEDULED (or DRAFT).
// Recipients are resolved when it starts. Bad input is a *store.InvalidError
// naming the field.
func (c *Campaigns) CreateSend(ctx context.Context, in SendRequest) (*store.CampaignSend, error) {
	cs, err := c.newSend(ctx, in)
	if err != nil {
		return nil, err
	}
	if _, err := c.cfg.Store.CreateSend(ctx, cs); err != nil {
		return nil, err
	}
	return c.cfg.Store.Send(ctx, in.Tenant, cs.ID)
}

func (c *Campaigns) newSend(ctx context.Context, in SendRequest) (*store.CampaignSend, error) {
	if in.GroupID == "" && len(in.ListIDs) == 0 && in.CRMCampaignActivityID != "" {
		if err := c.fromActivity(ctx, &in); err != nil {
			return nil, err
		}
	}
	subject := strings.TrimSpace(in.Subject)
	switch {
	case subject == "":
		return nil, &store.InvalidError{Field: "subject", Reason: "must not be empty"}
	case len(subject) > maxSubject || strings.ContainsAny(subject, "\r\n"):
		return nil, &store.InvalidError{Field: "subject", Reason: fmt.Sprintf("must be one line of at most %d bytes", maxSubject)}
	}
	name := strings.TrimSpace(in.SenderName)
	if name == "" || strings.ContainsAny(name, "\r\n") || len(name) > 200 {
		return nil, &store.InvalidError{Field: "senderName", Reason: "must be one non-empty line of at most 200 bytes"}
	}
	from, err := store.NormalizeEmail(in.SenderEmail)
	if err != nil {
		return nil, &store.InvalidError{Field: "senderEmail", Reason: "must be a valid e-mail address"}
	}
	if _, err := mail.ParseAddress(from); err != nil {
		return nil, &store.InvalidError{Field: "senderEmail", Reason: "must be a valid e-mail address"}
	}
	if strings.TrimSpace(in.HTMLBody) == "" && strings.TrimSpace(in.TextBody) == "" {
		return nil, &store.InvalidError{Field: "htmlBody", Reason: "a send needs an HTML or a text body"}
	}
	if len(in.HTMLBody) > maxBody || len(in.TextBody) > maxBody {
		return nil, &store.InvalidError{Field: "htmlBody", Reason: fmt.Sprintf("a body may have at most %d bytes", maxBody)}
	}
	links := bodyLinks(in.HTMLBody)
	if len(links) > maxSendLink {
		return nil, &store.InvalidError{Field: "htmlBody", Reason: fmt.Sprintf("at most %d distinct links can be tracked", maxSendLink)}
	}
	connID, err := c.sendConnection(ctx, in)
	if err != nil {
		return nil, err
	}
	if err := c.canDeliver(ctx, in.Tenant, connID); err != nil {
		return nil, &store.InvalidError{Field: "senderEmail", Reason: err.Error()}
	}
	now := c.cfg.Now().UTC()
	cs := &store.CampaignSend{
		ID: in.ID, Tenant: in.Tenant, ConnectionID: connID, GroupID: in.GroupID, ListIDs: in.ListIDs,
		Subject: subject, SenderName: name, SenderEmail: from, HTMLBody: in.HTMLBody, TextBody: in.TextBody, Links: links,
		Status: store.SendScheduled, Trigger: cmp.Or(in.Trigger, store.SendTriggerAPI), CreatedBy: in.CreatedBy, CreatedAt: now,
	}
	if in.Draft {
		cs.Status = store.SendDraft
	}
	if in.ScheduledAt != nil && in.ScheduledAt.After(now) {
		at := in.ScheduledAt.UTC()
		cs.ScheduledAt = &at
	}
	if in.CRMCampaignID != "" {
		cs.CRMCampaignID = &in.CRMCampaignID
	}
	if in.CRMCampaignActivityID != "" {
		cs.CRMCampaignActivityID = &in.CRMCampaignActivityID
	}
	return cs, nil
}

// sendConnection checks the send's group and lists (the caller's, and there) and
// gives the connection they belong to; they must agree.
func (c *Campaigns) sendConnection(ctx context.Context, in SendRequest) (string, error) {
	if in.GroupID == "" && len(in.ListIDs) == 0 {
		return "", &store.InvalidError{Field: "groupId", Reason: "name a group and/or listIds (or send from a CRM campaign activity with lists)"}
	}
	if len(in.ListIDs) > 100 {
		return "", &store.InvalidError{Field: "listIds", Reason: "at most 100 lists"}
	}
	conns := map[string]bool{}
	if in.GroupID != "" {
		g, err := c.cfg.Store.Group(ctx, in.Tenant, in.GroupID)
		if errors.Is(err, store.ErrNotFound) {
			return "", &store.InvalidError{Field: "groupId", Reason: "no such subscriber group"}
		}
		if err != nil {
			return "", err
		}
		conns[g.ConnectionID] = true
	}
	for i, id := range in.ListIDs {
		l, err := c.cfg.Store.List(ctx, in.Tenant, id)
		if errors.Is(err, store.ErrNotFound) {
			return "", &store.InvalidError{Field: fmt.Sprintf("listIds[%d]", i), Reason: "no marketing list with this id is synchronised with the eMS (turn on \"Synchronize to eMS\" in the CRM)"}
		}
		if err != nil {
			return "", err
		}
		if l.Deleted || l.GroupID == "" {
			return "", &store.InvalidError{Field: fmt.Sprintf("listIds[%d]", i), Reason: "the marketing list is not linked to a subscriber group (it was deleted, or its sync is off)"}
		}
		conns[l.ConnectionID] = true
	}
	if len(conns) > 1 {
		return "", &store.InvalidError{Field: "listIds", Reason: "the group and lists of one send must belong to one connection"}
	}
	for id := range conns {
		return id, nil
	}
	return "", nil
}

// canDeliver says why a send of the connection could not go out, if it could not.
func (c *Campaigns) canDeliver(ctx context.Context, tenant, connID string) error {
	if connID != "" {
		conn, err := c.cfg.Store.Connection(ctx, tenant, connID)
		if err != nil {
			return err
		}
		if conn.Campaigns.SendingEngineURL != "" {
			return nil
		}
	}
	if c.cfg.SMTP == nil {
		return ErrNoDelivery
	}
	return nil
}

// ScheduleDraft attaches a DRAFT send to the CRM campaign activity that sends it,
// and schedules it.
func (c *Campaigns) scheduleDraft(ctx context.Context, tenant, id, campaignID, activityID string) (*store.CampaignSend, error) {
	return c.cfg.Store.ScheduleDraft(ctx, tenant, id, campaignID, activityID, c.cfg.Now().UTC())
}

func logSend(log *slog.Logger, cs *store.CampaignSend) *slog.Logger {
	return log.With(slog.String("tenant", cs.Tenant), slog.String("campaignSend", cs.ID))
}
