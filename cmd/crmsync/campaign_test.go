package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/mail"
	"crmsync/mail/mailtest"
	"crmsync/store"
)

// Campaigns from the CRM (issue #8), end to end: the emulator's "Send campaign"
// button (cs_SendCampaign) → a send to the activity's marketing list → real SMTP
// delivery → the open pixel, a click and a one-click unsubscribe fetched from the
// received messages → campaign responses in the emulator.

type campaignCRM struct {
	*listCRM
	smtp *mailtest.Server
}

func startCampaignCRM(t *testing.T) *campaignCRM {
	t.Helper()
	smtp := mailtest.Start(t, true)
	dv, user := startEmulator(t)
	env := testEnv(t)
	env["CRMSYNC_SMTP_URL"] = smtp.URL
	env["CRMSYNC_CAMPAIGN_INTERVAL"] = "100ms"
	in := startInstanceEnv(t, env)
	admin := in.token("acme", "admin")
	c := &campaignCRM{listCRM: &listCRM{dv: dv, user: user, in: in, conn: in.createCRMConnection(admin, dv.URL(), "crmsync@emulator.test"), tok: admin}, smtp: smtp}
	c.register(t, [2]string{"cs_SyncMarketingList", "list"}, [2]string{"cs_SendCampaign", "campaignactivity"})
	return c
}

