package engine_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
	"crmsync/engine"
	"crmsync/queue"
	"crmsync/queue/queuetest"
	"crmsync/store"
	"crmsync/store/storetest"
)

var (
	listMembers  = flag.String("list-members", "1000,10000", "comma-separated member counts of BenchmarkReconcileDynamicList (the issue's figure: 100000)")
	listEmulator = flag.String("list-emulator", "", "URL of a `crmsync dataverse-emulator` for BenchmarkReconcileDynamicList, so that its rows are not in the measured heap; default an emulator in this process")
)

// countingTransport counts the Web API requests it carries (tokens aside).
type countingTransport struct{ n atomic.Int64 }

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/api/data/") {
		t.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// BenchmarkReconcileDynamicList reconciles a dynamic list of n contacts (its
// FetchXML selects them all) with its group through the scheduler, against the
// emulator over HTTP: "first" adds every member, "again" finds nothing to change.
// It reports the Web API requests of a run and the peak heap the run added over
// the heap before it, which stays bounded by the page size rather than growing
// with the list — measured with -list-emulator and MONGODB_URI pointing at
// processes of their own (crmsync dataverse-emulator, crmsync store-server), as an
// emulator or store in this process holds every row in this heap.
func BenchmarkReconcileDynamicList(b *testing.B) {
	for _, field := range strings.Split(*listMembers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			b.Fatalf("-list-members: %v", err)
		}
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ctx := context.Background()
			url := *listEmulator
			if url == "" {
				dv := emulator.New(emulator.Config{LimitRequests: -1, LimitExecSeconds: -1})
				srv := httptest.NewServer(dv)
				b.Cleanup(func() { srv.Close(); _ = dv.Close() })
				url = srv.URL
			}
			user, err := dataverse.NewClient(dataverse.Config{OrganizationURL: url, TokenURL: url + "/t/oauth2/v2.0/token",
				ClientID: emulator.DefaultUserClientID, ClientSecret: emulator.DefaultUserClientSecret})
			if err != nil {
				b.Fatal(err)
			}
			job := fmt.Sprintf("Buyer %d", time.Now().UnixNano()) // this run's members only, on a shared emulator
			rows := make([]map[string]any, n)
			for i := range rows {
				rows[i] = map[string]any{"lastname": fmt.Sprintf("Member %d", i), "emailaddress1": fmt.Sprintf("m%06d@example.de", i), "jobtitle": job}
			}
			if _, err := user.CreateMultiple(ctx, "contacts", rows); err != nil {
				b.Fatal(err)
			}
			rows = nil
			listID, err := user.Create(ctx, "lists", map[string]any{"listname": "Buyers", "createdfromcode": dataverse.ListMemberContact, "type": true,
				"query": `<fetch><entity name="contact"><attribute name="fullname"/><filter><condition attribute="jobtitle" operator="eq" value="` + job + `"/></filter></entity></fetch>`})
			if err != nil {
				b.Fatal(err)
			}
			st := storetest.Open(b)
			if _, err := st.CreateConnection(ctx, "acme", store.ConnectionInput{
				Name: "CRM", OrganizationURL: url, TokenURL: url + "/t/oauth2/v2.0/token", ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret,
				WebhookAuthMode: store.WebhookKey, WebhookAuthValue: "0123456789abcdef-secret", RecipientType: store.RecipientContact, Bidirectional: true,
			}); err != nil {
				b.Fatal(err)
			}
			counter := &countingTransport{}
			clients := &engine.CRMClients{Secret: st.CRMClientSecret, Tune: func(c *dataverse.Config) { c.HTTPClient = &http.Client{Transport: counter} }}
			r, keys := queuetest.Open(b)
			sched, err := engine.NewScheduler(engine.SchedulerConfig{Store: st, Jobs: queue.NewJobs(r.Client, keys, 10*time.Second), Seen: queue.NewRunSets(r.Client, keys),
				CRM: clients, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			lists := &engine.Lists{Store: st, API: clients, Now: time.Now}
			run := func() (*store.SyncRun, int64, uint64) {
				created, err := lists.SyncNow(ctx, "acme", listID, false)
				if err != nil {
					b.Fatal(err)
				}
				before := counter.n.Load()
				peak := watchHeap()
				sched.Tick(ctx)
				heap := peak()
				got, err := st.Run(ctx, "acme", created.ID)
				if err != nil {
					b.Fatal(err)
				}
				if got.Status != store.RunApplied {
					b.Fatalf("run %+v (error %v)", got, got.Error)
				}
				return got, counter.n.Load() - before, heap
			}
			for _, phase := range []string{"first", "again"} {
				b.Run(phase, func(b *testing.B) {
					var got *store.SyncRun
					var requests int64
					var heap uint64
					for b.Loop() {
						got, requests, heap = run()
					}
					if phase == "first" && got.Added != n || phase == "again" && got.Added+got.Removed+got.Updated != 0 {
						b.Fatalf("%s run: %+v", phase, got)
					}
					b.ReportMetric(float64(requests), "requests/run")
					b.ReportMetric(float64(requests)*1000/float64(n), "requests/1000members")
					b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MB")
				})
			}
		})
	}
}

// watchHeap samples the live heap until the returned function is called, which
// answers the largest growth over the heap at the start.
func watchHeap() func() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak.Load() {
				peak.Store(ms.HeapAlloc - base)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(stop)
		wg.Wait()
		return peak.Load()
	}
}
