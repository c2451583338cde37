// Package mailtest runs a real SMTP server (github.com/emersion/go-smtp) for
// tests of other packages: it keeps every message it accepts and refuses the
// recipients it is told to, as a mail server would.
package mailtest

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted, for one recipient.
type Message struct {
	From   string
	To     string
	Header mail.Header
	Raw    []byte
}

// Server is a running SMTP server; it stops when the test ends.
type Server struct {
	// URL is its address as CRMSYNC_SMTP_URL takes it.
	URL  string
	Addr string

	mu       sync.Mutex
	messages []Message
	refuse   map[string]int
	keep     bool
	count    int
	arrived  chan struct{}
}

// Start runs a server on a free local port. With keep false it only counts the
// messages (benchmarks).
func Start(tb testing.TB, keep bool) *Server {
	tb.Helper()
	s := &Server{refuse: map[string]int{}, keep: keep, arrived: make(chan struct{}, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	srv.MaxMessageBytes = 10 << 20
	srv.ErrorLog = discard{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	s.Addr = ln.Addr().String()
	s.URL = "smtp://" + s.Addr
	return s
}

// Refuse makes RCPT TO of addr answer code (550 is a hard bounce, 451 a transient
// refusal).
func (s *Server) Refuse(addr string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse[strings.ToLower(addr)] = code
}

// Messages are the messages accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Count is how many messages were accepted so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Wait waits until at least n messages were accepted, or fails the test after d.
func (s *Server) Wait(tb testing.TB, n int, d time.Duration) []Message {
	tb.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for s.Count() < n {
		select {
		case <-s.arrived:
		case <-deadline.C:
			tb.Fatalf("the SMTP server got %d messages, want %d", s.Count(), n)
		}
	}
	return s.Messages()
}

type session struct {
	s    *Server
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	code := ss.s.refuse[strings.ToLower(to)]
	ss.s.mu.Unlock()
	if code != 0 {
		return &smtp.SMTPError{Code: code, Message: "refused by mailtest (" + strconv.Itoa(code) + ")"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var h mail.Header
	if m, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		h = m.Header
	}
	ss.s.mu.Lock()
	for _, to := range ss.to {
		ss.s.count++
		if ss.s.keep {
			ss.s.messages = append(ss.s.messages, Message{From: ss.from, To: to, Header: h, Raw: raw})
		}
	}
	ss.s.mu.Unlock()
	select {
	case ss.s.arrived <- struct{}{}:
	default:
	}
	return nil
}

type discard struct{}

func (discard) Printf(string, ...any) {}
func (discard) Println(...any)        {}

// Body is the message's part of the given media type ("text/html", "text/plain"),
// decoded; "" when it has none.
func (m Message) Body(mediaType string) string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		return ""
	}
	return findPart(textproto.MIMEHeader(msg.Header), msg.Body, mediaType)
}

func findPart(h textproto.MIMEHeader, body io.Reader, want string) string {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return ""
			}
			if s := findPart(p.Header, p, want); s != "" {
				return s
			}
		}
	}
	if mt != want {
		return ""
	}
	if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, _ := io.ReadAll(body)
	return string(b)
}
