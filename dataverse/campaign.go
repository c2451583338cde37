package dataverse

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Campaigns (reference/dataverse.md §5): what crmsync reads of a campaign activity
// when the CRM asks it to send one, and the campaign responses it writes back for
// the eMS's reactions.

// ChannelEMSCampaign is the connector solution's campaignactivity.channeltypecode
// "eMS Campaign" (design.md), which marks the activities crmsync sends.
const ChannelEMSCampaign = 100000001

// Values of campaignresponse.responsecode (§5).
const (
	ResponseInterested                  = 1
	ResponseNotInterested               = 2
	ResponseDoNotSendMarketingMaterials = 3
	ResponseError                       = 4
)

// ResponseChannelEmail is campaignresponse.channeltypecode Email (§5), the channel
// of every reaction the eMS reports.
const ResponseChannelEmail = 1

// participationCustomer is activityparty.participationtypemask Customer (§5), the
// campaign response's customer party list.
const participationCustomer = 11

// CampaignActivity is what crmsync needs of a campaignactivity to send it.
type CampaignActivity struct {
	ID          string
	Subject     string
	Description string
	// ChannelTypeCode is the channel; crmsync sends ChannelEMSCampaign activities.
	ChannelTypeCode int
	// CampaignID is the parent campaign (regardingobjectid), "" when none.
	CampaignID string
	// StateCode is 0 Open, 1 Closed, 2 Canceled.
	StateCode int
}

// CampaignActivity reads a campaign activity; a missing one is ErrNotFound.
func (c *Client) CampaignActivity(ctx context.Context, id string) (*CampaignActivity, error) {
	row, err := c.Get(ctx, "campaignactivities", id, []string{"subject", "description", "channeltypecode", "_regardingobjectid_value", "statecode"})
	if err != nil {
		return nil, err
	}
	a := &CampaignActivity{ID: strings.ToLower(id)}
	a.Subject, _ = row.String("subject")
	a.Description, _ = row.String("description")
	channel, _ := row.Int("channeltypecode")
	state, _ := row.Int("statecode")
	a.ChannelTypeCode, a.StateCode = int(channel), int(state)
	a.CampaignID, _ = row.Lookup("regardingobjectid")
	return a, nil
}

// CampaignActivityLists is the ids of the marketing lists a campaign activity
// goes to (campaignactivitylist_association); a missing activity is ErrNotFound.
func (c *Client) CampaignActivityLists(ctx context.Context, activityID string) ([]string, error) {
	return c.relatedIDs(ctx, "campaignactivities", activityID, "campaignactivitylist_association", "listid")
}

// CampaignLists is the ids of the marketing lists of a campaign
// (campaignlist_association); a missing campaign is ErrNotFound.
func (c *Client) CampaignLists(ctx context.Context, campaignID string) ([]string, error) {
	return c.relatedIDs(ctx, "campaigns", campaignID, "campaignlist_association", "listid")
}

