package webhook_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"crmsync/mail"
	"crmsync/store"
	"crmsync/webhook"
)

const reactionSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func (f *fakeInbox) ReactionSecret(c *store.Connection) (string, error) {
	return f.secret[c.ID+"/reaction"], nil
}

func signed(id string, ts time.Time, body string, secret string) http.Header {
	return http.Header{
		"Webhook-Id":        {id},
		"Webhook-Timestamp": {strconv.FormatInt(ts.Unix(), 10)},
		"Webhook-Signature": {mustSign(secret, id, ts, []byte(body))},
	}
}

func TestReactions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.inbox.secret["key/reaction"] = reactionSecret
	b.mux.Handle("POST /webhooks/reactions/{connectionId}", b.gateway.Reactions())
	const target = "/webhooks/reactions/key"
	now := time.Now()
	open := `{"type":"open","campaignSendId":"cs1","email":"Anna@Example.de","occurredAt":"2026-11-29T08:00:00Z"}`

	status, first := b.post(t, target, []byte(open), signed("msg_1", now, open, reactionSecret))
	if status != http.StatusAccepted || first["duplicate"] != false {
		t.Fatalf("valid: %d %v", status, first)
	}
	if ev := b.inbox.events[first["eventId"].(string)]; ev == nil || ev.CorrelationID != "msg_1" {
		t.Errorf("stored %+v, want the webhook-id as its CorrelationID", ev)
	}
	status, again := b.post(t, target, []byte(open), signed("msg_1", now.Add(time.Second), open, reactionSecret))
	if status != http.StatusAccepted || again["duplicate"] != true || again["eventId"] != first["eventId"] {
		t.Errorf("same webhook-id again: %d %v", status, again)
	}
	// Rotation: several signatures, one of them right.
	h := signed("msg_2", now, open, reactionSecret)
	h.Set("Webhook-Signature", "v1,AAAA "+h.Get("Webhook-Signature"))
	if status, _ := b.post(t, target, []byte(open), h); status != http.StatusAccepted {
		t.Errorf("rotated signatures: %d", status)
	}

	other := "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0xMjM0NTY="
	unauthorized := map[string]struct {
		target string
		header http.Header
	}{
		"wrong secret":       {target, signed("msg_3", now, open, other)},
		"stale timestamp":    {target, signed("msg_4", now.Add(-6*time.Minute), open, reactionSecret)},
		"future timestamp":   {target, signed("msg_5", now.Add(6*time.Minute), open, reactionSecret)},
		"no signature":       {target, http.Header{"Webhook-Id": {"msg_6"}, "Webhook-Timestamp": {strconv.FormatInt(now.Unix(), 10)}}},
		"v2 signature":       {target, http.Header{"Webhook-Id": {"msg_7"}, "Webhook-Timestamp": {strconv.FormatInt(now.Unix(), 10)}, "Webhook-Signature": {strings.Replace(signed("msg_7", now, open, reactionSecret).Get("Webhook-Signature"), "v1,", "v2,", 1)}}},
		"no reaction secret": {"/webhooks/reactions/header", signed("msg_8", now, open, reactionSecret)},
		"unknown connection": {"/webhooks/reactions/nope", signed("msg_9", now, open, reactionSecret)},
	}
	for name, tt := range unauthorized {
		if status, answer := b.post(t, tt.target, []byte(open), tt.header); status != http.StatusUnauthorized || answer["error"] != "unauthorized" {
			t.Errorf("%s: %d %v", name, status, answer)
		}
	}
	// A body changed after signing is a bad signature.
	if status, _ := b.post(t, target, []byte(strings.Replace(open, "open", "click", 1)), signed("msg_10", now, open, reactionSecret)); status != http.StatusUnauthorized {
		t.Errorf("tampered body: %d", status)
	}

	bad := map[string]string{
		"type":           `{"type":"like","campaignSendId":"cs1","email":"a@example.com","occurredAt":"2026-11-29T08:00:00Z"}`,
		"campaignSendId": `{"type":"open","email":"a@example.com","occurredAt":"2026-11-29T08:00:00Z"}`,
		"email":          `{"type":"open","campaignSendId":"cs1","occurredAt":"2026-11-29T08:00:00Z"}`,
		"occurredAt":     `{"type":"open","campaignSendId":"cs1","email":"a@example.com","occurredAt":"yesterday"}`,
		"url":            `{"type":"click","campaignSendId":"cs1","email":"a@example.com","occurredAt":"2026-11-29T08:00:00Z"}`,
		"bounceType":     `{"type":"bounce","campaignSendId":"cs1","email":"a@example.com","occurredAt":"2026-11-29T08:00:00Z","bounceType":"medium"}`,
		"body":           `[1]`,
	}
	for field, body := range bad {
		status, answer := b.post(t, target, []byte(body), signed("bad_"+field, now, body, reactionSecret))
		if d, _ := answer["detail"].(string); status != http.StatusBadRequest || !strings.HasPrefix(d, field) {
			t.Errorf("%s: %d %v", field, status, answer)
		}
	}
	if n := b.inbox.count(); n != 2 {
		t.Errorf("stored %d events, want 2 (msg_1 and msg_2)", n)
	}
	for _, ev := range b.inbox.events {
		if ev.Source != webhook.SourceReaction || ev.Message != "open" || ev.RecordID != "anna@example.de" || ev.Tenant != "t-key" {
			t.Errorf("stored %+v", ev)
		}
	}
}

// mustSign signs a reaction as a sending engine does (Standard Webhooks).
func mustSign(secret, id string, ts time.Time, body []byte) string {
	sig, err := mail.Sign(secret, id, ts, body)
	if err != nil {
		panic(err)
	}
	return sig
}
