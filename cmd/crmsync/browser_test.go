package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"crmsync/dataverse"
	"crmsync/mail/mailtest"
)

// Browser tests drive Debian's chromium headless (issue #9). On a machine without
// it they skip with a notice; CI installs it and sets CRMSYNC_REQUIRE_BROWSER=1,
// which turns a missing browser into a failure.

// startBrowser starts a headless chromium with a fresh profile for the test.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CRMSYNC_REQUIRE_BROWSER") != "" {
			t.Fatal("chromium is not installed, and CRMSYNC_REQUIRE_BROWSER says the browser tests must run")
		}
		t.Skip("notice: chromium is not installed (apt-get install chromium); the browser test is skipped here and runs in CI")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, which lives as long as ctx: no timeout
	// on it; the test's steps run with timeouts of their own (browse).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// browse runs steps in the browser, with a timeout, and answers the text of the
// element #msg of the page they end on.
func browse(t *testing.T, browser context.Context, steps ...chromedp.Action[chromedp.Void]) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, 30*time.Second)
	defer cancel()
	steps = append(steps, chromedp.WaitVisible(chromedp.CSS("#msg")))
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("in the browser: %v", err)
	}
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#msg")))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return msg
}

// TestSignUpFormInABrowser is the brief's practical example: a web site's form
// adds a person to a CRM-synced group; the confirmation e-mail's link, opened in
// the browser, confirms; and the person appears in the CRM as a contact.
func TestSignUpFormInABrowser(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	smtp := mailtest.Start(t, true)
	dv, user := startEmulator(t)
	env := testEnv(t)
	env["CRMSYNC_SMTP_URL"] = smtp.URL
	in := startInstanceEnv(t, env)
	admin := in.token("acme", "admin")
	conn := in.createCRMConnection(admin, dv.URL(), "crmsync@emulator.test")
	group := in.syncedGroup(admin, conn, "Newsletter")

	var formID string
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/":
			fmt.Fprintf(w, `<!doctype html><html><body><h1>Our newsletter</h1>
<form id="signup" method="post" action="%s/forms/%s">
  <input name="email" type="email"> <input name="firstName">
  <input name="website" style="display:none" tabindex="-1" autocomplete="off">
  <label><input name="consent" type="checkbox" value="yes"> Yes, send me the newsletter</label>
  <button id="go" type="submit">Sign up</button>
</form></body></html>`, in.base, formID)
		case "/thanks":
			fmt.Fprint(w, `<!doctype html><html><body><p id="msg">Check your inbox</p></body></html>`)
		case "/welcome":
			fmt.Fprint(w, `<!doctype html><html><body><p id="msg">Welcome aboard</p></body></html>`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(site.Close)

	editor := in.token("acme", "editor")
	var form struct{ ID string }
	in.mustGraphQL(editor, `mutation($in: FormInput!) { createForm(input: $in) { id } }`, map[string]any{"in": map[string]any{
		"groupId": group, "name": "Newsletter sign-up", "doubleOptIn": true,
		"fields": []map[string]any{
			{"name": "email", "type": "EMAIL", "required": true, "subscriberField": "email"},
			{"name": "firstName", "type": "TEXT", "subscriberField": "fields.firstName"},
			{"name": "consent", "type": "CHECKBOX", "required": true},
		},
		"confirmation": map[string]any{"subject": "Please confirm", "senderName": "Shop", "senderEmail": "news@shop.example",
			"htmlBody": `<p>Hello {{fields.firstName}}, please <a href="{{confirmUrl}}">confirm</a>.</p>`},
		"redirectUrl": site.URL + "/thanks", "confirmedUrl": site.URL + "/welcome", "allowedOrigins": []string{site.URL},
		"consentText": "Yes, send me the newsletter", "consentVersion": "2026-11",
	}}, "createForm", &form)
	formID = form.ID

	msg := browse(t, browser,
		chromedp.Navigate(site.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#signup")),
		chromedp.SendKeys(chromedp.CSS("input[name=email]"), " Browser.User@Example.de "),
		chromedp.SendKeys(chromedp.CSS("input[name=firstName]"), "Brenda"),
		chromedp.Click(chromedp.CSS("input[name=consent]")),
		chromedp.Click(chromedp.CSS("#go")),
	)
	if msg != "Check your inbox" {
		t.Fatalf("after submitting, the browser shows %q", msg)
	}

	// Pending: not in the CRM yet.
	sub, err := in.store.SubscriberByEmail(context.Background(), "acme", group, "browser.user@example.de")
	if err != nil || sub.DoubleOptInStatus != "PENDING" {
		t.Fatalf("after the submit: %+v, %v", sub, err)
	}
	mails := smtp.Wait(t, 1, 30*time.Second)
	link := regexp.MustCompile(`https?://[^"'\s<>]+/forms/confirm\?token=[A-Za-z0-9_%-]+`).FindString(mails[0].Body("text/html"))
	if link == "" || mails[0].To != "browser.user@example.de" || !strings.Contains(mails[0].Body("text/html"), "Hello Brenda") {
		t.Fatalf("confirmation e-mail to %s:\n%s", mails[0].To, mails[0].Body("text/html"))
	}
	if n := contactsWith(t, user, "browser.user@example.de"); n != 0 {
		t.Fatalf("a PENDING subscriber reached the CRM (%d contacts)", n)
	}

	msg = browse(t, browser, chromedp.Navigate(strings.ReplaceAll(link, "&amp;", "&")))
	if msg != "Welcome aboard" {
		t.Fatalf("after confirming, the browser shows %q", msg)
	}
	waitUntil(t, func() bool { return contactsWith(t, user, "browser.user@example.de") == 1 })

	// The ledger answers when and how the address consented.
	var history struct {
		Edges []struct {
			Node struct{ Action, Source, TextVersion, FormID string }
		}
	}
	in.mustGraphQL(admin, `query($s: ID!) { consentHistory(subscriberId: $s) { edges { node { action source textVersion formId } } } }`,
		map[string]any{"s": sub.ID}, "consentHistory", &history)
	var steps []string
	for _, e := range history.Edges {
		steps = append(steps, e.Node.Action+"/"+e.Node.Source)
		if e.Node.FormID != formID || e.Node.TextVersion != "2026-11" {
			t.Errorf("ledger entry %+v lacks the form or the text version", e.Node)
		}
	}
	if len(steps) < 2 || steps[0] != "REQUESTED/FORM" || steps[1] != "CONFIRMED/CONFIRMATION" {
		t.Errorf("consent history = %v", steps)
	}
}

func contactsWith(t *testing.T, c *dataverse.Client, email string) int {
	t.Helper()
	ctx := context.Background()
	rows := c.Query(ctx, "contacts", dataverse.Query{Select: []string{"contactid"}, Filter: "emailaddress1 eq '" + email + "'"})
	n := 0
	for rows.Next(ctx) {
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
