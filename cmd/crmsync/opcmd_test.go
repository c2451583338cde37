package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crmsync/dataverse"
)

// Tests of the operator commands (status, sync-list, replay, import) run through
// run() against a real instance, as an operator runs them against a deployed one.

// runOp runs an operator command with the instance's URL and the token in the
// environment, as CRMSYNC_URL and CRMSYNC_TOKEN.
func (in *instance) runOp(token string, args ...string) (stdout, stderr string, err error) {
	env := map[string]string{"CRMSYNC_URL": in.base, "CRMSYNC_TOKEN": token}
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	in.t.Logf("crmsync %s\n%s%s(error: %v)", strings.Join(args, " "), out.String(), errOut.String(), err)
	return out.String(), errOut.String(), err
}

// mustContain fails the test for each want that s lacks.
func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, s)
		}
	}
}

func writeCSV(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "people.csv")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOpCommandsRefuseBadAccess: no token, a wrong token, too low a role, a bad
// URL, an instance that is not there and a missing argument each fail with one
// clear line.
func TestOpCommandsRefuseBadAccess(t *testing.T) {
	t.Parallel()
	in := startInstance(t)
	down := "http://" + freeAddr(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no token", []string{"status", "--url", in.base, "--token", ""}, "no token: pass --token or set CRMSYNC_TOKEN"},
		{"wrong token", []string{"status", "--url", in.base, "--token", "not.a.jwt"}, "UNAUTHENTICATED: "},
		{"another instance's token", []string{"replay", "--url", in.base, "--token", startInstance(t).token("acme", "admin")}, "UNAUTHENTICATED: "},
		{"viewer replays", []string{"replay", "--url", in.base, "--token", in.token("acme", "viewer")}, "FORBIDDEN: this needs the admin role"},
		{"bad URL", []string{"status", "--url", "127.0.0.1:8080", "--token", "t"}, `bad --url "127.0.0.1:8080"`},
		{"nobody there", []string{"sync-list", "6f1c1c43-0000-4000-8000-000000000000", "--url", down, "--token", "t"}, "cannot reach crmsync at " + down + ": "},
		{"not crmsync", []string{"status", "--url", in.base + "/healthz/x", "--token", "t"}, "not GraphQL: is it a crmsync instance?"},
		{"no list id", []string{"sync-list", "--dry-run", "--url", in.base, "--token", "t"}, "sync-list: <listId> is required"},
		{"no file", []string{"import", "g1", "--url", in.base, "--token", "t"}, "import: <file.csv> is required"},
		{"bad status", []string{"replay", "--status", "LOST", "--url", in.base, "--token", "t"}, `replay: --status "LOST" is none of PENDING, APPLIED, SKIPPED, FAILED`},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, func(string) string { return "" }, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v; want one line with %q", tc.name, err, tc.want)
		}
	}
}

