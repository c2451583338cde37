package mail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// smtpBundle is what most SMTP tests need: a server and a sender pointed at it.
type smtpBundle struct {
	server *testServer
	sender *SMTP
}

func setupSMTP(t testing.TB, opts testServerOptions, configure func(*SMTPConfig)) *smtpBundle {
	t.Helper()
	server := startTestServer(t, opts)
	cfg := server.config()
	if configure != nil {
		configure(&cfg)
	}
	sender := NewSMTP(cfg)
	t.Cleanup(func() { _ = sender.Close() })
	return &smtpBundle{server: server, sender: sender}
}

// send delivers a test message with the given id and recipient.
func (b *smtpBundle) send(t testing.TB, id, to string) error {
	t.Helper()
	return b.sender.Send(t.Context(), testMessage(id, to))
}

// mustSend is send for messages that have to arrive.
func (b *smtpBundle) mustSend(t testing.TB, id, to string) {
	t.Helper()
	if err := b.send(t, id, to); err != nil {
		t.Fatalf("Send %s to %s: %v", id, to, err)
	}
}

// wantCounts checks how many connections the server saw and how many messages it took.
func (b *smtpBundle) wantCounts(t testing.TB, sessions, delivered int) {
	t.Helper()
	if gotSessions, _, gotDelivered := b.server.counts(); gotSessions != sessions || gotDelivered != delivered {
		t.Errorf("sessions, delivered = %d, %d, want %d, %d", gotSessions, gotDelivered, sessions, delivered)
	}
}

func testMessage(id, to string) *Message {
	return &Message{
		ID:       id,
		FromName: "Newsletter",
		FromAddr: "news@example.com",
		To:       to,
		Subject:  "Hello",
		Text:     "Hello there",
	}
}

func TestSMTPDeliversMultipartMessage(t *testing.T) {
	t.Parallel()
	b := setupSMTP(t, testServerOptions{}, nil)

	text := "Hallo Zoë,\n.a line that starts with a dot\n.\n" + strings.Repeat("long line ", 20) + "\nend = done"
	html := "<p>Hallo Zoë</p>\n.dot\n<p>100% = sure</p>"
	m := &Message{
		ID:             "c1r2",
		FromName:       "Zoë Müller, Köln",
		FromAddr:       "news@example.com",
		To:             "ana@example.org",
		Subject:        "Grüße aus Köln – " + strings.Repeat("ein langer Betreff ", 6),
		HTML:           html,
		Text:           text,
		UnsubscribeURL: "https://crm.example.com/u/abc",
		Headers:        map[string]string{"Feedback-ID": "c1:crmsync"},
	}
	if err := b.sender.Send(t.Context(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}

	got := b.server.received()
	if len(got) != 1 {
		t.Fatalf("server received %d messages, want 1", len(got))
	}
	if got[0].From != m.FromAddr || len(got[0].To) != 1 || got[0].To[0] != m.To {
		t.Errorf("envelope = %s -> %v, want %s -> [%s]", got[0].From, got[0].To, m.FromAddr, m.To)
	}
	data := got[0].Data
	for i, line := range strings.Split(string(data), "\r\n") {
		if strings.Contains(line, "\n") || len(line) > 78 {
			t.Errorf("line %d is %d long or holds a bare LF: %q", i, len(line), line)
		}
	}

	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	var dec mime.WordDecoder
	wantHeaders := map[string]string{
		"Message-Id":            "<c1r2@example.com>",
		"Mime-Version":          "1.0",
		"List-Unsubscribe":      "<https://crm.example.com/u/abc>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"Feedback-Id":           "c1:crmsync",
		"To":                    "<ana@example.org>",
	}
	for name, want := range wantHeaders {
		if got := msg.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if subject, err := dec.DecodeHeader(msg.Header.Get("Subject")); err != nil || subject != m.Subject {
		t.Errorf("Subject decodes to %q (%v), want %q", subject, err, m.Subject)
	}
	if raw := msg.Header.Get("Subject"); !strings.HasPrefix(raw, "=?utf-8?") {
		t.Errorf("raw Subject %q is not RFC 2047 encoded", raw)
	}
	from, err := msg.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != m.FromName || from[0].Address != m.FromAddr {
		t.Errorf("From = %v (%v), want %q <%s>", from, err, m.FromName, m.FromAddr)
	}
	if date, err := msg.Header.Date(); err != nil || time.Since(date) > time.Minute {
		t.Errorf("Date = %v (%v), want about now", date, err)
	}

	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v), want multipart/alternative", mediaType, err)
	}
	parts := multipart.NewReader(msg.Body, params["boundary"])
	for _, want := range []struct{ contentType, body string }{
		{"text/plain; charset=utf-8", text},
		{"text/html; charset=utf-8", html},
	} {
		part, err := parts.NextRawPart()
		if err != nil {
			t.Fatalf("NextRawPart: %v", err)
		}
		if ct := part.Header.Get("Content-Type"); ct != want.contentType {
			t.Errorf("part Content-Type = %q, want %q", ct, want.contentType)
		}
		if cte := part.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
			t.Errorf("part Content-Transfer-Encoding = %q, want quoted-printable", cte)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(part))
		if err != nil {
			t.Fatalf("decode part: %v", err)
		}
		if got := strings.ReplaceAll(string(body), "\r\n", "\n"); got != want.body {
			t.Errorf("%s body = %q, want %q", want.contentType, got, want.body)
		}
	}
	if _, err := parts.NextRawPart(); err != io.EOF {
		t.Errorf("after two parts: %v, want io.EOF", err)
	}
}

