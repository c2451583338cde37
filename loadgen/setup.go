package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Client talks to a running instance's GraphQL API with a token, to prepare a run
// and read its ledger.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// Target is what Setup prepared: a connection whose webhook the run posts to, and a
// CRM-synced group holding the records' subscribers, so the engine does real work.
type Target struct {
	ConnectionID string
	GroupID      string
	WebhookURL   string
}

// Setup creates a connection with a fresh webhook key and a CRM-synced group with
// one subscriber per record.
func (c *Client) Setup(ctx context.Context, name string, records int, email func(int) string) (*Target, error) {
	kb := make([]byte, 24)
	_, _ = rand.Read(kb)
	key := hex.EncodeToString(kb)
	var conn struct {
		CreateConnection struct{ ID, WebhookURL string }
	}
	err := c.Do(ctx, `mutation($in: CreateConnectionInput!) { createConnection(input: $in) { id webhookUrl } }`, map[string]any{"in": map[string]any{
		"name": name, "organizationUrl": "https://loadgen.crm.dynamics.com", "recipientType": "CONTACT",
		"webhookAuth": map[string]any{"mode": "WEBHOOK_KEY", "value": key},
	}}, &conn)
	if err != nil {
		return nil, fmt.Errorf("create connection: %w", err)
	}
	var group struct {
		CreateSubscriberGroup struct{ ID string }
	}
	err = c.Do(ctx, `mutation($c: ID!, $n: String!) { createSubscriberGroup(input: {name: $n, connectionId: $c, crmSync: true}) { id } }`,
		map[string]any{"c": conn.CreateConnection.ID, "n": name}, &group)
	if err != nil {
		return nil, fmt.Errorf("create group: %w", err)
	}
	for start := 0; start < records; start += 1000 {
		rows := make([]map[string]any, 0, 1000)
		for i := start; i < min(records, start+1000); i++ {
			rows = append(rows, map[string]any{"email": email(i)})
		}
		var up struct{ UpsertSubscribers struct{ Created int } }
		err := c.Do(ctx, `mutation($g: ID!, $rows: [SubscriberInput!]!) { upsertSubscribers(groupId: $g, subscribers: $rows) { created } }`,
			map[string]any{"g": group.CreateSubscriberGroup.ID, "rows": rows}, &up)
		if err != nil {
			return nil, fmt.Errorf("add subscribers: %w", err)
		}
	}
	return &Target{
		ConnectionID: conn.CreateConnection.ID,
		GroupID:      group.CreateSubscriberGroup.ID,
		WebhookURL:   conn.CreateConnection.WebhookURL + "?code=" + key,
	}, nil
}

// Ledger is the instance's account of a connection's accepted events.
type Ledger struct {
	Pending, Processed, Failed                             int
	LatencyP50Ms, LatencyP95Ms, LatencyP99Ms, LatencyMaxMs float64
}

// Ledger reads the connection's ingest stats.
func (c *Client) Ledger(ctx context.Context, connectionID string) (*Ledger, error) {
	var out struct{ IngestStats Ledger }
	err := c.Do(ctx, `query($c: ID!) { ingestStats(connectionId: $c) { pending processed failed latencyP50Ms latencyP95Ms latencyP99Ms latencyMaxMs } }`,
		map[string]any{"c": connectionID}, &out)
	if err != nil {
		return nil, err
	}
	return &out.IngestStats, nil
}

// Drain waits until no accepted event of the connection is pending (or ctx ends)
// and returns the final ledger.
func (c *Client) Drain(ctx context.Context, connectionID string) (*Ledger, error) {
	for {
		l, err := c.Ledger(ctx, connectionID)
		if err == nil && l.Pending == 0 {
			return l, nil
		}
		select {
		case <-ctx.Done():
			if l != nil {
				return l, fmt.Errorf("drain: %d events still pending: %w", l.Pending, ctx.Err())
			}
			return nil, fmt.Errorf("drain: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// Do runs a GraphQL operation and decodes its data into out.
func (c *Client) Do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message    string         `json:"message"`
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("graphql answer (HTTP %d) is not JSON: %w", resp.StatusCode, err)
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("graphql: %s (%v)", res.Errors[0].Message, res.Errors[0].Extensions["code"])
	}
	return json.Unmarshal(res.Data, out)
}

// Report writes the run's numbers and the ledger in the form the notes quote.
func Report(w interface{ Write([]byte) (int, error) }, r *Result, l *Ledger) {
	fmt.Fprintf(w, "sent %d = accepted %d + duplicates %d + rejected %d + errors %d",
		r.Sent, r.Accepted, r.Duplicates, r.Rejected, r.Errors)
	if r.Rejected > 0 {
		fmt.Fprintf(w, " (by status: %v)", r.ByStatus)
	}
	fmt.Fprintf(w, " [%s]\n", okIf(r.Balanced()))
	fmt.Fprintf(w, "ingest: %.1f accepted/s over %s; 202 latency p50 %s p95 %s p99 %s\n",
		r.AcceptedPerSecond(), r.Elapsed.Round(time.Millisecond), r.Latency(0.50).Round(time.Microsecond),
		r.Latency(0.95).Round(time.Microsecond), r.Latency(0.99).Round(time.Microsecond))
	if l == nil {
		return
	}
	// A call can be stored and its 202 lost (a killed instance, a cut connection);
	// the instance's ledger then holds more than the answers said.
	stored := l.Processed + l.Failed + l.Pending
	fmt.Fprintf(w, "stored %d (accepted %d + %d whose answer was lost) = applied %d + dead-lettered %d + pending %d [%s]\n",
		stored, r.Accepted, stored-r.Accepted, l.Processed, l.Failed, l.Pending, okIf(stored >= r.Accepted && l.Pending == 0))
	fmt.Fprintf(w, "end to end (accept -> applied): p50 %.1fms p95 %.1fms p99 %.1fms max %.1fms\n",
		l.LatencyP50Ms, l.LatencyP95Ms, l.LatencyP99Ms, l.LatencyMaxMs)
}

func okIf(ok bool) string {
	if ok {
		return "balanced"
	}
	return "NOT BALANCED"
}