// TestImportCommandReportsWhatItDid: an import of good, duplicate and invalid rows
// creates and merges the good ones, names each rejected row's line and reason, and
// shows its progress as plain lines when not on a terminal; a malformed file is
// refused, naming its line, before anything is sent.
func TestImportCommandReportsWhatItDid(t *testing.T) {
	t.Parallel()
	in := startInstance(t)
	editor := in.token("acme", "editor")
	var group struct{ ID string }
	in.mustGraphQL(editor, `mutation { createSubscriberGroup(input: {name: "Import"}) { id } }`, nil, "createSubscriberGroup", &group)

	path := writeCSV(t, "\ufeffemail,firstName,language,subscriptionState,fields.city\n"+
		"ada@example.de,Ada,en,,Köln\n"+
		" ADA@example.de ,Ada L.,,,\n"+ // the same address again: merged, later row wins
		"not-an-email,X,,,\n"+
		"bob@example.de,Bob,de,unsubscribed,\n"+
		"carl@example.de,Carl,,maybe,\n")
	out, errOut, err := in.runOp(editor, "import", group.ID, path)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "import output", out,
		`into group "Import" (`+group.ID+`): 5 rows, created 2, updated 0, merged 1, rejected 2`,
		`line 4  "not-an-email": `,
		`line 6  "carl@example.de": subscriptionState "maybe" is neither SUBSCRIBED nor UNSUBSCRIBED`)
	mustContain(t, "import progress", errOut, "5/5 rows (100%)")
	if strings.Contains(errOut, "\r") {
		t.Errorf("progress not on a terminal redraws a bar: %q", errOut)
	}

	type sub struct {
		Email, Language, SubscriptionState string
		Fields                             map[string]any
	}
	get := func(email string) *sub {
		var s *sub
		in.mustGraphQL(editor, `query($g: ID!, $e: String!) { subscriberByEmail(groupId: $g, email: $e) { email language subscriptionState fields } }`,
			map[string]any{"g": group.ID, "e": email}, "subscriberByEmail", &s)
		return s
	}
	if ada := get("ada@example.de"); ada == nil || ada.Language != "en" || ada.Fields["firstName"] != "Ada L." || ada.Fields["city"] != "Köln" {
		t.Errorf("ada = %+v", ada)
	}
	if bob := get("bob@example.de"); bob == nil || bob.SubscriptionState != "UNSUBSCRIBED" || bob.Language != "de" {
		t.Errorf("bob = %+v", bob)
	}
	if carl := get("carl@example.de"); carl != nil {
		t.Errorf("the rejected row was stored: %+v", carl)
	}

	// Again, two rows a call: nothing new, and the rows spread over three batches.
	out, _, err = in.runOp(editor, "import", "--batch", "2", group.ID, path)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "second import", out, "5 rows, created 0, ", "rejected 2")

	count := func() int {
		var g struct{ SubscriberCount int }
		in.mustGraphQL(editor, `query($g: ID!) { subscriberGroup(id: $g) { subscriberCount } }`, map[string]any{"g": group.ID}, "subscriberGroup", &g)
		return g.SubscriberCount
	}
	before := count()
	for _, tc := range []struct{ csv, want string }{
		{"name,city\nAda,Köln\n", "people.csv line 1: no email column (the header has name, city)"},
		{"email,city\nnew1@example.de,Köln\nnew2@example.de\n", "people.csv line 3: 1 columns, but the header has 2"},
		{"email,city\nnew1@example.de,Köln\nnew2@example.de,K\"öln\n", "people.csv line 3: "},
		{"email,email\nnew1@example.de,x\n", `people.csv line 1: column "email" appears twice`},
		{"", "people.csv is empty"},
	} {
		_, _, err := in.runOp(editor, "import", group.ID, writeCSV(t, tc.csv))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("import of %q: error %v; want %q", tc.csv, err, tc.want)
		}
	}
	if after := count(); after != before {
		t.Errorf("malformed files changed the group: %d subscribers, were %d", after, before)
	}
	if _, _, err := in.runOp(in.token("acme", "viewer"), "import", group.ID, path); err == nil || !strings.Contains(err.Error(), "import: FORBIDDEN: this needs the editor role; nothing was imported") {
		t.Errorf("a viewer's import: %v", err)
	}
	if _, _, err := in.runOp(editor, "import", "0199aaaa-0000-7000-8000-000000000000", path); err == nil || !strings.Contains(err.Error(), "no subscriber group 0199aaaa-0000-7000-8000-000000000000") {
		t.Errorf("import into an unknown group: %v", err)
	}
}

// TestStatusAndReplayOfAFailedEvent: a subscriber whose trip to the CRM failed (an
// owner login the CRM does not know) shows in status as a failed event; once the
// connection is fixed, replay re-queues it and the subscriber reaches the CRM.
func TestStatusAndReplayOfAFailedEvent(t *testing.T) {
	t.Parallel()
	dv, _ := startEmulator(t)
	in := startInstance(t)
	admin := in.token("acme", "admin")
	connID := in.createCRMConnection(admin, dv.URL(), "nobody@emulator.test")
	groupID := in.syncedGroup(admin, connID, "News")
	in.upsert(admin, groupID, []map[string]any{{"email": "x@example.de"}})
	var sub subscriberView
	waitUntil(t, func() bool {
		in.mustGraphQL(admin, subscriberQuery, map[string]any{"g": groupID, "e": "x@example.de"}, "subscriberByEmail", &sub)
		for _, ev := range in.syncEvents(admin, sub.ID) {
			if ev.Status == "FAILED" {
				return true
			}
		}
		return false
	})

	out, _, err := in.runOp(in.token("acme", "viewer"), "status")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "status", out, "crmsync at "+in.base, "Connections (1)", connID, "Emulator", "CONTACT",
		"Subscriber groups (1)", groupID, "News", "Failed sync events (1;", sub.ID, `"nobody@emulator.test" resolves to no systemuser`)
	// Another tenant's status shows none of it.
	out, _, err = in.runOp(in.token("globex", "viewer"), "status")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "another tenant's status", out, "Connections (0)", "Subscriber groups (0)", "No failed sync events.")

	if out, _, err := in.runOp(admin, "replay", "--record", "0199aaaa-0000-7000-8000-000000000000"); err != nil || !strings.Contains(out, "nothing to replay: 0 failed events of record") {
		t.Errorf("replay of another record: %q, %v", out, err)
	}
	in.mustGraphQL(admin, `mutation($c: ID!) { updateConnection(id: $c, input: {ownerLogin: "crmsync@emulator.test"}) { id } }`,
		map[string]any{"c": connID}, "updateConnection", new(struct{ ID string }))
	out, _, err = in.runOp(admin, "replay", "--status", "failed", "--record", sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "replay", out, "re-queued 1 failed event of record "+sub.ID)
	in.waitSubscriber(admin, groupID, "x@example.de", func(s subscriberView) bool { return s.CRMRecord != nil })
	if out, _, err := in.runOp(admin, "replay"); err != nil || !strings.Contains(out, "nothing to replay: 0 failed events") {
		t.Errorf("replay with nothing failed: %q, %v", out, err)
	}
}

