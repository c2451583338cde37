package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"crmsync/mail/mailtest"
	"crmsync/store"
)

// pageShows waits until the element sel shows every one of words in its text.
func pageShows(sel string, words ...string) chromedp.Action[chromedp.Void] {
	return pollWith(`(sel, ...words) => {
		const e = document.querySelector(sel);
		return !!e && words.every((w) => e.innerText.includes(w));
	}`, sel, words)
}

// rowShows waits until a table row under sel has a cell reading exactly each of cells.
func rowShows(sel string, cells ...string) chromedp.Action[chromedp.Void] {
	return pollWith(`(sel, ...want) => [...document.querySelectorAll(sel + ' tr')].some(
		(r) => want.every((w) => [...r.cells].some((c) => c.innerText.trim() === w)))`, sel, cells)
}

func pollWith(fn, sel string, words []string) chromedp.Action[chromedp.Void] {
	args := []any{sel}
	for _, w := range words {
		args = append(args, w)
	}
	return chromedp.PollFunction[chromedp.Void](fn, chromedp.WithPollingArgs(args...),
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(25*time.Second))
}

// TestDashboardInABrowser loads /ui with an admin token in the link's fragment, sees
// the seeded connection with its health, group, send and dead letter, the charts of
// events and of Web API budget use (with the requests the emulator counted), and
// replays the dead letter with its button once the connection is fixed.
func TestDashboardInABrowser(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	dv := startCountedEmulator(t)
	env := testEnv(t)
	env["CRMSYNC_SMTP_URL"] = mailtest.Start(t, true).URL // a draft send goes nowhere
	in := startInstanceEnv(t, env)
	admin := in.token("acme", "admin")
	// An owner login the CRM does not know makes the subscriber's trip to the CRM fail.
	connID := in.createCRMConnection(admin, dv.url, "nobody@emulator.test")
	groupID := in.syncedGroup(admin, connID, "Dashboard News")
	in.upsert(admin, groupID, []map[string]any{{"email": "x@example.de"}, {"email": "y@example.de"}})
	in.mustGraphQL(admin, `mutation($g: ID!) { sendCampaign(input: {groupId: $g, subject: "Autumn offers", senderName: "Shop",
		senderEmail: "news@shop.example", textBody: "Hello", draft: true}) { id } }`, map[string]any{"g": groupID}, "sendCampaign", new(struct{ ID string }))
	var sub subscriberView
	in.mustGraphQL(admin, subscriberQuery, map[string]any{"g": groupID, "e": "x@example.de"}, "subscriberByEmail", &sub)
	failed := sub.ID
	waitUntil(t, func() bool {
		for _, ev := range in.syncEvents(admin, failed) {
			if ev.Status == "FAILED" {
				return true
			}
		}
		return false
	})

	// The budget counts every request crmsync sent the emulator, once flushed to Redis.
	var budget struct{ Used, Left int }
	waitUntil(t, func() bool {
		in.mustGraphQL(admin, `query($c: ID!) { apiBudget(connectionId: $c) { used left } }`, map[string]any{"c": connID}, "apiBudget", &budget)
		return budget.Used > 0 && int64(budget.Used) == dv.crmsyncRequests()
	})
	if budget.Left != 6000-budget.Used {
		t.Errorf("apiBudget = %+v", budget)
	}
	var conn struct{ Health struct{ Status string } }
	in.mustGraphQL(admin, `query($c: ID!) { connection(id: $c) { health { status } } }`, map[string]any{"c": connID}, "connection", &conn)
	if s := conn.Health.Status; s != "FAILING" && s != "DEGRADED" {
		t.Errorf("with a dead letter the connection is %s", s)
	}

	msg := browse(t, browser,
		chromedp.Navigate(in.base+"/ui#token="+admin),
		rowShows("#groups", "Dashboard News", "on", "2", "Emulator"),
		rowShows("#connections", dv.url, "not registered"),
		pageShows("#connections", conn.Health.Status, "waiting for a replay"),
		rowShows("#sends", "Autumn offers", "DRAFT"),
		pageShows("#dead-letters", failed, "nobody@emulator.test"),
		pageShows("#events", failed, "FAILED"),
		chromedp.WaitVisible(chromedp.CSS(`#dead-letters button.replay[data-record="`+failed+`"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#chart svg rect').length > 0`, chromedp.WithPollingTimeout(10*time.Second)),
		pageShows("#budget", "Emulator", "of 6,000 requests used in the last 5 minutes"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#budget svg rect').length > 0`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	if !strings.HasPrefix(msg, "Updated") {
		t.Errorf("the status line says %q", msg)
	}
	// The chart shows the requests counted: at least those seen above, at most
	// what the emulator has counted by now.
	shown, err := chromedp.Run(browser, chromedp.Evaluate[struct{ Used, Requests string }](
		`(({used, requests}) => ({used, requests}))(document.querySelector('#budget .budget-summary[data-connection="`+connID+`"]').dataset)`))
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"used in the window": shown.Used, "in the chart": shown.Requests} {
		if n, err := strconv.Atoi(v); err != nil || n < budget.Used || int64(n) > dv.crmsyncRequests() {
			t.Errorf("requests %s: %q, want %d … %d", name, v, budget.Used, dv.crmsyncRequests())
		}
	}
	// The token left the address bar once read; neither #error nor the token form shows.
	state, err := chromedp.Run(browser, chromedp.Evaluate[struct {
		Hash        string
		Error, Form bool
	}](`({hash: location.hash, error: !!document.querySelector('#error').offsetParent,
		form: !!document.querySelector('#token-form').offsetParent})`))
	if err != nil || state.Hash != "" || state.Error || state.Form {
		t.Errorf("after loading: %+v, %v", state, err)
	}

	// The status filter asks the API again: nothing is APPLIED yet.
	if _, err := chromedp.Run(browser, chromedp.Evaluate[bool](`(s => { s.value = 'APPLIED'; s.dispatchEvent(new Event('change')); return true; })(document.querySelector('#event-status'))`)); err != nil {
		t.Fatal(err)
	}
	browse(t, browser, pageShows("#events", "0 events APPLIED", "No sync events."))

	// Fix the connection, then replay from the page.
	in.mustGraphQL(admin, `mutation($c: ID!) { updateConnection(id: $c, input: {ownerLogin: "crmsync@emulator.test"}) { id } }`,
		map[string]any{"c": connID}, "updateConnection", new(struct{ ID string }))
	msg = browse(t, browser,
		chromedp.Click(chromedp.CSS(`#dead-letters button.replay[data-record="`+failed+`"]`)),
		pageShows("#msg", "Re-queued 1 failed event of record "+failed),
		chromedp.PollFunction[chromedp.Void](`(id) => !document.querySelector('#dead-letters').innerText.includes(id)`,
			chromedp.WithPollingArgs(failed), chromedp.WithPollingInterval(100*time.Millisecond)),
	)
	if !strings.Contains(msg, "Re-queued 1 failed event") {
		t.Errorf("after the replay the status line says %q", msg)
	}
	n, err := in.store.CountSyncEvents(context.Background(), "acme", store.SyncEventFilter{RecordID: failed, Status: store.InboxFailed})
	if err != nil || n != 0 {
		t.Errorf("after the replay, %d events of the record are still FAILED (%v)", n, err)
	}
	in.waitSubscriber(admin, groupID, "x@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
}
