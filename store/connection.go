package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ConnectionInput is what a caller supplies to create a connection; secrets arrive in
// plain text and are sealed before they are stored.
type ConnectionInput struct {
	Name              string
	OrganizationURL   string
	TokenURL          string
	EntraTenantID     string
	ClientID          string
	ClientSecret      string
	WebhookAuthMode   WebhookAuthMode
	WebhookAuthName   string
	WebhookAuthValue  string
	RecipientType     RecipientType
	OwnerLogin        *string
	ReactivateRecords bool
	Bidirectional     bool
	DefaultLanguage   string
	ReactionSecret    string
}

// MinWebhookKeyLength is the shortest webhook secret accepted: the key is the only
// proof that a call comes from Dataverse, so it must not be guessable.
const MinWebhookKeyLength = 16

var (
	languagePattern = regexp.MustCompile(`^[a-z]{2}$`)
	tokenPattern    = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
)

// CreateConnection validates in, seals its secrets and stores a new connection with
// the default field mappings of its recipient type.
func (s *Store) CreateConnection(ctx context.Context, tenant string, in ConnectionInput) (*Connection, error) {
	c := &Connection{
		ID:                uuid.Must(uuid.NewV7()).String(),
		Tenant:            tenant,
		Name:              strings.TrimSpace(in.Name),
		TokenURL:          strings.TrimSpace(in.TokenURL),
		EntraTenantID:     strings.TrimSpace(in.EntraTenantID),
		ClientID:          strings.TrimSpace(in.ClientID),
		RecipientType:     in.RecipientType,
		OwnerLogin:        in.OwnerLogin,
		ReactivateRecords: in.ReactivateRecords,
		Bidirectional:     in.Bidirectional,
		DefaultLanguage:   strings.ToLower(strings.TrimSpace(in.DefaultLanguage)),
		CreatedAt:         s.now().UTC(),
	}
	if c.DefaultLanguage == "" {
		c.DefaultLanguage = DefaultLanguage
	}
	if c.Name == "" {
		return nil, invalid("name", "must not be empty")
	}
	orgURL, err := validHTTPURL("organizationUrl", in.OrganizationURL)
	if err != nil {
		return nil, err
	}
	c.OrganizationURL = orgURL
	if c.TokenURL != "" {
		if c.TokenURL, err = validHTTPURL("tokenUrl", c.TokenURL); err != nil {
			return nil, err
		}
	}
	if !c.RecipientType.Valid() {
		return nil, invalid("recipientType", "must be CONTACT, LEAD or ACCOUNT")
	}
	if !languagePattern.MatchString(c.DefaultLanguage) {
		return nil, invalid("defaultLanguage", "must be a two-letter ISO 639-1 code such as \"de\"")
	}
	if c.WebhookAuth, err = s.webhookAuth(in.WebhookAuthMode, in.WebhookAuthName, in.WebhookAuthValue); err != nil {
		return nil, err
	}
	if in.ClientSecret != "" {
		c.ClientSecret = s.sealer.seal(in.ClientSecret)
	}
	if in.ReactionSecret != "" {
		if err := validWebhookSecret("reactionSecret", in.ReactionSecret); err != nil {
			return nil, err
		}
		c.ReactionSecret = s.sealer.seal(in.ReactionSecret)
	}
	c.FieldMappings = DefaultFieldMappings(c.RecipientType)

	if _, err := s.db.Collection(colConnections).InsertOne(ctx, c); err != nil {
		return nil, unavailable("create connection", err)
	}
	return c, nil
}

