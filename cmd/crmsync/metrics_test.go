package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"crmsync/dataverse"
	"crmsync/metrics"
	"crmsync/store"
	"crmsync/store/storetest"
)

// scrape reads GET /metrics and parses the text exposition format.
func (in *instance) scrape() map[string]*dto.MetricFamily {
	in.t.Helper()
	resp, err := http.Get(in.base + "/metrics")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		in.t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		in.t.Fatalf("GET /metrics is not the text exposition format: %v", err)
	}
	return families
}

// series sums the values of a family's series whose labels include want: a
// counter's or gauge's value, a histogram's sample count.
func series(families map[string]*dto.MetricFamily, name string, want map[string]string) (sum float64, found bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

// TestMetrics runs a list sync against the emulator, posts webhooks and runs
// GraphQL operations, then reads GET /metrics: every series is crmsync_…, go_… or
// process_…, and the crmsync ones count what happened.
func TestMetrics(t *testing.T) {
	t.Parallel()
	c := startListCRM(t)
	in := c.in

	// A list sync: Web API requests and an applied run.
	contact := c.create(t, "contacts", map[string]any{"lastname": "Metric", "emailaddress1": "metric@example.de"})
	listID := c.create(t, "lists", map[string]any{"listname": "Metrics", "createdfromcode": dataverse.ListMemberContact, "type": false})
	if _, err := c.user.AddListMember(context.Background(), listID, contact); err != nil {
		t.Fatal(err)
	}
	if r := c.syncList(t, listID, false); r.Status != "APPLIED" {
		t.Fatalf("run = %+v", r)
	}

	// Webhooks: one refused before it authenticated, one accepted and processed.
	create := readFixture(t, "contact_create.json")
	if status, _ := in.postWebhook(c.conn, "?code=wrong-key-wrong-key", create); status != http.StatusUnauthorized {
		t.Fatalf("wrong key: status %d", status)
	}
	if status, answer := in.postWebhook(c.conn, "?code=emulator-webhook-key-123", create); status != http.StatusAccepted {
		t.Fatalf("create: status %d, %v", status, answer)
	}
	waitUntil(t, func() bool { n := in.inbox(); return n.Pending == 0 && n.Processed+n.Failed > 0 })
	viewer := in.token("acme", "viewer")
	if res := in.graphql(viewer, `{ connections { id } }`, nil); len(res.Errors) > 0 {
		t.Fatalf("query: %+v", res.Errors)
	}

	families := in.scrape()
	var goSeen, processSeen bool
	for name := range families {
		switch {
		case strings.HasPrefix(name, "crmsync_"):
		case strings.HasPrefix(name, "go_"):
			goSeen = true
		case strings.HasPrefix(name, "process_"):
			processSeen = true
		default:
			t.Errorf("metric %s is not named crmsync_… (nor go_… or process_…)", name)
		}
	}
	if !goSeen || !processSeen {
		t.Errorf("Go collector %v, process collector %v; want both", goSeen, processSeen)
	}

	counts := in.inbox()
	tests := []struct {
		name   string
		labels map[string]string
		check  func(v float64) bool
		want   string
	}{
		{"crmsync_webhook_requests_total", map[string]string{"route": "dataverse", "connection": c.conn, "status": "202"}, eq(1), "1"},
		{"crmsync_webhook_requests_total", map[string]string{"route": "dataverse", "connection": "unknown", "status": "401"}, eq(1), "1"},
		{"crmsync_ingest_batch_size", nil, atLeast(1), "≥ 1 group commit"},
		{"crmsync_step_duration_seconds", map[string]string{"message": "Create", "entity": "contact"}, eq(1), "1 event"},
		{"crmsync_webapi_requests_total", map[string]string{"status": "200"}, atLeast(1), "≥ 1"},
		{"crmsync_webapi_retry_wait_seconds_total", nil, eq(0), "0 (the emulator did not throttle)"},
		{"crmsync_sync_runs_total", map[string]string{"outcome": "applied"}, eq(1), "1"},
		{"crmsync_sync_runs_total", map[string]string{"outcome": "failed"}, eq(0), "0"},
		{"crmsync_graphql_duration_seconds", map[string]string{"operation_type": "query", "outcome": "ok"}, atLeast(2), "≥ 2"},
		{"crmsync_graphql_duration_seconds", map[string]string{"operation_type": "mutation", "outcome": "ok"}, atLeast(2), "≥ 2 (createConnection, syncMarketingList)"},
		{"crmsync_campaign_messages_total", map[string]string{"outcome": "sent"}, eq(0), "0"},
		{"crmsync_inbox_events", map[string]string{"status": "pending"}, eq(0), "0"},
		{"crmsync_inbox_events", map[string]string{"status": "processed"}, eq(float64(counts.Processed)), "the store's count"},
		{"crmsync_inbox_lag_seconds", nil, eq(0), "0 with nothing pending"},
		{"crmsync_dead_letters", nil, eq(float64(counts.Failed)), "the store's failed count"},
		{"crmsync_stream_pending", nil, atLeast(0), "present"},
		{"crmsync_stream_length", nil, atLeast(0), "present"},
		{"crmsync_sample_up", map[string]string{"source": "inbox"}, eq(1), "1"},
		{"crmsync_sample_up", map[string]string{"source": "stream"}, eq(1), "1"},
	}
	for _, tt := range tests {
		v, found := series(families, tt.name, tt.labels)
		if !found || !tt.check(v) {
			t.Errorf("%s%v = %v (found %v), want %s", tt.name, tt.labels, v, found, tt.want)
		}
	}
	if f := families["crmsync_step_duration_seconds"]; f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("crmsync_step_duration_seconds is %v, want a histogram", f.GetType())
	}
}

func eq(want float64) func(float64) bool       { return func(v float64) bool { return v == want } }
func atLeast(floor float64) func(float64) bool { return func(v float64) bool { return v >= floor } }

// TestMetricsSampleInbox: the inbox sampler counts by status and finds when the
// oldest pending event arrived.
func TestMetricsSampleInbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Open(t)
	if in, err := sampleInbox(ctx, st); err != nil || in != (metrics.InboxSample{}) {
		t.Fatalf("empty inbox: %+v, %v", in, err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	var evs []*store.InboxEvent
	for i, age := range []time.Duration{10 * time.Second, 90 * time.Second, 30 * time.Second} {
		evs = append(evs, &store.InboxEvent{ID: fmt.Sprintf("ev%d", i), Tenant: "acme", ConnectionID: "c", Source: "dataverse",
			Message: "Create", Entity: "contact", RecordID: fmt.Sprintf("r%d", i), Body: "{}", ReceivedAt: now.Add(-age)})
	}
	if _, err := st.AddInboxEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishInboxEvent(ctx, "ev0", store.InboxFailed, 5, "gave up"); err != nil {
		t.Fatal(err)
	}
	in, err := sampleInbox(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if in.Pending != 2 || in.Failed != 1 || in.Processed != 0 || !in.OldestPending.Equal(now.Add(-90*time.Second)) {
		t.Errorf("sample = %+v; want 2 pending, 1 failed, the oldest pending received %s", in, now.Add(-90*time.Second))
	}
}
