// Package loadgen posts realistic Dataverse webhook bodies at a crmsync instance and
// measures what came back: throughput, latency of the 202 and the delivery ledger.
// `crmsync loadgen` and the ingest benchmarks use it.
package loadgen

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Config says what to send where.
type Config struct {
	// URL is the full webhook URL including the key, e.g.
	// http://127.0.0.1:8080/webhooks/dataverse/<id>?code=<key>; required.
	URL string
	// Workers is how many requests are in flight at once; default 8.
	Workers int
	// Rate is the target events per second across workers; 0 sends as fast as possible.
	Rate float64
	// Count is how many events to send; default 1000.
	Count int
	// Records is how many distinct contacts the events are about; default 100.
	Records int
	// Email gives the e-mail address of record i; default loadgen-<i>@example.test.
	Email func(i int) string
	// Redeliver is the share of events sent a second time, as Dataverse's retry
	// does (a new x-request-id, the same body); default 0.
	Redeliver float64
	// Run names the run, so its event ids differ from other runs'; default random.
	Run string
	// Start is the modifiedon of the first event; later events are 1 ms newer each.
	Start time.Time
	// HTTPClient sends the requests; default a client with 60 s timeout, as Dataverse.
	HTTPClient *http.Client
}

// DefaultEmail is the address of record i when Config.Email is nil.
func DefaultEmail(i int) string { return fmt.Sprintf("loadgen-%d@example.test", i) }

// Result is what a run saw.
type Result struct {
	// Sent counts requests, redeliveries included.
	Sent int
	// Accepted counts 202 answers for events not seen before.
	Accepted int
	// Duplicates counts 202 answers with duplicate: true.
	Duplicates int
	// Rejected counts answers other than 202, by status in ByStatus.
	Rejected int
	// Errors counts requests that got no answer (transport errors).
	Errors   int
	ByStatus map[int]int
	// EventIDs are the ids of accepted (new) events.
	EventIDs []string
	Elapsed  time.Duration

	latencies []time.Duration
}

// AcceptedPerSecond is the rate of 202 answers, duplicates included.
func (r *Result) AcceptedPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Accepted+r.Duplicates) / r.Elapsed.Seconds()
}

// Latency returns the p-th percentile (0..1) of the time to a 202.
func (r *Result) Latency(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
}

// Merge adds up the results of several runs against one connection.
func Merge(rs ...*Result) *Result {
	out := &Result{ByStatus: map[int]int{}}
	for _, r := range rs {
		out.Sent += r.Sent
		out.Accepted += r.Accepted
		out.Duplicates += r.Duplicates
		out.Rejected += r.Rejected
		out.Errors += r.Errors
		out.EventIDs = append(out.EventIDs, r.EventIDs...)
		out.Elapsed += r.Elapsed
		out.latencies = append(out.latencies, r.latencies...)
		for k, v := range r.ByStatus {
			out.ByStatus[k] += v
		}
	}
	slices.Sort(out.latencies)
	return out
}

// Balanced reports whether every request is accounted for.
func (r *Result) Balanced() bool {
	return r.Sent == r.Accepted+r.Duplicates+r.Rejected+r.Errors
}

type job struct {
	seq  int
	body []byte
}

type outcome struct {
	status  int
	eventID string
	dup     bool
	latency time.Duration
	err     error
}

// Run sends cfg.Count events (plus redeliveries) and returns what it saw; it stops
// early when ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.URL == "" {
		return nil, errors.New("loadgen: URL is required")
	}
	cfg.Workers = cmp.Or(cfg.Workers, 8)
	cfg.Count = cmp.Or(cfg.Count, 1000)
	cfg.Records = cmp.Or(cfg.Records, 100)
	if cfg.Email == nil {
		cfg.Email = DefaultEmail
	}
	if cfg.Run == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		cfg.Run = hex.EncodeToString(b)
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now().Add(-time.Hour)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers}}
	}

	jobs := make(chan job, cfg.Workers)
	outcomes := make(chan outcome, cfg.Workers)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				outcomes <- send(ctx, cfg.HTTPClient, cfg.URL, j.body)
			}
		}()
	}
	start := time.Now()
	go func() {
		defer close(jobs)
		var tick *time.Ticker
		if cfg.Rate > 0 {
			tick = time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
			defer tick.Stop()
		}
		seen := make([]bool, cfg.Records)
		redeliverEvery := 0
		if cfg.Redeliver > 0 {
			redeliverEvery = max(1, int(1/cfg.Redeliver))
		}
		for seq := range cfg.Count {
			record := seq % cfg.Records
			body := Body(cfg.Run, seq, record, !seen[record], cfg.Email(record), cfg.Start.Add(time.Duration(seq)*time.Millisecond))
			seen[record] = true
			n := 1
			if redeliverEvery > 0 && seq%redeliverEvery == 0 {
				n = 2
			}
			for range n {
				if tick != nil {
					select {
					case <-tick.C:
					case <-ctx.Done():
						return
					}
				}
				select {
				case jobs <- job{seq: seq, body: body}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	go func() { wg.Wait(); close(outcomes) }()

	res := &Result{ByStatus: map[int]int{}}
	for o := range outcomes {
		res.Sent++
		switch {
		case o.err != nil:
			res.Errors++
		case o.status == http.StatusAccepted && o.dup:
			res.Duplicates++
			res.latencies = append(res.latencies, o.latency)
		case o.status == http.StatusAccepted:
			res.Accepted++
			res.EventIDs = append(res.EventIDs, o.eventID)
			res.latencies = append(res.latencies, o.latency)
		default:
			res.Rejected++
		}
		if o.err == nil {
			res.ByStatus[o.status]++
		}
	}
	res.Elapsed = time.Since(start)
	slices.Sort(res.latencies)
	return res, ctx.Err()
}

func send(ctx context.Context, client *http.Client, url string, body []byte) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	req.Header.Set("x-request-id", hex.EncodeToString(b))
	req.Header.Set("x-ms-dynamics-entity-name", "contact")
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	lat := time.Since(t0)
	if err != nil {
		return outcome{err: err}
	}
	o := outcome{status: resp.StatusCode, latency: lat}
	if resp.StatusCode == http.StatusAccepted {
		var a struct {
			EventID   string `json:"eventId"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			return outcome{err: fmt.Errorf("202 answer is not JSON: %w", err)}
		}
		o.eventID, o.dup = a.EventID, a.Duplicate
	}
	return o
}
