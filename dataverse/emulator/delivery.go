package emulator

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Webhook delivery the way Dataverse's asynchronous service does it (§2): a POST
// of the JSON body with Dataverse's headers and the endpoint's authentication, at
// most WebhookTimeout per attempt, one more attempt (new x-request-id, same body
// and OperationId) after 502, 503 or 504 and none after anything else. Deliveries
// wait in a queue for a few workers, so a slow receiver never slows the Web API.

// Delivery is one event sent (or dropped) to one step's endpoint, with every
// attempt, so tests can see what Dataverse would have delivered and how it went.
type Delivery struct {
	StepID, StepName                  string
	MessageName, EntityName, EntityID string
	Stage, Mode                       int
	OperationID, CorrelationID        string
	// URL is the endpoint's URL without the authentication query parameters.
	URL string
	// SizeExceeded says the body was over 256 KB and went out stripped.
	SizeExceeded bool
	Queued       time.Time
	Attempts     []Attempt
	// Dropped says Config.DropWebhooks kept it from being sent.
	Dropped bool
	// Done says no further attempt will be made; Succeeded that one got a 2xx.
	Done, Succeeded bool
}

// Attempt is one POST of a delivery.
type Attempt struct {
	RequestID string // the x-request-id header, new for every attempt
	At        time.Time
	Status    int    // 0 when there was no answer
	Err       string // transport failure or timeout
	Duration  time.Duration
}

// delivery is a queued Delivery and what sending it needs.
type delivery struct {
	rec      *Delivery // guarded by deliverer.mu
	target   string    // URL with authentication query parameters
	header   http.Header
	body     []byte
	stepID   string
	entity   string
	message  string
	correlID string
}

// deliverer queues deliveries and runs the workers that send them.
type deliverer struct {
	timeout time.Duration
	workers int
	client  *http.Client
	drop    func(stepID string) bool
	logSize int
	now     func() time.Time
	log     *slog.Logger

	ctx    context.Context // ends when Close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	wake    *sync.Cond
	queue   []*delivery
	busy    int
	started bool
	closed  bool
	idle    chan struct{} // closed once nothing is queued or sending; nil while nobody waits
	records []*Delivery
}

func newDeliverer(cfg Config, now func() time.Time, log *slog.Logger) *deliverer {
	d := &deliverer{
		timeout: cfg.WebhookTimeout, workers: cfg.WebhookWorkers, client: cfg.WebhookClient,
		drop: cfg.DropWebhooks, logSize: cfg.DeliveryLogSize, now: now, log: log,
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.wake = sync.NewCond(&d.mu)
	return d
}

// enqueue builds the bodies of captured step calls and queues them; inside an open
// transaction (a $batch change set) they wait for its commit instead (txn.go).
func (e *Emulator) enqueue(calls []*stepCall) {
	if len(calls) == 0 {
		return
	}
	e.mu.Lock()
	held := e.holdLocked(calls)
	e.mu.Unlock()
	if held {
		return
	}
	for _, sc := range calls {
		opID := newID()
		body, stripped := e.webhookBody(sc, opID)
		rec := &Delivery{
			StepID: sc.step.id, StepName: sc.step.name,
			MessageName: sc.change.message, EntityName: sc.change.t.logical, EntityID: sc.change.id,
			Stage: sc.step.stage, Mode: sc.step.mode, OperationID: opID, CorrelationID: sc.op.correlationID,
			URL: sc.step.url, SizeExceeded: stripped, Queued: e.now().UTC(),
		}
		target, header := authenticateWebhook(sc.step)
		header.Set("Content-Type", "application/json; charset=utf-8")
		header.Set("x-ms-dynamics-organization", e.OrganizationName())
		header.Set("x-ms-dynamics-entity-name", sc.change.t.logical)
		header.Set("x-ms-dynamics-request-name", sc.change.message)
		header.Set("x-ms-correlation-request-id", sc.op.correlationID)
		if stripped {
			header.Set("x-ms-dynamics-msg-size-exceeded", "true")
		}
		e.hooks.push(&delivery{rec: rec, target: target, header: header, body: body,
			stepID: sc.step.id, entity: sc.change.t.logical, message: sc.change.message, correlID: sc.op.correlationID})
	}
}

// authenticateWebhook adds the endpoint's authentication (§1.1): WebhookKey as
// ?code=, HttpHeader settings as headers, HttpQueryString settings as query
// parameters.
func authenticateWebhook(s stepInfo) (string, http.Header) {
	header := http.Header{}
	var params []string
	switch s.authType {
	case authWebhookKey:
		params = append(params, "code="+url.QueryEscape(s.authValue))
	case authHTTPHeader, authQueryString:
		settings, _ := parseAuthSettings(s.authValue) // checked when the endpoint was written
		for _, st := range settings {
			if s.authType == authHTTPHeader {
				header.Add(st.Name, st.Value)
			} else {
				params = append(params, url.QueryEscape(st.Name)+"="+url.QueryEscape(st.Value))
			}
		}
	}
	target := s.url
	if u, err := url.Parse(s.url); err == nil && len(params) > 0 {
		if u.RawQuery != "" {
			u.RawQuery += "&"
		}
		u.RawQuery += strings.Join(params, "&")
		target = u.String()
	}
	return target, header
}

// push records a delivery and queues it, starting the workers on first use.
func (d *deliverer) push(dl *delivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records = append(d.records, dl.rec)
	if over := len(d.records) - d.logSize; over > 0 {
		d.records = slices.Delete(d.records, 0, over)
	}
	if d.closed {
		dl.rec.Done = true
		dl.rec.Attempts = append(dl.rec.Attempts, Attempt{At: d.now().UTC(), Err: "emulator closed"})
		return
	}
	if !d.started {
		d.started = true
		d.wg.Add(d.workers)
		for range d.workers {
			go d.run()
		}
	}
	d.queue = append(d.queue, dl)
	d.wake.Signal()
}

// run is one worker: it sends queued deliveries until the deliverer is closed
// and the queue is empty.
func (d *deliverer) run() {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		for len(d.queue) == 0 && !d.closed {
			d.wake.Wait()
		}
		if len(d.queue) == 0 {
			d.mu.Unlock()
			return
		}
		dl := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		d.busy++
		d.mu.Unlock()

		d.deliver(dl)

		d.mu.Lock()
		d.busy--
		if len(d.queue) == 0 && d.busy == 0 && d.idle != nil {
			close(d.idle)
			d.idle = nil
		}
		d.mu.Unlock()
	}
}