// syncedList makes a static contact list with the given people and has crmsync
// synchronise it; it answers the list's id.
func (c *campaignCRM) syncedList(t *testing.T, people map[string]string) string {
	t.Helper()
	ctx := context.Background()
	listID := c.create(t, "lists", map[string]any{"listname": "Spring", "createdfromcode": dataverse.ListMemberContact, "type": false})
	for name, email := range people {
		id := c.create(t, "contacts", map[string]any{"firstname": name, "lastname": "Doe", "emailaddress1": email})
		if _, err := c.user.AddListMember(ctx, listID, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.user.InvokeBound(ctx, "lists", listID, "cs_SyncMarketingList", nil); err != nil {
		t.Fatal(err)
	}
	c.waitList(t, listID, func(l listView) bool { return l.MemberCount == len(people) && l.LastSyncedAt != nil })
	return listID
}

// activity makes a campaign and one of its activities on the given channel.
func (c *campaignCRM) activity(t *testing.T, channel int, body string) (campaignID, activityID string) {
	t.Helper()
	campaignID = c.create(t, "campaigns", map[string]any{"name": "Spring 2027"})
	activityID = c.create(t, "campaignactivities", map[string]any{
		"subject": "Spring mailing", "channeltypecode": channel, "description": body,
		"regardingobjectid_campaign_campaignactivity@odata.bind": dataverse.Bind("campaigns", campaignID),
	})
	return campaignID, activityID
}

func (c *campaignCRM) pressSend(t *testing.T, activityID string) {
	t.Helper()
	if err := c.user.InvokeBound(context.Background(), "campaignactivities", activityID, "cs_SendCampaign", map[string]any{
		"SenderName": "Shop", "SenderEmail": "news@shop.example", "Subject": "Spring offers for {{fields.firstName}}",
	}); err != nil {
		t.Fatal(err)
	}
}

var trackedURL = regexp.MustCompile(`https?://[^"'\s<>]+/(t/[oc]|u)/[A-Za-z0-9_-]+`)

// links finds a message's open pixel, click and unsubscribe URLs.
func links(t *testing.T, m mailtest.Message) (open, click, unsub string) {
	t.Helper()
	for _, u := range trackedURL.FindAllString(m.Body("text/html"), -1) {
		switch {
		case strings.Contains(u, "/t/o/"):
			open = u
		case strings.Contains(u, "/t/c/"):
			click = u
		}
	}
	unsub = strings.Trim(m.Header.Get("List-Unsubscribe"), "<>")
	if open == "" || click == "" || unsub == "" {
		t.Fatalf("message to %s lacks tracking: open %q click %q unsubscribe %q\n%s", m.To, open, click, unsub, m.Body("text/html"))
	}
	return open, click, unsub
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func fetch(t *testing.T, method, u string) *http.Response {
	t.Helper()
	var body io.Reader
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Body = io.NopCloser(strings.NewReader("List-Unsubscribe=One-Click"))
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res
}

type responseRow struct {
	ID, Subject, Email string
	Code               int
	Customer           string
}

func (c *campaignCRM) responses(t *testing.T, campaignID string) []responseRow {
	t.Helper()
	ctx := context.Background()
	rows := c.user.Query(ctx, "campaignresponses", dataverse.Query{
		Select: []string{"activityid", "subject", "responsecode", "emailaddress", "channeltypecode"},
		Filter: "_regardingobjectid_value eq " + campaignID,
	})
	var out []responseRow
	for rows.Next(ctx) {
		r := rows.Row()
		id, _ := r.String("activityid")
		subject, _ := r.String("subject")
		email, _ := r.String("emailaddress")
		code, _ := r.Int("responsecode")
		parties := c.user.Query(ctx, "activityparties", dataverse.Query{
			Select: []string{"_partyid_value", "participationtypemask"}, Filter: "_activityid_value eq " + id,
		})
		var customer string
		for parties.Next(ctx) {
			if mask, _ := parties.Row().Int("participationtypemask"); mask == 11 {
				customer, _ = parties.Row().String("_partyid_value")
			}
		}
		out = append(out, responseRow{ID: id, Subject: subject, Email: email, Code: int(code), Customer: customer})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCampaignFromTheCRMButtonToItsResponses is the loop of issue #8.
func TestCampaignFromTheCRMButtonToItsResponses(t *testing.T) {
	t.Parallel()
	c := startCampaignCRM(t)
	ctx := context.Background()
	c.smtp.Refuse("carl@example.de", 550)
	listID := c.syncedList(t, map[string]string{"Ann": "ann@example.de", "Bob": "bob@example.de", "Carl": "carl@example.de"})
	campaignID, activityID := c.activity(t, dataverse.ChannelEMSCampaign,
		`<html><body><p>Hello {{fields.firstName}},</p><p><a href="https://shop.example/spring?utm=crm">Our spring offers</a></p></body></html>`)
	if err := c.user.Associate(ctx, "campaignactivities", activityID, "campaignactivitylist_association", "lists", listID); err != nil {
		t.Fatal(err)
	}
	c.pressSend(t, activityID)

	got := c.smtp.Wait(t, 2, 60*time.Second)
	byTo := map[string]mailtest.Message{}
	for _, m := range got {
		byTo[m.To] = m
	}
	ann, bob := byTo["ann@example.de"], byTo["bob@example.de"]
	if ann.Raw == nil || bob.Raw == nil {
		t.Fatalf("messages went to %v", keys(byTo))
	}
	if subj := ann.Header.Get("Subject"); subj != "Spring offers for Ann" {
		t.Errorf("subject %q, want it personalised", subj)
	}
	if !strings.Contains(ann.Body("text/html"), "Hello Ann,") || !strings.Contains(ann.Body("text/plain"), "Hello Ann,") {
		t.Errorf("body not personalised:\n%s", ann.Body("text/html"))
	}

	open, click, _ := links(t, ann)
	if res := fetch(t, http.MethodGet, open); res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "image/gif" {
		t.Errorf("open pixel: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	fetch(t, http.MethodGet, open) // a second load of the pixel counts once
	res := fetch(t, http.MethodGet, click)
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "https://shop.example/spring?utm=crm" {
		t.Errorf("click: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	_, _, unsub := links(t, bob)
	if res := fetch(t, http.MethodGet, unsub); res.StatusCode != http.StatusOK {
		t.Errorf("unsubscribe page: %d", res.StatusCode)
	}
	if res := fetch(t, http.MethodPost, unsub); res.StatusCode != http.StatusOK {
		t.Errorf("one-click unsubscribe: %d", res.StatusCode)
	}

	// Ann opened and clicked (Interested), Bob unsubscribed (Do Not Send), Carl's
	// address bounced (Error): four responses regarding the campaign.
	var rows []responseRow
	waitUntil(t, func() bool { rows = c.responses(t, campaignID); return len(rows) >= 4 })
	codes := map[string][]int{}
	for _, r := range rows {
		codes[r.Email] = append(codes[r.Email], r.Code)
		if r.Customer == "" {
			t.Errorf("response %q has no customer", r.Subject)
		}
	}
	if len(rows) != 4 || len(codes["ann@example.de"]) != 2 || codes["bob@example.de"][0] != dataverse.ResponseDoNotSendMarketingMaterials ||
		codes["carl@example.de"][0] != dataverse.ResponseError {
		t.Errorf("responses = %+v", rows)
	}

	sends, _, err := c.in.store.SendsPage(ctx, "acme", "", 10)
	if err != nil || len(sends) != 1 {
		t.Fatalf("sends %v, %v", sends, err)
	}
	cs := sends[0]
	if cs.Status != store.SendSent || cs.RecipientCount != 3 || cs.Sent != 2 || cs.Bounced != 1 || *cs.CRMCampaignID != campaignID {
		t.Errorf("send = status %s recipients %d sent %d bounced %d", cs.Status, cs.RecipientCount, cs.Sent, cs.Bounced)
	}
	counts, err := c.in.store.ReactionCounts(ctx, "acme", cs.ID)
	if err != nil || counts[store.ReactionOpen] != 1 || counts[store.ReactionClick] != 1 || counts[store.ReactionUnsubscribe] != 1 || counts[store.ReactionBounce] != 1 {
		t.Errorf("reaction counts %v, %v", counts, err)
	}
	l, err := c.in.store.List(ctx, "acme", listID)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		bob, err := c.in.store.SubscriberByEmail(ctx, "acme", l.GroupID, "bob@example.de")
		return err == nil && bob.SubscriptionState == store.Unsubscribed
	})
	carl, err := c.in.store.SubscriberByEmail(ctx, "acme", l.GroupID, "carl@example.de")
	if err != nil || !carl.AddressInvalid {
		t.Errorf("carl after a hard bounce: %+v, %v", carl, err)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTrackingRoutesRefuseForgedTokens: an altered token, a token of another kind
// and an unknown one answer 404 and record nothing; nothing redirects elsewhere.
func TestTrackingRoutesRefuseForgedTokens(t *testing.T) {
	t.Parallel()
	in := startInstance(t)
	for _, path := range []string{
		"/t/o/AAAA", "/t/c/AAAA", "/u/AAAA", "/t/c/" + strings.Repeat("A", 47),
		"/t/c/%2F%2Fevil.example", "/t/c/" + url.PathEscape("https://evil.example/"),
	} {
		res := fetch(t, http.MethodGet, in.base+path)
		if res.StatusCode != http.StatusNotFound || res.Header.Get("Location") != "" {
			t.Errorf("GET %s: %d, Location %q; want 404 and no redirect", path, res.StatusCode, res.Header.Get("Location"))
		}
	}
	if res := fetch(t, http.MethodPost, in.base+"/u/AAAA"); res.StatusCode != http.StatusNotFound {
		t.Errorf("POST /u/ with a forged token: %d", res.StatusCode)
	}
}

// TestSendCampaignRefusals: an activity on another channel, and one without lists
// (nor lists on its campaign), fail their event with the reason.
func TestSendCampaignRefusals(t *testing.T) {
	t.Parallel()
	c := startCampaignCRM(t)
	_, email := c.activity(t, 7, "<p>hi</p>")
	_, bare := c.activity(t, dataverse.ChannelEMSCampaign, "<p>hi</p>")
	c.pressSend(t, email)
	c.pressSend(t, bare)
	for id, want := range map[string]string{email: `not "eMS Campaign"`, bare: "has no marketing lists"} {
		var detail string
		waitUntil(t, func() bool {
			for _, ev := range c.in.syncEvents(c.tok, id) {
				if ev.Status == "FAILED" {
					detail = ev.Detail
					return true
				}
			}
			return false
		})
		if !strings.Contains(detail, want) {
			t.Errorf("activity %s failed with %q, want %q", id, detail, want)
		}
	}
	if n := c.smtp.Count(); n != 0 {
		t.Errorf("%d messages went out", n)
	}
}

// TestSendCampaignThroughTheAPI is the integrator's way: sendCampaign names a CRM
// campaign activity, crmsync reads its lists through the Web API, and the send
// and its stats are read back through GraphQL.
func TestSendCampaignThroughTheAPI(t *testing.T) {
	t.Parallel()
	c := startCampaignCRM(t)
	ctx := context.Background()
	listID := c.syncedList(t, map[string]string{"Dora": "dora@example.de"})
	campaignID, activityID := c.activity(t, dataverse.ChannelEMSCampaign, "unused")
	if err := c.user.Associate(ctx, "campaigns", campaignID, "campaignlist_association", "lists", listID); err != nil {
		t.Fatal(err)
	}
	editor := c.in.token("acme", "editor")
	var send struct {
		ID, Status, CrmCampaignID string
	}
	c.in.mustGraphQL(editor, `mutation($in: SendCampaignInput!) { sendCampaign(input: $in) { id status crmCampaignId } }`, map[string]any{"in": map[string]any{
		"crmCampaignActivityId": activityID, "subject": "News", "senderName": "Shop", "senderEmail": "news@shop.example",
		"htmlBody": `<p>Hi {{fields.firstName}} <a href="https://shop.example/">shop</a></p>`,
	}}, "sendCampaign", &send)
	if send.Status != "SCHEDULED" || send.CrmCampaignID != campaignID {
		t.Fatalf("send = %+v; want SCHEDULED for the activity's campaign (its lists come from the campaign)", send)
	}
	m := c.smtp.Wait(t, 1, 60*time.Second)[0]
	open, _, _ := links(t, m)
	fetch(t, http.MethodGet, open)
	var got struct {
		Status         string
		RecipientCount int
		Stats          struct{ Sent, Opens int }
		Reactions      struct {
			TotalCount int
			Edges      []struct {
				Node struct {
					Type       string
					Subscriber struct{ Email string }
				}
			}
		}
	}
	viewer := c.in.token("acme", "viewer")
	waitUntil(t, func() bool {
		c.in.mustGraphQL(viewer, `query($id: ID!) { campaignSend(id: $id) { status recipientCount stats { sent opens } reactions { totalCount edges { node { type subscriber { email } } } } } }`,
			map[string]any{"id": send.ID}, "campaignSend", &got)
		return got.Status == "SENT" && got.Stats.Opens == 1
	})
	if got.RecipientCount != 1 || got.Stats.Sent != 1 || got.Reactions.TotalCount != 1 || got.Reactions.Edges[0].Node.Subscriber.Email != "dora@example.de" {
		t.Errorf("campaignSend = %+v", got)
	}
	// Another tenant sees nothing of it.
	res := c.in.graphql(c.in.token("other", "admin"), `query($id: ID!) { campaignSend(id: $id) { id } }`, map[string]any{"id": send.ID})
	if string(res.Data["campaignSend"]) != "null" {
		t.Errorf("another tenant read the send: %s", res.Data["campaignSend"])
	}
}

// TestComplaintFromTheSendingEngineOptsOutInTheCRM: a complaint posted to the
// signed reaction webhook unsubscribes the person and sets donotbulkemail on the
// contact; with FIRST_PER_TYPE the CRM gets one click response per recipient,
// however many links were clicked.
func TestComplaintFromTheSendingEngineOptsOutInTheCRM(t *testing.T) {
	t.Parallel()
	c := startCampaignCRM(t)
	ctx := context.Background()
	secret := "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	c.in.mustGraphQL(c.tok, `mutation($id: ID!, $s: String) { updateConnection(id: $id, input: {reactionSecret: $s}) { id } }`,
		map[string]any{"id": c.conn, "s": secret}, "updateConnection", &struct{ ID string }{})
	var settings struct{ CampaignSettings struct{ Responses string } }
	c.in.mustGraphQL(c.tok, `mutation($id: ID!) { setCampaignSettings(connectionId: $id, input: {responses: FIRST_PER_TYPE}) { campaignSettings { responses } } }`,
		map[string]any{"id": c.conn}, "setCampaignSettings", &settings)
	if settings.CampaignSettings.Responses != "FIRST_PER_TYPE" {
		t.Fatalf("settings = %+v", settings)
	}
	listID := c.syncedList(t, map[string]string{"Eve": "eve@example.de"})
	campaignID, activityID := c.activity(t, dataverse.ChannelEMSCampaign,
		`<p><a href="https://shop.example/a">A</a> <a href="https://shop.example/b">B</a></p>`)
	if err := c.user.Associate(ctx, "campaignactivities", activityID, "campaignactivitylist_association", "lists", listID); err != nil {
		t.Fatal(err)
	}
	c.pressSend(t, activityID)
	m := c.smtp.Wait(t, 1, 60*time.Second)[0]
	clicks := trackedURL.FindAllString(m.Body("text/html"), -1)
	n := 0
	for _, u := range clicks {
		if strings.Contains(u, "/t/c/") {
			fetch(t, http.MethodGet, u)
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d tracked links, want 2", n)
	}
	sends, _, err := c.in.store.SendsPage(ctx, "acme", "", 1)
	if err != nil || len(sends) != 1 {
		t.Fatal(sends, err)
	}
	body := []byte(`{"type":"complaint","campaignSendId":"` + sends[0].ID + `","email":"eve@example.de","occurredAt":"` + time.Now().UTC().Format(time.RFC3339) + `"}`)
	now := time.Now()
	req, _ := http.NewRequest(http.MethodPost, c.in.base+"/webhooks/reactions/"+c.conn, strings.NewReader(string(body)))
	req.Header.Set("webhook-id", "msg_complaint_1")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", mustSign(secret, "msg_complaint_1", now, body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("reaction webhook: %d", res.StatusCode)
	}

	var rows []responseRow
	waitUntil(t, func() bool { rows = c.responses(t, campaignID); return len(rows) >= 2 })
	time.Sleep(300 * time.Millisecond) // a second click response would have arrived with the first
	if rows = c.responses(t, campaignID); len(rows) != 2 {
		t.Errorf("responses = %+v; want one click and one complaint", rows)
	}
	var optedOut bool
	waitUntil(t, func() bool {
		contacts := c.user.Query(ctx, "contacts", dataverse.Query{Select: []string{"donotbulkemail"}, Filter: "emailaddress1 eq 'eve@example.de'"})
		if contacts.Next(ctx) {
			optedOut, _ = contacts.Row().Bool("donotbulkemail")
		}
		return optedOut
	})
	l, _ := c.in.store.List(ctx, "acme", listID)
	eve, err := c.in.store.SubscriberByEmail(ctx, "acme", l.GroupID, "eve@example.de")
	if err != nil || eve.SubscriptionState != store.Unsubscribed {
		t.Errorf("eve after a complaint: %+v, %v", eve, err)
	}
}

// mustSign signs a reaction as a sending engine does (Standard Webhooks).
func mustSign(secret, id string, ts time.Time, body []byte) string {
	sig, err := mail.Sign(secret, id, ts, body)
	if err != nil {
		panic(err)
	}
	return sig
}
