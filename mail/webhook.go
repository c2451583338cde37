package mail

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Default settings of WebhookSenderConfig.
const (
	DefaultWebhookAttempts = 5
	DefaultWebhookBackoff  = time.Second
	DefaultWebhookMaxWait  = time.Minute
	DefaultWebhookTimeout  = 30 * time.Second
)

// Limits on what the sender reads of an engine's answer.
const (
	refusalBodyLimit = 512      // kept in *Refused
	drainLimit       = 64 << 10 // read so the connection can be reused
)

// WebhookSenderConfig configures the hand-off to an external sending engine.
type WebhookSenderConfig struct {
	// URL is where messages are POSTed; absolute http or https. Required.
	URL string
	// Secret signs every request as Standard Webhooks do: "whsec_" followed by the
	// standard base64 of a 24-64 byte key. Required.
	Secret string
	// Client makes the requests. Default: an http.Client with a 30s timeout.
	Client *http.Client
	// MaxAttempts is how many times one message is tried before Send gives up with a
	// *Deferred. Default 5.
	MaxAttempts int
	// Backoff is the wait after the first failed attempt; it doubles after each one,
	// with jitter. Default 1s.
	Backoff time.Duration
	// MaxWait caps a single wait. A Retry-After longer than this ends the attempts at
	// once with a *Deferred that carries it. Default 1m.
	MaxWait time.Duration
}

// withDefaults fills the zero fields; it is the one place defaults live.
func (c WebhookSenderConfig) withDefaults() WebhookSenderConfig {
	if c.Client == nil {
		c.Client = &http.Client{Timeout: DefaultWebhookTimeout}
	}
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultWebhookAttempts)
	c.Backoff = cmp.Or(c.Backoff, DefaultWebhookBackoff)
	c.MaxWait = cmp.Or(c.MaxWait, DefaultWebhookMaxWait)
	return c
}

// Validate reports the first setting that cannot work, naming it, so the process can
// refuse to start instead of failing every Send.
func (c WebhookSenderConfig) Validate() error {
	c = c.withDefaults()
	if !absoluteHTTP(c.URL) {
		return fmt.Errorf("webhook sender config: URL %q is not an absolute http(s) URL", c.URL)
	}
	if _, err := webhookKey(c.Secret); err != nil {
		return fmt.Errorf("webhook sender config: Secret: %w", err)
	}
	switch {
	case c.MaxAttempts < 1:
		return fmt.Errorf("webhook sender config: MaxAttempts %d must be positive", c.MaxAttempts)
	case c.Backoff < 0:
		return fmt.Errorf("webhook sender config: Backoff %s must not be negative", c.Backoff)
	case c.MaxWait < 0:
		return fmt.Errorf("webhook sender config: MaxWait %s must not be negative", c.MaxWait)
	}
	return nil
}

