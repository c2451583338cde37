package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"crmsync/auth"
	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
)

// `serve --demo` (issue #10): the service plus the Dataverse emulator, seeded with a
// few contacts and a dynamic marketing list, and a tenant "demo" whose connection
// points at the emulator with crmsync's webhooks registered there, so a newcomer can
// watch a change travel each way with three curl lines and no other software.
//
// crmsync's side is set up through its own GraphQL API with a minted admin token,
// as a newcomer would do it by hand. The emulator keeps its rows in memory, so every
// start seeds it again, with the same ids; crmsync's side (the connection, the
// list's group, its subscribers) lives in the store and is made once: a later start
// finds the demo connection, starts the emulator on the address it names, registers
// the webhooks in the fresh emulator and syncs the list again.

const (
	demoTenant         = "demo"
	demoConnectionName = "Demo (Dataverse emulator)"
	// demoTokenTTL is the lifetime of the printed admin token.
	demoTokenTTL = 12 * time.Hour
	// demoSetUpTimeout bounds the seeding and the first list sync.
	demoSetUpTimeout = 2 * time.Minute

	demoListID   = "de300000-0000-4000-8000-0000000000a1"
	demoListName = "Newsletter Berlin"
	// demoListQuery is the dynamic list's FetchXML: the contacts in Berlin.
	demoListQuery = `<fetch><entity name="contact"><attribute name="fullname"/><attribute name="emailaddress1"/>` +
		`<filter><condition attribute="address1_city" operator="eq" value="Berlin"/></filter></entity></fetch>`
	// demoNewLastName is what the first curl line renames the featured contact to.
	demoNewLastName = "Schmidt-Weber"
)

// demoContact is one contact the emulator is seeded with.
type demoContact struct {
	ID, FirstName, LastName, Email, City string
}

// demoContacts are the CRM's people: three in Berlin (the list's members) and one
// in Hamburg, whom the list's query leaves out. The first is the one the printed
// curl lines change.
var demoContacts = []demoContact{
	{"de300000-0000-4000-8000-000000000001", "Anna", "Schmidt", "anna.schmidt@example.com", "Berlin"},
	{"de300000-0000-4000-8000-000000000002", "Jonas", "Weber", "jonas.weber@example.com", "Berlin"},
	{"de300000-0000-4000-8000-000000000003", "Mia", "Fischer", "mia.fischer@example.com", "Berlin"},
	{"de300000-0000-4000-8000-000000000004", "Lukas", "Becker", "lukas.becker@example.com", "Hamburg"},
}

// runningDemo is what a started demo consists of, for printing it.
type runningDemo struct {
	base, emulatorURL    string
	token                string
	connectionID         string
	groupID, groupName   string
	subscribers          int
	dashboard            bool
	created              bool
	featured             demoContact
	featuredSubscriberID string
}

// serveDemo runs serve and, once it listens, the emulator beside it with the demo
// set up; it returns when serve does, and stops the emulator after it.
func serveDemo(parent context.Context, cfg *config, logger *slog.Logger, stdout io.Writer) error {
	if cfg.Production {
		return errors.New("serve --demo: not in production (CRMSYNC_ENV=production): the demo needs GraphiQL and development tokens")
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, logger, stdout, ready) }()
	var base string
	select {
	case base = <-ready:
	case err := <-done:
		return err
	}

	setUpCtx, cancelSetUp := context.WithTimeout(ctx, demoSetUpTimeout)
	d, emu, err := setUpDemo(setUpCtx, cfg, base, logger)
	cancelSetUp()
	if err != nil {
		cancel()
		serveErr := <-done
		if emu != nil {
			_ = emu.Close()
		}
		if parent.Err() != nil {
			return serveErr // interrupted while setting up: an ordinary stop
		}
		return fmt.Errorf("serve --demo: %w", err)
	}
	d.print(stdout)
	err = <-done
	// After serve: the engine may call the CRM until it stops.
	if cerr := emu.Close(); cerr != nil {
		logger.Warn("demo: the emulator did not stop cleanly", slog.String("error", cerr.Error()))
	}
	return err
}

