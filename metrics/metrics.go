package metrics

import (
	"cmp"
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures the registry.
type Config struct {
	// Inbox reads the inbox's counts and its oldest pending event at scrape time;
	// nil leaves out crmsync_inbox_events, crmsync_inbox_lag_seconds and
	// crmsync_dead_letters.
	Inbox func(ctx context.Context) (InboxSample, error)
	// Stream reads the event stream's backlog at scrape time; nil leaves out
	// crmsync_stream_pending and crmsync_stream_length.
	Stream func(ctx context.Context) (StreamSample, error)
	// SampleTimeout bounds each sampler during a scrape, so a slow store or an
	// absent Redis delays the scrape by at most this; default 3 s.
	SampleTimeout time.Duration
	// Now is the clock the inbox lag is measured with; default time.Now.
	Now func() time.Time
}

// Registry holds every crmsync metric and implements the observer interfaces of
// webhook, engine, graph and dataverse. Create it with New; it is safe for
// concurrent use.
type Registry struct {
	reg *prometheus.Registry

	webhookRequests  *prometheus.CounterVec
	ingestBatch      prometheus.Histogram
	stepDuration     *prometheus.HistogramVec
	webAPIRequests   *prometheus.CounterVec
	webAPIRetryWait  prometheus.Counter
	syncRuns         *prometheus.CounterVec
	graphqlDuration  *prometheus.HistogramVec
	campaignMessages *prometheus.CounterVec
}

// Label values the registry itself gives.
const (
	// UnknownConnection stands for the connection of a webhook call refused
	// before it authenticated, so the label only takes the ids of connections
	// that exist.
	UnknownConnection = "unknown"
	// TransportError is the status of a Web API request that got no answer.
	TransportError = "error"
)

// durationBuckets suit work that is usually milliseconds but may wait on a
// throttled Web API for a minute.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// New returns a registry with every crmsync collector and the Go and process
// collectors registered.
func New(cfg Config) *Registry {
	cfg.SampleTimeout = cmp.Or(cfg.SampleTimeout, 3*time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Registry{
		reg: prometheus.NewRegistry(),
		webhookRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmsync_webhook_requests_total",
			Help: "Webhook calls answered, by route (dataverse, reactions), connection id (\"unknown\" before authentication) and HTTP status.",
		}, []string{"route", "connection", "status"}),
		ingestBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crmsync_ingest_batch_size",
			Help:    "Events stored together by one group commit of the webhook ingest.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 … 512
		}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crmsync_step_duration_seconds",
			Help:    "Time the engine's steps took per event, by message, entity and outcome (ok, error); a batch step's time is shared by its events.",
			Buckets: durationBuckets,
		}, []string{"message", "entity", "outcome"}),
		webAPIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmsync_webapi_requests_total",
			Help: "Dataverse Web API requests sent, by HTTP status (\"429\" when throttled, \"error\" when no answer came); every retry counts.",
		}, []string{"status"}),
		webAPIRetryWait: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crmsync_webapi_retry_wait_seconds_total",
			Help: "Time Web API requests spent held back by Dataverse's throttling (429 and its Retry-After).",
		}),
		syncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmsync_sync_runs_total",
			Help: "List sync run attempts finished, by outcome (applied, skipped, failed, retry).",
		}, []string{"outcome"}),
		graphqlDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crmsync_graphql_duration_seconds",
			Help:    "GraphQL operation latency by type (query, mutation, subscription: its setup) and outcome (ok, error).",
			Buckets: durationBuckets,
		}, []string{"operation_type", "outcome"}),
		campaignMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmsync_campaign_messages_total",
			Help: "Campaign messages handed to a sender, by outcome (sent, bounced, deferred, failed).",
		}, []string{"outcome"}),
	}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.webhookRequests, r.ingestBatch, r.stepDuration, r.webAPIRequests, r.webAPIRetryWait,
		r.syncRuns, r.graphqlDuration, r.campaignMessages,
	)
	// The outcomes known in advance start at zero, so rates and alerts on them
	// work before the first one happens.
	for _, o := range []string{"applied", "skipped", "failed", "retry"} {
		r.syncRuns.WithLabelValues(o)
	}
	for _, o := range []string{"sent", "bounced", "deferred", "failed"} {
		r.campaignMessages.WithLabelValues(o)
	}
	if cfg.Inbox != nil {
		r.reg.MustRegister(newInboxCollector(cfg.Inbox, cfg.SampleTimeout, cfg.Now))
	}
	if cfg.Stream != nil {
		r.reg.MustRegister(newStreamCollector(cfg.Stream, cfg.SampleTimeout))
	}
	return r
}

// Handler serves the registry in the Prometheus exposition formats (GET /metrics).
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// Gatherer gives the registry to tests and to whatever else reads it in-process.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// WebhookRequest counts an answered webhook call (webhook.Metrics).
func (r *Registry) WebhookRequest(route, connection string, status int) {
	r.webhookRequests.WithLabelValues(route, cmp.Or(connection, UnknownConnection), strconv.Itoa(status)).Inc()
}

// IngestBatch records the size of one group commit (webhook.Metrics).
func (r *Registry) IngestBatch(size int) { r.ingestBatch.Observe(float64(size)) }

// ObserveStep records how long an event's steps took (engine.StepMetrics).
func (r *Registry) ObserveStep(message, entity, outcome string, d time.Duration) {
	r.stepDuration.WithLabelValues(message, entity, outcome).Observe(d.Seconds())
}

// SyncRun counts a finished list sync attempt (engine.RunMetrics).
func (r *Registry) SyncRun(outcome string) { r.syncRuns.WithLabelValues(outcome).Inc() }

// CampaignMessage counts a message a sender took or refused (engine.SendMetrics).
func (r *Registry) CampaignMessage(outcome string) {
	r.campaignMessages.WithLabelValues(outcome).Inc()
}

// ObserveGraphQL records one GraphQL operation (graph.Metrics).
func (r *Registry) ObserveGraphQL(operationType, outcome string, d time.Duration) {
	r.graphqlDuration.WithLabelValues(operationType, outcome).Observe(d.Seconds())
}

// WebAPIRequest counts one Web API attempt by its status, 0 meaning no answer
// (dataverse.Observer).
func (r *Registry) WebAPIRequest(status int) {
	label := TransportError
	if status > 0 {
		label = strconv.Itoa(status)
	}
	r.webAPIRequests.WithLabelValues(label).Inc()
}

// WebAPIRetryWait adds a wait that throttling imposed (dataverse.Observer).
func (r *Registry) WebAPIRetryWait(d time.Duration) {
	if d > 0 {
		r.webAPIRetryWait.Add(d.Seconds())
	}
}
