package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Sign-up forms (issue #9): a form posts to POST /forms/{formId} and adds or updates
// a subscriber of its group, with double opt-in when the form asks for it. The
// form's settings are kept here; what a submission does is the engine's (Forms).

// FieldType is what kind of input a form field is, which decides how its value is
// checked.
type FieldType string

// The form field types.
const (
	FieldText     FieldType = "TEXT"
	FieldEmail    FieldType = "EMAIL"
	FieldCheckbox FieldType = "CHECKBOX"
)

// FormField is one input of a form. SubscriberField says where its value goes:
// "email", "language", "fields.<name>", or "" for a value that is only checked
// (a consent checkbox).
type FormField struct {
	Name     string    `bson:"name"`
	Label    string    `bson:"label,omitempty"`
	Type     FieldType `bson:"type"`
	Required bool      `bson:"required"`
	// MaxLength bounds the value in characters; 0 is DefaultFieldMaxLength.
	MaxLength       int    `bson:"maxLength,omitempty"`
	SubscriberField string `bson:"subscriberField,omitempty"`
}

// Limit is the most characters the field's value may have.
func (f FormField) Limit() int {
	if f.MaxLength <= 0 {
		return DefaultFieldMaxLength
	}
	return f.MaxLength
}

// FormEmail is the confirmation e-mail of a double opt-in form. Subject and bodies
// take {{confirmUrl}}, {{email}} and {{fields.<name>}}; a body without
// {{confirmUrl}} gets the link appended.
type FormEmail struct {
	Subject     string `bson:"subject"`
	HTMLBody    string `bson:"htmlBody,omitempty"`
	TextBody    string `bson:"textBody,omitempty"`
	SenderName  string `bson:"senderName,omitempty"`
	SenderEmail string `bson:"senderEmail"`
}

// Form is a public sign-up form of a subscriber group.
type Form struct {
	ID      string      `bson:"_id"`
	Tenant  string      `bson:"tenant"`
	GroupID string      `bson:"groupId"`
	Name    string      `bson:"name"`
	Fields  []FormField `bson:"fields"`
	// DoubleOptIn makes a new address PENDING until the link of the confirmation
	// e-mail is followed.
	DoubleOptIn bool `bson:"doubleOptIn"`
	// DoubleOptInStatus is what subscribers of a form without double opt-in get
	// (UNKNOWN or EXTERNALLY_DOCUMENTED).
	DoubleOptInStatus DoubleOptInStatus `bson:"doubleOptInStatus"`
	// Confirmation is the e-mail that asks for the confirmation; required with
	// DoubleOptIn.
	Confirmation *FormEmail `bson:"confirmation,omitempty"`
	// RedirectURL is where a browser goes after a submission, ConfirmedURL after a
	// confirmation; built-in pages when empty.
	RedirectURL  string `bson:"redirectUrl,omitempty"`
	ConfirmedURL string `bson:"confirmedUrl,omitempty"`
	// AllowedOrigins are the web origins ("https://shop.example") whose pages may
	// post the form; empty allows no cross-origin browser call.
	AllowedOrigins []string `bson:"allowedOrigins,omitempty"`
	// ConsentText is the consent wording the form shows and ConsentVersion its
	// version, which the consent ledger records with each sign-up.
	ConsentText    string `bson:"consentText,omitempty"`
	ConsentVersion string `bson:"consentVersion,omitempty"`
	// PendingHours is how long an unconfirmed sign-up waits for its confirmation.
	PendingHours int       `bson:"pendingHours"`
	CreatedAt    time.Time `bson:"createdAt"`
	UpdatedAt    time.Time `bson:"updatedAt"`
}

// FormInput is what a caller supplies to create a form or replace its settings.
type FormInput struct {
	GroupID           string
	Name              string
	Fields            []FormField
	DoubleOptIn       bool
	DoubleOptInStatus DoubleOptInStatus
	Confirmation      *FormEmail
	RedirectURL       string
	ConfirmedURL      string
	AllowedOrigins    []string
	ConsentText       string
	ConsentVersion    string
	PendingHours      int
}

// Limits and defaults of forms.
const (
	// DefaultFieldMaxLength bounds a field's value when the field sets no MaxLength.
	DefaultFieldMaxLength = 500
	// DefaultPendingHours is how long an unconfirmed sign-up lives by default.
	DefaultPendingHours = 72
	// MaxPendingHours is the longest a sign-up may wait for its confirmation.
	MaxPendingHours = 720
	// HoneypotField is the name of the hidden field that people leave empty and
	// bots fill in; no form field may be called so.
	HoneypotField = "website"

	maxFormFields    = 50
	maxFieldLength   = 10000
	maxFormOrigins   = 20
	maxConsentText   = 10000
	maxEmailBodySize = 100 << 10
)

var formFieldName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// CreateForm validates in and stores a new form of one of the tenant's groups.
func (s *Store) CreateForm(ctx context.Context, tenant string, in FormInput) (*Form, error) {
	now := s.now().UTC().Truncate(time.Millisecond) // as stored, so the answer equals what is read later
	f := &Form{ID: uuid.Must(uuid.NewV7()).String(), Tenant: tenant, CreatedAt: now, UpdatedAt: now}
	if err := s.setForm(ctx, f, in); err != nil {
		return nil, err
	}
	if _, err := s.db.Collection(colForms).InsertOne(ctx, f); err != nil {
		return nil, unavailable("create form", err)
	}
	return f, nil
}

// UpdateForm replaces all settings of one of the tenant's forms, validated as
// CreateForm does.
func (s *Store) UpdateForm(ctx context.Context, tenant, id string, in FormInput) (*Form, error) {
	f, err := s.Form(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if err := s.setForm(ctx, f, in); err != nil {
		return nil, err
	}
	f.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
	if err := s.replaceByID(ctx, colForms, f.ID, f); err != nil {
		return nil, err
	}
	return f, nil
}

// Form loads one of the tenant's forms.
func (s *Store) Form(ctx context.Context, tenant, id string) (*Form, error) {
	var f Form
	if err := s.findOwned(ctx, colForms, tenant, id, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// FormByID loads a form of any tenant: the public routes know only its id.
func (s *Store) FormByID(ctx context.Context, id string) (*Form, error) {
	var f Form
	if err := s.findByID(ctx, colForms, id, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// FormsPage lists up to first of the tenant's forms after the given id, in id
// (creation) order, and whether more follow.
func (s *Store) FormsPage(ctx context.Context, tenant, afterID string, first int) ([]*Form, bool, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}}
	if afterID != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: afterID}}})
	}
	return findPage[Form](ctx, s.db.Collection(colForms), "forms", filter, byID, first)
}

