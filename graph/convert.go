package graph

import (
	"errors"
	"time"

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

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// inboxStatus maps an API status to the inbox's; "" for SKIPPED, which the inbox
// does not record.
func inboxStatus(s model.SyncStatus) store.InboxStatus {
	switch s {
	case model.SyncStatusPending:
		return store.InboxPending
	case model.SyncStatusApplied:
		return store.InboxProcessed
	case model.SyncStatusFailed:
		return store.InboxFailed
	}
	return ""
}
