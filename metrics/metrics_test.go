package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"crmsync/metrics"
)

var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type testBundle struct {
	reg       *metrics.Registry
	inboxErr  error
	streamErr error
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{}
	b.reg = metrics.New(metrics.Config{
		Inbox: func(ctx context.Context) (metrics.InboxSample, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("the inbox sampler runs without a deadline")
			}
			return metrics.InboxSample{Pending: 3, Processed: 40, Failed: 2, OldestPending: now.Add(-90 * time.Second)}, b.inboxErr
		},
		Stream: func(context.Context) (metrics.StreamSample, error) {
			return metrics.StreamSample{Pending: 5, Length: 7}, b.streamErr
		},
		Now: func() time.Time { return now },
	})
	return b
}

func TestHooks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.reg.WebhookRequest("dataverse", "c1", http.StatusAccepted)
	b.reg.WebhookRequest("dataverse", "c1", http.StatusAccepted)
	b.reg.WebhookRequest("dataverse", "", http.StatusUnauthorized)
	b.reg.IngestBatch(1)
	b.reg.IngestBatch(12)
	b.reg.ObserveStep("Create", "contact", "ok", 30*time.Millisecond)
	b.reg.WebAPIRequest(http.StatusOK)
	b.reg.WebAPIRequest(http.StatusTooManyRequests)
	b.reg.WebAPIRequest(0)
	b.reg.WebAPIRetryWait(1500 * time.Millisecond)
	b.reg.WebAPIRetryWait(0)
	b.reg.SyncRun("applied")
	b.reg.ObserveGraphQL("query", "ok", 2*time.Millisecond)
	b.reg.CampaignMessage("sent")

	want := `
# HELP crmsync_webhook_requests_total Webhook calls answered, by route (dataverse, reactions), connection id ("unknown" before authentication) and HTTP status.
# TYPE crmsync_webhook_requests_total counter
crmsync_webhook_requests_total{connection="c1",route="dataverse",status="202"} 2
crmsync_webhook_requests_total{connection="unknown",route="dataverse",status="401"} 1
# HELP crmsync_webapi_requests_total Dataverse Web API requests sent, by HTTP status ("429" when throttled, "error" when no answer came); every retry counts.
# TYPE crmsync_webapi_requests_total counter
crmsync_webapi_requests_total{status="200"} 1
crmsync_webapi_requests_total{status="429"} 1
crmsync_webapi_requests_total{status="error"} 1
# HELP crmsync_webapi_retry_wait_seconds_total Time Web API requests spent held back by Dataverse's throttling (429 and its Retry-After).
# TYPE crmsync_webapi_retry_wait_seconds_total counter
crmsync_webapi_retry_wait_seconds_total 1.5
# HELP crmsync_sync_runs_total List sync run attempts finished, by outcome (applied, skipped, failed, retry).
# TYPE crmsync_sync_runs_total counter
crmsync_sync_runs_total{outcome="applied"} 1
crmsync_sync_runs_total{outcome="failed"} 0
crmsync_sync_runs_total{outcome="retry"} 0
crmsync_sync_runs_total{outcome="skipped"} 0
# HELP crmsync_campaign_messages_total Campaign messages handed to a sender, by outcome (sent, bounced, deferred, failed).
# TYPE crmsync_campaign_messages_total counter
crmsync_campaign_messages_total{outcome="bounced"} 0
crmsync_campaign_messages_total{outcome="deferred"} 0
crmsync_campaign_messages_total{outcome="failed"} 0
crmsync_campaign_messages_total{outcome="sent"} 1
`
	if err := testutil.GatherAndCompare(b.reg.Gatherer(), strings.NewReader(want),
		"crmsync_webhook_requests_total", "crmsync_webapi_requests_total", "crmsync_webapi_retry_wait_seconds_total",
		"crmsync_sync_runs_total", "crmsync_campaign_messages_total"); err != nil {
		t.Error(err)
	}

	for name, wantSeries := range map[string]int{
		"crmsync_ingest_batch_size":        1,
		"crmsync_step_duration_seconds":    1,
		"crmsync_graphql_duration_seconds": 1,
	} {
		if n, err := testutil.GatherAndCount(b.reg.Gatherer(), name); err != nil || n != wantSeries {
			t.Errorf("%s: %d series (%v), want %d", name, n, err, wantSeries)
		}
	}
}