// relatedIDs reads the ids (column idColumn) of the rows a collection-valued
// navigation property of one row leads to, following @odata.nextLink.
func (c *Client) relatedIDs(ctx context.Context, entitySet, id, nav, idColumn string) ([]string, error) {
	u, err := c.rowURL(entitySet, id)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", nav, err)
	}
	rows := &Rows{c: c, set: entitySet + "(" + id + ")/" + nav, top: -1,
		prefer: "odata.maxpagesize=" + strconv.Itoa(MaxPageSize),
		next:   u + "/" + nav + "?$select=" + idColumn}
	var ids []string
	for rows.Next(ctx) {
		if s, ok := rows.Row().String(idColumn); ok {
			ids = append(ids, strings.ToLower(s))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return ids, nil
}

// CampaignResponse is one reaction to write back as a campaignresponse row.
type CampaignResponse struct {
	// ID is the row's activityid; empty makes a new one. A caller that may send
	// the same response twice (after ErrOutcomeUnknown) sets it, so the repeat
	// fails with ErrDuplicateRecord instead of writing a second row.
	ID string
	// CampaignID is the parent campaign (regardingobjectid); required.
	CampaignID string
	// Subject is required by Dataverse (at most 200 characters).
	Subject string
	// ResponseCode is one of the Response* constants; 0 leaves Dataverse's
	// default, ResponseInterested.
	ResponseCode int
	// ChannelTypeCode is ResponseChannelEmail for the eMS; 0 leaves it empty.
	ChannelTypeCode int
	// ReceivedOn is a date-only column: the date of the time in its own location
	// is written; the zero time leaves it empty.
	ReceivedOn time.Time
	// Customer is the account, contact or lead that reacted (LogicalName and ID);
	// the zero value writes no customer.
	Customer EntityReference
	// EmailAddress is the address the reaction came from; optional.
	EmailAddress string
}

// CreateResult is the outcome of one row of a multi-row write.
type CreateResult struct {
	// ID is the created row's id, "" when it failed.
	ID string
	// Err is why the row was not created: a *BatchError for Dataverse's answer, or
	// a local error for a row that was not sent.
	Err error
}

// customerSets are the entity sets of the tables a campaign response's customer
// may be (§5).
var customerSets = map[string]string{"account": "accounts", "contact": "contacts", "lead": "leads"}

// CreateCampaignResponses writes responses as campaignresponse rows, one POST each
// in one $batch (of up to MaxBatchOps; more take several), outside change sets
// and with Prefer: odata.continue-on-error, so a refused row does not stop the
// others. results has one entry per response, in order: its id or why it was not
// created. err is set when a batch failed as a whole (it then matches
// ErrOutcomeUnknown if its rows may have been written); the rows of that batch
// and of later ones carry it as their Err too.
func (c *Client) CreateCampaignResponses(ctx context.Context, rs []CampaignResponse) (results []CreateResult, err error) {
	results = make([]CreateResult, len(rs))
	var ops []BatchOp
	var rows []int   // ops[k] writes rs[rows[k]]
	var ids []string // with the id ids[k]
	for i, r := range rs {
		op, id, err := campaignResponseOp(r)
		if err != nil {
			results[i].Err = fmt.Errorf("campaign response %d: %w", i, err)
			continue
		}
		ops, rows, ids = append(ops, op), append(rows, i), append(ids, id)
	}
	for start := 0; start < len(ops); start += MaxBatchOps {
		end := min(start+MaxBatchOps, len(ops))
		answers, err := c.BatchContinueOnError(ctx, ops[start:end])
		if len(answers) != end-start {
			if err == nil {
				err = fmt.Errorf("%d answers for %d operations", len(answers), end-start)
			}
			err = fmt.Errorf("create campaign responses: %w", err)
			for _, i := range rows[start:] {
				results[i].Err = err
			}
			return results, err
		}
		for k, a := range answers {
			i := rows[start+k]
			results[i].Err = a.Err
			if a.Err == nil {
				results[i].ID = cmp.Or(a.ID, ids[start+k])
			}
		}
	}
	return results, nil
}

// campaignResponseOp checks a response and makes its POST and the row's id: the
// row, its campaign and its customer party, written by deep insert.
func campaignResponseOp(r CampaignResponse) (BatchOp, string, error) {
	id := strings.ToLower(r.ID)
	switch {
	case id == "":
		id = uuid.NewString()
	case !isGUID(id):
		return BatchOp{}, "", fmt.Errorf("invalid ID %q: want a GUID", r.ID)
	}
	if !isGUID(r.CampaignID) {
		return BatchOp{}, "", fmt.Errorf("invalid CampaignID %q: want a GUID", r.CampaignID)
	}
	if strings.TrimSpace(r.Subject) == "" {
		return BatchOp{}, "", errors.New("no subject: Dataverse requires one")
	}
	row := map[string]any{
		"activityid": id,
		"subject":    r.Subject,
		"regardingobjectid_campaign_campaignresponse@odata.bind": Bind("campaigns", r.CampaignID),
	}
	if r.ResponseCode != 0 {
		row["responsecode"] = r.ResponseCode
	}
	if r.ChannelTypeCode != 0 {
		row["channeltypecode"] = r.ChannelTypeCode
	}
	if !r.ReceivedOn.IsZero() {
		row["receivedon"] = r.ReceivedOn.Format(time.DateOnly)
	}
	if r.EmailAddress != "" {
		row["emailaddress"] = r.EmailAddress
	}
	if r.Customer.LogicalName != "" || r.Customer.ID != "" {
		set, ok := customerSets[r.Customer.LogicalName]
		if !ok {
			return BatchOp{}, "", fmt.Errorf("customer table %q: want account, contact or lead", r.Customer.LogicalName)
		}
		if !isGUID(r.Customer.ID) {
			return BatchOp{}, "", fmt.Errorf("invalid customer id %q: want a GUID", r.Customer.ID)
		}
		row["campaignresponse_activity_parties"] = []map[string]any{{
			"partyid_" + r.Customer.LogicalName + "@odata.bind": Bind(set, r.Customer.ID),
			"participationtypemask":                             participationCustomer,
		}}
	}
	return BatchCreate("campaignresponses", row), id, nil
}
