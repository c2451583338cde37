package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// quitTimeout bounds the polite QUIT when a pooled connection is retired.
const quitTimeout = 5 * time.Second

// errUpgrade tells dial that the server offers STARTTLS and the connection should be
// made again with it.
var errUpgrade = errors.New("server offers STARTTLS")

// SMTP delivers messages to a submission server over a pool of connections. A
// connection carries one message at a time and is reused for the next: after a
// completed transaction the server is ready for the next MAIL FROM, and an aborted one
// (a refused recipient) is cleared with RSET. Connections are closed after any other
// error and after IdleTimeout without use. Send is safe for concurrent use.
type SMTP struct {
	cfg       SMTPConfig
	cfgErr    error // from Validate; every Send returns it
	addr      string
	tlsConfig *tls.Config
	slots     chan struct{} // one token per connection that may be open
	now       func() time.Time

	// offersSTARTTLS remembers, in TLSOpportunistic mode, that the server offered
	// STARTTLS, so later connections upgrade at once instead of looking first.
	offersSTARTTLS atomic.Bool

	mu     sync.Mutex
	idle   []*smtpConn // oldest first; Send takes from the end
	reaper *time.Timer // pending idle sweep, nil when none is needed
	closed bool
}

var _ Sender = (*SMTP)(nil)

// smtpConn is one pooled connection.
type smtpConn struct {
	raw      net.Conn // the TCP connection under any TLS, closed to abort
	client   *smtp.Client
	lastUsed time.Time
	reused   bool        // taken from the pool rather than dialled for this Send
	unguard  func() bool // stops the context watch; false if the context already aborted
}

// NewSMTP returns a sender for cfg. A cfg that fails Validate makes every Send return
// that error, so check it at start.
func NewSMTP(cfg SMTPConfig) *SMTP {
	cfg = cfg.withDefaults()
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSConfig != nil {
		tlsConfig = cfg.TLSConfig.Clone()
	}
	if tlsConfig.ServerName == "" {
		tlsConfig.ServerName = cfg.Host
	}
	poolSize := max(cfg.PoolSize, 1)
	return &SMTP{
		cfg:       cfg,
		cfgErr:    cfg.Validate(),
		addr:      net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		tlsConfig: tlsConfig,
		slots:     make(chan struct{}, poolSize),
		now:       time.Now,
	}
}

// Send delivers m through a pooled connection, waiting for a free one while the pool
// is busy. A 5xx answer to RCPT TO is a *Rejected hard bounce (except 552, which RFC
// 5321 says to treat as temporary); every other failure is transient.
func (s *SMTP) Send(ctx context.Context, m *Message) error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	data, err := m.render(s.now())
	if err != nil {
		return err
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return fmt.Errorf("wait for SMTP connection: %w", ctx.Err())
	}

	opts := &smtp.MailOptions{Size: int64(len(data)), UTF8: !isASCII(m.FromAddr) || !isASCII(m.To)}
	c, err := s.begin(ctx, m.FromAddr, opts)
	if err != nil {
		return contextOr(ctx, err)
	}
	reusable, err := c.transact(m.To, data)
	s.release(c, reusable)
	return contextOr(ctx, err)
}

// begin takes a connection and starts a transaction on it with MAIL FROM. A pooled
// connection that the server has dropped meanwhile is replaced once by a fresh one;
// the message has not been handed over yet, so that cannot duplicate it.
func (s *SMTP) begin(ctx context.Context, from string, opts *smtp.MailOptions) (*smtpConn, error) {
	for fresh := false; ; fresh = true {
		c, err := s.acquire(ctx, fresh)
		if err != nil {
			return nil, err
		}
		err = c.client.Mail(from, opts)
		if err == nil {
			return c, nil
		}
		s.release(c, false)
		if fresh || !c.reused || !connectionLost(err) {
			return nil, fmt.Errorf("smtp mail from: %w", err)
		}
	}
}

