package graph

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"crmsync/graph/model"
	"crmsync/queue"
	"crmsync/store"
)

// Thresholds of a connection's health.
const (
	// budgetWarnShare is the share of the window's request limit beyond which a
	// connection is DEGRADED: Dataverse throttles at the limit.
	budgetWarnShare = 0.8
	// pendingTooLong is how long an event may wait for the engine before the
	// connection is DEGRADED; the recovery sweep re-publishes lost ones well
	// within it.
	pendingTooLong = 5 * time.Minute
)

// connectionHealth judges the health of several of a tenant's connections from
// their activity in the store and their Web API use in Redis: two reads for all
// of them, whatever their number (the loader's fetch).
func (r *Resolver) connectionHealth(ctx context.Context, tenant string, ids []string) (map[string]*model.ConnectionHealth, error) {
	acts, err := r.Store.ConnectionActivity(ctx, tenant, ids)
	if err != nil {
		return nil, err
	}
	var windows map[string]queue.BudgetUse
	known := false
	if r.Budget != nil {
		if windows, err = r.Budget.Windows(ctx, ids); err != nil {
			r.Logger.WarnContext(ctx, "Web API budget unknown for connection health", slog.String("error", err.Error()))
		}
		known = err == nil
	}
	now := time.Now()
	out := make(map[string]*model.ConnectionHealth, len(ids))
	for _, id := range ids {
		out[id] = judgeHealth(acts[id], windows[id], known, now)
	}
	return out, nil
}

// judgeHealth turns what is known of a connection into its status and the
// reasons for it, the most serious first.
func judgeHealth(a *store.ConnectionActivity, w queue.BudgetUse, budgetKnown bool, now time.Time) *model.ConnectionHealth {
	h := &model.ConnectionHealth{LastEventAt: a.LastEventAt, FailedEvents: a.Failed, DeadLetters: a.DeadLetters, ThrottledLastWindow: w.Throttled}
	var failing, degraded []string
	if c := a.LastCheck; c != nil {
		h.LastTest = &model.ConnectionTest{Ok: c.OK, Detail: c.Detail, LatencyMs: c.LatencyMs, TestedAt: c.At}
		if !c.OK {
			failing = append(failing, fmt.Sprintf("the last connection test (%s) failed: %s", c.At.Format(time.RFC3339), c.Detail))
		}
	}
	if a.Failed > 0 && a.Applied == 0 {
		failing = append(failing, fmt.Sprintf("none of the events received in the last hour was applied: %s failed", counted(a.Failed, "event")))
	}
	if a.DeadLetters > 0 {
		degraded = append(degraded, fmt.Sprintf("%s waiting for a replay", counted(a.DeadLetters, "failed event")))
	}
	if p := a.OldestPendingAt; p != nil && now.Sub(*p) > pendingTooLong {
		degraded = append(degraded, fmt.Sprintf("events of the last hour wait for the engine, the oldest for %s", now.Sub(*p).Round(time.Second)))
	}
	if !budgetKnown {
		degraded = append(degraded, "the Web API use is unknown: Redis did not answer")
	}
	if w.Throttled > 0 {
		degraded = append(degraded, fmt.Sprintf("Dataverse throttled %s (429) in the last 5 minutes", counted(w.Throttled, "request")))
	}
	if float64(w.Requests) >= budgetWarnShare*queue.BudgetLimit {
		degraded = append(degraded, fmt.Sprintf("%d of Dataverse's %d requests per 5 minutes used", w.Requests, queue.BudgetLimit))
	}
	h.Reasons = append(append([]string{}, failing...), degraded...)
	switch {
	case len(failing) > 0:
		h.Status = model.HealthStatusFailing
	case len(degraded) > 0:
		h.Status = model.HealthStatusDegraded
	case a.LastEventAt == nil && a.LastCheck == nil && w.Requests == 0:
		h.Status = model.HealthStatusUnknown
		h.Reasons = []string{"nothing received from, sent to or tested with the CRM yet"}
	default:
		h.Status = model.HealthStatusHealthy
	}
	return h
}

// counted is "1 event", "2 events".
func counted(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