// WebhookSender hands messages to an external sending engine, one signed JSON POST per
// message, retrying 408, 429, 5xx and network failures with backoff. The webhook-id is
// the message ID, so the engine can drop a retry it has already taken. Send is safe for
// concurrent use.
type WebhookSender struct {
	cfg    WebhookSenderConfig
	cfgErr error // from Validate; every Send returns it
	key    []byte

	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

var _ Sender = (*WebhookSender)(nil)

// NewWebhookSender returns a sender for cfg. A cfg that fails Validate makes every Send
// return that error, so check it at start.
func NewWebhookSender(cfg WebhookSenderConfig) *WebhookSender {
	cfg = cfg.withDefaults()
	key, _ := webhookKey(cfg.Secret)
	return &WebhookSender{cfg: cfg, cfgErr: cfg.Validate(), key: key, now: time.Now, sleep: sleepContext}
}

// Close does nothing: the sender holds no connections of its own.
func (s *WebhookSender) Close() error { return nil }

// webhookMessage is the body the engine receives.
type webhookMessage struct {
	Type           string            `json:"type"`
	MessageID      string            `json:"messageId"`
	From           webhookAddress    `json:"from"`
	To             string            `json:"to"`
	Subject        string            `json:"subject"`
	HTML           string            `json:"html,omitempty"`
	Text           string            `json:"text,omitempty"`
	UnsubscribeURL string            `json:"unsubscribeUrl,omitempty"`
	Headers        map[string]string `json:"headers,omitempty"`
}

type webhookAddress struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Send POSTs m to the engine. A 2xx answer means the engine took it; another 4xx is a
// *Refused; when the attempts are used up, or the engine asks for a wait beyond MaxWait,
// Send returns a *Deferred. It stops waiting as soon as ctx ends.
func (s *WebhookSender) Send(ctx context.Context, m *Message) error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	if err := m.validate(); err != nil {
		return err
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // HTML bodies stay readable and no larger than they are
	if err := enc.Encode(webhookMessage{
		Type:           "campaign.message",
		MessageID:      m.ID,
		From:           webhookAddress{Name: m.FromName, Address: m.FromAddr},
		To:             m.To,
		Subject:        m.Subject,
		HTML:           m.HTML,
		Text:           m.Text,
		UnsubscribeURL: m.UnsubscribeURL,
		Headers:        m.Headers,
	}); err != nil {
		return fmt.Errorf("encode message: %w", err)
	}

	for attempt := 1; ; attempt++ {
		retryAfter, err := s.post(ctx, m.ID, body.Bytes())
		if err == nil || IsPermanent(err) || ctx.Err() != nil {
			return err
		}
		if attempt >= s.cfg.MaxAttempts {
			return &Deferred{RetryAfter: retryAfter, Err: fmt.Errorf("after %d attempts: %w", attempt, err)}
		}
		wait := s.backoff(attempt)
		if retryAfter > 0 {
			wait = retryAfter
		}
		if wait > s.cfg.MaxWait {
			return &Deferred{RetryAfter: retryAfter, Err: err}
		}
		if err := s.sleep(ctx, wait); err != nil {
			return fmt.Errorf("wait to retry sending engine: %w", err)
		}
	}
}

// post makes one attempt. It returns the engine's Retry-After, if any, with the error.
func (s *WebhookSender) post(ctx context.Context, id string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("post to sending engine: %w", err)
	}
	now := s.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sign(s.key, id, now, body))

	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post to sending engine: %w", err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, refusalBodyLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))

	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return 0, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		var retryAfter time.Duration
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		}
		return retryAfter, fmt.Errorf("sending engine answered HTTP %d", code)
	default:
		return 0, &Refused{StatusCode: code, Body: strings.TrimSpace(strings.ToValidUTF8(string(head), "\uFFFD"))}
	}
}

// backoff is the wait after the given failed attempt: Backoff doubled for each earlier
// failure, then drawn at random from its upper half so that senders spread out.
func (s *WebhookSender) backoff(attempt int) time.Duration {
	d := s.cfg.Backoff << min(attempt-1, 30)
	if d <= 0 || d > s.cfg.MaxWait {
		d = s.cfg.MaxWait
	}
	half := d / 2
	return half + rand.N(half+1)
}

// parseRetryAfter reads Retry-After as seconds or as an HTTP date; zero when absent or
// unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, 1<<31)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// sleepContext waits d or until ctx ends.
func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sign returns the webhook-signature value ("v1,<base64 HMAC-SHA256>") for a Standard
// Webhooks request, so receivers and tests can check what WebhookSender sends.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := webhookKey(secret)
	if err != nil {
		return "", fmt.Errorf("sign webhook: %w", err)
	}
	return sign(key, id, ts, body), nil
}

func sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// webhookKey decodes a Standard Webhooks secret.
func webhookKey(secret string) ([]byte, error) {
	encoded, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New(`secret must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, errors.New(`secret after "whsec_" must be standard base64`)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("secret key is %d bytes, want 24-64", len(key))
	}
	return key, nil
}
