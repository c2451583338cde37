package dataverse

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"crmsync/dataverse/emulator"
)

// campaignSetup is a client on an emulator with a campaign and one of its
// activities.
func campaignSetup(t *testing.T) (c *Client, rec *recorder, campaign, activity string) {
	t.Helper()
	c, rec, _, _ = recordedSetup(t, emulator.Config{}, nil)
	campaign = mustCreate(t, c, "campaigns", map[string]any{"name": "Winter sale"})
	activity = mustCreate(t, c, "campaignactivities", map[string]any{
		"subject": "Newsletter", "description": "Our winter offers", "channeltypecode": ChannelEMSCampaign,
		"regardingobjectid_campaign_campaignactivity@odata.bind": Bind("campaigns", campaign),
	})
	return c, rec, campaign, activity
}

func mustCreate(t *testing.T, c *Client, set string, row map[string]any) string {
	t.Helper()
	id, err := c.Create(t.Context(), set, row)
	if err != nil {
		t.Fatalf("create %s: %v", set, err)
	}
	return id
}

const missingID = "00000000-0000-4000-8000-00000000abcd"

func TestCampaignActivity(t *testing.T) {
	t.Parallel()
	c, _, campaign, activity := campaignSetup(t)
	got, err := c.CampaignActivity(t.Context(), strings.ToUpper(activity))
	if err != nil {
		t.Fatal(err)
	}
	want := CampaignActivity{ID: activity, Subject: "Newsletter", Description: "Our winter offers",
		ChannelTypeCode: ChannelEMSCampaign, CampaignID: campaign, StateCode: 0}
	if *got != want {
		t.Errorf("CampaignActivity = %+v, want %+v", *got, want)
	}
	if _, err := c.CampaignActivity(t.Context(), missingID); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing activity: %v, want ErrNotFound", err)
	}
	if _, err := c.CampaignActivity(t.Context(), "nope"); err == nil || !strings.Contains(err.Error(), "want a GUID") {
		t.Errorf("bad id: %v", err)
	}
}

func TestCampaignLists(t *testing.T) {
	t.Parallel()
	c, _, campaign, activity := campaignSetup(t)
	ctx := t.Context()
	var lists []string
	for _, name := range []string{"A", "B", "C"} {
		lists = append(lists, mustCreate(t, c, "lists", map[string]any{"listname": name, "createdfromcode": ListMemberContact}))
	}
	for _, l := range lists[:2] {
		if err := c.Associate(ctx, "campaigns", campaign, "campaignlist_association", "lists", l); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Associate(ctx, "lists", lists[2], "campaignactivitylist_association", "campaignactivities", activity); err != nil {
		t.Fatal(err)
	}
	got, err := c.CampaignLists(ctx, campaign)
	if slices.Sort(got); err != nil || !slices.Equal(got, sorted(lists[:2]...)) {
		t.Errorf("CampaignLists = %v, %v; want %v", got, err, lists[:2])
	}
	if got, err := c.CampaignActivityLists(ctx, activity); err != nil || !slices.Equal(got, lists[2:]) {
		t.Errorf("CampaignActivityLists = %v, %v; want %v", got, err, lists[2:])
	}
	other := mustCreate(t, c, "campaignactivities", map[string]any{"subject": "No lists"})
	if got, err := c.CampaignActivityLists(ctx, other); err != nil || len(got) != 0 {
		t.Errorf("lists of an activity without any: %v, %v", got, err)
	}
	if _, err := c.CampaignLists(ctx, missingID); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing campaign: %v, want ErrNotFound", err)
	}
	if _, err := c.CampaignActivityLists(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "want a GUID") {
		t.Errorf("bad id: %v", err)
	}
}

