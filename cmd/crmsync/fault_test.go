package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"crmsync/auth"
	"crmsync/loadgen"
	"crmsync/store"
	"crmsync/store/embedded"
)

// The fault tests of the ingest promise: every event answered 202 is applied, whatever
// happens to the processes, Redis or the store around it. Each balances the ledger:
// sent = accepted + duplicates + rejected + errors, and every accepted event is applied.

// proc is crmsync serve in a child process, so that it can be killed for real.
type proc struct {
	cmd  *exec.Cmd
	base string
	done chan struct{}
}

func startProcess(t testing.TB, env map[string]string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "CRMSYNC_TEST_SERVE=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return startChild(t, cmd, "crmsync listening on ")
}

// startChild starts cmd and waits for the line of its standard output that begins
// with ready; the rest of that line is the child's address. The child is killed
// when the test ends.
func startChild(t testing.TB, cmd *exec.Cmd, ready string) *proc {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = testWriter{t}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if base, ok := strings.CutPrefix(sc.Text(), ready); ok {
				addr <- base
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	select {
	case p.base = <-addr:
	case <-p.done:
		t.Fatalf("%s exited before it was ready", strings.Join(cmd.Args, " "))
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not become ready", strings.Join(cmd.Args, " "))
	}
	return p
}

// kill ends the process with SIGKILL: no shutdown, no lease released, no stream
// entry acknowledged.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// harness holds what a fault test shares between instances.
type harness struct {
	t     testing.TB
	env   map[string]string
	token string
	store *store.Store
}

func newHarness(t testing.TB, env map[string]string) *harness {
	t.Helper()
	secrets, err := auth.LoadOrCreateSecrets(env["CRMSYNC_DATA_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	key, _ := auth.DecodeSecretKey(secrets.SecretKey)
	tok, err := auth.Mint([]byte(secrets.JWTSecret), "fault-test", "faults", []string{"admin"}, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Config{URI: env["MONGODB_URI"], Database: env["MONGODB_DATABASE"], SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.DropDatabase(context.Background())
		_ = st.Close(context.Background())
	})
	return &harness{t: t, env: env, token: tok, store: st}
}

func (h *harness) client(base string) *loadgen.Client {
	return &loadgen.Client{BaseURL: base, Token: h.token}
}

// assertApplied checks the ledger: every accepted event was applied (none pending,
// none failed), and nothing was lost on the way.
func (h *harness) assertApplied(base, connectionID string, res *loadgen.Result) {
	h.t.Helper()
	if !res.Balanced() {
		h.t.Errorf("requests not accounted for: %+v", res)
	}
	// Generous: this checks that nothing is lost, not how fast; the whole suite
	// shares one store server and two cores under -race.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ledger, err := h.client(base).Drain(ctx, connectionID)
	if err != nil {
		h.t.Fatalf("drain: %v", err)
	}
	var report strings.Builder
	loadgen.Report(&report, res, ledger)
	h.t.Log("\n" + report.String())
	if ledger.Failed != 0 {
		h.t.Errorf("%d events failed", ledger.Failed)
	}
	// Calls whose answer was lost may have been stored too: at least every 202 is there.
	if ledger.Processed < res.Accepted {
		h.t.Errorf("processed %d < accepted %d", ledger.Processed, res.Accepted)
	}
	for _, id := range res.EventIDs {
		ev, err := h.store.InboxEvent(ctx, id)
		if err != nil || ev.Status != store.InboxProcessed {
			h.t.Errorf("accepted event %s: %+v, %v", id, ev, err)
			return
		}
	}
}

// TestKillWorkerMidStream kills the instance that takes the load while events are
// in its stream, its leases held and its batch in flight, then starts another.
func TestKillWorkerMidStream(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	h := newHarness(t, env)
	a := startProcess(t, env)
	target, err := h.client(a.base).Setup(context.Background(), "kill", 200, loadgen.DefaultEmail)
	if err != nil {
		t.Fatal(err)
	}
	webhookURL := target.WebhookURL // names a's address
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var first *loadgen.Result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		first, _ = loadgen.Run(ctx, loadgen.Config{URL: webhookURL, Count: 1500, Records: 200, Workers: 8, Run: "kill-a"})
	}()
	waitUntil(t, func() bool {
		st, err := h.store.IngestStats(ctx, "faults", target.ConnectionID)
		return err == nil && st.Processed+st.Pending >= 300
	})
	a.kill()
	wg.Wait()
	if first.Errors == 0 {
		t.Log("the kill came after the last call; the test still checks the takeover")
	}

	b := startProcess(t, env)
	second, err := loadgen.Run(ctx, loadgen.Config{
		URL: strings.Replace(webhookURL, a.base, b.base, 1), Count: 500, Records: 200, Workers: 8, Run: "kill-b",
	})
	if err != nil {
		t.Fatal(err)
	}
	h.assertApplied(b.base, target.ConnectionID, loadgen.Merge(first, second))
}

// TestRedisFlushMidLoad wipes a private Redis while events flow: streams, groups and
// leases are gone, and the stored events must still all be applied.
func TestRedisFlushMidLoad(t *testing.T) {
	t.Parallel()
	url := privateRedis(t)
	env := testEnv(t)
	env["REDIS_URL"] = url
	h := newHarness(t, env)
	in := startInstanceEnv(t, env)
	target, err := h.client(in.base).Setup(context.Background(), "flush", 200, loadgen.DefaultEmail)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res *loadgen.Result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, _ = loadgen.Run(ctx, loadgen.Config{URL: target.WebhookURL, Count: 1500, Records: 200, Workers: 8, Redeliver: 0.05})
	}()
	waitUntil(t, func() bool {
		st, err := h.store.IngestStats(ctx, "faults", target.ConnectionID)
		return err == nil && st.Processed+st.Pending >= 500
	})
	rdb := redis.NewClient(mustParseRedisURL(t, url))
	defer rdb.Close()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	h.assertApplied(in.base, target.ConnectionID, res)
}

// TestStoreDownThenRecovery stops the store under load: calls get 503 (never a 202
// for an event that is not stored), /readyz says so, and after the store returns
// everything accepted is applied.
func TestStoreDownThenRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	startStore := func() *embedded.Server {
		e, err := embedded.Start(context.Background(), embedded.Config{Addr: addr, DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	db := startStore()
	env := testEnv(t)
	env["MONGODB_URI"] = db.URI()
	h := newHarness(t, env)
	in := startInstanceEnv(t, env)
	target, err := h.client(in.base).Setup(context.Background(), "store-down", 50, loadgen.DefaultEmail)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before, err := loadgen.Run(ctx, loadgen.Config{URL: target.WebhookURL, Count: 200, Records: 50, Workers: 4, Run: "before"})
	if err != nil || before.Accepted != 200 {
		t.Fatalf("before: %+v, %v", before, err)
	}

	db.Stop()
	during, err := loadgen.Run(ctx, loadgen.Config{URL: target.WebhookURL, Count: 8, Records: 50, Workers: 8, Run: "during"})
	if err != nil {
		t.Fatal(err)
	}
	if during.Accepted+during.Duplicates != 0 || during.ByStatus[http.StatusServiceUnavailable] != 8 {
		t.Errorf("with the store down: %+v, want 8 × 503", during)
	}
	if resp, err := http.Get(in.base + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with the store down: %v %v", resp, err)
	}

	db = startStore()
	defer db.Stop()
	after, err := loadgen.Run(ctx, loadgen.Config{URL: target.WebhookURL, Count: 200, Records: 50, Workers: 4, Run: "after"})
	if err != nil {
		t.Fatal(err)
	}
	h.assertApplied(in.base, target.ConnectionID, loadgen.Merge(before, during, after))
}

// TestDuplicatesShuffledConverge sends the same 1,000 deliveries to two instances:
// once in order to one, twice and shuffled to the other. The subscribers end equal.
func TestDuplicatesShuffledConverge(t *testing.T) {
	t.Parallel()
	const events, records = 1000, 100
	start := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	bodies := make([][]byte, events)
	seen := make([]bool, records)
	for seq := range events {
		r := seq % records
		bodies[seq] = loadgen.Body("converge", seq, r, !seen[r], loadgen.DefaultEmail(r), start.Add(time.Duration(seq)*time.Second))
		seen[r] = true
	}
	final := func(order [][]byte) map[string]string {
		env := testEnv(t)
		h := newHarness(t, env)
		in := startInstanceEnv(t, env)
		target, err := h.client(in.base).Setup(context.Background(), "converge", records, loadgen.DefaultEmail)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range order {
			if status, _ := in.postWebhookURL(target.WebhookURL, b); status != http.StatusAccepted {
				t.Fatalf("status %d", status)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		l, err := h.client(in.base).Drain(ctx, target.ConnectionID)
		if err != nil || l.Processed != events || l.Failed != 0 {
			t.Fatalf("ledger %+v, %v", l, err)
		}
		out := map[string]string{}
		for r := range records {
			sub, err := h.store.SubscriberByEmail(ctx, "faults", target.GroupID, loadgen.DefaultEmail(r))
			if err != nil {
				t.Fatal(err)
			}
			out[sub.Email] = fmt.Sprintf("%v|%v|%v", sub.Fields, sub.CRMRecord, sub.CRMModifiedOn)
		}
		return out
	}
	twice := append(append([][]byte(nil), bodies...), bodies...)
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(twice), func(i, j int) { twice[i], twice[j] = twice[j], twice[i] })

	inOrder, shuffled := final(bodies), final(twice)
	for email, want := range inOrder {
		if got := shuffled[email]; got != want {
			t.Errorf("%s: in order %s, twice shuffled %s", email, want, got)
		}
	}
	if !strings.Contains(inOrder[loadgen.DefaultEmail(7)], "Load 907") {
		t.Errorf("the last update did not win: %s", inOrder[loadgen.DefaultEmail(7)])
	}
}

func (in *instance) postWebhookURL(url string, body []byte) (int, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(string(body)))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 90 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// privateRedis starts a redis-server of this test's own, so flushing or stopping it
// touches no other test's keys.
func privateRedis(t *testing.T) string {
	url, _ := privateRedisCtl(t)
	return url
}

// privateRedisCtl is privateRedis with a func that stops the server and returns a
// func that starts it again on the same port, empty.
func privateRedisCtl(t *testing.T) (string, func() (restart func())) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed; .ci/run installs it")
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	url := "redis://" + addr + "/0"
	var mu sync.Mutex
	var cmd *exec.Cmd
	start := func() {
		mu.Lock()
		defer mu.Unlock()
		cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(mustParseRedisURL(t, url))
		defer c.Close()
		waitUntil(t, func() bool { return c.Ping(context.Background()).Err() == nil })
	}
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	start()
	t.Cleanup(stop)
	return url, func() func() { stop(); return start }
}

// TestRedisDownStillAccepts stops Redis: webhooks are still answered 202 (the inbox
// is in MongoDB), /readyz says degraded, and once Redis is back every accepted event
// is applied.
func TestRedisDownStillAccepts(t *testing.T) {
	t.Parallel()
	url, stop := privateRedisCtl(t)
	env := testEnv(t)
	env["REDIS_URL"] = url
	h := newHarness(t, env)
	in := startInstanceEnv(t, env)
	target, err := h.client(in.base).Setup(context.Background(), "redis-down", 50, loadgen.DefaultEmail)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	restart := stop()
	during, err := loadgen.Run(ctx, loadgen.Config{URL: target.WebhookURL, Count: 100, Records: 50, Workers: 4, Run: "down"})
	if err != nil {
		t.Fatal(err)
	}
	if during.Accepted != 100 {
		t.Errorf("with Redis down: %+v, want all 100 accepted", during)
	}
	resp, err := http.Get(in.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || ready["status"] != "degraded" || ready["redis"] != "down" {
		t.Errorf("readyz with Redis down: %d %v", resp.StatusCode, ready)
	}
	restart()
	after, err := loadgen.Run(ctx, loadgen.Config{URL: target.WebhookURL, Count: 100, Records: 50, Workers: 4, Run: "up"})
	if err != nil {
		t.Fatal(err)
	}
	h.assertApplied(in.base, target.ConnectionID, loadgen.Merge(during, after))
}

func mustParseRedisURL(t *testing.T, url string) *redis.Options {
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