func TestSMTPSendsSinglePart(t *testing.T) {
	t.Parallel()
	b := setupSMTP(t, testServerOptions{}, nil)
	for _, tc := range []struct {
		name, html, text, wantType, wantBody string
	}{
		{name: "text only", text: "plain only", wantType: "text/plain; charset=utf-8", wantBody: "plain only"},
		{name: "html only", html: "<b>bold</b>", wantType: "text/html; charset=utf-8", wantBody: "<b>bold</b>"},
	} {
		m := testMessage("single-"+strings.ReplaceAll(tc.name, " ", "-"), "x@example.org")
		m.HTML, m.Text = tc.html, tc.text
		if err := b.sender.Send(t.Context(), m); err != nil {
			t.Fatalf("%s: Send: %v", tc.name, err)
		}
		got := b.server.received()
		msg, err := mail.ReadMessage(bytes.NewReader(got[len(got)-1].Data))
		if err != nil {
			t.Fatalf("%s: ReadMessage: %v", tc.name, err)
		}
		if ct := msg.Header.Get("Content-Type"); ct != tc.wantType {
			t.Errorf("%s: Content-Type = %q, want %q", tc.name, ct, tc.wantType)
		}
		if msg.Header.Get("List-Unsubscribe") != "" {
			t.Errorf("%s: List-Unsubscribe set without UnsubscribeURL", tc.name)
		}
		body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
		if string(body) != tc.wantBody+"\r\n" { // SMTP data ends with a line end
			t.Errorf("%s: body = %q, want %q", tc.name, body, tc.wantBody)
		}
	}
}

