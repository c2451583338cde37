package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/mail/mailtest"
	"crmsync/store"
)

// Sign-up forms (issue #9), end to end: a browser posts a double opt-in form, the
// confirmation e-mail arrives over real SMTP, following its link confirms the
// subscriber, who then reaches the CRM (the emulator) as a contact; an unsubscribe
// through a campaign's link and a second sign-up follow, and the consent ledger
// tells the whole story.

// formScenario is an instance with SMTP, a connection to the emulator and a
// CRM-synced group.
type formScenario struct {
	*campaignCRM
	groupID string
}

func startFormScenario(t *testing.T) *formScenario {
	t.Helper()
	c := startCampaignCRM(t)
	return &formScenario{campaignCRM: c, groupID: c.in.syncedGroup(c.tok, c.conn, "News")}
}

// form creates a double opt-in form of the group in the store, as createForm
// will; change adjusts it.
func (sc *formScenario) form(t *testing.T, change func(*store.FormInput)) *store.Form {
	t.Helper()
	in := store.FormInput{
		GroupID: sc.groupID, Name: "Newsletter", DoubleOptIn: true,
		Fields: []store.FormField{
			{Name: "email", Label: "E-mail", Type: store.FieldEmail, SubscriberField: "email"},
			{Name: "firstName", Label: "First name", Type: store.FieldText, SubscriberField: "fields.firstName"},
			{Name: "lastName", Label: "Last name", Type: store.FieldText, Required: true, SubscriberField: "fields.lastName"},
			{Name: "consent", Label: "Yes, send me the newsletter", Type: store.FieldCheckbox, Required: true},
		},
		Confirmation: &store.FormEmail{
			Subject: "Please confirm, {{fields.firstName}}", SenderName: "Shop", SenderEmail: "news@shop.example",
			HTMLBody: `<html><body><p>Hello {{fields.firstName}},</p><p><a href="{{confirmUrl}}">Confirm my subscription</a></p></body></html>`,
		},
		RedirectURL: "https://shop.example/thanks", ConfirmedURL: "https://shop.example/welcome",
		AllowedOrigins: []string{"https://shop.example"},
		ConsentText:    "Yes, send me the newsletter. I can unsubscribe at any time.", ConsentVersion: "2027-03",
	}
	if change != nil {
		change(&in)
	}
	f, err := sc.in.store.CreateForm(context.Background(), "acme", in)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// post sends a form as a browser on https://shop.example does; extra headers
// come in name, value pairs. Redirects are not followed.
func (sc *formScenario) post(t *testing.T, formID, contentType, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, sc.in.base+"/forms/"+formID, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Origin", "https://shop.example")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	return res
}

func (sc *formScenario) signUp(t *testing.T, formID, email, firstName string) *http.Response {
	t.Helper()
	return sc.post(t, formID, "application/x-www-form-urlencoded",
		url.Values{"email": {email}, "firstName": {firstName}, "lastName": {"Muster"}, "consent": {"on"}}.Encode())
}

var confirmURL = regexp.MustCompile(`http://[^"'\s<>]+/forms/confirm\?token=[A-Za-z0-9_-]+`)

// confirmLink is the link of a confirmation e-mail.
func confirmLink(t *testing.T, m mailtest.Message) string {
	t.Helper()
	link := confirmURL.FindString(m.Body("text/plain"))
	if link == "" || link != confirmURL.FindString(m.Body("text/html")) {
		t.Fatalf("no confirmation link in the message to %s:\n%s", m.To, m.Body("text/html"))
	}
	return link
}

// contacts lists the ids of the emulator's contacts with an address.
func (sc *formScenario) contacts(t *testing.T, email string) []string {
	t.Helper()
	ctx := context.Background()
	rows := sc.user.Query(ctx, "contacts", dataverse.Query{Select: []string{"contactid", "firstname"}, Filter: "emailaddress1 eq " + dataverse.QuoteString(email)})
	var ids []string
	for rows.Next(ctx) {
		id, _ := rows.Row().String("contactid")
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// ledger is a subscriber's consent history as ACTION/SOURCE, oldest first.
func (sc *formScenario) ledger(t *testing.T, subscriberID string) ([]string, []*store.ConsentEvent) {
	t.Helper()
	evs, _, err := sc.in.store.ConsentHistory(context.Background(), "acme", subscriberID, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = string(ev.Action) + "/" + string(ev.Source)
	}
	return out, evs
}

// TestSignUpFormWithDoubleOptInReachesTheCRM is the practical example of issue #9.
func TestSignUpFormWithDoubleOptInReachesTheCRM(t *testing.T) {
	t.Parallel()
	sc := startFormScenario(t)
	ctx := context.Background()
	in := sc.in
	form := sc.form(t, nil)

	res := sc.signUp(t, form.ID, "Ann.Muster@Example.de", "Ann")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "https://shop.example/thanks" {
		t.Fatalf("submission: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("an allowed origin gets the CORS header: %q", res.Header.Get("Access-Control-Allow-Origin"))
	}
	sub := in.subscriber(sc.groupID, "ann.muster@example.de")
	if sub.DoubleOptInStatus != store.OptInPending || sub.Fields["firstName"] != "Ann" {
		t.Fatalf("after the submission: %+v", sub)
	}
	m := sc.smtp.Wait(t, 1, 30*time.Second)[0]
	if m.To != "ann.muster@example.de" || m.Header.Get("Subject") != "Please confirm, Ann" || !strings.Contains(m.Body("text/html"), "Hello Ann,") {
		t.Fatalf("confirmation e-mail to %s: %q\n%s", m.To, m.Header.Get("Subject"), m.Body("text/html"))
	}
	link := confirmLink(t, m)

	// PENDING never reaches the CRM, not even when a change of it is queued.
	in.upsert(sc.tok, sc.groupID, []map[string]any{{"email": "ann.muster@example.de", "fields": map[string]any{"source": "fair"}}})
	in.drain(sc.conn)
	if events := in.syncEvents(sc.tok, sub.ID); len(events) != 1 || !strings.Contains(events[0].Detail, "has not confirmed the double opt-in") {
		t.Errorf("the queued change of a pending subscriber: %+v", events)
	}
	if ids := sc.contacts(t, "ann.muster@example.de"); len(ids) != 0 {
		t.Fatalf("a pending subscriber reached the CRM: %v", ids)
	}

	// The link confirms, once; the subscriber then reaches the CRM.
	if res := fetch(t, http.MethodGet, link); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "https://shop.example/welcome" {
		t.Fatalf("confirmation: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	linked := in.waitSubscriber(sc.tok, sc.groupID, "ann.muster@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	if linked.CRMRecord.Entity != "CONTACT" {
		t.Fatalf("linked to %+v, want a contact", linked.CRMRecord)
	}
	row, err := sc.user.Get(ctx, "contacts", linked.CRMRecord.ID, []string{"firstname", "lastname", "emailaddress1"})
	if err != nil {
		t.Fatal(err)
	}
	if first, _ := row.String("firstname"); first != "Ann" {
		t.Errorf("the contact: %v", row)
	}
	if ids := sc.contacts(t, "ann.muster@example.de"); len(ids) != 1 {
		t.Errorf("%d contacts with the address, want 1", len(ids))
	}
	if s := in.subscriber(sc.groupID, "ann.muster@example.de"); s.DoubleOptInStatus != store.OptInConfirmed || s.SubscriptionState != store.Subscribed {
		t.Errorf("after the confirmation: %s %s", s.DoubleOptInStatus, s.SubscriptionState)
	}
	if res := fetch(t, http.MethodGet, link); res.StatusCode != http.StatusGone {
		t.Errorf("the link used again: %d, want 410", res.StatusCode)
	}
	token := strings.SplitN(link, "token=", 2)[1]
	forged := link[:len(link)-len(token)] + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, token[:4]) + token[4:]
	if res := fetch(t, http.MethodGet, forged); res.StatusCode != http.StatusBadRequest {
		t.Errorf("a forged link: %d, want 400", res.StatusCode)
	}

	// Signing up again with the confirmed address sends nothing and changes nothing.
	if res := sc.signUp(t, form.ID, "ann.muster@example.de", "Annie"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("second sign-up: %d", res.StatusCode)
	}
	if n := sc.smtp.Count(); n != 1 {
		t.Errorf("%d e-mails after signing up again, want still 1", n)
	}
	if steps, _ := sc.ledger(t, sub.ID); len(steps) != 2 {
		t.Errorf("signing up again changed the ledger: %v", steps)
	}

	// A campaign's one-click unsubscribe ends the consent …
	editor := in.token("acme", "editor")
	var send struct{ ID string }
	in.mustGraphQL(editor, `mutation($in: SendCampaignInput!) { sendCampaign(input: $in) { id } }`, map[string]any{"in": map[string]any{
		"groupId": sc.groupID, "subject": "Spring", "senderName": "Shop", "senderEmail": "news@shop.example",
		"htmlBody": `<p>Hi {{fields.firstName}} <a href="https://shop.example/">shop</a></p>`,
	}}, "sendCampaign", &send)
	news := sc.smtp.Wait(t, 2, 60*time.Second)[1]
	_, _, unsub := links(t, news)
	if res := fetch(t, http.MethodPost, unsub); res.StatusCode != http.StatusOK {
		t.Fatalf("one-click unsubscribe: %d", res.StatusCode)
	}
	waitUntil(t, func() bool {
		steps, _ := sc.ledger(t, sub.ID)
		return len(steps) == 3
	})

	// … and signing up again goes through the double opt-in once more.
	if res := sc.signUp(t, form.ID, "ann.muster@example.de", "Ann"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-up after the unsubscribe: %d", res.StatusCode)
	}
	again := sc.smtp.Wait(t, 3, 30*time.Second)[2]
	if s := in.subscriber(sc.groupID, "ann.muster@example.de"); s.SubscriptionState != store.Unsubscribed {
		t.Errorf("unconfirmed, the address must stay unsubscribed: %s", s.SubscriptionState)
	}
	if res := fetch(t, http.MethodGet, confirmLink(t, again)); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("second confirmation: %d", res.StatusCode)
	}
	if s := in.subscriber(sc.groupID, "ann.muster@example.de"); s.SubscriptionState != store.Subscribed {
		t.Errorf("after confirming again: %s", s.SubscriptionState)
	}

	// The ledger answers when and how the address consented, and when it stopped.
	steps, evs := sc.ledger(t, sub.ID)
	want := []string{"REQUESTED/FORM", "CONFIRMED/CONFIRMATION", "UNSUBSCRIBED/UNSUBSCRIBE_LINK", "REQUESTED/FORM", "CONFIRMED/CONFIRMATION"}
	if strings.Join(steps, " ") != strings.Join(want, " ") {
		t.Fatalf("ledger %v, want %v", steps, want)
	}
	for i, ev := range evs {
		if ev.Email != "ann.muster@example.de" || ev.IP != "127.0.0.1" || ev.UserAgent == "" || ev.At.IsZero() {
			t.Errorf("entry %d lacks who, when or where: %+v", i, ev)
		}
		if ev.Source != store.SourceUnsubscribeLink && (ev.FormID != form.ID || ev.TextVersion != "2027-03" || ev.TokenID == "") {
			t.Errorf("entry %d lacks the form, the link or the text version: %+v", i, ev)
		}
	}
	if evs[0].TokenID != evs[1].TokenID || evs[2].TokenID == "" || evs[2].Detail != "campaign send "+send.ID {
		t.Errorf("the links are not traceable: %+v / %+v / %+v", evs[0], evs[1], evs[2])
	}
	export, err := in.store.ConsentByEmail(ctx, "acme", " ANN.MUSTER@example.de ")
	if err != nil || len(export) != 5 {
		t.Errorf("the export of the address: %d entries, %v", len(export), err)
	}
}

// TestSignUpFormRefusesWhatItMust: field errors, a filled honeypot, a foreign
// origin and too many submissions, through a running instance.
func TestSignUpFormRefusesWhatItMust(t *testing.T) {
	t.Parallel()
	sc := startFormScenario(t)
	ctx := context.Background()
	form := sc.form(t, func(in *store.FormInput) { in.RedirectURL = "" })
	asJSON := func(res *http.Response) map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			t.Fatalf("answer %d is not JSON: %v", res.StatusCode, err)
		}
		return v
	}

	res := sc.post(t, form.ID, "application/json", `{"email":"not-an-address","firstName":"`+strings.Repeat("x", 501)+`"}`)
	fields, _ := asJSON(res)["fields"].(map[string]any)
	if res.StatusCode != http.StatusUnprocessableEntity || fields["email"] != "not a valid e-mail address" ||
		fields["firstName"] != "must be at most 500 characters" || fields["lastName"] != "is required" || fields["consent"] != "must be checked" {
		t.Errorf("field errors: %d %v", res.StatusCode, fields)
	}
	res = sc.post(t, form.ID, "application/x-www-form-urlencoded", "email=bot%40example.de&lastName=Bot&consent=on&website=https%3A%2F%2Fspam.example")
	if res.StatusCode != http.StatusSeeOther || !strings.HasSuffix(res.Header.Get("Location"), "/forms/thanks?status=pending") {
		t.Errorf("honeypot: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if _, err := sc.in.store.SubscriberByEmail(ctx, "acme", sc.groupID, "bot@example.de"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the honeypot's submission was stored: %v", err)
	}
	res = sc.post(t, form.ID, "application/json", `{"email":"eve@example.de","lastName":"E","consent":true}`, "Origin", "https://evil.example")
	if res.StatusCode != http.StatusForbidden || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a foreign origin: %d %v", res.StatusCode, res.Header)
	}
	pre, err := http.NewRequest(http.MethodOptions, sc.in.base+"/forms/"+form.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	pre.Header.Set("Origin", "https://evil.example")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	if res, err := http.DefaultClient.Do(pre); err != nil || res.StatusCode != http.StatusForbidden || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight of a foreign origin: %v %v", res, err)
	}
	res = sc.post(t, form.ID, "application/json", `{"email":"joe@example.de","lastName":"Joe","consent":true}`)
	if v := asJSON(res); res.StatusCode != http.StatusOK || v["ok"] != true || v["status"] != "PENDING" {
		t.Errorf("a JSON sign-up: %d %v", res.StatusCode, v)
	}
	if n := sc.smtp.Count(); n != 1 {
		t.Errorf("%d e-mails, want the one confirmation", n)
	}
	// Ten submissions per minute and address (CRMSYNC_FORM_RATE); three were counted.
	for i := range 7 {
		if res := sc.post(t, form.ID, "application/json", `{}`); res.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("submission %d: %d", i+4, res.StatusCode)
		}
	}
	res = sc.post(t, form.ID, "application/json", `{"email":"joe@example.de","lastName":"Joe","consent":true}`)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Errorf("the eleventh submission: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	_, _ = io.Copy(io.Discard, res.Body)
}

// TestDoubleOptInFormWithoutSMTPIsRefused: without CRMSYNC_SMTP_URL a double
// opt-in form cannot send its confirmation, so it takes nothing (503); a form
// without double opt-in subscribes at once.
func TestDoubleOptInFormWithoutSMTPIsRefused(t *testing.T) {
	t.Parallel()
	in := startInstance(t)
	ctx := context.Background()
	g, err := in.store.CreateGroup(ctx, "acme", store.GroupInput{Name: "News"})
	if err != nil {
		t.Fatal(err)
	}
	sc := &formScenario{campaignCRM: &campaignCRM{listCRM: &listCRM{in: in}}, groupID: g.ID}
	doi := sc.form(t, nil)
	res := sc.signUp(t, doi.ID, "ann@example.de", "Ann")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "e-mail delivery is not configured") {
		t.Errorf("double opt-in without SMTP: %d %s", res.StatusCode, body)
	}
	if _, err := in.store.SubscriberByEmail(ctx, "acme", g.ID, "ann@example.de"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stored without a confirmation: %v", err)
	}
	single := sc.form(t, func(in *store.FormInput) { in.DoubleOptIn, in.Confirmation = false, nil })
	if res := sc.signUp(t, single.ID, "ann@example.de", "Ann"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("single opt-in: %d", res.StatusCode)
	}
	s := in.subscriber(g.ID, "ann@example.de")
	if s.SubscriptionState != store.Subscribed || s.DoubleOptInStatus != store.OptInUnknown {
		t.Errorf("single opt-in subscriber: %+v", s)
	}
	if steps, _ := sc.ledger(t, s.ID); strings.Join(steps, " ") != "SUBSCRIBED/FORM" {
		t.Errorf("ledger %v", steps)
	}
}
