package engine

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"

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
	client, err := dataverse.NewClient(dataverse.Config{
		OrganizationURL: conn.OrganizationURL, TokenURL: conn.TokenURL, TenantID: conn.EntraTenantID,
		ClientID: conn.ClientID, ClientSecret: secret, Logger: x.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("connection %s: %w", conn.ID, err)
	}
	if x.clients == nil {
		x.clients = map[string]cachedClient{}
	}
	x.clients[conn.ID] = cachedClient{fingerprint: fp, client: client}
	return client, nil
}