// setUpDemo starts and seeds the emulator and makes (or finds) the demo's side in
// crmsync; the emulator is returned whenever it was started, so the caller closes it.
func setUpDemo(ctx context.Context, cfg *config, base string, logger *slog.Logger) (*runningDemo, *emulator.Emulator, error) {
	token, err := auth.Mint(cfg.JWTSecret, "demo-admin", demoTenant, []string{"admin"}, demoTokenTTL, cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return nil, nil, fmt.Errorf("mint the demo token: %w", err)
	}
	api := &opClient{base: base, token: token, http: &http.Client{Timeout: time.Minute}}
	d := &runningDemo{base: base, token: token, featured: demoContacts[0]}

	// A demo connection made by an earlier start names the emulator's address; the
	// emulator goes there again, so the connection stays right.
	addr := "127.0.0.1:0"
	conn, err := findDemoConnection(ctx, api)
	if err != nil {
		return nil, nil, err
	}
	if conn != nil {
		u, err := url.Parse(conn.OrganizationURL)
		if err != nil || u.Host == "" {
			return nil, nil, fmt.Errorf("the demo connection %s has the organizationUrl %q, not the emulator's", conn.ID, conn.OrganizationURL)
		}
		addr, d.connectionID = u.Host, conn.ID
	}
	emu := emulator.New(emulator.Config{Logger: logger.With(slog.String("component", "emulator"))})
	if err := emu.Start(addr); err != nil {
		if conn != nil {
			return nil, nil, fmt.Errorf("the demo connection %s points at the emulator on %s, which cannot listen there (%w): free the port, or start over with an empty store", conn.ID, addr, err)
		}
		return nil, nil, err
	}
	d.emulatorURL = emu.URL()
	if err := seedCRM(ctx, d.emulatorURL); err != nil {
		return nil, emu, err
	}

	if conn == nil {
		if d.connectionID, err = createDemoConnection(ctx, api, d.emulatorURL); err != nil {
			return nil, emu, err
		}
		d.created = true
	}
	if err := api.do(ctx, `mutation($c: ID!) { registerWebhooks(connectionId: $c) { stepsCreated } }`,
		map[string]any{"c": d.connectionID}, nil); err != nil {
		return nil, emu, fmt.Errorf("register the webhooks: %w", err)
	}
	if err := syncDemoList(ctx, api, d); err != nil {
		return nil, emu, err
	}
	if err := resubscribeFeatured(ctx, api, d); err != nil {
		return nil, emu, err
	}
	d.dashboard = found(ctx, base+"/ui")
	return d, emu, nil
}

// demoConnectionView is the part of a connection the demo reads.
type demoConnectionView struct {
	ID, Name, OrganizationURL string
}

// findDemoConnection answers the demo tenant's demo connection, nil when there is none.
func findDemoConnection(ctx context.Context, api *opClient) (*demoConnectionView, error) {
	var res struct{ Connections []demoConnectionView }
	if err := api.do(ctx, `{ connections { id name organizationUrl } }`, nil, &res); err != nil {
		return nil, fmt.Errorf("look for the demo connection: %w", err)
	}
	for _, c := range res.Connections {
		if c.Name == demoConnectionName {
			return &c, nil
		}
	}
	return nil, nil
}

// seedCRM writes the demo's contacts and list into a fresh emulator as its human
// user, with fixed ids, so crmsync's links from an earlier start still hold.
func seedCRM(ctx context.Context, emulatorURL string) error {
	user, err := dataverse.NewClient(dataverse.Config{
		OrganizationURL: emulatorURL, TokenURL: emulatorURL + "/" + demoTenant + "/oauth2/v2.0/token",
		ClientID: emulator.DefaultUserClientID, ClientSecret: emulator.DefaultUserClientSecret,
	})
	if err != nil {
		return fmt.Errorf("seed the emulator: %w", err)
	}
	for _, c := range demoContacts {
		if _, err := user.Create(ctx, "contacts", map[string]any{
			"contactid": c.ID, "firstname": c.FirstName, "lastname": c.LastName, "emailaddress1": c.Email, "address1_city": c.City,
		}); err != nil {
			return fmt.Errorf("seed the emulator: %w", err)
		}
	}
	if _, err := user.Create(ctx, "lists", map[string]any{
		"listid": demoListID, "listname": demoListName, "type": true, "createdfromcode": dataverse.ListMemberContact,
		"query": demoListQuery, "cs_synctoems": true,
	}); err != nil {
		return fmt.Errorf("seed the emulator: %w", err)
	}
	return nil
}

