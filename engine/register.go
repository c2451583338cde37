package engine

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"crmsync/dataverse"
	"crmsync/store"
)

// Registration of crmsync's webhook in a connection's Dataverse
// (reference/dataverse.md §7.6): one serviceendpoint (contract Webhook) named after
// the connection, with the connection's webhook credential, and one
// sdkmessageprocessingstep per message crmsync handles — asynchronous,
// post-operation, with filtering attributes and images derived from the
// connection's field mappings. Registering compares what is there with what should
// be, and creates, updates or removes only the difference: running it twice
// changes nothing; removing takes away only what it finds on crmsync's endpoint.

// Actions a registration takes on one row.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionRemove = "remove"
	ActionKeep   = "keep"
)

// PlannedStep is one step of the registration and what registering does with it.
type PlannedStep struct {
	Name                string
	Message             string
	Table               string // "" for messages registered without a table (Associate)
	FilteringAttributes string
	// Image names the columns of the post-image the step carries ("" for none).
	Image  string
	Action string
	id     string
}

// RegistrationPlan is what registering did (or, in a dry run, would do).
type RegistrationPlan struct {
	EndpointID     string
	EndpointAction string
	WebhookURL     string
	Steps          []PlannedStep
	Warnings       []string
}

// Count counts the plan's steps with the given action.
func (p *RegistrationPlan) Count(action string) int {
	n := 0
	for _, s := range p.Steps {
		if s.Action == action {
			n++
		}
	}
	return n
}

// Registrar registers crmsync's webhook and steps in connections' Dataverse.
type Registrar struct {
	Store *store.Store
	// CRM gives the Web API clients; default: made from the store's secrets.
	CRM *CRMClients
	// PublicURL is how Dataverse reaches this service (CRMSYNC_PUBLIC_URL).
	PublicURL string
	Now       func() time.Time
}

// RegisterOptions choose a dry run (the plan, nothing written) or a removal.
type RegisterOptions struct {
	DryRun bool
	Remove bool
}

// endpointName names a connection's service endpoint; registering finds it by it.
func endpointName(connID string) string { return "crmsync " + connID }

// stepPrefix starts the name of every step crmsync registers.
const stepPrefix = "crmsync: "

// Register brings the connection's registration in Dataverse in line with what
// crmsync needs (or removes it), records the outcome on the connection unless it
// is a dry run, and answers the plan.
func (r *Registrar) Register(ctx context.Context, conn *store.Connection, opt RegisterOptions) (*RegistrationPlan, error) {
	client, err := clientFor(apiOf(r.Store, r.CRM), conn)
	if err != nil {
		return nil, Permanent(err)
	}
	creds, err := r.Store.WebhookCredentials(conn)
	if err != nil || len(creds) == 0 {
		return nil, fmt.Errorf("open the connection's webhook credential: %w", cmp.Or(err, errors.New("none")))
	}
	cred := creds[0]
	plan := &RegistrationPlan{WebhookURL: strings.TrimRight(r.PublicURL, "/") + "/webhooks/dataverse/" + conn.ID}
	if strings.HasPrefix(plan.WebhookURL, "http://127.") || strings.HasPrefix(plan.WebhookURL, "http://localhost") {
		plan.Warnings = append(plan.Warnings, "the webhook URL "+plan.WebhookURL+" is local: Dataverse in the cloud cannot reach it (set CRMSYNC_PUBLIC_URL)")
	} else if !strings.HasPrefix(plan.WebhookURL, "https://") {
		plan.Warnings = append(plan.Warnings, "the webhook URL is not https: Dataverse accepts only https on port 443 (or http on 80)")
	}
	ep, err := r.findEndpoint(ctx, client, conn.ID)
	if err != nil {
		return nil, err
	}
	var existing []PlannedStep
	if ep != nil {
		plan.EndpointID = ep.id
		if existing, err = r.existingSteps(ctx, client, ep.id); err != nil {
			return nil, err
		}
	}
	if opt.Remove {
		plan.EndpointAction = ActionKeep
		if ep != nil {
			plan.EndpointAction = ActionRemove
		}
		for _, s := range existing {
			s.Action = ActionRemove
			plan.Steps = append(plan.Steps, s)
		}
		if opt.DryRun || ep == nil {
			return plan, nil
		}
		for _, s := range existing {
			if err := client.Delete(ctx, "sdkmessageprocessingsteps", s.id); err != nil && !errors.Is(err, dataverse.ErrNotFound) {
				return nil, fmt.Errorf("remove step %q: %w", s.Name, crmError(err))
			}
		}
		if err := client.Delete(ctx, "serviceendpoints", ep.id); err != nil && !errors.Is(err, dataverse.ErrNotFound) {
			return nil, fmt.Errorf("remove the service endpoint: %w", crmError(err))
		}
		return plan, r.record(ctx, conn, plan, true)
	}

	want := endpointRow(conn, cred, plan.WebhookURL)
	switch {
	case ep == nil:
		plan.EndpointAction = ActionCreate
	case ep.url != plan.WebhookURL || ep.description != want["description"] || ep.authtype != want["authtype"]:
		plan.EndpointAction = ActionUpdate
	default:
		plan.EndpointAction = ActionKeep
	}
	plan.Steps = diffSteps(desiredSteps(conn), existing)
	if opt.DryRun {
		return plan, nil
	}
	switch plan.EndpointAction {
	case ActionCreate:
		if plan.EndpointID, err = client.Create(ctx, "serviceendpoints", want); err != nil {
			return nil, fmt.Errorf("create the service endpoint: %w", crmError(err))
		}
	case ActionUpdate:
		if err := client.Update(ctx, "serviceendpoints", plan.EndpointID, want); err != nil {
			return nil, fmt.Errorf("update the service endpoint: %w", crmError(err))
		}
	}
	ids := &sdkIDs{client: client, messages: map[string]string{}, filters: map[string]string{}}
	for i := range plan.Steps {
		if err := r.apply(ctx, client, ids, plan.EndpointID, &plan.Steps[i]); err != nil {
			var missing *missingMessageError
			if errors.As(err, &missing) {
				plan.Warnings = append(plan.Warnings, err.Error())
				plan.Steps[i].Action = ActionKeep
				continue
			}
			return nil, err
		}
	}
	return plan, r.record(ctx, conn, plan, false)
}

