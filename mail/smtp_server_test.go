package mail

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// testServerOptions shape the in-test SMTP server.
type testServerOptions struct {
	tls      *tls.Config       // offered with STARTTLS, or spoken from the start with implicit
	implicit bool              // implicit TLS (smtps)
	users    map[string]string // when set, AUTH PLAIN with these users is required
	discard  bool              // count messages without keeping them (benchmarks)
}

// testServer is a go-smtp server that records what it receives and refuses the
// recipients it is told to.
type testServer struct {
	host string
	port int
	be   *recordingBackend
}

// received is one message as the server got it.
type received struct {
	From string
	To   []string
	Data []byte
	User string // authenticated user, if any
	TLS  bool
}

// recordingBackend implements smtp.Backend.
type recordingBackend struct {
	opts testServerOptions

	mu        sync.Mutex
	sessions  int // sessions opened: one per connection that said EHLO (twice with STARTTLS)
	open      int // sessions not yet logged out
	delivered int
	messages  []received
	refuse    map[string]*smtp.SMTPError // RCPT TO answers, by recipient
	conns     []*smtp.Conn
	hold      chan struct{} // when set, Data waits for it to close
}

func startTestServer(t testing.TB, opts testServerOptions) *testServer {
	t.Helper()
	be := &recordingBackend{opts: opts, refuse: map[string]*smtp.SMTPError{}}
	srv := smtp.NewServer(be)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = newTestLogger(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	switch {
	case opts.implicit:
		ln = tls.NewListener(ln, opts.tls)
	case opts.tls != nil:
		srv.TLSConfig = opts.tls
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	host, port, _ := net.SplitHostPort(ln.Addr().String())
	portNum, _ := strconv.Atoi(port)
	return &testServer{host: host, port: portNum, be: be}
}

// config returns a sender configuration pointing at the server.
func (s *testServer) config() SMTPConfig {
	return SMTPConfig{Host: s.host, Port: s.port, Timeout: 5 * time.Second}
}

// refuseRecipient makes RCPT TO:<addr> fail with code and enhanced code.
func (s *testServer) refuseRecipient(addr string, code int, enhanced smtp.EnhancedCode, msg string) {
	s.be.mu.Lock()
	defer s.be.mu.Unlock()
	s.be.refuse[addr] = &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: msg}
}

// dropConnections closes every connection from the server side, as an idle timeout would.
func (s *testServer) dropConnections() {
	s.be.mu.Lock()
	conns := s.be.conns
	s.be.conns = nil
	s.be.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (s *testServer) received() []received {
	s.be.mu.Lock()
	defer s.be.mu.Unlock()
	return append([]received(nil), s.be.messages...)
}

func (s *testServer) counts() (sessions, open, delivered int) {
	s.be.mu.Lock()
	defer s.be.mu.Unlock()
	return s.be.sessions, s.be.open, s.be.delivered
}

func (be *recordingBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	be.mu.Lock()
	defer be.mu.Unlock()
	be.sessions++
	be.open++
	be.conns = append(be.conns, c)
	return &testSession{be: be, tls: isTLS}, nil
}

// testSession implements smtp.Session and smtp.AuthSession.
type testSession struct {
	be   *recordingBackend
	tls  bool
	user string
	from string
	to   []string
}

func (s *testSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *testSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if want, ok := s.be.opts.users[username]; !ok || want != password {
			return smtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *testSession) Mail(from string, _ *smtp.MailOptions) error {
	if len(s.be.opts.users) > 0 && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.be.mu.Lock()
	refusal := s.be.refuse[to]
	s.be.mu.Unlock()
	if refusal != nil {
		return refusal
	}
	s.to = append(s.to, to)
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.be.mu.Lock()
	hold := s.be.hold
	s.be.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.be.mu.Lock()
	defer s.be.mu.Unlock()
	s.be.delivered++
	if !s.be.opts.discard {
		s.be.messages = append(s.be.messages, received{From: s.from, To: s.to, Data: data, User: s.user, TLS: s.tls})
	}
	return nil
}

func (s *testSession) Reset() { s.from, s.to = "", nil }

func (s *testSession) Logout() error {
	s.be.mu.Lock()
	defer s.be.mu.Unlock()
	s.be.open--
	return nil
}

// testLogger sends the server's log to t.Log until the test ends.
type testLogger struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestLogger(t testing.TB) *testLogger {
	l := &testLogger{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.done = true
	})
	return l
}

func (l *testLogger) Printf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("smtp server: "+format, v...)
	}
}

func (l *testLogger) Println(v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(append([]any{"smtp server:"}, v...)...)
	}
}

// testCertificate makes a self-signed certificate for 127.0.0.1 and returns a server
// configuration that presents it and a client configuration that trusts it.
func testCertificate(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: roots}
}