// CountForms counts the tenant's forms.
func (s *Store) CountForms(ctx context.Context, tenant string) (int, error) {
	return count(ctx, s.db.Collection(colForms), "forms", bson.D{{Key: "tenant", Value: tenant}})
}

// FormsOfGroup lists up to limit of the forms that add subscribers to one of the
// tenant's groups, in id (creation) order, and says how many there are in all, so
// a group is not deleted from under its forms. A limit of 0 lists them all.
func (s *Store) FormsOfGroup(ctx context.Context, tenant, groupID string, limit int) ([]*Form, int, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}, {Key: "groupId", Value: groupID}}
	col := s.db.Collection(colForms)
	forms, err := findAll[Form](ctx, col, "a group's forms", filter, options.Find().SetSort(byID).SetLimit(int64(limit)))
	if err != nil {
		return nil, 0, err
	}
	if limit <= 0 || len(forms) < limit {
		return forms, len(forms), nil
	}
	total, err := count(ctx, col, "a group's forms", filter)
	if err != nil {
		return nil, 0, err
	}
	return forms, total, nil
}

// DeleteForm removes one of the tenant's forms: its URL answers "not found" from
// then on. Sign-ups that wait for their confirmation still complete, and the
// consent ledger keeps the form's id.
func (s *Store) DeleteForm(ctx context.Context, tenant, id string) error {
	f, err := s.Form(ctx, tenant, id)
	if err != nil {
		return err
	}
	if _, err := s.db.Collection(colForms).DeleteOne(ctx, bson.D{{Key: "_id", Value: f.ID}}); err != nil {
		return unavailable("delete form", err)
	}
	return nil
}