func TestSMTPReusesPooledConnections(t *testing.T) {
	t.Parallel()
	const poolSize, messages = 3, 60
	b := setupSMTP(t, testServerOptions{}, func(c *SMTPConfig) { c.PoolSize = poolSize })

	for i := range 10 { // one after another: one connection
		b.mustSend(t, fmt.Sprintf("seq%d", i), "seq@example.org")
	}
	b.wantCounts(t, 1, 10)

	var wg sync.WaitGroup
	errs := make(chan error, messages)
	for i := range messages {
		wg.Go(func() {
			errs <- b.send(t, fmt.Sprintf("par%d", i), fmt.Sprintf("r%d@example.org", i))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Send: %v", err)
		}
	}
	sessions, _, delivered := b.server.counts()
	if delivered != messages+10 {
		t.Errorf("server got %d messages, want %d", delivered, messages+10)
	}
	if sessions > poolSize {
		t.Errorf("%d messages used %d connections, want at most the pool size %d", delivered, sessions, poolSize)
	}
}

func TestSMTPClassifiesRecipientRefusals(t *testing.T) {
	t.Parallel()
	b := setupSMTP(t, testServerOptions{}, nil)
	b.server.refuseRecipient("gone@example.org", 550, smtp.EnhancedCode{5, 1, 1}, "No such user")
	b.server.refuseRecipient("busy@example.org", 451, smtp.EnhancedCode{4, 3, 0}, "Try again later")
	b.server.refuseRecipient("full@example.org", 552, smtp.EnhancedCode{5, 2, 2}, "Mailbox full")

	for _, tc := range []struct {
		to            string
		wantHard      bool
		wantPermanent bool
	}{
		{to: "gone@example.org", wantHard: true, wantPermanent: true},
		{to: "busy@example.org"},
		{to: "full@example.org"}, // RFC 5321 4.5.3.1.10: 552 at RCPT is temporary
	} {
		err := b.send(t, "refused", tc.to)
		if err == nil {
			t.Fatalf("Send to %s: no error", tc.to)
		}
		if IsHardBounce(err) != tc.wantHard || IsPermanent(err) != tc.wantPermanent {
			t.Errorf("Send to %s: %v: IsHardBounce = %t, IsPermanent = %t, want %t, %t",
				tc.to, err, IsHardBounce(err), IsPermanent(err), tc.wantHard, tc.wantPermanent)
		}
	}

	var rejected *Rejected
	err := b.send(t, "refused", "gone@example.org")
	if !errors.As(err, &rejected) || rejected.Code != 550 || rejected.Enhanced != "5.1.1" || rejected.Msg != "No such user" {
		t.Errorf("Send to unknown user: %#v, want *Rejected{550, 5.1.1, No such user}", err)
	}

	// A refused recipient does not cost the connection: RSET, and the next one goes through.
	b.mustSend(t, "after", "ok@example.org")
	b.wantCounts(t, 1, 1)
}

func TestSMTPServerDownIsTransient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	_ = ln.Close()

	sender := NewSMTP(SMTPConfig{Host: "127.0.0.1", Port: addr.Port, Timeout: 2 * time.Second})
	defer sender.Close()
	err = sender.Send(t.Context(), testMessage("down", "a@example.org"))
	if err == nil || IsHardBounce(err) || IsPermanent(err) {
		t.Fatalf("Send to a closed port: %v, want a transient error", err)
	}
}

func TestSMTPReplacesDroppedConnection(t *testing.T) {
	t.Parallel()
	b := setupSMTP(t, testServerOptions{}, nil)
	b.mustSend(t, "first", "a@example.org")
	b.server.dropConnections()
	b.mustSend(t, "second", "a@example.org")
	b.wantCounts(t, 2, 2)
}

func TestSMTPClosesIdleConnections(t *testing.T) {
	t.Parallel()
	b := setupSMTP(t, testServerOptions{}, func(c *SMTPConfig) { c.IdleTimeout = 20 * time.Millisecond })
	b.mustSend(t, "idle", "a@example.org")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, open, _ := b.server.counts()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open long after the idle timeout", open)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.mustSend(t, "again", "a@example.org")
	b.wantCounts(t, 2, 2)
}

func TestSMTPContextCancelAbortsSend(t *testing.T) {
	t.Parallel()
	b := setupSMTP(t, testServerOptions{}, nil)
	hold := make(chan struct{})
	b.server.be.mu.Lock()
	b.server.be.hold = hold
	b.server.be.mu.Unlock()
	t.Cleanup(func() { close(hold) })

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.sender.Send(ctx, testMessage("slow", "a@example.org"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a stalled server: %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Send returned after %s, want soon after the deadline", elapsed)
	}

	canceled, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if err := b.sender.Send(canceled, testMessage("never", "a@example.org")); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a canceled context: %v, want context.Canceled", err)
	}
}

