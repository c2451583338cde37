package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// InboxSample is the inbox as a scrape finds it.
type InboxSample struct {
	// Pending, Processed and Failed count the inbox's events by status; failed
	// ones are the dead letters, waiting for a replay.
	Pending, Processed, Failed int64
	// OldestPending is when the oldest pending event was received; zero when
	// none is pending.
	OldestPending time.Time
}

// StreamSample is the event stream as a scrape finds it.
type StreamSample struct {
	// Pending counts entries a worker has read but not acknowledged yet.
	Pending int64
	// Length counts all entries: unread ones and pending ones.
	Length int64
}

var (
	inboxEventsDesc = prometheus.NewDesc("crmsync_inbox_events",
		"Inbox events by status (pending, processed, failed), sampled at scrape time.", []string{"status"}, nil)
	inboxLagDesc = prometheus.NewDesc("crmsync_inbox_lag_seconds",
		"Age of the oldest pending inbox event, sampled at scrape time; 0 when none is pending.", nil, nil)
	deadLettersDesc = prometheus.NewDesc("crmsync_dead_letters",
		"Inbox events that failed for good and wait for a replay, sampled at scrape time.", nil, nil)
	streamPendingDesc = prometheus.NewDesc("crmsync_stream_pending",
		"Event stream entries read by a worker and not acknowledged yet, sampled at scrape time.", nil, nil)
	streamLengthDesc = prometheus.NewDesc("crmsync_stream_length",
		"Event stream entries not acknowledged yet, read or unread, sampled at scrape time.", nil, nil)
)

// sampleUpDesc is crmsync_sample_up of one source; the source is a constant
// label, so each sampled collector owns its own series.
func sampleUpDesc(source string) *prometheus.Desc {
	return prometheus.NewDesc("crmsync_sample_up",
		"Whether the last scrape could read a sampled source (inbox: the store, stream: Redis); its gauges are left out when not.",
		nil, prometheus.Labels{"source": source})
}

// sampled is a collector that reads its values from elsewhere at scrape time,
// within a timeout. A failed read leaves its gauges out of that scrape and sets
// crmsync_sample_up{source} to 0, so the scrape itself still succeeds.
type sampled struct {
	up      *prometheus.Desc
	descs   []*prometheus.Desc
	timeout time.Duration
	read    func(ctx context.Context, ch chan<- prometheus.Metric) error
}

func (s *sampled) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.up
	for _, d := range s.descs {
		ch <- d
	}
}

func (s *sampled) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	up := 1.0
	if err := s.read(ctx, ch); err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(s.up, prometheus.GaugeValue, up)
}

func newInboxCollector(read func(context.Context) (InboxSample, error), timeout time.Duration, now func() time.Time) *sampled {
	return &sampled{
		up: sampleUpDesc("inbox"), timeout: timeout,
		descs: []*prometheus.Desc{inboxEventsDesc, inboxLagDesc, deadLettersDesc},
		read: func(ctx context.Context, ch chan<- prometheus.Metric) error {
			in, err := read(ctx)
			if err != nil {
				return err
			}
			var lag time.Duration
			if !in.OldestPending.IsZero() {
				lag = max(now().Sub(in.OldestPending), 0)
			}
			ch <- prometheus.MustNewConstMetric(inboxEventsDesc, prometheus.GaugeValue, float64(in.Pending), "pending")
			ch <- prometheus.MustNewConstMetric(inboxEventsDesc, prometheus.GaugeValue, float64(in.Processed), "processed")
			ch <- prometheus.MustNewConstMetric(inboxEventsDesc, prometheus.GaugeValue, float64(in.Failed), "failed")
			ch <- prometheus.MustNewConstMetric(inboxLagDesc, prometheus.GaugeValue, lag.Seconds())
			ch <- prometheus.MustNewConstMetric(deadLettersDesc, prometheus.GaugeValue, float64(in.Failed))
			return nil
		},
	}
}

func newStreamCollector(read func(context.Context) (StreamSample, error), timeout time.Duration) *sampled {
	return &sampled{
		up: sampleUpDesc("stream"), timeout: timeout,
		descs: []*prometheus.Desc{streamPendingDesc, streamLengthDesc},
		read: func(ctx context.Context, ch chan<- prometheus.Metric) error {
			st, err := read(ctx)
			if err != nil {
				return err
			}
			ch <- prometheus.MustNewConstMetric(streamPendingDesc, prometheus.GaugeValue, float64(st.Pending))
			ch <- prometheus.MustNewConstMetric(streamLengthDesc, prometheus.GaugeValue, float64(st.Length))
			return nil
		},
	}
}