// setForm validates in and puts its settings into f; the error names the input
// field at fault.
func (s *Store) setForm(ctx context.Context, f *Form, in FormInput) error {
	f.GroupID, f.Name = strings.TrimSpace(in.GroupID), strings.TrimSpace(in.Name)
	if f.Name == "" || utf8.RuneCountInString(f.Name) > 200 {
		return invalid("name", "must be 1 to 200 characters")
	}
	if f.GroupID == "" {
		return invalid("groupId", "is required")
	}
	if _, err := s.Group(ctx, f.Tenant, f.GroupID); err != nil {
		return notFoundInvalid(err, "groupId", "no such group")
	}
	fields, err := validFormFields(in.Fields)
	if err != nil {
		return err
	}
	f.Fields = fields
	f.DoubleOptIn = in.DoubleOptIn
	switch f.DoubleOptInStatus = in.DoubleOptInStatus; f.DoubleOptInStatus {
	case "":
		f.DoubleOptInStatus = OptInUnknown
	case OptInUnknown, OptInExternallyDocumented:
	default:
		return invalid("doubleOptInStatus", "must be UNKNOWN or EXTERNALLY_DOCUMENTED; PENDING and CONFIRMED come from the double opt-in")
	}
	f.Confirmation = nil
	if in.Confirmation != nil {
		if f.Confirmation, err = validFormEmail(*in.Confirmation); err != nil {
			return err
		}
	} else if f.DoubleOptIn {
		return invalid("confirmation", "is required with double opt-in: the e-mail that asks for the confirmation")
	}
	if f.RedirectURL, err = optionalURL("redirectUrl", in.RedirectURL); err != nil {
		return err
	}
	if f.ConfirmedURL, err = optionalURL("confirmedUrl", in.ConfirmedURL); err != nil {
		return err
	}
	if f.AllowedOrigins, err = validOrigins(in.AllowedOrigins); err != nil {
		return err
	}
	f.ConsentText, f.ConsentVersion = strings.TrimSpace(in.ConsentText), strings.TrimSpace(in.ConsentVersion)
	if utf8.RuneCountInString(f.ConsentText) > maxConsentText {
		return invalid("consentText", "must be at most %d characters", maxConsentText)
	}
	if utf8.RuneCountInString(f.ConsentVersion) > 100 {
		return invalid("consentVersion", "must be at most 100 characters")
	}
	if f.ConsentVersion == "" && f.ConsentText != "" {
		// The ledger must say which wording was agreed to, so a text without a
		// version is versioned by its content.
		sum := sha256.Sum256([]byte(f.ConsentText))
		f.ConsentVersion = "sha256:" + hex.EncodeToString(sum[:6])
	}
	switch f.PendingHours = in.PendingHours; {
	case f.PendingHours == 0:
		f.PendingHours = DefaultPendingHours
	case f.PendingHours < 1 || f.PendingHours > MaxPendingHours:
		return invalid("pendingHours", "must be between 1 and %d", MaxPendingHours)
	}
	return nil
}

// notFoundInvalid turns "not found" into an invalid input naming field; other
// errors pass.
func notFoundInvalid(err error, field, reason string) error {
	if errors.Is(err, ErrNotFound) {
		return invalid(field, "%s", reason)
	}
	return err
}