// deliver sends one delivery: once, and once more after 502, 503 or 504.
func (d *deliverer) deliver(dl *delivery) {
	if d.drop != nil && d.drop(dl.stepID) {
		d.mu.Lock()
		dl.rec.Dropped, dl.rec.Done = true, true
		d.mu.Unlock()
		return
	}
	for try := 0; ; try++ {
		a := d.attempt(dl)
		d.mu.Lock()
		dl.rec.Attempts = append(dl.rec.Attempts, a)
		ok := a.Status >= 200 && a.Status < 300
		again := try == 0 && (a.Status == http.StatusBadGateway || a.Status == http.StatusServiceUnavailable || a.Status == http.StatusGatewayTimeout)
		if ok || !again {
			dl.rec.Done, dl.rec.Succeeded = true, ok
		}
		d.mu.Unlock()
		if ok {
			return
		}
		if !again {
			d.log.WarnContext(d.ctx, "emulator: webhook delivery failed", slog.String("step", dl.stepID), slog.String("message", dl.message),
				slog.String("entity", dl.entity), slog.Int("status", a.Status), slog.String("error", a.Err),
				slog.String("correlation", dl.correlID))
			return
		}
	}
}

// attempt makes one POST with a new x-request-id.
func (d *deliverer) attempt(dl *delivery) Attempt {
	a := Attempt{RequestID: newID(), At: d.now().UTC()}
	start := time.Now()
	ctx, cancel := context.WithTimeout(d.ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.target, bytes.NewReader(dl.body))
	if err != nil {
		a.Err = err.Error()
		return a
	}
	for k, v := range dl.header {
		req.Header[k] = v
	}
	req.Header.Set("x-request-id", a.RequestID)
	resp, err := d.client.Do(req)
	a.Duration = time.Since(start)
	if err != nil {
		a.Err = err.Error()
		return a
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // Dataverse ignores the answer's body
	_ = resp.Body.Close()
	a.Status = resp.StatusCode
	return a
}

// flush waits until nothing is queued or being sent.
func (d *deliverer) flush(ctx context.Context) error {
	d.mu.Lock()
	if len(d.queue) == 0 && d.busy == 0 {
		d.mu.Unlock()
		return nil
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close lets queued deliveries finish for up to grace, then cancels the rest and
// waits for the workers.
func (d *deliverer) close(grace time.Duration) {
	d.mu.Lock()
	d.closed = true
	d.wake.Broadcast()
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	_ = d.flush(ctx)
	cancel()
	d.cancel()
	d.wg.Wait()
}

// snapshot copies the delivery log, oldest first; stepID "" means every step.
func (d *deliverer) snapshot(stepID string) []Delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Delivery, 0, len(d.records))
	for _, r := range d.records {
		if stepID != "" && r.StepID != stepID {
			continue
		}
		c := *r
		c.Attempts = slices.Clone(r.Attempts)
		out = append(out, c)
	}
	return out
}

// Deliveries returns the webhook delivery log, oldest first (at most
// Config.DeliveryLogSize entries), so tests can check what was sent and how
// often.
func (e *Emulator) Deliveries() []Delivery { return e.hooks.snapshot("") }

// StepDeliveries returns the deliveries to one sdkmessageprocessingstep.
func (e *Emulator) StepDeliveries(stepID string) []Delivery { return e.hooks.snapshot(stepID) }

// FlushWebhooks waits until every queued webhook delivery has been made (or has
// failed for good), so a test can look at what its receiver got.
func (e *Emulator) FlushWebhooks(ctx context.Context) error { return e.hooks.flush(ctx) }

// OrganizationName is the organization's unique name, sent in OrganizationName
// and x-ms-dynamics-organization, so a receiver can allow-list it.
func (e *Emulator) OrganizationName() string { return "org" + e.orgID[:8] }