// transact finishes the transaction begun on c and reports whether c can carry the
// next message.
func (c *smtpConn) transact(to string, data []byte) (reusable bool, err error) {
	if err := c.client.Rcpt(to, nil); err != nil {
		return c.client.Reset() == nil, recipientError(err)
	}
	w, err := c.client.Data()
	if err != nil {
		return false, fmt.Errorf("smtp data: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return false, fmt.Errorf("smtp data: %w", err)
	}
	if err := w.Close(); err != nil {
		return false, fmt.Errorf("smtp data: %w", err)
	}
	return true, nil
}

// recipientError classifies a refused RCPT TO.
func recipientError(err error) error {
	var smtpErr *smtp.SMTPError
	if errors.As(err, &smtpErr) && smtpErr.Code/100 == 5 && smtpErr.Code != 552 {
		return &Rejected{Code: smtpErr.Code, Enhanced: enhancedCode(smtpErr.EnhancedCode), Msg: smtpErr.Message}
	}
	return fmt.Errorf("smtp rcpt to: %w", err)
}

func enhancedCode(c smtp.EnhancedCode) string {
	if c == smtp.EnhancedCodeNotSet || c == smtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

// connectionLost reports whether err means the connection, not the command, failed:
// an I/O error or the server's 421 "closing".
func connectionLost(err error) bool {
	var smtpErr *smtp.SMTPError
	if errors.As(err, &smtpErr) {
		return smtpErr.Code == 421
	}
	return true
}

// contextOr returns the context's error in place of err when the context ended, since
// the I/O error it caused says less.
func contextOr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("send over SMTP: %w", ctx.Err())
	}
	return err
}

// acquire returns the most recently used idle connection, unless fresh, or dials a new
// one. The connection is closed if ctx ends before release.
func (s *SMTP) acquire(ctx context.Context, fresh bool) (*smtpConn, error) {
	c, err := s.takeIdle(fresh)
	if err != nil {
		return nil, err
	}
	if c == nil {
		if c, err = s.dial(ctx); err != nil {
			return nil, err
		}
	}
	c.unguard = context.AfterFunc(ctx, func() { c.raw.Close() })
	return c, nil
}

// takeIdle pops the newest idle connection that has not expired; expired ones are
// closed. It returns ErrClosed after Close.
func (s *SMTP) takeIdle(fresh bool) (*smtpConn, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	var c *smtpConn
	if n := len(s.idle); !fresh && n > 0 && s.now().Sub(s.idle[n-1].lastUsed) < s.cfg.IdleTimeout {
		c, s.idle = s.idle[n-1], s.idle[:n-1]
		c.reused = true
	}
	expired := s.expireLocked()
	s.mu.Unlock()
	for _, e := range expired {
		e.client.Close()
	}
	return c, nil
}

// release puts c back in the pool when reusable, else closes it.
func (s *SMTP) release(c *smtpConn, reusable bool) {
	if !c.unguard() {
		reusable = false // the context closed the connection
	}
	if !reusable {
		c.client.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.quit()
		return
	}
	c.lastUsed = s.now()
	s.idle = append(s.idle, c)
	if s.reaper == nil {
		s.reaper = time.AfterFunc(s.cfg.IdleTimeout, s.reap)
	}
	s.mu.Unlock()
}

// reap closes the connections that have idled too long and arms itself again for the
// oldest of the rest.
func (s *SMTP) reap() {
	s.mu.Lock()
	s.reaper = nil
	expired := s.expireLocked()
	if len(s.idle) > 0 && !s.closed {
		wait := s.idle[0].lastUsed.Add(s.cfg.IdleTimeout).Sub(s.now())
		s.reaper = time.AfterFunc(max(wait, time.Millisecond), s.reap)
	}
	s.mu.Unlock()
	for _, c := range expired {
		c.quit()
	}
}

