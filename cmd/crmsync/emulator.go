package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"crmsync/dataverse/emulator"
)

// emulatorUsage explains the command and shows how to talk to it with curl.
const emulatorUsage = `Usage: crmsync dataverse-emulator [flags]

Runs an in-memory Dataverse: the Web API under /api/data/v9.2/ and an Entra-ID-style
token endpoint at /<any tenant id>/oauth2/v2.0/token. A connection points at it with
organizationUrl = the printed URL and tokenUrl = <URL>/<tenant>/oauth2/v2.0/token.
It prints "listening on http://HOST:PORT" once ready and runs until interrupted.

Get a token, then create a contact (default address and client):

  TOKEN=$(curl -s -d grant_type=client_credentials -d client_id=emulator -d client_secret=emulator-secret --data-urlencode scope=http://127.0.0.1:8090/.default http://127.0.0.1:8090/common/oauth2/v2.0/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -i -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d '{"firstname":"Anna","lastname":"Schmidt","emailaddress1":"anna@example.de"}' http://127.0.0.1:8090/api/data/v9.2/contacts

Flags:
`

// emulatorCommand runs the Dataverse emulator on its own (contract.md, "The
// emulator"), for developing against Dataverse without a tenant. Throttling and
// fault flags (--limit-*, --latency, --fault-rate) come with the slice that
// implements them.
func emulatorCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	_ = getenv // configured by flags only, for now
	fs := newFlagSet("dataverse-emulator", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), emulatorUsage)
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "127.0.0.1:8090", "TCP address to listen on (port 0 picks a free one)")
	clientID := fs.String("client-id", emulator.DefaultClientID, "client id of the application user "+emulator.AppUserDomainName+" (crmsync's identity)")
	clientSecret := fs.String("client-secret", emulator.DefaultClientSecret, "client secret of the application user")
	userClientID := fs.String("user-client-id", emulator.DefaultUserClientID, "client id of the human user "+emulator.AdminDomainName)
	userClientSecret := fs.String("user-client-secret", emulator.DefaultUserClientSecret, "client secret of the human user")
	tokenTTL := fs.Duration("token-ttl", emulator.DefaultTokenTTL, "lifetime of access tokens")
	verbose := fs.Bool("v", false, "log every request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dataverse-emulator: unexpected argument %q", fs.Arg(0))
	}
	if *clientID == *userClientID {
		return fmt.Errorf("dataverse-emulator: --client-id and --user-client-id must differ, both are %q", *clientID)
	}
	if *tokenTTL <= 0 {
		return fmt.Errorf("dataverse-emulator: --token-ttl must be positive, got %s", *tokenTTL)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	e := emulator.New(emulator.Config{
		ClientID: *clientID, ClientSecret: *clientSecret,
		UserClientID: *userClientID, UserClientSecret: *userClientSecret,
		TokenTTL: *tokenTTL,
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	})
	if err := e.Start(*addr); err != nil {
		return fmt.Errorf("dataverse-emulator: %w", err)
	}
	fmt.Fprintf(stdout, "listening on %s\n", e.URL())
	<-ctx.Done()
	return e.Close()
}
