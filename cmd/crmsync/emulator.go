package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"

	"crmsync/dataverse/emulator"
)

// emulatorUsage explains the command and shows how to talk to it with curl.
const emulatorUsage = `Usage: crmsync dataverse-emulator [flags]

Runs an in-memory Dataverse: the Web API under /api/data/v9.2/ and an Entra-ID-style
token endpoint at /<any tenant id>/oauth2/v2.0/token. A connection points at it with
organizationUrl = the printed URL and tokenUrl = <URL>/<tenant>/oauth2/v2.0/token.
It prints "listening on http://HOST:PORT" once ready and runs until interrupted.

Like Dataverse it throttles each user (requests and handling time per five
minutes, requests in flight), answering 429 with Retry-After, and sends webhooks
to the service endpoints and steps registered through the Web API (any port is
accepted). --latency and --fault-rate make it slow and unreliable on purpose.

Get a token, then create a contact (default address and client):

  TOKEN=$(curl -s -d grant_type=client_credentials -d client_id=emulator -d client_secret=emulator-secret --data-urlencode scope=http://127.0.0.1:8090/.default http://127.0.0.1:8090/common/oauth2/v2.0/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -i -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d '{"firstname":"Anna","lastname":"Schmidt","emailaddress1":"anna@example.de"}' http://127.0.0.1:8090/api/data/v9.2/contacts

Flags:
`

// emulatorCommand runs the Dataverse emulator on its own (contract.md, "The
// emulator"), for developing against Dataverse without a tenant.
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
	limitRequests := fs.Int("limit-requests", emulator.DefaultLimitRequests, "Web API requests per user per 5 minutes before 429 (0: no limit)")
	limitExec := fs.Float64("limit-exec-seconds", emulator.DefaultLimitExecSeconds, "combined handling time per user per 5 minutes, in seconds, before 429 (0: no limit)")
	limitConcurrent := fs.Int("limit-concurrent", emulator.DefaultLimitConcurrent, "Web API requests one user may have in flight (0: no limit)")
	dopHint := fs.Int("dop-hint", emulator.DefaultDOPHint, "x-ms-dop-hint sent on every Web API answer (0: none)")
	latency := fs.Duration("latency", 0, "delay added to every Web API request")
	faultRate := fs.Float64("fault-rate", 0, "share of Web API requests (0 to 1) answered 503 or cut off")
	faultSeed := fs.Uint64("fault-seed", 0, "seed of the fault injection, for repeatable runs (0: random)")
	webhookTimeout := fs.Duration("webhook-timeout", emulator.DefaultWebhookTimeout, "how long a webhook receiver may take to answer")
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
	switch {
	case *limitRequests < 0:
		return fmt.Errorf("dataverse-emulator: --limit-requests must not be negative, got %d", *limitRequests)
	case *limitExec < 0:
		return fmt.Errorf("dataverse-emulator: --limit-exec-seconds must not be negative, got %g", *limitExec)
	case *limitConcurrent < 0:
		return fmt.Errorf("dataverse-emulator: --limit-concurrent must not be negative, got %d", *limitConcurrent)
	case *dopHint < 0:
		return fmt.Errorf("dataverse-emulator: --dop-hint must not be negative, got %d", *dopHint)
	case *latency < 0:
		return fmt.Errorf("dataverse-emulator: --latency must not be negative, got %s", *latency)
	case *faultRate < 0 || *faultRate > 1:
		return fmt.Errorf("dataverse-emulator: --fault-rate must be between 0 and 1, got %g", *faultRate)
	case *webhookTimeout <= 0:
		return fmt.Errorf("dataverse-emulator: --webhook-timeout must be positive, got %s", *webhookTimeout)
	}
	var faultSource rand.Source
	if *faultSeed != 0 {
		faultSource = rand.NewPCG(*faultSeed, *faultSeed)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	e := emulator.New(emulator.Config{
		ClientID: *clientID, ClientSecret: *clientSecret,
		UserClientID: *userClientID, UserClientSecret: *userClientSecret,
		TokenTTL:         *tokenTTL,
		LimitRequests:    offIfZero(*limitRequests),
		LimitExecSeconds: offIfZero(*limitExec),
		LimitConcurrent:  offIfZero(*limitConcurrent),
		DOPHint:          offIfZero(*dopHint),
		Latency:          *latency,
		FaultRate:        *faultRate,
		Rand:             faultSource,
		WebhookTimeout:   *webhookTimeout,
		Logger:           slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	})
	if err := e.Start(*addr); err != nil {
		return fmt.Errorf("dataverse-emulator: %w", err)
	}
	fmt.Fprintf(stdout, "listening on %s\n", e.URL())
	<-ctx.Done()
	return e.Close()
}

// offIfZero maps a flag's 0 ("no limit") to the emulator's negative "off", since
// a zero in emulator.Config means "the default".
func offIfZero[T int | float64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}