func (s *Store) webhookAuth(mode WebhookAuthMode, name, value string) (WebhookAuth, error) {
	switch mode {
	case WebhookKey:
		name = ""
	case WebhookHTTPHeader, WebhookHTTPQueryString:
		name = strings.TrimSpace(name)
		if name == "" {
			return WebhookAuth{}, invalid("webhookAuth.name", "is required for %s", mode)
		}
		if !tokenPattern.MatchString(name) {
			return WebhookAuth{}, invalid("webhookAuth.name", "must be a plain header or parameter name")
		}
		if mode == WebhookHTTPQueryString && name == "code" {
			return WebhookAuth{}, invalid("webhookAuth.name", "\"code\" is the WEBHOOK_KEY parameter; use that mode")
		}
	default:
		return WebhookAuth{}, invalid("webhookAuth.mode", "must be WEBHOOK_KEY, HTTP_HEADER or HTTP_QUERY_STRING")
	}
	if len(value) < MinWebhookKeyLength {
		return WebhookAuth{}, invalid("webhookAuth.value", "must be at least %d characters", MinWebhookKeyLength)
	}
	return WebhookAuth{Mode: mode, Name: name, Value: s.sealer.seal(value)}, nil
}

// WebhookCredential is a credential a webhook call may present now, opened for
// comparison.
type WebhookCredential struct {
	Mode   WebhookAuthMode
	Name   string
	Secret string
}

// WebhookCredentials lists the credentials that authenticate a connection's webhook
// calls now: the current one, and the one a rotation replaced while its grace lasts.
func (s *Store) WebhookCredentials(c *Connection) ([]WebhookCredential, error) {
	auths := []WebhookAuth{c.WebhookAuth}
	if p := c.PreviousWebhookAuth; p != nil && p.ValidUntil != nil && s.now().Before(*p.ValidUntil) {
		auths = append(auths, *p)
	}
	out := make([]WebhookCredential, 0, len(auths))
	for _, a := range auths {
		secret, err := s.sealer.open(a.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, WebhookCredential{Mode: a.Mode, Name: a.Name, Secret: secret})
	}
	return out, nil
}

// ConnectionUpdate is a partial change of a connection: nil fields stay as they are.
type ConnectionUpdate struct {
	Name              *string
	OwnerLogin        *string
	ReactivateRecords *bool
	Bidirectional     *bool
	DefaultLanguage   *string
	RecipientType     *RecipientType
	ClientSecret      *string
	// WebhookAuth replaces the webhook credential; the old one keeps working for
	// the key grace period.
	WebhookAuth    *WebhookAuthUpdate
	ReactionSecret *string
}

// WebhookAuthUpdate is a new webhook credential in plain text.
type WebhookAuthUpdate struct {
	Mode  WebhookAuthMode
	Name  string
	Value string
}

// UpdateConnection applies a partial change. The recipient type is set once: the
// same value again is fine, another one is a conflict.
func (s *Store) UpdateConnection(ctx context.Context, tenant, id string, in ConnectionUpdate) (*Connection, error) {
	c, err := s.Connection(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if in.Name != nil {
		if c.Name = strings.TrimSpace(*in.Name); c.Name == "" {
			return nil, invalid("name", "must not be empty")
		}
	}
	if in.OwnerLogin != nil {
		c.OwnerLogin = in.OwnerLogin
		if strings.TrimSpace(*in.OwnerLogin) == "" {
			c.OwnerLogin = nil
		}
	}
	if in.ReactivateRecords != nil {
		c.ReactivateRecords = *in.ReactivateRecords
	}
	if in.Bidirectional != nil {
		c.Bidirectional = *in.Bidirectional
	}
	if in.DefaultLanguage != nil {
		lang := strings.ToLower(strings.TrimSpace(*in.DefaultLanguage))
		if !languagePattern.MatchString(lang) {
			return nil, invalid("defaultLanguage", "must be a two-letter ISO 639-1 code such as \"de\"")
		}
		c.DefaultLanguage = lang
	}
	if in.RecipientType != nil && *in.RecipientType != c.RecipientType {
		return nil, &ConflictError{Field: "recipientType", Reason: "the recipient type is set once, when the connection is created (it is " + string(c.RecipientType) + ")"}
	}
	if in.ClientSecret != nil {
		c.ClientSecret = nil
		if *in.ClientSecret != "" {
			c.ClientSecret = s.sealer.seal(*in.ClientSecret)
		}
	}
	if in.ReactionSecret != nil {
		c.ReactionSecret = nil
		if *in.ReactionSecret != "" {
			if err := validWebhookSecret("reactionSecret", *in.ReactionSecret); err != nil {
				return nil, err
			}
			c.ReactionSecret = s.sealer.seal(*in.ReactionSecret)
		}
	}
	if in.WebhookAuth != nil {
		next, err := s.webhookAuth(in.WebhookAuth.Mode, in.WebhookAuth.Name, in.WebhookAuth.Value)
		if err != nil {
			return nil, err
		}
		prev := c.WebhookAuth
		until := s.now().Add(s.keyGrace).UTC()
		prev.ValidUntil = &until
		c.WebhookAuth, c.PreviousWebhookAuth = next, &prev
	}
	if err := s.replaceByID(ctx, colConnections, c.ID, c); err != nil {
		return nil, err
	}
	return c, nil
}

func validHTTPURL(field, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", invalid(field, "must be an absolute http(s) URL")
	}
	if u.User != nil {
		return "", invalid(field, "must not contain credentials")
	}
	return strings.TrimRight(raw, "/"), nil
}

