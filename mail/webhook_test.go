package mail

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // 24 bytes

// webhookBundle is an engine stub that answers from a script, and a sender pointed at
// it whose clock is fixed and whose waits are recorded instead of slept.
type webhookBundle struct {
	sender *WebhookSender
	now    time.Time

	mu       sync.Mutex
	requests []*http.Request
	bodies   [][]byte
	waits    []time.Duration
}

// setupWebhook starts an engine stub; answer says what to do with the nth request
// (counting from 0).
func setupWebhook(t *testing.T, answer func(n int, w http.ResponseWriter), configure func(*WebhookSenderConfig)) *webhookBundle {
	t.Helper()
	b := &webhookBundle{now: time.Unix(1_760_000_000, 0)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		n := len(b.requests)
		b.requests = append(b.requests, r)
		b.bodies = append(b.bodies, body)
		b.mu.Unlock()
		answer(n, w)
	}))
	t.Cleanup(srv.Close)
	cfg := WebhookSenderConfig{URL: srv.URL + "/send", Secret: testWebhookSecret, Client: srv.Client()}
	if configure != nil {
		configure(&cfg)
	}
	b.sender = NewWebhookSender(cfg)
	b.sender.now = func() time.Time { return b.now }
	b.sender.sleep = func(ctx context.Context, d time.Duration) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.waits = append(b.waits, d)
		return ctx.Err()
	}
	return b
}

func (b *webhookBundle) calls() (requests int, waits []time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests), append([]time.Duration(nil), b.waits...)
}

func status(code int) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) { w.WriteHeader(code) }
}

func TestWebhookSenderSignsStandardWebhook(t *testing.T) {
	t.Parallel()
	b := setupWebhook(t, status(http.StatusAccepted), nil)
	m := &Message{
		ID: "0123abcd", FromName: "Shop & Co", FromAddr: "news@example.com", To: "ana@example.org",
		Subject: "Grüße", HTML: "<p>Hi & welcome</p>", Text: "Hi", UnsubscribeURL: "https://crm.example.com/u/t",
	}
	if err := b.sender.Send(t.Context(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r, body := b.requests[0], b.bodies[0]
	if r.Method != http.MethodPost || r.URL.Path != "/send" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request = %s %s (%s), want POST /send (application/json)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	if id != m.ID || ts != strconv.FormatInt(b.now.Unix(), 10) {
		t.Errorf("webhook-id, webhook-timestamp = %q, %q, want %q, %d", id, ts, m.ID, b.now.Unix())
	}

	want, err := Sign(testWebhookSecret, id, b.now, body)
	if err != nil || sig != want {
		t.Errorf("webhook-signature = %q, Sign gives %q (%v)", sig, want, err)
	}
	// Recomputed from the Standard Webhooks description, without this package's code.
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(testWebhookSecret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	if independent := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); sig != independent {
		t.Errorf("webhook-signature = %q, independent HMAC gives %q", sig, independent)
	}

	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	wantBody := map[string]any{
		"type": "campaign.message", "messageId": m.ID, "to": m.To, "subject": m.Subject,
		"html": m.HTML, "text": m.Text, "unsubscribeUrl": m.UnsubscribeURL,
		"from": map[string]any{"name": m.FromName, "address": m.FromAddr},
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(wantBody)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("body = %s, want %s", gotJSON, wantJSON)
	}
	if strings.Contains(string(body), `\u003c`) {
		t.Errorf("body escapes HTML needlessly: %s", body)
	}
}

func TestWebhookSenderRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setupWebhook(t, func(n int, w http.ResponseWriter) {
		if n < 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}, func(c *WebhookSenderConfig) { c.Backoff = 100 * time.Millisecond })

	if err := b.sender.Send(t.Context(), testMessage("retry", "a@example.org")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	requests, waits := b.calls()
	if requests != 3 || len(waits) != 2 {
		t.Fatalf("requests, waits = %d, %v, want 3 requests and 2 waits", requests, waits)
	}
	for i, w := range waits { // 100ms then 200ms, each jittered within its upper half
		full := 100 * time.Millisecond << i
		if w < full/2 || w > full {
			t.Errorf("wait %d = %s, want within [%s, %s]", i, w, full/2, full)
		}
	}
	if first, last := b.requests[0].Header.Get("webhook-id"), b.requests[2].Header.Get("webhook-id"); first != last {
		t.Errorf("webhook-id changed between attempts: %q, %q", first, last)
	}
}

func TestWebhookSenderHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, header string
		want         time.Duration
	}{
		{name: "seconds", header: "3", want: 3 * time.Second},
		{name: "HTTP date", header: time.Unix(1_760_000_007, 0).UTC().Format(http.TimeFormat), want: 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupWebhook(t, func(n int, w http.ResponseWriter) {
				if n == 0 {
					w.Header().Set("Retry-After", tc.header)
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.WriteHeader(http.StatusOK)
			}, nil)
			if err := b.sender.Send(t.Context(), testMessage("ra", "a@example.org")); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if _, waits := b.calls(); len(waits) != 1 || waits[0] != tc.want {
				t.Errorf("waits = %v, want [%s]", waits, tc.want)
			}
		})
	}
}