func TestSMTPAuthPlain(t *testing.T) {
	t.Parallel()
	opts := testServerOptions{users: map[string]string{"alice": "s3cr:t@"}}
	for _, tc := range []struct {
		name, user, pass string
		wantErr          bool
	}{
		{name: "right password", user: "alice", pass: "s3cr:t@"},
		{name: "wrong password", user: "alice", pass: "nope", wantErr: true},
		{name: "no credentials", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupSMTP(t, opts, func(c *SMTPConfig) { c.Username, c.Password = tc.user, tc.pass })
			err := b.send(t, "auth", "a@example.org")
			if tc.wantErr {
				if err == nil || IsHardBounce(err) {
					t.Fatalf("Send: %v, want a transient error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := b.server.received(); len(got) != 1 || got[0].User != "alice" {
				t.Errorf("received %+v, want one message from user alice", got)
			}
		})
	}
}

func TestSMTPTLS(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := testCertificate(t)
	for _, tc := range []struct {
		name    string
		server  testServerOptions
		mode    TLSMode
		wantTLS bool
		wantErr bool
	}{
		{name: "STARTTLS offered", server: testServerOptions{tls: serverTLS}, mode: TLSOpportunistic, wantTLS: true},
		{name: "STARTTLS not offered", server: testServerOptions{}, mode: TLSOpportunistic},
		{name: "STARTTLS required and offered", server: testServerOptions{tls: serverTLS}, mode: TLSRequired, wantTLS: true},
		{name: "STARTTLS required, not offered", server: testServerOptions{}, mode: TLSRequired, wantErr: true},
		{name: "implicit TLS", server: testServerOptions{tls: serverTLS, implicit: true}, mode: TLSImplicit, wantTLS: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupSMTP(t, tc.server, func(c *SMTPConfig) { c.TLS, c.TLSConfig = tc.mode, clientTLS })
			for i := range 2 { // the second message reuses the upgraded connection
				err := b.send(t, fmt.Sprintf("tls%d", i), "a@example.org")
				if tc.wantErr {
					if err == nil {
						t.Fatal("Send: no error")
					}
					return
				}
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
			}
			for _, got := range b.server.received() {
				if got.TLS != tc.wantTLS {
					t.Errorf("message arrived with TLS = %t, want %t", got.TLS, tc.wantTLS)
				}
			}
		})
	}
}

func TestSMTPRefusesInvalidMessagesWithoutConnecting(t *testing.T) {
	t.Parallel()
	b := setupSMTP(t, testServerOptions{}, nil)
	for _, tc := range []struct {
		name   string
		change func(*Message)
	}{
		{"header injection in subject", func(m *Message) { m.Subject = "Hi\r\nBcc: all@example.org" }},
		{"line break in name", func(m *Message) { m.FromName = "A\nB" }},
		{"display name in To", func(m *Message) { m.To = "Ana <ana@example.org>" }},
		{"no recipient", func(m *Message) { m.To = "" }},
		{"no body", func(m *Message) { m.Text, m.HTML = "", "" }},
		{"bad id", func(m *Message) { m.ID = "a b" }},
		{"reserved header", func(m *Message) { m.Headers = map[string]string{"content-type": "text/plain"} }},
		{"line break in header", func(m *Message) { m.Headers = map[string]string{"X-Tag": "a\r\nBcc: x"} }},
		{"unsubscribe not http", func(m *Message) { m.UnsubscribeURL = "javascript:alert(1)" }},
	} {
		m := testMessage("ok", "a@example.org")
		tc.change(m)
		err := b.sender.Send(t.Context(), m)
		if !errors.Is(err, ErrInvalidMessage) || !IsPermanent(err) || IsHardBounce(err) {
			t.Errorf("%s: %v, want ErrInvalidMessage", tc.name, err)
		}
	}
	b.wantCounts(t, 0, 0)
}

func TestSMTPSendAfterClose(t *testing.T) {
	t.Parallel()
	b := setupSMTP(t, testServerOptions{}, nil)
	b.mustSend(t, "one", "a@example.org")
	if err := b.sender.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.send(t, "two", "a@example.org"); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
}

func TestSMTPBadConfigFailsEverySend(t *testing.T) {
	t.Parallel()
	sender := NewSMTP(SMTPConfig{Port: 25})
	defer sender.Close()
	err := sender.Send(t.Context(), testMessage("x", "a@example.org"))
	if err == nil || !strings.Contains(err.Error(), "Host") {
		t.Errorf("Send with no host: %v, want an error naming Host", err)
	}
}

func BenchmarkSMTPSend(b *testing.B) {
	bundle := setupSMTP(b, testServerOptions{discard: true}, nil)
	m := testMessage("bench", "bench@example.org")
	m.HTML = strings.Repeat("<p>Some newsletter paragraph with a <a href=\"https://example.com/x\">link</a>.</p>\n", 40)
	m.Text = TextFromHTML(m.HTML)
	m.UnsubscribeURL = "https://crm.example.com/u/token"

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bundle.sender.Send(context.Background(), m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