// validFormFields checks a form's fields: unique names, known types and targets,
// and exactly one EMAIL field that gives the subscriber's address.
func validFormFields(in []FormField) ([]FormField, error) {
	if len(in) == 0 || len(in) > maxFormFields {
		return nil, invalid("fields", "must have 1 to %d fields", maxFormFields)
	}
	out := make([]FormField, len(in))
	names, targets := map[string]bool{}, map[string]bool{}
	for i, f := range in {
		at := fmt.Sprintf("fields[%d].", i)
		f.Name, f.Label, f.SubscriberField = strings.TrimSpace(f.Name), strings.TrimSpace(f.Label), strings.TrimSpace(f.SubscriberField)
		switch {
		case !formFieldName.MatchString(f.Name):
			return nil, invalid(at+"name", "must start with a letter and have up to 64 letters, digits, '_' or '-'")
		case strings.EqualFold(f.Name, HoneypotField):
			return nil, invalid(at+"name", "%q is the hidden field that keeps bots out; choose another name", HoneypotField)
		case names[f.Name]:
			return nil, invalid(at+"name", "%q is used by another field", f.Name)
		case f.Type != FieldText && f.Type != FieldEmail && f.Type != FieldCheckbox:
			return nil, invalid(at+"type", "must be TEXT, EMAIL or CHECKBOX")
		case utf8.RuneCountInString(f.Label) > 200:
			return nil, invalid(at+"label", "must be at most 200 characters")
		case f.MaxLength < 0 || f.MaxLength > maxFieldLength:
			return nil, invalid(at+"maxLength", "must be between 0 (the default, %d) and %d", DefaultFieldMaxLength, maxFieldLength)
		}
		names[f.Name] = true
		if f.SubscriberField != "" {
			if targets[f.SubscriberField] {
				return nil, invalid(at+"subscriberField", "%s is filled by another field", f.SubscriberField)
			}
			targets[f.SubscriberField] = true
		}
		switch name, custom := strings.CutPrefix(f.SubscriberField, "fields."); {
		case f.SubscriberField == "":
		case f.SubscriberField == "email":
			if f.Type != FieldEmail {
				return nil, invalid(at+"subscriberField", "email takes an EMAIL field")
			}
			f.Required = true // no sign-up without an address
		case f.SubscriberField == "language":
			if f.Type != FieldText {
				return nil, invalid(at+"subscriberField", "language takes a TEXT field")
			}
		case custom && name != "" && !strings.ContainsAny(name, ".$"):
		default:
			return nil, invalid(at+"subscriberField", "must be email, language, fields.<name> or empty")
		}
		out[i] = f
	}
	if !targets["email"] {
		return nil, invalid("fields", "exactly one EMAIL field must have subscriberField email")
	}
	return out, nil
}

func validFormEmail(in FormEmail) (*FormEmail, error) {
	e := FormEmail{Subject: strings.TrimSpace(in.Subject), HTMLBody: in.HTMLBody, TextBody: in.TextBody, SenderName: strings.TrimSpace(in.SenderName)}
	switch {
	case e.Subject == "" || utf8.RuneCountInString(e.Subject) > 200 || strings.ContainsAny(e.Subject, "\r\n"):
		return nil, invalid("confirmation.subject", "must be one line of 1 to 200 characters")
	case strings.TrimSpace(e.HTMLBody) == "" && strings.TrimSpace(e.TextBody) == "":
		return nil, invalid("confirmation.htmlBody", "the e-mail needs an HTML or a text body")
	case len(e.HTMLBody) > maxEmailBodySize:
		return nil, invalid("confirmation.htmlBody", "must be at most %d KiB", maxEmailBodySize>>10)
	case len(e.TextBody) > maxEmailBodySize:
		return nil, invalid("confirmation.textBody", "must be at most %d KiB", maxEmailBodySize>>10)
	case utf8.RuneCountInString(e.SenderName) > 100 || strings.ContainsAny(e.SenderName, "\r\n"):
		return nil, invalid("confirmation.senderName", "must be one line of at most 100 characters")
	}
	addr, err := NormalizeEmail(in.SenderEmail)
	if err != nil {
		return nil, invalid("confirmation.senderEmail", "%v", err)
	}
	e.SenderEmail = addr
	return &e, nil
}

