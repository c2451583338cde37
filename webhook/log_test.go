package webhook_test

import (
	"errors"
	"log/slog"
	"testing"

	"crmsync/logctx"
	"crmsync/logctx/logctxtest"
	"crmsync/webhook"
)

// TestIngestLinesNameTheConnection checks that ingest's lines about a call name
// the tenant and connection it authenticated as, and those about a stored event
// its id and Dataverse's CorrelationId, which the event keeps.
func TestIngestLinesNameTheConnection(t *testing.T) {
	t.Parallel()
	logs := &logctxtest.Recorder{}
	b := setupWith(t, webhook.Config{Logger: logs.Logger(slog.LevelInfo)})
	const target = "/webhooks/dataverse/key?code=the-webhook-key-123"
	const correlation = "9d4c7524-a578-4783-b608-73f7b0b68fd2" // the fixture's CorrelationId

	b.pub.mu.Lock()
	b.pub.fail = errors.New("redis down")
	b.pub.mu.Unlock()
	status, answer := b.post(t, target, fixture(t), nil)
	if status != 202 {
		t.Fatalf("status %d %v", status, answer)
	}
	id := answer["eventId"].(string)
	if ev := b.inbox.events[id]; ev == nil || ev.CorrelationID != correlation {
		t.Errorf("stored %+v, want CorrelationID %s", ev, correlation)
	}
	if status, _ := b.post(t, target, []byte(`{"MessageName":"Create"}`), nil); status != 400 {
		t.Fatalf("bad body: status %d", status)
	}

	var unpublished, refused map[string]any
	waitFor(t, func() bool {
		unpublished, refused = logs.Line(t, "events stored but not published; the recovery sweep will publish them"), logs.Line(t, "webhook refused")
		return unpublished != nil && refused != nil
	})
	if unpublished["level"] != "WARN" || unpublished[logctx.Tenant] != "t-key" || unpublished[logctx.Connection] != "key" ||
		unpublished[logctx.Event] != id || unpublished[logctx.Correlation] != correlation || unpublished["count"] != 1.0 {
		t.Errorf("the publish warning is %v; want tenant t-key, connection key, event %s, correlation %s, count 1", unpublished, id, correlation)
	}
	if refused[logctx.Tenant] != "t-key" || refused[logctx.Connection] != "key" {
		t.Errorf("the refusal is %v; want tenant t-key, connection key", refused)
	}
}
