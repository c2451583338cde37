package main

import (
	"context"
	"errors"
	"time"

	"crmsync/metrics"
	"crmsync/queue"
	"crmsync/store"
)

// newMetrics is the registry behind GET /metrics, with the gauges it samples
// from the store (the inbox) and from Redis (the event stream) at scrape time.
func newMetrics(st *store.Store, stream *queue.Stream) *metrics.Registry {
	return metrics.New(metrics.Config{
		Inbox:  func(ctx context.Context) (metrics.InboxSample, error) { return sampleInbox(ctx, st) },
		Stream: func(ctx context.Context) (metrics.StreamSample, error) { return sampleStream(ctx, stream) },
	})
}

// sampleInbox counts the inbox by status and finds its oldest pending event.
func sampleInbox(ctx context.Context, st *store.Store) (metrics.InboxSample, error) {
	c, err := st.CountInbox(ctx)
	if err != nil {
		return metrics.InboxSample{}, err
	}
	in := metrics.InboxSample{Pending: int64(c.Pending), Processed: int64(c.Processed), Failed: int64(c.Failed)}
	if c.Pending == 0 {
		return in, nil
	}
	// The sweep's query gives the oldest pending event's id; its receipt time
	// takes one more read.
	oldest, err := st.PendingInboxEvents(ctx, time.Now(), 1)
	if err != nil || len(oldest) == 0 {
		return in, err
	}
	ev, err := st.InboxEvent(ctx, oldest[0].ID)
	if errors.Is(err, store.ErrNotFound) {
		return in, nil // processed and removed since
	}
	if err != nil {
		return in, err
	}
	in.OldestPending = ev.ReceivedAt
	return in, nil
}

// sampleStream reads the event stream's backlog.
func sampleStream(ctx context.Context, stream *queue.Stream) (metrics.StreamSample, error) {
	pending, err := stream.Pending(ctx)
	if err != nil {
		return metrics.StreamSample{}, err
	}
	length, err := stream.Len(ctx)
	if err != nil {
		return metrics.StreamSample{}, err
	}
	return metrics.StreamSample{Pending: pending, Length: length}, nil
}