func validWebhookSecret(field, secret string) error {
	rest, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return invalid(field, "must start with \"whsec_\"")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return invalid(field, "must be \"whsec_\" followed by base64 of 24 to 64 random bytes")
	}
	return nil
}

// DefaultLanguage is the tenant language used when nothing else says otherwise.
const DefaultLanguage = "de"

// DefaultFieldMappings are the mappings a new connection starts with: the e-mail
// address both ways, and the name fields CRM → eMS.
func DefaultFieldMappings(rt RecipientType) []FieldMapping {
	entity := rt.Entity()
	m := []FieldMapping{{CRMAttribute: "emailaddress1", SubscriberField: "email"}}
	if rt == RecipientAccount {
		m = append(m, FieldMapping{CRMAttribute: "name", SubscriberField: "fields.company"})
	} else {
		m = append(m,
			FieldMapping{CRMAttribute: "firstname", SubscriberField: "fields.firstName"},
			FieldMapping{CRMAttribute: "lastname", SubscriberField: "fields.lastName"})
	}
	for i := range m {
		m[i].ID = fmt.Sprintf("%s-%d", entity, i+1)
		m[i].CRMEntity = entity
		m[i].Kind = MappingSimple
	}
	return m
}

// Connection loads one of the tenant's connections.
func (s *Store) Connection(ctx context.Context, tenant, id string) (*Connection, error) {
	var c Connection
	if err := s.findOwned(ctx, colConnections, tenant, id, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// ConnectionForWebhook loads a connection by id alone, for the webhook route where
// the caller is not yet known; the answer carries the tenant it belongs to.
func (s *Store) ConnectionForWebhook(ctx context.Context, id string) (*Connection, error) {
	var c Connection
	if err := s.findByID(ctx, colConnections, id, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Connections lists the tenant's connections, oldest first.
func (s *Store) Connections(ctx context.Context, tenant string) ([]*Connection, error) {
	return findAll[Connection](ctx, s.db.Collection(colConnections), "connections", bson.D{{Key: "tenant", Value: tenant}},
		options.Find().SetSort(byID).SetLimit(1000))
}

// ReactionSecret opens the connection's reaction signing secret ("whsec_…"); ""
// when the connection has none.
func (s *Store) ReactionSecret(c *Connection) (string, error) {
	if len(c.ReactionSecret) == 0 {
		return "", nil
	}
	return s.sealer.open(c.ReactionSecret)
}

// CRMClientSecret opens the connection's sealed CRM client secret; "" when none.
func (s *Store) CRMClientSecret(c *Connection) (string, error) {
	if len(c.ClientSecret) == 0 {
		return "", nil
	}
	return s.sealer.open(c.ClientSecret)
}

// SetRegistration records the outcome of registering the connection's webhook in
// its Dataverse (the API's CrmConnection.registration).
func (s *Store) SetRegistration(ctx context.Context, tenant, id string, reg *WebhookRegistration) error {
	res, err := s.db.Collection(colConnections).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "tenant", Value: tenant}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "registration", Value: reg}}}})
	if err != nil {
		return unavailable("record the registration", err)
	}
	if res.MatchedCount == 0 {
		return ErrNotFound
	}
	return nil
}