func TestSampledGauges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	want := `
# HELP crmsync_dead_letters Inbox events that failed for good and wait for a replay, sampled at scrape time.
# TYPE crmsync_dead_letters gauge
crmsync_dead_letters 2
# HELP crmsync_inbox_events Inbox events by status (pending, processed, failed), sampled at scrape time.
# TYPE crmsync_inbox_events gauge
crmsync_inbox_events{status="failed"} 2
crmsync_inbox_events{status="pending"} 3
crmsync_inbox_events{status="processed"} 40
# HELP crmsync_inbox_lag_seconds Age of the oldest pending inbox event, sampled at scrape time; 0 when none is pending.
# TYPE crmsync_inbox_lag_seconds gauge
crmsync_inbox_lag_seconds 90
# HELP crmsync_stream_pending Event stream entries read by a worker and not acknowledged yet, sampled at scrape time.
# TYPE crmsync_stream_pending gauge
crmsync_stream_pending 5
# HELP crmsync_stream_length Event stream entries not acknowledged yet, read or unread, sampled at scrape time.
# TYPE crmsync_stream_length gauge
crmsync_stream_length 7
# HELP crmsync_sample_up Whether the last scrape could read a sampled source (inbox: the store, stream: Redis); its gauges are left out when not.
# TYPE crmsync_sample_up gauge
crmsync_sample_up{source="inbox"} 1
crmsync_sample_up{source="stream"} 1
`
	names := []string{"crmsync_dead_letters", "crmsync_inbox_events", "crmsync_inbox_lag_seconds", "crmsync_stream_pending", "crmsync_stream_length", "crmsync_sample_up"}
	if err := testutil.GatherAndCompare(b.reg.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// Redis being down leaves out the stream's gauges, not the scrape.
	b.streamErr = errors.New("redis: connection refused")
	want = `
# HELP crmsync_sample_up Whether the last scrape could read a sampled source (inbox: the store, stream: Redis); its gauges are left out when not.
# TYPE crmsync_sample_up gauge
crmsync_sample_up{source="inbox"} 1
crmsync_sample_up{source="stream"} 0
`
	if err := testutil.GatherAndCompare(b.reg.Gatherer(), strings.NewReader(want), "crmsync_sample_up"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(b.reg.Gatherer(), "crmsync_stream_pending", "crmsync_stream_length"); err != nil || n != 0 {
		t.Errorf("stream gauges while Redis is down: %d series (%v), want none", n, err)
	}
}

func TestNoSamplers(t *testing.T) {
	t.Parallel()
	reg := metrics.New(metrics.Config{})
	if n, err := testutil.GatherAndCount(reg.Gatherer(), "crmsync_sample_up", "crmsync_inbox_events", "crmsync_stream_pending"); err != nil || n != 0 {
		t.Errorf("sampled series without samplers: %d (%v), want none", n, err)
	}
}

// TestExposition checks the handler's output: every metric is crmsync_…, go_… or
// process_…, and the crmsync ones pass the Prometheus linter.
func TestExposition(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.reg.WebhookRequest("reactions", "c2", http.StatusAccepted)
	b.reg.ObserveStep("Update", "contact", "error", time.Second)

	srv := httptest.NewServer(b.reg.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var crmsync int
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		switch {
		case strings.HasPrefix(line, "crmsync_"):
			crmsync++
		case strings.HasPrefix(line, "go_"), strings.HasPrefix(line, "process_"):
		default:
			t.Errorf("a series outside crmsync_, go_ and process_: %s", strings.TrimSpace(line))
		}
	}
	if crmsync == 0 {
		t.Errorf("no crmsync_ series in:\n%s", body)
	}
	if !strings.Contains(string(body), `crmsync_step_duration_seconds_count{entity="contact",message="Update",outcome="error"} 1`) {
		t.Errorf("the step histogram is missing from:\n%s", body)
	}

	problems, err := testutil.GatherAndLint(b.reg.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "crmsync_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}