func TestWebhookSenderDefersLongRetryAfter(t *testing.T) {
	t.Parallel()
	b := setupWebhook(t, func(_ int, w http.ResponseWriter) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
	}, nil)
	err := b.sender.Send(t.Context(), testMessage("later", "a@example.org"))
	var deferred *Deferred
	if !errors.As(err, &deferred) || deferred.RetryAfter != time.Hour || IsPermanent(err) {
		t.Fatalf("Send: %v, want *Deferred with RetryAfter 1h", err)
	}
	if requests, waits := b.calls(); requests != 1 || len(waits) != 0 {
		t.Errorf("requests, waits = %d, %v, want 1 request and no wait", requests, waits)
	}
}

func TestWebhookSenderGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	b := setupWebhook(t, status(http.StatusBadGateway), func(c *WebhookSenderConfig) { c.MaxAttempts = 3 })
	err := b.sender.Send(t.Context(), testMessage("down", "a@example.org"))
	var deferred *Deferred
	if !errors.As(err, &deferred) || IsPermanent(err) || IsHardBounce(err) {
		t.Fatalf("Send: %v, want a transient *Deferred", err)
	}
	if requests, waits := b.calls(); requests != 3 || len(waits) != 2 {
		t.Errorf("requests, waits = %d, %v, want 3 and 2", requests, waits)
	}
}

func TestWebhookSenderRefusalIsPermanent(t *testing.T) {
	t.Parallel()
	b := setupWebhook(t, func(_ int, w http.ResponseWriter) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"from.address not verified"}`)
	}, nil)
	err := b.sender.Send(t.Context(), testMessage("bad", "a@example.org"))
	var refused *Refused
	if !errors.As(err, &refused) || refused.StatusCode != 400 || !strings.Contains(refused.Body, "not verified") {
		t.Fatalf("Send: %v, want *Refused 400 with the engine's reason", err)
	}
	if !IsPermanent(err) || IsHardBounce(err) {
		t.Errorf("IsPermanent, IsHardBounce = %t, %t, want true, false", IsPermanent(err), IsHardBounce(err))
	}
	if requests, waits := b.calls(); requests != 1 || len(waits) != 0 {
		t.Errorf("requests, waits = %d, %v, want 1 and none", requests, waits)
	}
}

func TestWebhookSenderStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := setupWebhook(t, func(_ int, w http.ResponseWriter) {
		cancel() // the caller gives up while the engine is failing
		w.WriteHeader(http.StatusServiceUnavailable)
	}, func(c *WebhookSenderConfig) { c.Backoff, c.MaxWait = time.Hour, 2*time.Hour })
	b.sender.sleep = sleepContext // really wait, so the cancellation has to cut it short

	start := time.Now()
	err := b.sender.Send(ctx, testMessage("cancel", "a@example.org"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send: %v, want context.Canceled", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Send took %s after the context ended", elapsed)
	}
	if requests, _ := b.calls(); requests != 1 {
		t.Errorf("requests = %d, want 1", requests)
	}
}

func TestWebhookSenderConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     WebhookSenderConfig
		wantErr string
	}{
		{"valid", WebhookSenderConfig{URL: "https://engine.example/send", Secret: testWebhookSecret}, ""},
		{"no URL", WebhookSenderConfig{Secret: testWebhookSecret}, "URL"},
		{"relative URL", WebhookSenderConfig{URL: "/send", Secret: testWebhookSecret}, "URL"},
		{"no prefix", WebhookSenderConfig{URL: "https://e.example", Secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "whsec_"},
		{"not base64", WebhookSenderConfig{URL: "https://e.example", Secret: "whsec_!!!"}, "base64"},
		{"short key", WebhookSenderConfig{URL: "https://e.example", Secret: "whsec_c2hvcnQ="}, "24-64"},
		{"negative attempts", WebhookSenderConfig{URL: "https://e.example", Secret: testWebhookSecret, MaxAttempts: -1}, "MaxAttempts"},
	} {
		err := tc.cfg.Validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: Validate = %v, want an error mentioning %q", tc.name, err, tc.wantErr)
		}
		if tc.wantErr != "" {
			if sendErr := NewWebhookSender(tc.cfg).Send(t.Context(), testMessage("x", "a@example.org")); sendErr == nil {
				t.Errorf("%s: Send with a bad config succeeded", tc.name)
			}
		}
	}
	if _, err := Sign("whsec_c2hvcnQ=", "id", time.Now(), nil); err == nil {
		t.Error("Sign with a short key: no error")
	}
}
