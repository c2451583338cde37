package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crmsync/auth"
)

func TestLoadConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CRMSYNC_ENV": "staging"}, "CRMSYNC_ENV"},
		{map[string]string{"CRMSYNC_LOG_LEVEL": "verbose"}, "CRMSYNC_LOG_LEVEL"},
		{map[string]string{"CRMSYNC_ADDR": "8080"}, "CRMSYNC_ADDR"},
		{map[string]string{"CRMSYNC_PUBLIC_URL": "example.com"}, "CRMSYNC_PUBLIC_URL"},
		{map[string]string{"MONGODB_URI": "postgres://x"}, "MONGODB_URI"},
		{map[string]string{"REDIS_URL": "localhost:6379"}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "redis://a", "REDIS_CLUSTER_ADDRS": "b:1"}, "REDIS_URL"},
		{map[string]string{"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_ADDRS"},
		{map[string]string{"CRMSYNC_JWT_SECRET": "short"}, "CRMSYNC_JWT_SECRET"},
		{map[string]string{"CRMSYNC_SECRET_KEY": "bm90LTMyLWJ5dGVz"}, "CRMSYNC_SECRET_KEY"},
		{map[string]string{"CRMSYNC_KEY_GRACE": "a day"}, "CRMSYNC_KEY_GRACE"},
		{map[string]string{"CRMSYNC_SMTP_URL": "http://mail"}, "CRMSYNC_SMTP_URL"},
		{map[string]string{"CRMSYNC_SWEEP_INTERVAL": "often"}, "CRMSYNC_SWEEP_INTERVAL"},
		{map[string]string{"CRMSYNC_SWEEP_INTERVAL": "1ms"}, "CRMSYNC_SWEEP_INTERVAL"},
		{map[string]string{"CRMSYNC_JWT_JWKS_URL": "https://idp/jwks"}, "CRMSYNC_JWT_JWKS_URL"},
		{map[string]string{"CRMSYNC_FORM_RATE": "0"}, "CRMSYNC_FORM_RATE"},
		{map[string]string{"CRMSYNC_FORM_RATE": "ten"}, "CRMSYNC_FORM_RATE"},
		{map[string]string{"CRMSYNC_TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"}, "CRMSYNC_TRUSTED_PROXIES"},
		{map[string]string{"CRMSYNC_TRUSTED_PROXIES": "10.0.0.0/33"}, "CRMSYNC_TRUSTED_PROXIES"},
		{map[string]string{"CRMSYNC_ENV": "production"}, "CRMSYNC_JWT_SECRET"},
		{map[string]string{"CRMSYNC_ENV": "production", "CRMSYNC_JWT_SECRET": strings.Repeat("s", 32)}, "CRMSYNC_SECRET_KEY"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		tt.env["CRMSYNC_DATA_DIR"] = dir
		_, err := loadConfig(func(k string) string { return tt.env[k] })
		var ce *configError
		if !errors.As(err, &ce) || ce.Var != tt.want {
			t.Errorf("%v: err = %v, want one naming %s", tt.env, err, tt.want)
		}
	}
}

func TestProductionNeverGeneratesSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{
		"CRMSYNC_ENV": "production", "CRMSYNC_DATA_DIR": dir,
		"CRMSYNC_JWT_SECRET": strings.Repeat("s", 32), "CRMSYNC_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
	}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Production || string(cfg.JWTSecret) != env["CRMSYNC_JWT_SECRET"] {
		t.Errorf("cfg = %+v", cfg)
	}
	if _, err := os.Stat(filepath.Join(dir, auth.SecretsFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("production wrote %s: %v", auth.SecretsFile, err)
	}
}

func TestTokenCommandUsesServeSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	getenv := func(k string) string {
		if k == "CRMSYNC_DATA_DIR" {
			return dir
		}
		return ""
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"token", "--tenant", "acme", "--role", "admin", "--ttl", "1h"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("token: %v (%s)", err, errOut.String())
	}
	cfg, err := loadConfig(getenv) // what serve would load: the same data dir secret
	if err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewVerifier(auth.Config{Secret: cfg.JWTSecret})
	c, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil || c.Tenant != "acme" || c.Role != auth.RoleAdmin {
		t.Fatalf("minted token: %+v, %v", c, err)
	}
	for _, args := range [][]string{{"token"}, {"token", "--tenant", "a", "--role", "root"}, {"token", "--tenant", "a", "--ttl", "-1h"}, {"bogus"}} {
		if err := run(context.Background(), args, getenv, &out, &errOut); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestSweepIntervalDefaultsToFiveMinutes(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]time.Duration{"": 5 * time.Minute, "30s": 30 * time.Second} {
		vars := map[string]string{"CRMSYNC_DATA_DIR": t.TempDir(), "CRMSYNC_SWEEP_INTERVAL": env}
		cfg, err := loadConfig(func(k string) string { return vars[k] })
		if err != nil {
			t.Fatal(err)
		}
		if cfg.SweepInterval != want {
			t.Errorf("CRMSYNC_SWEEP_INTERVAL=%q: %s, want %s", env, cfg.SweepInterval, want)
		}
	}
}

func TestTrustedProxiesDefaultToNone(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]string{"": "10.0.0.1", "10.0.0.0/8, fd00::/8,127.0.0.1": "203.0.113.1"} {
		vars := map[string]string{"CRMSYNC_DATA_DIR": t.TempDir(), "CRMSYNC_TRUSTED_PROXIES": env}
		cfg, err := loadConfig(func(k string) string { return vars[k] })
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodPost, "/forms/f1", nil)
		r.RemoteAddr = "10.0.0.1:443"
		r.Header.Set("X-Forwarded-For", "203.0.113.1")
		if got := cfg.ClientIP.Of(r); got != want {
			t.Errorf("CRMSYNC_TRUSTED_PROXIES=%q: client %s, want %s", env, got, want)
		}
	}
}
