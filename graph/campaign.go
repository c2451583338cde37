package graph

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"crmsync/auth"
	"crmsync/graph/model"
	"crmsync/store"
)

// sendRequest turns sendCampaign's input into the caller's send request, with the
// list ids checked and in the form crmsync stores.
func sendRequest(c *auth.Caller, in model.SendCampaignInput) (SendRequest, error) {
	req := SendRequest{
		Tenant: c.Tenant, CreatedBy: c.Subject, Trigger: store.SendTriggerAPI,
		GroupID: deref(in.GroupID), CRMCampaignActivityID: deref(in.CrmCampaignActivityID),
		Subject: in.Subject, SenderName: in.SenderName, SenderEmail: in.SenderEmail,
		HTMLBody: deref(in.HTMLBody), TextBody: deref(in.TextBody), ScheduledAt: in.ScheduledAt, Draft: deref(in.Draft),
	}
	for i, id := range in.ListIds {
		lid, err := parseListID(id, fmt.Sprintf("listIds[%d]", i))
		if err != nil {
			return SendRequest{}, err
		}
		req.ListIDs = append(req.ListIDs, lid)
	}
	return req, nil
}

// sendStats counts a send's reactions (each stored once, so the counts are exact
// under concurrent reactions) beside its delivery count. Refusals at delivery are
// bounce reactions too (the engine queues one per hard bounce).
func sendStats(ctx context.Context, st *store.Store, cs *store.CampaignSend) (*model.CampaignStats, error) {
	n, err := st.ReactionCounts(ctx, cs.Tenant, cs.ID)
	if err != nil {
		return nil, err
	}
	return &model.CampaignStats{
		Sent: cs.Sent, Opens: n[store.ReactionOpen], Clicks: n[store.ReactionClick], Bounces: n[store.ReactionBounce],
		Unsubscribes: n[store.ReactionUnsubscribe], Complaints: n[store.ReactionComplaint],
	}, nil
}

// sendProgress is what campaignSendProgress watches of a send: a change of any of
// it is an update.
type sendProgress struct {
	status store.SendStatus
	counts [8]int // recipients, next sequence number, sent, bounced, deferred, failed, unconfirmed, pass
}

func progressOf(cs *store.CampaignSend) sendProgress {
	return sendProgress{status: cs.Status, counts: [8]int{cs.RecipientCount, cs.NextSeq, cs.Sent, cs.Bounced, cs.Deferred, cs.Failed, cs.Unconfirmed, cs.Pass}}
}

// watchSend delivers the send now and again whenever its progress changes, reading
// it from the store every SendPollInterval (sends have no cross-instance notifier
// yet); the channel closes once the send has finished, is gone, or ctx ends (the
// client left, or its token expired).
func (r *Resolver) watchSend(ctx context.Context, cs *store.CampaignSend) <-chan *store.CampaignSend {
	out := make(chan *store.CampaignSend, 1)
	go func() {
		defer close(out)
		tick := time.NewTicker(cmp.Or(r.SendPollInterval, DefaultSendPollInterval))
		defer tick.Stop()
		last := progressOf(cs)
		for {
			select {
			case out <- cs:
			case <-ctx.Done():
				return
			}
			if cs.Status.Done() {
				return
			}
			for progressOf(cs) == last {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
				fresh, err := r.Store.Send(ctx, cs.Tenant, cs.ID)
				switch {
				case errors.Is(err, store.ErrNotFound):
					return
				case err != nil:
					if ctx.Err() == nil {
						r.Logger.WarnContext(ctx, "campaign send progress not read; trying again", slog.String("campaignSend", cs.ID), slog.String("error", err.Error()))
					}
					continue
				}
				cs = fresh
			}
			last = progressOf(cs)
		}
	}()
	return out
}