// RegisterWebhooks registers (or, in a dry run, plans) the connection's webhook
// and answers the outcome as the API shows it.
func (r *Registrar) RegisterWebhooks(ctx context.Context, conn *store.Connection, dryRun bool) (*store.WebhookRegistration, error) {
	plan, err := r.Register(ctx, conn, RegisterOptions{DryRun: dryRun})
	if err != nil {
		return nil, err
	}
	reg := &store.WebhookRegistration{
		StepsCreated: plan.Count(ActionCreate), StepsUpdated: plan.Count(ActionUpdate), StepsRemoved: plan.Count(ActionRemove),
		Warnings: append([]string{}, plan.Warnings...),
	}
	if plan.EndpointID != "" {
		reg.EndpointID = &plan.EndpointID
	}
	if !dryRun {
		at := r.now()
		reg.RegisteredAt = &at
	}
	return reg, nil
}

func (r *Registrar) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

// record keeps the outcome on the connection (the API's registration field).
func (r *Registrar) record(ctx context.Context, conn *store.Connection, plan *RegistrationPlan, removed bool) error {
	at := r.now()
	reg := &store.WebhookRegistration{
		StepsCreated: plan.Count(ActionCreate), StepsUpdated: plan.Count(ActionUpdate), StepsRemoved: plan.Count(ActionRemove),
		Warnings: append([]string{}, plan.Warnings...), RegisteredAt: &at,
	}
	if !removed {
		id := plan.EndpointID
		reg.EndpointID = &id
	}
	return r.Store.SetRegistration(ctx, conn.Tenant, conn.ID, reg)
}

// endpointRow is the service endpoint crmsync needs: the webhook URL and the
// connection's credential. Dataverse never returns authvalue, so the description
// carries a fingerprint of it, by which a changed key is recognised.
func endpointRow(conn *store.Connection, cred store.WebhookCredential, url string) map[string]any {
	row := map[string]any{
		"name": endpointName(conn.ID), "url": url, "contract": int64(8), "messageformat": int64(2),
	}
	switch cred.Mode {
	case store.WebhookHTTPHeader:
		row["authtype"], row["authvalue"] = int64(5), settingsXML(cred.Name, cred.Secret)
	case store.WebhookHTTPQueryString:
		row["authtype"], row["authvalue"] = int64(6), settingsXML(cred.Name, cred.Secret)
	default:
		row["authtype"], row["authvalue"] = int64(4), cred.Secret
	}
	sum := sha256.Sum256([]byte(string(cred.Mode) + "\x00" + cred.Name + "\x00" + cred.Secret))
	row["description"] = "crmsync connection " + conn.ID + " (" + conn.Name + "); key sha256:" + hex.EncodeToString(sum[:8])
	return row
}

// settingsXML is the authvalue of header and query-string authentication.
func settingsXML(name, value string) string {
	var b strings.Builder
	b.WriteString(`<settings><setting name="`)
	_ = xml.EscapeText(&b, []byte(name))
	b.WriteString(`" value="`)
	_ = xml.EscapeText(&b, []byte(value))
	b.WriteString(`" /></settings>`)
	return b.String()
}