// expireLocked removes and returns the idle connections past IdleTimeout.
func (s *SMTP) expireLocked() []*smtpConn {
	now := s.now()
	n := 0
	for n < len(s.idle) && now.Sub(s.idle[n].lastUsed) >= s.cfg.IdleTimeout {
		n++
	}
	if n == 0 {
		return nil
	}
	expired := append([]*smtpConn(nil), s.idle[:n]...)
	s.idle = append(s.idle[:0], s.idle[n:]...)
	return expired
}

// Close says QUIT on the idle connections and makes later Sends fail with ErrClosed.
// Sends in flight finish, and their connections are closed afterwards.
func (s *SMTP) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	idle := s.idle
	s.idle = nil
	if s.reaper != nil {
		s.reaper.Stop()
		s.reaper = nil
	}
	s.mu.Unlock()
	for _, c := range idle {
		c.quit()
	}
	return nil
}

// quit ends the session politely, and abruptly if the server does not answer.
func (c *smtpConn) quit() {
	c.client.CommandTimeout = quitTimeout
	if err := c.client.Quit(); err != nil {
		c.client.Close()
	}
}

// dial opens, secures and authenticates a new connection within Timeout.
func (s *SMTP) dial(ctx context.Context) (*smtpConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, err := s.connect(ctx)
	if errors.Is(err, errUpgrade) {
		c, err = s.connect(ctx) // offersSTARTTLS is now set, so this upgrades
	}
	return c, err
}

// connect makes one connection: TCP, implicit TLS or STARTTLS, EHLO and AUTH.
func (s *SMTP) connect(ctx context.Context) (*smtpConn, error) {
	dialer := net.Dialer{Timeout: s.cfg.Timeout}
	raw, err := dialer.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("connect to SMTP server: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	client, err := s.handshake(ctx, raw)
	if !stop() {
		err = fmt.Errorf("connect to SMTP server: %w", ctx.Err())
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	return &smtpConn{raw: raw, client: client}, nil
}

// handshake speaks to the server on raw until it is ready for MAIL FROM.
func (s *SMTP) handshake(ctx context.Context, raw net.Conn) (*smtp.Client, error) {
	var client *smtp.Client
	upgrade := s.cfg.TLS == TLSRequired || s.cfg.TLS == TLSOpportunistic && s.offersSTARTTLS.Load()
	switch {
	case s.cfg.TLS == TLSImplicit:
		conn := tls.Client(raw, s.tlsConfig)
		if err := conn.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("connect to SMTP server: TLS: %w", err)
		}
		client = smtp.NewClient(conn)
	case upgrade:
		var err error
		if client, err = smtp.NewClientStartTLS(raw, s.tlsConfig); err != nil {
			s.offersSTARTTLS.Store(false) // look again next time
			return nil, fmt.Errorf("connect to SMTP server: STARTTLS: %w", err)
		}
	default:
		client = smtp.NewClient(raw)
	}
	client.CommandTimeout = s.cfg.Timeout
	client.SubmissionTimeout = s.cfg.Timeout
	if err := client.Hello(s.cfg.LocalName); err != nil {
		client.Close()
		return nil, fmt.Errorf("smtp ehlo: %w", err)
	}
	if s.cfg.TLS == TLSOpportunistic && !upgrade {
		if ok, _ := client.Extension("STARTTLS"); ok {
			s.offersSTARTTLS.Store(true)
			if err := client.Quit(); err != nil {
				client.Close()
			}
			return nil, errUpgrade
		}
	}
	if s.cfg.Username != "" {
		if ok, _ := client.Extension("AUTH"); !ok {
			client.Close()
			return nil, errors.New("smtp auth: the server does not offer AUTH")
		}
		if err := client.Auth(sasl.NewPlainClient("", s.cfg.Username, s.cfg.Password)); err != nil {
			client.Close()
			return nil, fmt.Errorf("smtp auth: %w", err)
		}
	}
	return client, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