// createDemoConnection makes the connection to the emulator, as its application
// user, with a random webhook key.
func createDemoConnection(ctx context.Context, api *opClient, emulatorURL string) (string, error) {
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("make a webhook key: %w", err)
	}
	var res struct{ CreateConnection struct{ ID string } }
	err := api.do(ctx, `mutation($in: CreateConnectionInput!) { createConnection(input: $in) { id } }`, map[string]any{"in": map[string]any{
		"name": demoConnectionName, "organizationUrl": emulatorURL, "tokenUrl": emulatorURL + "/" + demoTenant + "/oauth2/v2.0/token",
		"clientId": emulator.DefaultClientID, "clientSecret": emulator.DefaultClientSecret,
		"recipientType": "CONTACT", "ownerLogin": emulator.AppUserDomainName,
		"webhookAuth": map[string]any{"mode": "WEBHOOK_KEY", "value": base64.RawURLEncoding.EncodeToString(key)},
	}}, &res)
	if err != nil {
		return "", fmt.Errorf("create the demo connection: %w", err)
	}
	return res.CreateConnection.ID, nil
}

// syncDemoList syncs the list (linking it to its group the first time) and waits
// for the run, so the printed lines find the group filled.
func syncDemoList(ctx context.Context, api *opClient, d *runningDemo) error {
	var started struct{ SyncMarketingList struct{ ID string } }
	if err := api.do(ctx, `mutation($l: ID!) { syncMarketingList(listId: $l) { id } }`, map[string]any{"l": demoListID}, &started); err != nil {
		return fmt.Errorf("sync the demo list: %w", err)
	}
	for {
		var run struct {
			SyncRun struct {
				Status string
				Error  *string
			}
		}
		if err := api.do(ctx, `query($r: ID!) { syncRun(id: $r) { status error } }`, map[string]any{"r": started.SyncMarketingList.ID}, &run); err != nil {
			return fmt.Errorf("follow the demo list's sync: %w", err)
		}
		if run.SyncRun.Status == "FAILED" {
			reason := "no reason given"
			if run.SyncRun.Error != nil {
				reason = *run.SyncRun.Error
			}
			return fmt.Errorf("the demo list's sync failed: %s", reason)
		}
		if run.SyncRun.Status != "PENDING" {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the demo list's sync did not finish: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	var list struct {
		MarketingList struct {
			Group *struct {
				ID, Name        string
				SubscriberCount int
			}
		}
	}
	if err := api.do(ctx, `query($l: ID!) { marketingList(id: $l) { group { id name subscriberCount } } }`, map[string]any{"l": demoListID}, &list); err != nil {
		return fmt.Errorf("read the demo list: %w", err)
	}
	g := list.MarketingList.Group
	if g == nil {
		return errors.New("the demo list has no group after its sync")
	}
	d.groupID, d.groupName, d.subscribers = g.ID, g.Name, g.SubscriberCount
	return nil
}

// resubscribeFeatured makes the featured contact's subscriber subscribed again when
// an earlier demo unsubscribed it, so the third curl line shows a change again.
func resubscribeFeatured(ctx context.Context, api *opClient, d *runningDemo) error {
	var res struct {
		SubscriberByEmail *struct{ ID, SubscriptionState string }
	}
	if err := api.do(ctx, `query($g: ID!, $e: String!) { subscriberByEmail(groupId: $g, email: $e) { id subscriptionState } }`,
		map[string]any{"g": d.groupID, "e": d.featured.Email}, &res); err != nil {
		return fmt.Errorf("read the demo subscriber: %w", err)
	}
	s := res.SubscriberByEmail
	if s == nil {
		return fmt.Errorf("%s is not in the group %q after the list's sync", d.featured.Email, d.groupName)
	}
	d.featuredSubscriberID = s.ID
	if s.SubscriptionState == "SUBSCRIBED" {
		return nil
	}
	err := api.do(ctx, `mutation($g: ID!, $s: [SubscriberInput!]!) { upsertSubscribers(groupId: $g, subscribers: $s) { updated } }`,
		map[string]any{"g": d.groupID, "s": []map[string]any{{"email": d.featured.Email, "subscriptionState": "SUBSCRIBED"}}}, nil)
	if err != nil {
		return fmt.Errorf("subscribe %s again: %w", d.featured.Email, err)
	}
	return nil
}

// found reports whether a GET of the URL answers 2xx.
func found(ctx context.Context, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// print tells the newcomer what was set up, where to look, and three lines that
// show a change travelling each way; the lines run in order in one shell.
func (d *runningDemo) print(w io.Writer) {
	c := d.featured
	made := "found from an earlier start"
	if d.created {
		made = "created"
	}
	fmt.Fprintf(w, "\nDemo: the Dataverse emulator listens on %s with %d contacts and the dynamic list %q.\n", d.emulatorURL, len(demoContacts), demoListName)
	fmt.Fprintf(w, "Tenant %q: connection %s (%s) with its webhooks registered in the emulator; group %q (%s) with %d subscribers from the list.\n",
		demoTenant, d.connectionID, made, d.groupName, d.groupID, d.subscribers)
	fmt.Fprintf(w, "GraphiQL:  %s/graphiql (header Authorization: Bearer <the token below>)\n", d.base)
	dashboard := d.base + "/ui"
	if !d.dashboard {
		dashboard += " (coming)"
	}
	fmt.Fprintf(w, "Dashboard: %s\n", dashboard)
	fmt.Fprintf(w, "Admin token for tenant %q (valid %dh); the operator commands (crmsync status) read these too:\n", demoTenant, int(demoTokenTTL.Hours()))
	fmt.Fprintf(w, "  export CRMSYNC_URL=%s CRMSYNC_TOKEN=%s\n", d.base, d.token)

	crmAuth := `-H "Authorization: Bearer $CRM_TOKEN"`
	apiAuth := `-H "Authorization: Bearer $CRMSYNC_TOKEN" -H 'Content-Type: application/json'`
	fmt.Fprintf(w, "Watch a change travel each way: paste these in one shell, in order, after the export above.\n")
	fmt.Fprintf(w, "1. The CRM's user (%s) renames %s %s; the webhook takes the change to crmsync:\n", emulator.AdminDomainName, c.FirstName, c.LastName)
	fmt.Fprintf(w, "  CRM_TOKEN=$(curl -s -d grant_type=client_credentials -d client_id=%s -d client_secret=%s --data-urlencode scope=%s/.default %s/common/oauth2/v2.0/token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/') && curl -si -X PATCH %s -H 'Content-Type: application/json' -H 'If-Match: *' -d '{\"lastname\":\"%s\"}' '%s/api/data/v9.2/contacts(%s)'\n",
		emulator.DefaultUserClientID, emulator.DefaultUserClientSecret, d.emulatorURL, d.emulatorURL, crmAuth, demoNewLastName, d.emulatorURL, c.ID)
	fmt.Fprintf(w, "2. crmsync's subscriber follows (fields.lastName):\n")
	fmt.Fprintf(w, "  curl -s -w '\\n' %s -d '{\"query\":\"query($g: ID!, $e: String!) { subscriberByEmail(groupId: $g, email: $e) { id email fields subscriptionState } }\",\"variables\":{\"g\":\"%s\",\"e\":\"%s\"}}' %s/graphql\n",
		apiAuth, d.groupID, c.Email, d.base)
	fmt.Fprintf(w, "3. crmsync unsubscribes %s; a moment later the CRM's eMS subscription for the group says cs_subscribed false:\n", c.FirstName)
	fmt.Fprintf(w, "  curl -s -w '\\n' %s -d '{\"query\":\"mutation($s: ID!) { unsubscribe(subscriberId: $s) { email subscriptionState } }\",\"variables\":{\"s\":\"%s\"}}' %s/graphql && sleep 2 && curl -s -w '\\n' -G %s --data-urlencode '$select=cs_groupid,cs_subscribed,cs_lastsyncedon' --data-urlencode '$filter=_cs_contactid_value eq %s' %s/api/data/v9.2/cs_subscriptions\n",
		apiAuth, d.featuredSubscriberID, d.base, crmAuth, c.ID, d.emulatorURL)
	fmt.Fprintf(w, "The demo runs until interrupted (Ctrl-C); a restart with the same data finds it again.\n")
}