// TestSyncListCommand: a dry run prints every change it would make and changes
// nothing; a sync applies them; a run that fails makes the command fail with the
// run's error.
func TestSyncListCommand(t *testing.T) {
	t.Parallel()
	c := startListCRM(t)
	ctx := context.Background()
	listID := c.create(t, "lists", map[string]any{"listname": "Press", "createdfromcode": dataverse.ListMemberContact, "type": false})
	for _, p := range [][2]string{{"Eve", "eve@example.de"}, {"Finn", "finn@example.de"}} {
		id := c.create(t, "contacts", map[string]any{"lastname": p[0], "emailaddress1": p[1]})
		if _, err := c.user.AddListMember(ctx, listID, id); err != nil {
			t.Fatal(err)
		}
	}
	editor := c.in.token("acme", "editor")

	out, errOut, err := c.in.runOp(editor, "sync-list", listID, "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "dry run", out, "SKIPPED (dry run): would add 2, remove 0, update 0", "  ADD     eve@example.de\n", "  ADD     finn@example.de\n")
	mustContain(t, "dry run progress", errOut, "dry run of list "+listID+" started: run ")
	if l := c.list(t, listID); l.Group != nil && l.Group.SubscriberCount != 0 {
		t.Errorf("the dry run changed the group: %+v", l.Group)
	}

	out, _, err = c.in.runOp(editor, "sync-list", "--url", c.in.base, listID)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "sync", out, "APPLIED: added 2, removed 0, updated 0")
	if strings.Contains(out, "ADD") {
		t.Errorf("a sync that is not a dry run lists its changes:\n%s", out)
	}
	if l := c.list(t, listID); l.Group == nil || l.Group.SubscriberCount != 2 {
		t.Errorf("list after the sync = %+v", l)
	}

	// The list deleted in the CRM (its webhook lost): the run fails, and so does the command.
	if err := c.user.Delete(ctx, "lists", listID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = c.in.runOp(editor, "sync-list", listID)
	if err == nil || !strings.Contains(err.Error(), "FAILED after 1 attempt: ") || !strings.Contains(err.Error(), "404") {
		t.Errorf("sync of a list deleted in the CRM: %v (after %s)", err, time.Since(start))
	}
	if _, _, err := c.in.runOp(editor, "sync-list", "6f1c1c43-0000-4000-8000-000000000000"); err == nil || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Errorf("sync of an unknown list: %v", err)
	}
}

// testProgress is a progress writing to a buffer, on a clock that only advance moves.
func testProgress(bar bool, unit string, total int) (p *progress, out *bytes.Buffer, advance func(time.Duration)) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	out = new(bytes.Buffer)
	p = startProgress(out, bar, unit, total, func() time.Time { return now })
	return p, out, func(d time.Duration) { now = now.Add(d) }
}

// TestProgressPlainLines: off a terminal, progress is a line at most every few
// seconds, and always the last one.
func TestProgressPlainLines(t *testing.T) {
	t.Parallel()
	p, b, advance := testProgress(false, "rows", 4000)
	for _, step := range []struct {
		after time.Duration
		done  int
	}{{time.Second, 1000}, {time.Second, 2000}, {2 * time.Second, 3000}, {time.Second, 4000}} {
		advance(step.after)
		p.update(step.done)
	}
	p.finish()
	want := "1000/4000 rows (25%), 1000 rows/s, ETA 3s\n" +
		"3000/4000 rows (75%), 750 rows/s, ETA 1.3s\n" +
		"4000/4000 rows (100%), 800 rows/s, took 5s\n"
	if b.String() != want {
		t.Errorf("plain progress:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestProgressBarOnATerminal: on a terminal the one line is redrawn with a bar, a
// message goes above it, and finish ends the line.
func TestProgressBarOnATerminal(t *testing.T) {
	t.Parallel()
	p, b, advance := testProgress(true, "rows", 100)
	advance(2 * time.Second)
	p.update(50)
	p.logf("batch %d failed", 1)
	p.finish()
	bar := "\r[############------------] 50/100 rows (50%), 25 rows/s, ETA 2s\x1b[K"
	want := bar + "\r\x1b[Kbatch 1 failed\n" + bar + bar + "\n"
	if b.String() != want {
		t.Errorf("bar:\n%q\nwant:\n%q", b.String(), want)
	}
	if isTerminal(b) {
		t.Error("a buffer is taken for a terminal")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is taken for a terminal")
	}
}

// TestProgressWithoutTotal: with no total known, progress shows the count, the rate
// and the time so far.
func TestProgressWithoutTotal(t *testing.T) {
	t.Parallel()
	p, b, advance := testProgress(false, "changes", 0)
	advance(4 * time.Second)
	p.update(20)
	p.finish()
	if want := "20 changes, 5.0 changes/s, 4s\n"; b.String() != want {
		t.Errorf("progress = %q, want %q", b.String(), want)
	}
}