func TestCreateCampaignResponses(t *testing.T) {
	t.Parallel()
	c, rec, campaign, _ := campaignSetup(t)
	ctx := t.Context()
	contact := mustCreate(t, c, "contacts", map[string]any{"lastname": "Reader", "emailaddress1": "reader@example.de"})
	lead := mustCreate(t, c, "leads", map[string]any{"lastname": "Prospect", "subject": "Newsletter"})
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	late := time.Date(2026, 11, 29, 23, 30, 0, 0, berlin) // already the 30th in UTC
	chosen := "3f2b8c1e-5a4d-4e6f-9b7a-0c1d2e3f4a5b"
	rs := []CampaignResponse{
		{CampaignID: campaign, Subject: "Opened: Newsletter", ResponseCode: ResponseInterested, ChannelTypeCode: ResponseChannelEmail,
			ReceivedOn: late, Customer: EntityReference{LogicalName: "contact", ID: contact}, EmailAddress: "reader@example.de"},
		{ID: strings.ToUpper(chosen), CampaignID: campaign, Subject: "Unsubscribed", ResponseCode: ResponseDoNotSendMarketingMaterials,
			ChannelTypeCode: ResponseChannelEmail, Customer: EntityReference{LogicalName: "lead", ID: lead}},
		{CampaignID: campaign, Subject: "Bounced", ResponseCode: ResponseError, Customer: EntityReference{LogicalName: "contact", ID: missingID}},
		{CampaignID: missingID, Subject: "Of no campaign"},
		{CampaignID: "nope", Subject: "Bad campaign id"},
		{CampaignID: campaign, Subject: "  "},
		{CampaignID: campaign, Subject: "User", Customer: EntityReference{LogicalName: "systemuser", ID: contact}},
		{CampaignID: campaign, Subject: "Bad customer id", Customer: EntityReference{LogicalName: "contact", ID: "nope"}},
		{ID: "nope", CampaignID: campaign, Subject: "Bad id"},
		{CampaignID: campaign, Subject: "No customer"},
	}
	before := len(rec.arrivals())
	results, err := c.CreateCampaignResponses(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rec.arrivals()) - before; n != 1 {
		t.Errorf("%d requests, want one $batch", n)
	}
	if len(results) != len(rs) {
		t.Fatalf("%d results for %d responses", len(results), len(rs))
	}
	for i, want := range []struct {
		created   bool
		notFound  bool
		errSubstr string
	}{
		{created: true}, {created: true},
		{notFound: true, errSubstr: "contact With Id = " + missingID},
		{notFound: true, errSubstr: "campaign With Id = " + missingID},
		{errSubstr: `invalid CampaignID "nope"`},
		{errSubstr: "no subject"},
		{errSubstr: `customer table "systemuser"`},
		{errSubstr: `invalid customer id "nope"`},
		{errSubstr: `invalid ID "nope"`},
		{created: true},
	} {
		r := results[i]
		switch {
		case want.created && (r.Err != nil || !isGUID(r.ID)):
			t.Errorf("response %d: %+v, want created", i, r)
		case !want.created && (r.Err == nil || r.ID != "" || !strings.Contains(r.Err.Error(), want.errSubstr) || errors.Is(r.Err, ErrNotFound) != want.notFound):
			t.Errorf("response %d: %+v, want an error with %q (not found: %v)", i, r, want.errSubstr, want.notFound)
		}
	}
	if results[1].ID != chosen {
		t.Errorf("response with a chosen id: %s, want %s", results[1].ID, chosen)
	}

	row, err := c.Get(ctx, "campaignresponses", results[0].ID, []string{"subject", "responsecode", "channeltypecode", "receivedon", "emailaddress", "_regardingobjectid_value"})
	if err != nil {
		t.Fatal(err)
	}
	code, _ := row.Int("responsecode")
	channel, _ := row.Int("channeltypecode")
	if row["receivedon"] != "2026-11-29" || code != ResponseInterested || channel != ResponseChannelEmail || row["emailaddress"] != "reader@example.de" {
		t.Errorf("written response: %v", row)
	}
	if id, _ := row.Lookup("regardingobjectid"); id != campaign || row.LookupTable("regardingobjectid") != "campaign" {
		t.Errorf("campaign of the response: %v", row)
	}
	for i, want := range map[int]string{0: "contact", 1: "lead", 9: ""} {
		rows := c.Query(ctx, "activityparties", Query{Select: []string{"_partyid_value", "participationtypemask"}, Filter: "_activityid_value eq " + results[i].ID})
		var parties []string
		for rows.Next(ctx) {
			mask, _ := rows.Row().Int("participationtypemask")
			if mask != 11 {
				t.Errorf("response %d: participationtypemask %d, want 11 (Customer)", i, mask)
			}
			parties = append(parties, rows.Row().LookupTable("partyid"))
		}
		if err := rows.Err(); err != nil || strings.Join(parties, ",") != want {
			t.Errorf("parties of response %d: %v %v, want %q", i, parties, err, want)
		}
	}

	// Sending a response with its id again does not write it twice.
	results, err = c.CreateCampaignResponses(ctx, rs[1:2])
	if err != nil || len(results) != 1 || !errors.Is(results[0].Err, ErrDuplicateRecord) {
		t.Errorf("repeated response: %+v %v, want ErrDuplicateRecord", results, err)
	}
	if results, err := c.CreateCampaignResponses(ctx, nil); err != nil || len(results) != 0 {
		t.Errorf("no responses: %v %v", results, err)
	}
}

// A batch that fails as a whole fails every row it carried.
func TestCreateCampaignResponsesBatchFailure(t *testing.T) {
	t.Parallel()
	// Every Web API request fails (503 or a cut connection) and a $batch is not
	// sent again after either.
	b := setup(t, func(e *emulator.Config, _ *Config) { e.FaultRate, e.Rand = 1, rand.NewPCG(1, 2) })
	campaign, err := b.e.Create("campaigns", map[string]any{"name": "C"})
	if err != nil {
		t.Fatal(err)
	}
	results, err := b.client.CreateCampaignResponses(t.Context(), []CampaignResponse{
		{CampaignID: campaign, Subject: "A"}, {CampaignID: "nope", Subject: "B"}, {CampaignID: campaign, Subject: "C"},
	})
	if !errors.Is(err, ErrOutcomeUnknown) || len(results) != 3 {
		t.Fatalf("err = %v (%d results), want ErrOutcomeUnknown", err, len(results))
	}
	if !errors.Is(results[0].Err, ErrOutcomeUnknown) || !errors.Is(results[2].Err, ErrOutcomeUnknown) || errors.Is(results[1].Err, ErrOutcomeUnknown) {
		t.Errorf("results %+v", results)
	}
}
