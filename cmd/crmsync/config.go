package main

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"crmsync/auth"
	"crmsync/mail"
	"crmsync/queue"
	"crmsync/webhook"
)

// config is the service's configuration, read from the environment in one place.
type config struct {
	Addr          string
	PublicURL     string
	DataDir       string
	MongoURI      string
	MongoDatabase string
	Redis         queue.Config
	JWTSecret     []byte
	JWTIssuer     string
	JWTAudience   string
	SecretKey     []byte
	KeyGrace      time.Duration
	SMTPURL       string
	// SMTP is CRMSYNC_SMTP_URL parsed; nil when delivery by SMTP is off.
	SMTP       *mail.SMTPConfig
	Production bool
	// LogLevel is the least level logged (CRMSYNC_LOG_LEVEL); debug adds a line per
	// event applied.
	LogLevel    slog.Level
	RedisPrefix string
	// LeaseTTL is how long a worker's claim on a stream partition lives unrenewed:
	// how soon a dead worker's partitions pass to the others.
	LeaseTTL time.Duration
	// RecoveryInterval is how often workers look for stored events that never reached
	// the stream (a lost publish, Redis losing its data).
	RecoveryInterval time.Duration
	// InboxRetention is how long processed events are kept for replay and audit.
	InboxRetention time.Duration
	// SchedulerInterval is how often each instance looks for due list schedules and
	// pending list sync runs (CRMSYNC_SCHEDULER_INTERVAL).
	SchedulerInterval time.Duration
	// SweepInterval is how often each connection's changes are read through change
	// tracking, to apply what webhooks missed; once per interval across the fleet.
	SweepInterval time.Duration
	// CampaignInterval is how often each instance looks for campaign sends to run
	// (CRMSYNC_CAMPAIGN_INTERVAL).
	CampaignInterval time.Duration
	// FormRate is how many submissions one IP address may make to one sign-up
	// form per minute (CRMSYNC_FORM_RATE).
	FormRate int
	// ClientIP finds a visitor's address behind the reverse proxies of
	// CRMSYNC_TRUSTED_PROXIES; with none, forwarding headers are not trusted.
	ClientIP *webhook.ClientIP
}

// configError names the variable that is wrong, as the one line the process prints.
type configError struct {
	Var    string
	Reason string
}

func (e *configError) Error() string { return e.Var + ": " + e.Reason }

