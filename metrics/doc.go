// Package metrics is crmsync's Prometheus instrumentation: one registry of its
// own (never the global default, so tests and several instances in one process
// do not share counters) holding every crmsync_… collector, the Go and process
// collectors, and the gauges sampled from the store and Redis at scrape time.
//
// The other packages do not import it: each declares the small interface it
// reports to, with nil meaning no metrics, and Registry implements them all;
// cmd/crmsync wires the one into the others.
package metrics
