package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"crmsync/auth"
)

// tokenCommand mints a JWT with the secret serve uses (environment, else data dir).
func tokenCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", stderr)
	tenant := fs.String("tenant", "", "tenant the token belongs to (required)")
	role := fs.String("role", "viewer", "role: viewer, editor or admin (comma-separated for several)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	subject := fs.String("subject", "cli", "the token's subject (who it is for)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tenant == "" {
		return fmt.Errorf("token: --tenant is required")
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	roles := strings.Split(*role, ",")
	for i := range roles {
		roles[i] = strings.TrimSpace(roles[i])
	}
	tok, err := auth.Mint(cfg.JWTSecret, *subject, *tenant, roles, *ttl, cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
