package graph

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"crmsync/dataverse"
	"crmsync/graph/model"
	"crmsync/store"
)

func webhookPath(connectionID string) string { return "/webhooks/dataverse/" + connectionID }

func connectionInput(in model.CreateConnectionInput) store.ConnectionInput {
	out := store.ConnectionInput{
		Name:              in.Name,
		OrganizationURL:   in.OrganizationURL,
		TokenURL:          deref(in.TokenURL),
		EntraTenantID:     deref(in.TenantID),
		ClientID:          deref(in.ClientID),
		ClientSecret:      deref(in.ClientSecret),
		RecipientType:     in.RecipientType,
		OwnerLogin:        in.OwnerLogin,
		ReactivateRecords: derefOr(in.ReactivateRecords, true),
		Bidirectional:     derefOr(in.Bidirectional, true),
		DefaultLanguage:   derefOr(in.DefaultLanguage, store.DefaultLanguage),
		ReactionSecret:    deref(in.ReactionSecret),
	}
	if in.WebhookAuth != nil {
		out.WebhookAuthMode = in.WebhookAuth.Mode
		out.WebhookAuthName = deref(in.WebhookAuth.Name)
		out.WebhookAuthValue = in.WebhookAuth.Value
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// nilIfNotFound turns "not found" into a null answer, for lookups by something other
// than an id (an e-mail address not in a group, a link whose target is gone).
func nilIfNotFound[T any](v *T, err error) (*T, error) {
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

// nonEmpty is s, or null when s is empty.
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// anyMap gives a map as the JSON scalar takes it.
func anyMap[V any](m map[string]V) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// inboxStatuses are the API's statuses that the inbox records; SKIPPED is not one.
var inboxStatuses = map[model.SyncStatus]store.InboxStatus{
	model.SyncStatusPending: store.InboxPending,
	model.SyncStatusApplied: store.InboxProcessed,
	model.SyncStatusFailed:  store.InboxFailed,
}

// inboxStatus maps an API status to the inbox's; "" for SKIPPED.
func inboxStatus(s model.SyncStatus) store.InboxStatus { return inboxStatuses[s] }

// syncStatus maps the inbox's status to the API's.
func syncStatus(s store.InboxStatus) model.SyncStatus {
	for api, inbox := range inboxStatuses {
		if inbox == s {
			return api
		}
	}
	return model.SyncStatusPending
}

// syncDirection maps the store's direction to the API's.
func syncDirection(d store.SyncDirection) model.SyncDirection {
	if d == store.EMSToCRM {
		return model.SyncDirectionEmsToCrm
	}
	return model.SyncDirectionCrmToEms
}

// ownedConnection loads a connection of the caller's tenant: another tenant's,
// or an id that names none, is "not found".
func (r *Resolver) ownedConnection(ctx context.Context, id string) (*store.Connection, error) {
	c, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	return r.Store.Connection(ctx, c.Tenant, id)
}

// listArg is the caller's tenant and the list id argument, checked by parseListID.
func listArg(ctx context.Context, id, field string) (tenant, listID string, err error) {
	c, err := caller(ctx)
	if err != nil {
		return "", "", err
	}
	listID, err = parseListID(id, field)
	return c.Tenant, listID, err
}

// parseListID checks that a list id is a GUID, as the CRM's ids are, and gives it
// in the lower-case form crmsync stores.
func parseListID(id, field string) (string, error) {
	u, err := uuid.Parse(strings.TrimSpace(id))
	if err != nil {
		return "", &Error{Code: CodeBadUserInput, Message: field + " is not a CRM list id (a GUID)", Field: field}
	}
	return u.String(), nil
}

// connectionTest explains the outcome of a connection test to the person who runs
// it: who the connection acts as, or why it could not get in.
func connectionTest(conn *store.Connection, who dataverse.Identity, took time.Duration, err error) *model.ConnectionTest {
	out := &model.ConnectionTest{Ok: err == nil, LatencyMs: int(took.Milliseconds())}
	switch {
	case err == nil:
		out.Detail = fmt.Sprintf("connected to %s as systemuser %s (business unit %s)", conn.OrganizationURL, who.UserID, who.BusinessUnitID)
	case errors.Is(err, dataverse.ErrUnauthorized):
		out.Detail = "the CRM or its token endpoint refused the connection's client credentials: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		out.Detail = "no answer from " + conn.OrganizationURL + " within 15 s"
	default:
		out.Detail = err.Error()
	}
	return out
}