type foundEndpoint struct {
	id, url, description string
	authtype             any
}

func (r *Registrar) findEndpoint(ctx context.Context, client *dataverse.Client, connID string) (*foundEndpoint, error) {
	rows := client.Query(ctx, "serviceendpoints", dataverse.Query{
		Select: []string{"serviceendpointid", "url", "description", "authtype"},
		Filter: "name eq '" + endpointName(connID) + "' and contract eq 8",
	})
	if !rows.Next(ctx) {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("find the service endpoint: %w", crmError(err))
		}
		return nil, nil
	}
	row := rows.Row()
	ep := &foundEndpoint{}
	ep.id, _ = row.String("serviceendpointid")
	ep.url, _ = row.String("url")
	ep.description, _ = row.String("description")
	if n, ok := row.Int("authtype"); ok {
		ep.authtype = n
	}
	return ep, nil
}

// existingSteps lists the steps on crmsync's endpoint, with their images.
func (r *Registrar) existingSteps(ctx context.Context, client *dataverse.Client, endpointID string) ([]PlannedStep, error) {
	rows := client.Query(ctx, "sdkmessageprocessingsteps", dataverse.Query{
		Select: []string{"sdkmessageprocessingstepid", "name", "filteringattributes"},
		Filter: "_eventhandler_value eq " + endpointID,
	})
	var out []PlannedStep
	for rows.Next(ctx) {
		row := rows.Row()
		s := PlannedStep{}
		s.id, _ = row.String("sdkmessageprocessingstepid")
		s.Name, _ = row.String("name")
		s.FilteringAttributes, _ = row.String("filteringattributes")
		images := client.Query(ctx, "sdkmessageprocessingstepimages", dataverse.Query{
			Select: []string{"attributes"}, Filter: "_sdkmessageprocessingstepid_value eq " + s.id,
		})
		for images.Next(ctx) {
			s.Image, _ = images.Row().String("attributes")
		}
		if err := images.Err(); err != nil {
			return nil, fmt.Errorf("read the images of step %q: %w", s.Name, crmError(err))
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the registered steps: %w", crmError(err))
	}
	return out, nil
}

// desiredSteps are the steps crmsync needs for a connection, in a stable order:
// every message the engine's steps handle, on the tables they handle it on.
func desiredSteps(conn *store.Connection) []PlannedStep {
	var out []PlannedStep
	add := func(msg, table, filter, image string) {
		name := stepPrefix + msg
		if table != "" {
			name += " of " + table
		}
		out = append(out, PlannedStep{Name: name, Message: msg, Table: table, FilteringAttributes: filter, Image: image})
	}
	for _, table := range []string{"contact", "lead", "account"} {
		cols := logicalColumns(recipientColumns(conn, table))
		filter := strings.Join(slices.DeleteFunc(slices.Clone(cols), func(c string) bool { return c == "modifiedon" || c == "owningbusinessunit" }), ",")
		image := strings.Join(cols, ",")
		add(dataverse.MessageCreate, table, "", image)
		add(dataverse.MessageUpdate, table, filter, image)
		add(dataverse.MessageDelete, table, "", "")
		add(dataverse.MessageAssign, table, "", "")
	}
	add(dataverse.MessageCreate, subscriptionTable, "", "")
	add(dataverse.MessageUpdate, subscriptionTable, "cs_groupid,cs_subscribed,statecode", "")
	add(dataverse.MessageCreate, "list", "", "")
	add(dataverse.MessageUpdate, "list", "cs_periodicsync,cs_syncat,cs_syncinterval,cs_synctoems,listname,query,statecode", "")
	add(dataverse.MessageDelete, "list", "", "")
	for _, msg := range []string{dataverse.MessageAddMember, dataverse.MessageAddListMembers, dataverse.MessageRemoveMember, dataverse.MessageSyncMarketingList} {
		add(msg, "list", "", "")
	}
	add(dataverse.MessageAssociate, "", "", "")
	add(dataverse.MessageDisassociate, "", "", "")
	add(dataverse.MessageSendCampaign, "campaignactivity", "", "")
	return out
}

// logicalColumns turns Web API column names into logical names, sorted.
func logicalColumns(cols []string) []string {
	out := make([]string, 0, len(cols))
	for _, c := range cols {
		if name, ok := strings.CutPrefix(c, "_"); ok {
			c = strings.TrimSuffix(name, "_value")
		}
		out = append(out, c)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// diffSteps pairs the desired steps with the existing ones by name: new ones are
// created, changed ones updated, the rest kept; existing steps crmsync no longer
// needs are removed.
func diffSteps(want, have []PlannedStep) []PlannedStep {
	byName := map[string]PlannedStep{}
	for _, h := range have {
		byName[h.Name] = h
	}
	var out []PlannedStep
	for _, w := range want {
		h, ok := byName[w.Name]
		delete(byName, w.Name)
		switch {
		case !ok:
			w.Action = ActionCreate
		case h.FilteringAttributes != w.FilteringAttributes || h.Image != w.Image:
			w.Action, w.id = ActionUpdate, h.id
		default:
			w.Action, w.id = ActionKeep, h.id
		}
		out = append(out, w)
	}
	for _, h := range have {
		if _, gone := byName[h.Name]; gone {
			h.Action = ActionRemove
			out = append(out, h)
		}
	}
	return out
}

// sdkIDs looks up and caches sdkmessage and sdkmessagefilter ids.
type sdkIDs struct {
	client   *dataverse.Client
	messages map[string]string
	filters  map[string]string
}

type missingMessageError struct{ msg, table string }

func (e *missingMessageError) Error() string {
	if e.table == "" {
		return "Dataverse has no message " + e.msg + "; its step was not registered (is the crmsync solution imported?)"
	}
	return "Dataverse has no message " + e.msg + " on " + e.table + "; its step was not registered (is the crmsync solution imported?)"
}

func (ids *sdkIDs) lookup(ctx context.Context, cache map[string]string, key, set, pk, filter string, missing error) (string, error) {
	if id, ok := cache[key]; ok {
		return id, nil
	}
	rows := ids.client.Query(ctx, set, dataverse.Query{Select: []string{pk}, Filter: filter})
	if !rows.Next(ctx) {
		if err := rows.Err(); err != nil {
			return "", fmt.Errorf("look up %s: %w", key, crmError(err))
		}
		return "", missing
	}
	id, _ := rows.Row().String(pk)
	cache[key] = id
	return id, nil
}

func (r *Registrar) apply(ctx context.Context, client *dataverse.Client, ids *sdkIDs, endpointID string, s *PlannedStep) error {
	switch s.Action {
	case ActionKeep:
		return nil
	case ActionRemove:
		if err := client.Delete(ctx, "sdkmessageprocessingsteps", s.id); err != nil && !errors.Is(err, dataverse.ErrNotFound) {
			return fmt.Errorf("remove step %q: %w", s.Name, crmError(err))
		}
		return nil
	case ActionUpdate:
		// A changed step is made again, with its image: simpler than patching both,
		// and Dataverse delivers a new image only to a step written after it.
		if err := client.Delete(ctx, "sdkmessageprocessingsteps", s.id); err != nil && !errors.Is(err, dataverse.ErrNotFound) {
			return fmt.Errorf("replace step %q: %w", s.Name, crmError(err))
		}
	}
	missing := &missingMessageError{msg: s.Message, table: s.Table}
	msgID, err := ids.lookup(ctx, ids.messages, s.Message, "sdkmessages", "sdkmessageid", "name eq '"+s.Message+"'", missing)
	if err != nil {
		return err
	}
	row := map[string]any{
		"name": s.Name, "stage": int64(dataverse.StagePostOperation), "mode": int64(1), "rank": int64(1), "supporteddeployment": int64(0),
		"asyncautodelete": true, "description": "Registered by crmsync; `crmsync register --remove` takes it away.",
		"eventhandler_serviceendpoint@odata.bind": dataverse.Bind("serviceendpoints", endpointID),
		"sdkmessageid@odata.bind":                 dataverse.Bind("sdkmessages", msgID),
	}
	if s.Table != "" {
		filterID, err := ids.lookup(ctx, ids.filters, s.Message+"|"+s.Table, "sdkmessagefilters", "sdkmessagefilterid",
			"sdkmessageid/name eq '"+s.Message+"' and primaryobjecttypecode eq '"+s.Table+"'", missing)
		if err != nil {
			return err
		}
		row["sdkmessagefilterid@odata.bind"] = dataverse.Bind("sdkmessagefilters", filterID)
	}
	if s.FilteringAttributes != "" {
		row["filteringattributes"] = s.FilteringAttributes
	}
	id, err := client.Create(ctx, "sdkmessageprocessingsteps", row)
	if err != nil {
		return fmt.Errorf("create step %q: %w", s.Name, crmError(err))
	}
	s.id = id
	if s.Image == "" {
		return nil
	}
	if _, err := client.Create(ctx, "sdkmessageprocessingstepimages", map[string]any{
		"name": "PostImage", "entityalias": "PostImage", "imagetype": int64(1), "messagepropertyname": "Target", "attributes": s.Image,
		"sdkmessageprocessingstepid@odata.bind": dataverse.Bind("sdkmessageprocessingsteps", id),
	}); err != nil {
		return fmt.Errorf("create the image of step %q: %w", s.Name, crmError(err))
	}
	return nil
}
