package mail

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseSMTPURL(t *testing.T) {
	t.Parallel()
	defaults := func(c SMTPConfig) SMTPConfig {
		c.PoolSize, c.IdleTimeout, c.Timeout, c.LocalName = DefaultPoolSize, DefaultIdleTimeout, DefaultSMTPTimeout, "localhost"
		return c
	}
	for _, tc := range []struct {
		raw  string
		want SMTPConfig
	}{
		{"smtp://user:pass@mail.example.com:2525", defaults(SMTPConfig{Host: "mail.example.com", Port: 2525, Username: "user", Password: "pass"})},
		{"smtp://mail.example.com", defaults(SMTPConfig{Host: "mail.example.com", Port: 587})},
		{"SMTPS://u%40x.com:p%3Aw%2Fd@mail.example.com", defaults(SMTPConfig{Host: "mail.example.com", Port: 465, Username: "u@x.com", Password: "p:w/d", TLS: TLSImplicit})},
		{"smtp://[::1]:25/?starttls=required", defaults(SMTPConfig{Host: "::1", Port: 25, TLS: TLSRequired})},
		{"smtp://127.0.0.1?pool=8&starttls=opportunistic", func() SMTPConfig {
			c := defaults(SMTPConfig{Host: "127.0.0.1", Port: 587})
			c.PoolSize = 8
			return c
		}()},
	} {
		got, err := ParseSMTPURL(tc.raw)
		if err != nil {
			t.Errorf("ParseSMTPURL(%q): %v", tc.raw, err)
			continue
		}
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tc.want) {
			t.Errorf("ParseSMTPURL(%q) =\n%#v, want\n%#v", tc.raw, got, tc.want)
		}
	}
}

func TestParseSMTPURLErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw, want string
	}{
		{"", "missing scheme"},
		{"mail.example.com:587", "scheme"},
		{"http://mail.example.com", `unsupported scheme "http"`},
		{"smtp://", "missing host"},
		{"smtp://user:hunter2@:25", "missing host"},
		{"smtp://mail.example.com:0", `bad port "0"`},
		{"smtp://mail.example.com:70000", `bad port "70000"`},
		{"smtp://user:hunter2@mail.example.com:abc", "port"},
		{"smtp://mail.example.com/path", "unexpected path"},
		{"smtp://mail.example.com?tls=on", `unknown parameter "tls"`},
		{"smtp://mail.example.com?starttls=maybe", "starttls"},
		{"smtps://mail.example.com?starttls=required", "does not apply"},
		{"smtp://mail.example.com?pool=0", "pool"},
		{"smtp://user:hunter2@mail.exa mple.com", "parse SMTP URL"},
	} {
		_, err := ParseSMTPURL(tc.raw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSMTPURL(%q) = %v, want an error mentioning %q", tc.raw, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseSMTPURL(%q) error repeats the password: %v", tc.raw, err)
		}
	}
}

func TestSMTPConfigValidateAndString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  SMTPConfig
		want string
	}{
		{SMTPConfig{Host: "h"}, ""},
		{SMTPConfig{}, "Host"},
		{SMTPConfig{Host: "h", Port: 70000}, "Port"},
		{SMTPConfig{Host: "h", TLS: 7}, "TLS"},
		{SMTPConfig{Host: "h", PoolSize: -1}, "PoolSize"},
		{SMTPConfig{Host: "h", IdleTimeout: -time.Second}, "IdleTimeout"},
		{SMTPConfig{Host: "h", LocalName: "a b"}, "LocalName"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}

	cfg, _ := ParseSMTPURL("smtp://ana:hunter2@mail.example.com?starttls=required")
	if got, want := cfg.String(), "smtp://ana@mail.example.com:587?starttls=required"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if strings.Contains(fmt.Sprint(cfg), "hunter2") {
		t.Error("printing the config shows the password")
	}
}
