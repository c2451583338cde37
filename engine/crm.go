package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"crmsync/dataverse"
	"crmsync/store"
)

// CRMClients hands out the Web API client of each connection, made once and kept
// while the connection's address and credentials stay the same, so tokens are
// cached across events.
type CRMClients struct {
	// Secret opens a connection's client secret; required.
	Secret func(*store.Connection) (string, error)
	// Logger goes to every client; default discards.
	Logger *slog.Logger
	// Tune adjusts each client's configuration before it is made (tests shorten
	// the retries with it); optional.
	Tune func(*dataverse.Config)
	// Observe gives the observer of one connection's traffic (queue.Budget
	// counts each connection's requests with it); optional. It watches besides
	// any Observer that Tune sets.
	Observe func(connectionID string) dataverse.Observer

	mu      sync.Mutex
	clients map[string]cachedClient
}

type cachedClient struct {
	fingerprint [32]byte
	client      *dataverse.Client
}

// ErrNoCredentials is returned for a connection without client credentials: it
// can receive webhooks but not write to the CRM.
var ErrNoCredentials = errors.New("the connection has no clientId and clientSecret, so crmsync cannot write to the CRM")

// For returns the client of a connection.
func (x *CRMClients) For(conn *store.Connection) (*dataverse.Client, error) {
	secret, err := x.Secret(conn)
	if err != nil {
		return nil, err
	}
	if conn.ClientID == "" || secret == "" {
		return nil, ErrNoCredentials
	}
	fp := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%s", conn.OrganizationURL, conn.TokenURL, conn.EntraTenantID, conn.ClientID, secret))
	x.mu.Lock()
	defer x.mu.Unlock()
	if c, ok := x.clients[conn.ID]; ok && c.fingerprint == fp {
		return c.client, nil
	}
	client, err := dataverse.NewClient(x.config(conn, secret))
	if err != nil {
		return nil, fmt.Errorf("connection %s: %w", conn.ID, err)
	}
	if x.clients == nil {
		x.clients = map[string]cachedClient{}
	}
	x.clients[conn.ID] = cachedClient{fingerprint: fp, client: client}
	return client, nil
}

// Test checks a connection's access to the Web API now: a token, WhoAmI, and one
// row of the connection's recipient table (the read sync depends on), through a
// client of its own that does not retry, so the answer comes within ctx and
// reflects the credentials as they are, not a cached token. It returns who the
// connection acts as and how long the check took.
func (x *CRMClients) Test(ctx context.Context, conn *store.Connection) (dataverse.Identity, time.Duration, error) {
	secret, err := x.Secret(conn)
	if err != nil {
		return dataverse.Identity{}, 0, err
	}
	if conn.ClientID == "" || secret == "" {
		return dataverse.Identity{}, 0, ErrNoCredentials
	}
	cfg := x.config(conn, secret)
	cfg.MaxRetries = -1
	client, err := dataverse.NewClient(cfg)
	if err != nil {
		return dataverse.Identity{}, 0, err
	}
	start := time.Now()
	id, err := client.WhoAmI(ctx)
	if err != nil {
		return id, time.Since(start), err
	}
	rows := client.Query(ctx, entitySet(conn.RecipientType), dataverse.Query{Select: []string{conn.RecipientType.Entity() + "id"}, Top: 1})
	rows.Next(ctx) // one row, or none in an empty table: either proves the read
	if err := rows.Err(); err != nil {
		return id, time.Since(start), fmt.Errorf("read a row of %s: %w", entitySet(conn.RecipientType), err)
	}
	return id, time.Since(start), nil
}

// config is the client configuration of a connection: its address and
// credentials, then Tune, then the connection's observer beside Tune's.
func (x *CRMClients) config(conn *store.Connection, secret string) dataverse.Config {
	cfg := dataverse.Config{
		OrganizationURL: conn.OrganizationURL, TokenURL: conn.TokenURL, TenantID: conn.EntraTenantID,
		ClientID: conn.ClientID, ClientSecret: secret, Logger: x.Logger,
	}
	if x.Tune != nil {
		x.Tune(&cfg)
	}
	if x.Observe != nil {
		if o := x.Observe(conn.ID); o != nil {
			cfg.Observer = fanOut(cfg.Observer, o)
		}
	}
	return cfg
}

// observers tells several observers of a client's traffic the same things.
type observers []dataverse.Observer

// fanOut combines observers, leaving out nil ones.
func fanOut(obs ...dataverse.Observer) dataverse.Observer {
	var out observers
	for _, o := range obs {
		if o != nil {
			out = append(out, o)
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return out
}

func (o observers) WebAPIRequest(status int) {
	for _, x := range o {
		x.WebAPIRequest(status)
	}
}

func (o observers) WebAPIRetryWait(d time.Duration) {
	for _, x := range o {
		x.WebAPIRetryWait(d)
	}
}