// loadConfig reads and checks the environment. In development, secrets that are not
// set come from <data dir>/secrets.json, generated on first use; in production they
// must be set.
func loadConfig(getenv func(string) string) (*config, error) {
	c := &config{
		Addr:          cmp.Or(getenv("CRMSYNC_ADDR"), "127.0.0.1:8080"),
		PublicURL:     strings.TrimRight(getenv("CRMSYNC_PUBLIC_URL"), "/"),
		DataDir:       cmp.Or(getenv("CRMSYNC_DATA_DIR"), "./data"),
		MongoURI:      getenv("MONGODB_URI"),
		MongoDatabase: cmp.Or(getenv("MONGODB_DATABASE"), "crmsync"),
		JWTIssuer:     getenv("CRMSYNC_JWT_ISSUER"),
		JWTAudience:   getenv("CRMSYNC_JWT_AUDIENCE"),
		SMTPURL:       getenv("CRMSYNC_SMTP_URL"),
		RedisPrefix:   cmp.Or(getenv("CRMSYNC_REDIS_PREFIX"), "crmsync"),
		Redis: queue.Config{
			URL:            getenv("REDIS_URL"),
			ClusterAddrs:   queue.SplitAddrs(getenv("REDIS_CLUSTER_ADDRS")),
			SentinelMaster: getenv("REDIS_SENTINEL_MASTER"),
			SentinelAddrs:  queue.SplitAddrs(getenv("REDIS_SENTINEL_ADDRS")),
		},
	}
	switch env := cmp.Or(getenv("CRMSYNC_ENV"), "development"); env {
	case "development":
	case "production":
		c.Production = true
	default:
		return nil, &configError{"CRMSYNC_ENV", fmt.Sprintf("must be development or production, not %q", env)}
	}
	if err := c.LogLevel.UnmarshalText([]byte(cmp.Or(getenv("CRMSYNC_LOG_LEVEL"), "info"))); err != nil {
		return nil, &configError{"CRMSYNC_LOG_LEVEL", "must be debug, info, warn or error"}
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return nil, &configError{"CRMSYNC_ADDR", "must be HOST:PORT, such as 127.0.0.1:8080"}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, &configError{"CRMSYNC_PUBLIC_URL", "must be an absolute http(s) URL"}
		}
	}
	if c.MongoURI != "" && !strings.HasPrefix(c.MongoURI, "mongodb://") && !strings.HasPrefix(c.MongoURI, "mongodb+srv://") {
		return nil, &configError{"MONGODB_URI", "must start with mongodb:// or mongodb+srv://"}
	}
	set := 0
	for _, on := range []bool{c.Redis.URL != "", len(c.Redis.ClusterAddrs) > 0, c.Redis.SentinelMaster != "" || len(c.Redis.SentinelAddrs) > 0} {
		if on {
			set++
		}
	}
	if set > 1 {
		return nil, &configError{"REDIS_URL", "set only one of REDIS_URL, REDIS_CLUSTER_ADDRS and REDIS_SENTINEL_*"}
	}
	if c.Redis.URL != "" && !strings.HasPrefix(c.Redis.URL, "redis://") && !strings.HasPrefix(c.Redis.URL, "rediss://") {
		return nil, &configError{"REDIS_URL", "must start with redis:// or rediss://"}
	}
	if (c.Redis.SentinelMaster == "") != (len(c.Redis.SentinelAddrs) == 0) {
		return nil, &configError{"REDIS_SENTINEL_ADDRS", "REDIS_SENTINEL_MASTER and REDIS_SENTINEL_ADDRS go together"}
	}
	for _, v := range []string{"CRMSYNC_JWT_PUBLIC_KEY_FILE", "CRMSYNC_JWT_JWKS_URL"} {
		if getenv(v) != "" {
			return nil, &configError{v, "RS256/ES256 verification is not available in this version; use CRMSYNC_JWT_SECRET"}
		}
	}
	grace, err := time.ParseDuration(cmp.Or(getenv("CRMSYNC_KEY_GRACE"), "24h"))
	if err != nil || grace < 0 {
		return nil, &configError{"CRMSYNC_KEY_GRACE", "must be a duration such as 24h"}
	}
	c.KeyGrace = grace
	for _, d := range []struct {
		name string
		def  string
		dst  *time.Duration
	}{{"CRMSYNC_LEASE_TTL", "10s", &c.LeaseTTL}, {"CRMSYNC_RECOVERY_INTERVAL", "30s", &c.RecoveryInterval}, {"CRMSYNC_INBOX_RETENTION", "336h", &c.InboxRetention},
		{"CRMSYNC_SWEEP_INTERVAL", "5m", &c.SweepInterval}, {"CRMSYNC_SCHEDULER_INTERVAL", "5s", &c.SchedulerInterval},
		{"CRMSYNC_CAMPAIGN_INTERVAL", "2s", &c.CampaignInterval}} {
		v, err := time.ParseDuration(cmp.Or(getenv(d.name), d.def))
		if err != nil || v < 100*time.Millisecond {
			return nil, &configError{d.name, "must be a duration of at least 100ms, such as " + d.def}
		}
		*d.dst = v
	}
	rate, err := strconv.Atoi(cmp.Or(getenv("CRMSYNC_FORM_RATE"), "10"))
	if err != nil || rate < 1 {
		return nil, &configError{"CRMSYNC_FORM_RATE", "must be a whole number of submissions per minute, at least 1, such as 10"}
	}
	c.FormRate = rate
	if c.ClientIP, err = webhook.NewClientIP(getenv("CRMSYNC_TRUSTED_PROXIES")); err != nil {
		return nil, &configError{"CRMSYNC_TRUSTED_PROXIES", err.Error() + " (comma-separated IPs or CIDRs, such as 10.0.0.0/8,fd00::/8)"}
	}
	if c.SMTPURL != "" {
		smtp, err := mail.ParseSMTPURL(c.SMTPURL)
		if err != nil {
			return nil, &configError{"CRMSYNC_SMTP_URL", err.Error() + " (smtp://user:pass@host:port or smtps://…)"}
		}
		c.SMTP = &smtp
	}
	if err := c.loadSecrets(getenv); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *config) loadSecrets(getenv func(string) string) error {
	jwtSecret, secretKey := getenv("CRMSYNC_JWT_SECRET"), getenv("CRMSYNC_SECRET_KEY")
	if c.Production {
		if jwtSecret == "" {
			return &configError{"CRMSYNC_JWT_SECRET", "is required in production (at least 32 bytes)"}
		}
		if secretKey == "" {
			return &configError{"CRMSYNC_SECRET_KEY", "is required in production (base64 of 32 bytes)"}
		}
	}
	if jwtSecret == "" || secretKey == "" {
		s, err := auth.LoadOrCreateSecrets(c.DataDir)
		if err != nil {
			return &configError{"CRMSYNC_DATA_DIR", err.Error()}
		}
		jwtSecret, secretKey = cmp.Or(jwtSecret, s.JWTSecret), cmp.Or(secretKey, s.SecretKey)
	}
	if len(jwtSecret) < auth.MinSecretLength {
		return &configError{"CRMSYNC_JWT_SECRET", fmt.Sprintf("must be at least %d bytes", auth.MinSecretLength)}
	}
	key, err := auth.DecodeSecretKey(secretKey)
	if err != nil {
		return &configError{"CRMSYNC_SECRET_KEY", err.Error()}
	}
	c.JWTSecret, c.SecretKey = []byte(jwtSecret), key
	return nil
}
