package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"crmsync/dataverse"
	"crmsync/store"
)

// sendNamespace derives a send's id from the event that asked for it, so a
// redelivered "Send campaign" makes one send.
var sendNamespace = uuid.MustParse("6f1c2d0e-8d7a-4b8e-9a3c-2b1f0e5d4c3a")

// sendCampaignStep is the campaign activity's "Send eMS campaign" command (the
// custom API cs_SendCampaign): it checks the activity is an eMS campaign, finds
// its marketing lists (the activity's, else its campaign's) and creates the send —
// or schedules the draft the command names. Refusals fail the event with the
// reason, which syncEvents shows.
func (c *Campaigns) sendCampaignStep(api webAPI) StepFunc {
	return func(ctx context.Context, ev *Event) error {
		id := ev.Context.PrimaryEntityID
		if t, ok := ev.Context.TargetReference(); ok && t.ID != "" {
			id = t.ID
		}
		client, err := clientFor(api, ev.Connection)
		if err != nil {
			return Permanent(err)
		}
		act, err := campaignActivity(ctx, client, id)
		if err != nil {
			return err
		}
		param := func(name string) string {
			s, _ := ev.Context.InputParameters[name].(string)
			return strings.TrimSpace(s)
		}
		tenant := ev.Connection.Tenant
		if draft := param(dataverse.ParamCampaignSendID); draft != "" {
			_, err := c.scheduleDraft(ctx, tenant, draft, act.CampaignID, act.ID)
			if errors.Is(err, store.ErrNotFound) {
				return Permanent(fmt.Errorf("CampaignSendId %s names no campaign send", draft))
			}
			return permanentIfInput(err)
		}
		lists, err := activityLists(ctx, client, act)
		if err != nil {
			return err
		}
		html, text := act.Description, ""
		if !strings.Contains(html, "<") {
			html, text = "", act.Description
		}
		_, err = c.CreateSend(ctx, SendRequest{
			ID:     uuid.NewSHA1(sendNamespace, []byte(ev.Inbox.ID)).String(),
			Tenant: tenant, ListIDs: lists,
			Subject:    cmp.Or(param(dataverse.ParamSubject), act.Subject),
			SenderName: param(dataverse.ParamSenderName), SenderEmail: param(dataverse.ParamSenderEmail),
			HTMLBody: html, TextBody: text,
			CRMCampaignID: act.CampaignID, CRMCampaignActivityID: act.ID, Trigger: store.SendTriggerCRM,
		})
		return permanentIfInput(err)
	}
}

// campaignActivity reads a campaign activity and checks it is an eMS campaign.
func campaignActivity(ctx context.Context, client *dataverse.Client, id string) (*dataverse.CampaignActivity, error) {
	act, err := client.CampaignActivity(ctx, id)
	if errors.Is(err, dataverse.ErrNotFound) {
		return nil, Permanent(fmt.Errorf("campaign activity %s does not exist", id))
	}
	if err != nil {
		return nil, fmt.Errorf("read campaign activity %s: %w", id, crmError(err))
	}
	if act.ChannelTypeCode != dataverse.ChannelEMSCampaign {
		return nil, Permanent(fmt.Errorf("campaign activity %q has channel %d, not \"eMS Campaign\" (%d): crmsync sends only eMS campaigns", act.Subject, act.ChannelTypeCode, dataverse.ChannelEMSCampaign))
	}
	return act, nil
}

// activityLists are the marketing lists a campaign activity sends to: its own,
// else its campaign's (contract.md, "Campaign recipients").
func activityLists(ctx context.Context, client *dataverse.Client, act *dataverse.CampaignActivity) ([]string, error) {
	lists, err := client.CampaignActivityLists(ctx, act.ID)
	if err == nil && len(lists) == 0 && act.CampaignID != "" {
		lists, err = client.CampaignLists(ctx, act.CampaignID)
	}
	if err != nil {
		return nil, fmt.Errorf("read the campaign's marketing lists: %w", crmError(err))
	}
	if len(lists) == 0 {
		return nil, Permanent(fmt.Errorf("campaign activity %q has no marketing lists, nor has its campaign", act.Subject))
	}
	return lists, nil
}

// fromActivity fills in the lists and campaign of an API send that names only a
// CRM campaign activity, read through the tenant's one connection with CRM access.
func (c *Campaigns) fromActivity(ctx context.Context, in *SendRequest) error {
	conns, err := c.cfg.Store.Connections(ctx, in.Tenant)
	if err != nil {
		return err
	}
	var conn *store.Connection
	for _, k := range conns {
		if k.ClientID != "" && len(k.ClientSecret) > 0 {
			if conn != nil {
				return &store.InvalidError{Field: "listIds", Reason: "the tenant has several CRM connections: name the lists (listIds) or the group to send to"}
			}
			conn = k
		}
	}
	if conn == nil {
		return &store.InvalidError{Field: "crmCampaignActivityId", Reason: "no connection can read the CRM (it needs clientId and clientSecret)"}
	}
	client, err := clientFor(apiOf(c.cfg.Store, c.cfg.CRM), conn)
	if err != nil {
		return err
	}
	act, err := campaignActivity(ctx, client, in.CRMCampaignActivityID)
	if err == nil {
		in.ListIDs, err = activityLists(ctx, client, act)
	}
	if isPermanent(err) {
		return &store.InvalidError{Field: "crmCampaignActivityId", Reason: errors.Unwrap(err).Error()}
	}
	if err != nil {
		return err
	}
	in.CRMCampaignID = cmp.Or(in.CRMCampaignID, act.CampaignID)
	return nil
}

// permanentIfInput makes a refusal of the input final: retrying cannot fix it.
func permanentIfInput(err error) error {
	var inv *store.InvalidError
	if errors.As(err, &inv) || errors.Is(err, store.ErrConflict) {
		return Permanent(err)
	}
	return err
}
