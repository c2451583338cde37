package mail

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// TLSMode says how the SMTP sender protects its connections.
type TLSMode int

const (
	// TLSOpportunistic upgrades with STARTTLS when the server offers it and talks in
	// plain text otherwise (smtp://). It cannot stop an attacker who strips the offer.
	TLSOpportunistic TLSMode = iota
	// TLSRequired refuses to talk to a server that does not upgrade with STARTTLS
	// (smtp://…?starttls=required).
	TLSRequired
	// TLSImplicit speaks TLS from the first byte (smtps://).
	TLSImplicit
)

// String names the mode as ParseSMTPURL's starttls parameter does.
func (m TLSMode) String() string {
	switch m {
	case TLSOpportunistic:
		return "opportunistic"
	case TLSRequired:
		return "required"
	case TLSImplicit:
		return "implicit"
	}
	return "TLSMode(" + strconv.Itoa(int(m)) + ")"
}

// Default settings of SMTPConfig.
const (
	DefaultSMTPPort    = 587 // submission with STARTTLS
	DefaultSMTPSPort   = 465 // submission over implicit TLS
	DefaultPoolSize    = 4
	DefaultIdleTimeout = 30 * time.Second
	DefaultSMTPTimeout = time.Minute
	defaultLocalName   = "localhost"
)

// SMTPConfig configures an SMTP sender; zero fields take the defaults named on them.
type SMTPConfig struct {
	// Host is the submission server's name or IP address. Required.
	Host string
	// Port defaults to 465 with TLSImplicit and to 587 otherwise.
	Port int
	// Username, when set, makes the sender authenticate with AUTH PLAIN.
	Username string
	Password string
	// TLS defaults to TLSOpportunistic.
	TLS TLSMode
	// TLSConfig overrides the TLS client settings, e.g. trusted roots in tests; nil
	// means the system roots. ServerName defaults to Host.
	TLSConfig *tls.Config
	// PoolSize is how many connections may be open at once, and so how many messages
	// are in flight. Default 4.
	PoolSize int
	// IdleTimeout closes a pooled connection unused this long. Default 30s.
	IdleTimeout time.Duration
	// Timeout bounds connecting (TLS and AUTH included) and each SMTP command. Default 1m.
	Timeout time.Duration
	// LocalName is the name given in EHLO. Default "localhost".
	LocalName string
}

// ParseSMTPURL reads CRMSYNC_SMTP_URL: smtp://user:pass@host:port for STARTTLS when the
// server offers it, with ?starttls=required to insist on it, or smtps://user:pass@host:port
// for implicit TLS. The port defaults to 587 or 465; user and password are
// percent-decoded; ?pool=N sets PoolSize. Errors name what is wrong and never repeat the
// password.
func ParseSMTPURL(raw string) (SMTPConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err // url.Error repeats the URL, password included
		}
		return SMTPConfig{}, fmt.Errorf("parse SMTP URL: %w", err)
	}
	var cfg SMTPConfig
	switch strings.ToLower(u.Scheme) {
	case "smtp":
		cfg.TLS = TLSOpportunistic
	case "smtps":
		cfg.TLS = TLSImplicit
	case "":
		return SMTPConfig{}, errors.New("parse SMTP URL: missing scheme (want smtp:// or smtps://)")
	default:
		return SMTPConfig{}, fmt.Errorf("parse SMTP URL: unsupported scheme %q (want smtp or smtps)", u.Scheme)
	}
	if cfg.Host = u.Hostname(); cfg.Host == "" {
		return SMTPConfig{}, errors.New("parse SMTP URL: missing host")
	}
	if p := u.Port(); p != "" {
		if cfg.Port, err = strconv.Atoi(p); err != nil || cfg.Port < 1 || cfg.Port > 65535 {
			return SMTPConfig{}, fmt.Errorf("parse SMTP URL: bad port %q (want 1-65535)", p)
		}
	}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	if u.Path != "" && u.Path != "/" {
		return SMTPConfig{}, fmt.Errorf("parse SMTP URL: unexpected path %q", u.Path)
	}
	for key, values := range u.Query() {
		value := values[len(values)-1]
		switch key {
		case "starttls":
			switch {
			case cfg.TLS == TLSImplicit:
				return SMTPConfig{}, errors.New("parse SMTP URL: starttls does not apply to smtps://")
			case value == "required":
				cfg.TLS = TLSRequired
			case value == "opportunistic":
				cfg.TLS = TLSOpportunistic
			default:
				return SMTPConfig{}, fmt.Errorf("parse SMTP URL: starttls=%q (want required or opportunistic)", value)
			}
		case "pool":
			if cfg.PoolSize, err = strconv.Atoi(value); err != nil || cfg.PoolSize < 1 {
				return SMTPConfig{}, fmt.Errorf("parse SMTP URL: pool=%q (want a positive number)", value)
			}
		default:
			return SMTPConfig{}, fmt.Errorf("parse SMTP URL: unknown parameter %q (known: starttls, pool)", key)
		}
	}
	return cfg.withDefaults(), nil
}

// withDefaults fills the zero fields; it is the one place defaults live.
func (c SMTPConfig) withDefaults() SMTPConfig {
	defaultPort := DefaultSMTPPort
	if c.TLS == TLSImplicit {
		defaultPort = DefaultSMTPSPort
	}
	c.Port = cmp.Or(c.Port, defaultPort)
	c.PoolSize = cmp.Or(c.PoolSize, DefaultPoolSize)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, DefaultIdleTimeout)
	c.Timeout = cmp.Or(c.Timeout, DefaultSMTPTimeout)
	c.LocalName = cmp.Or(c.LocalName, defaultLocalName)
	return c
}

// Validate reports the first setting that cannot work, naming it, so the process can
// refuse to start instead of failing every Send.
func (c SMTPConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Host == "":
		return errors.New("SMTP config: Host is required")
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("SMTP config: Port %d is not in 1-65535", c.Port)
	case c.TLS < TLSOpportunistic || c.TLS > TLSImplicit:
		return fmt.Errorf("SMTP config: TLS %v is not a TLSMode", c.TLS)
	case c.PoolSize < 1:
		return fmt.Errorf("SMTP config: PoolSize %d must be positive", c.PoolSize)
	case c.IdleTimeout < 0:
		return fmt.Errorf("SMTP config: IdleTimeout %s must not be negative", c.IdleTimeout)
	case c.Timeout < 0:
		return fmt.Errorf("SMTP config: Timeout %s must not be negative", c.Timeout)
	case strings.ContainsAny(c.LocalName, " \r\n"):
		return fmt.Errorf("SMTP config: LocalName %q must be one word", c.LocalName)
	}
	return nil
}

// String describes the server without the password, for logs.
func (c SMTPConfig) String() string {
	c = c.withDefaults()
	scheme := "smtp"
	if c.TLS == TLSImplicit {
		scheme = "smtps"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port))}
	if c.Username != "" {
		u.User = url.User(c.Username)
	}
	if c.TLS == TLSRequired {
		u.RawQuery = "starttls=required"
	}
	return u.String()
}