func optionalURL(field, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", nil
	}
	if _, err := validHTTPURL(field, raw); err != nil {
		return "", err
	}
	if len(raw) > 2000 {
		return "", invalid(field, "must be at most 2000 characters")
	}
	return raw, nil
}

// validOrigins checks and normalises web origins: scheme and host (with port),
// lower-case, nothing else.
func validOrigins(in []string) ([]string, error) {
	if len(in) > maxFormOrigins {
		return nil, invalid("allowedOrigins", "at most %d origins", maxFormOrigins)
	}
	var out []string
	for i, raw := range in {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, invalid(fmt.Sprintf("allowedOrigins[%d]", i), "must be an origin such as https://shop.example: scheme and host, no path")
		}
		o := strings.ToLower(u.Scheme + "://" + u.Host)
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out, nil
}

// AllowsOrigin reports whether a browser page of origin may post the form.
func (f *Form) AllowsOrigin(origin string) bool {
	return slices.Contains(f.AllowedOrigins, strings.ToLower(origin))
}

// Submission is a form's values, checked against its fields: the address and what
// it sets on the subscriber.
type Submission struct {
	Email string
	// Fields are the subscriber fields the form fills (fields.<name>); empty,
	// optional inputs are left out, so they do not clear what a subscriber has.
	Fields map[string]any
	// Language is "" when the form has no language field or it was left empty.
	Language string
}

// FieldErrors says, per form field name, what is wrong with a submitted value.
type FieldErrors map[string]string

func (e FieldErrors) Error() string {
	names := make([]string, 0, len(e))
	for n := range e {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + ": " + e[n]
	}
	return "invalid form values: " + strings.Join(parts, "; ")
}

// Check validates submitted values (one string per field name; a checkbox is
// ticked unless its value is empty, "false", "0", "off" or "no") against the
// form's fields. Values of names the form does not have are ignored. The errors
// are nil when every value is fine.
func (f *Form) Check(values map[string]string) (*Submission, FieldErrors) {
	sub := &Submission{Fields: map[string]any{}}
	errs := FieldErrors{}
	for _, fd := range f.Fields {
		v := strings.TrimSpace(values[fd.Name])
		if n := utf8.RuneCountInString(v); n > fd.Limit() {
			errs[fd.Name] = fmt.Sprintf("must be at most %d characters", fd.Limit())
			continue
		}
		var value any = v
		switch fd.Type {
		case FieldCheckbox:
			ticked := !slices.Contains([]string{"", "false", "0", "off", "no"}, strings.ToLower(v))
			if fd.Required && !ticked {
				errs[fd.Name] = "must be checked"
				continue
			}
			value = ticked
		case FieldEmail, FieldText:
			if v == "" {
				if fd.Required {
					errs[fd.Name] = "is required"
				}
				continue
			}
			if fd.Type == FieldEmail {
				e, err := NormalizeEmail(v)
				if err != nil {
					errs[fd.Name] = err.Error()
					continue
				}
				value = e
			}
		}
		switch name, custom := strings.CutPrefix(fd.SubscriberField, "fields."); {
		case fd.SubscriberField == "email":
			sub.Email = value.(string)
		case fd.SubscriberField == "language":
			lang := strings.ToLower(v)
			if !languagePattern.MatchString(lang) {
				errs[fd.Name] = "must be a two-letter language code such as \"de\""
				continue
			}
			sub.Language = lang
		case custom:
			sub.Fields[name] = value
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return sub, nil
}

// EmailField is the name of the form's field that gives the address.
func (f *Form) EmailField() string {
	for _, fd := range f.Fields {
		if fd.SubscriberField == "email" {
			return fd.Name
		}
	}
	return ""
}
