package graph

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"crmsync/graph/model"
	"crmsync/store"
)

// formPath is where browsers post a form, below the public URL.
func formPath(formID string) string { return "/forms/" + formID }

// formInput turns createForm's and updateForm's input into the store's: all of a
// form's settings, so an omitted optional field is cleared (updateForm replaces).
func formInput(in model.FormInput) store.FormInput {
	out := store.FormInput{
		GroupID: in.GroupID, Name: in.Name, DoubleOptIn: in.DoubleOptIn, DoubleOptInStatus: deref(in.DoubleOptInStatus),
		RedirectURL: deref(in.RedirectURL), ConfirmedURL: deref(in.ConfirmedURL), AllowedOrigins: in.AllowedOrigins,
		ConsentText: deref(in.ConsentText), ConsentVersion: deref(in.ConsentVersion), PendingHours: deref(in.PendingHours),
		Fields: make([]store.FormField, len(in.Fields)),
	}
	for i, f := range in.Fields {
		out.Fields[i] = store.FormField{Name: f.Name, Label: deref(f.Label), Type: f.Type, Required: deref(f.Required),
			MaxLength: deref(f.MaxLength), SubscriberField: deref(f.SubscriberField)}
	}
	if c := in.Confirmation; c != nil {
		out.Confirmation = &store.FormEmail{Subject: c.Subject, HTMLBody: deref(c.HTMLBody), TextBody: deref(c.TextBody),
			SenderName: deref(c.SenderName), SenderEmail: c.SenderEmail}
	}
	return out
}

// nonZero is n, or null when n is 0 (a setting left to its default).
func nonZero(n int) *int {
	if n == 0 {
		return nil
	}
	return &n
}

// consentExport gathers what the tenant holds of an address: its consent events and
// its subscribers.
func (r *Resolver) consentExport(ctx context.Context, tenant, raw string) (*model.ConsentExport, error) {
	email, err := store.NormalizeEmail(raw)
	if err != nil {
		return nil, &Error{Code: CodeBadUserInput, Message: "email: " + err.Error(), Field: "email"}
	}
	events, err := r.Store.ConsentByEmail(ctx, tenant, email)
	if err != nil {
		return nil, err
	}
	subs, err := r.subscribersByEmail(ctx, tenant, email)
	if err != nil {
		return nil, err
	}
	return &model.ConsentExport{Email: email, Events: events, Subscribers: subs}, nil
}

// subscribersByEmail finds the subscribers with an address, one per group of the
// tenant. The store keeps addresses per group and has no lookup across a tenant's
// groups, so this reads the groups a page of MaxPageSize at a time and looks the
// address up in each: two reads per group. Exports are rare and admin-only, which
// makes that acceptable; a store lookup by (tenant, email) would make it one query.
func (r *Resolver) subscribersByEmail(ctx context.Context, tenant, email string) ([]*store.Subscriber, error) {
	out := []*store.Subscriber{}
	afterID := ""
	for {
		groups, more, err := r.Store.GroupsPage(ctx, tenant, afterID, MaxPageSize)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			sub, err := nilIfNotFound(r.Store.SubscriberByEmail(ctx, tenant, g.ID, email))
			if err != nil {
				return nil, err
			}
			if sub != nil {
				out = append(out, sub)
			}
		}
		if !more || len(groups) == 0 {
			return out, nil
		}
		afterID = groups[len(groups)-1].ID
	}
}

// formsNamed is how many of its forms a refused group deletion names.
const formsNamed = 3

// refuseGroupWithForms answers CONFLICT, naming the forms, when sign-up forms still
// add subscribers to the group: deleting it would leave them pointing at nothing.
func (r *Resolver) refuseGroupWithForms(ctx context.Context, tenant, groupID string) error {
	forms, total, err := r.Store.FormsOfGroup(ctx, tenant, groupID, formsNamed)
	if err != nil || total == 0 {
		return err
	}
	names := make([]string, len(forms))
	for i, f := range forms {
		names[i] = strconv.Quote(f.Name)
	}
	named := strings.Join(names, ", ")
	if more := total - len(forms); more > 0 {
		named += fmt.Sprintf(" and %d more", more)
	}
	msg := fmt.Sprintf("the group has a sign-up form (%s) that adds subscribers to it; delete it (deleteForm) or point it at another group (updateForm) first", named)
	if total > 1 {
		msg = fmt.Sprintf("the group has %d sign-up forms (%s) that add subscribers to it; delete them (deleteForm) or point them at another group (updateForm) first", total, named)
	}
	return &Error{Code: CodeConflict, Field: "id", Message: msg}
}
