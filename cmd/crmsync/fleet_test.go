package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"crmsync/dataverse"
	"crmsync/loadgen"
	"crmsync/store"
)

// The fleet test runs crmsync the way design.md's "Scale-out" describes: several
// stateless `crmsync serve` processes (the real binary, built here) sharing one
// Redis and one store (`crmsync store-server`). Load goes to all of them, one is
// killed with SIGKILL mid-stream, and the survivors must finish its work.

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// crmsyncBinary builds the crmsync binary once per test binary, without -race, so
// the fleet's processes run as users run them.
func crmsyncBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crmsync-bin-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "crmsync")
		out, err := exec.Command("go", "build", "-o", binaryPath, ".").CombinedOutput()
		if err != nil {
			binaryErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

// fleetEmail is the address of the fleet test's record i.
func fleetEmail(i int) string { return fmt.Sprintf("fleet-%d@example.test", i) }

func TestFleetOfThreeSurvivesAKill(t *testing.T) {
	t.Parallel()
	bin := crmsyncBinary(t)
	dir := t.TempDir()
	storeServer := startChild(t, exec.Command(bin, "store-server", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "store")), "listening on ")

	env := testEnv(t)
	env["MONGODB_URI"] = storeServer.base
	h := newHarness(t, env) // writes the fleet's shared secrets before any instance starts
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{}
	serveProcess := func(name string) *proc {
		cmd := exec.Command(bin, "serve")
		cmd.Env = os.Environ()
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v) // the last value of a key wins
		}
		logs[name] = filepath.Join(dir, name+".log")
		f, err := os.Create(logs[name])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		cmd.Stderr = f
		return startChild(t, cmd, "crmsync listening on ")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, path := range logs {
				t.Logf("log of instance %s:\n%s", name, tail(path, 30))
			}
		}
	})
	procs := []*proc{serveProcess("a"), serveProcess("b"), serveProcess("c")}
	a, b, c := procs[0], procs[1], procs[2]
	as := func(p *proc) *instance { return &instance{t: t, base: p.base, cfg: cfg, store: h.store} }

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const records, perInstance = 200, 600
	target, err := h.client(a.base).Setup(ctx, "fleet", 3*records, fleetEmail)
	if err != nil {
		t.Fatal(err)
	}

	// A list that syncs from the emulator, scheduled to run once while the load is on.
	dv, user := startEmulator(t)
	crm := &listCRM{dv: dv, user: user, in: as(a), tok: h.token}
	crm.conn = crm.in.createCRMConnection(h.token, dv.URL(), "crmsync@emulator.test")
	listID := crm.create(t, "lists", map[string]any{"listname": "Fleet weekly", "createdfromcode": dataverse.ListMemberContact, "type": false})
	for _, name := range []string{"Fay", "Gus"} {
		id := crm.create(t, "contacts", map[string]any{"lastname": name, "emailaddress1": strings.ToLower(name) + "@example.de"})
		if _, err := user.AddListMember(ctx, listID, id); err != nil {
			t.Fatal(err)
		}
	}
	crm.in.mustGraphQL(h.token, `mutation($l: ID!) { syncMarketingList(listId: $l, dryRun: false) { id } }`, map[string]any{"l": listID}, "syncMarketingList", new(struct{ ID string }))
	crm.waitList(t, listID, func(l listView) bool { return l.LastSyncedAt != nil && l.MemberCount == 2 })
	hal := crm.create(t, "contacts", map[string]any{"lastname": "Hal", "emailaddress1": "hal@example.de"})
	if _, err := user.AddListMember(ctx, listID, hal); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(3 * time.Second).UTC()
	as(c).mustGraphQL(h.token, `mutation($l: ID!, $in: ListScheduleInput!) { setListSchedule(listId: $l, input: $in) { id } }`,
		map[string]any{"l": listID, "in": map[string]any{"periodic": true, "interval": "POINT_IN_TIME", "syncAt": at.Format(time.RFC3339Nano)}},
		"setListSchedule", new(struct{ ID string }))

	// Load to all three; each instance's events are about records of their own.
	results := make([]*loadgen.Result, 3)
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() {
			results[i], _ = loadgen.Run(ctx, loadgen.Config{
				URL: strings.Replace(target.WebhookURL, a.base, p.base, 1), Count: perInstance, Records: records, Workers: 4,
				Run: fmt.Sprintf("fleet-%d", i), Email: func(r int) string { return fleetEmail(i*records + r) },
			})
		})
	}
	waitUntil(t, func() bool {
		st, err := h.store.IngestStats(ctx, "faults", target.ConnectionID)
		return err == nil && st.Processed+st.Pending >= perInstance
	})
	b.kill()
	wg.Wait()
	for _, i := range []int{0, 2} {
		if r := results[i]; r.Accepted != perInstance || r.Errors != 0 {
			t.Errorf("surviving instance %d answered %+v; want all %d accepted", i, r, perInstance)
		}
	}
	if results[1].Errors == 0 {
		t.Log("the kill came after instance b's last call; the survivors still take over its stream entries")
	}

	// The ledger balances: every accepted event was applied, by whichever instance.
	h.assertApplied(a.base, target.ConnectionID, loadgen.Merge(results...))
	// Applied once in effect: one subscriber per address, and each survivor's record
	// ends at its newest event (a redelivered older one did not win).
	var group struct{ SubscriberCount int }
	as(a).mustGraphQL(h.token, `query($g: ID!) { subscriberGroup(id: $g) { subscriberCount } }`, map[string]any{"g": target.GroupID}, "subscriberGroup", &group)
	if group.SubscriberCount != 3*records {
		t.Errorf("the group has %d subscribers, want %d", group.SubscriberCount, 3*records)
	}
	for _, i := range []int{0, 2} {
		for r := range records {
			sub, err := h.store.SubscriberByEmail(ctx, "faults", target.GroupID, fleetEmail(i*records+r))
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("Load %d", perInstance-records+r); sub.Fields["lastName"] != want {
				t.Errorf("%s ends with lastName %v, want %q (its newest event)", sub.Email, sub.Fields["lastName"], want)
				break
			}
		}
	}

	// The schedule fired once across the fleet, whoever held its lease.
	run := waitScheduledRun(t, crm, listID)
	if run.Status != "APPLIED" || run.Added != 1 {
		t.Errorf("the scheduled run = %+v; want APPLIED with Hal added", run)
	}
	time.Sleep(time.Second) // the survivors' schedulers ticked again: still one run
	if n := len(scheduledRuns(crm, listID)); n != 1 {
		t.Errorf("%d scheduled runs for one due time, want 1", n)
	}

	// A survivor's dashboard shows the fleet's events.
	total, err := h.store.CountSyncEvents(ctx, "faults", store.SyncEventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	browser := startBrowser(t)
	browse(t, browser,
		chromedp.Navigate(c.base+"/ui#token="+h.token),
		pageShows("#events", "APPLIED", "CRM_TO_EMS"),
		pageShows("#lists", "Fleet weekly"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#chart svg rect').length > 0`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	shown, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS("#events p.empty")))
	if err != nil {
		t.Fatal(err)
	}
	if n := leadingNumber(shown); n != total {
		t.Errorf("the dashboard says %q; the store holds %d sync events", shown, total)
	}
}

// waitScheduledRun waits for the list's one scheduled run to finish and fails the
// test when there are more.
func waitScheduledRun(t *testing.T, c *listCRM, listID string) runView {
	t.Helper()
	var runs []runView
	waitUntil(t, func() bool {
		runs = scheduledRuns(c, listID)
		if len(runs) > 1 {
			t.Fatalf("%d scheduled runs for one due time: %+v", len(runs), runs)
		}
		return len(runs) == 1 && runs[0].Status != "PENDING"
	})
	return runs[0]
}

// scheduledRuns answers the runs of a list that its schedule started.
func scheduledRuns(c *listCRM, listID string) []runView {
	var runs struct{ Edges []struct{ Node runView } }
	c.in.mustGraphQL(c.tok, `query($l: ID!) { syncRuns(listId: $l) { edges { node { `+runFields+` } } } }`, map[string]any{"l": listID}, "syncRuns", &runs)
	var out []runView
	for _, e := range runs.Edges {
		if e.Node.Trigger == "schedule" {
			out = append(out, e.Node)
		}
	}
	return out
}

// leadingNumber reads the number a text begins with, "1,234 events" → 1234; -1
// when there is none.
func leadingNumber(s string) int {
	m := regexp.MustCompile(`^[\d,.\s]+`).FindString(s)
	n, err := strconv.Atoi(strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, m))
	if err != nil {
		return -1
	}
	return n
}

// tail answers the last n lines of a file, for a failing test's log.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
