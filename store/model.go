package store

import (
	"strings"
	"time"
)

// RecipientType is the kind of CRM record a connection's subscribers become.
type RecipientType string

// The recipient types, spelled as in the GraphQL API.
const (
	RecipientContact RecipientType = "CONTACT"
	RecipientLead    RecipientType = "LEAD"
	RecipientAccount RecipientType = "ACCOUNT"
)

// Entity is the Dataverse table logical name of the recipient type.
func (r RecipientType) Entity() string {
	switch r {
	case RecipientContact:
		return "contact"
	case RecipientLead:
		return "lead"
	case RecipientAccount:
		return "account"
	}
	return ""
}

// RecipientTypeOf maps a Dataverse table name to its recipient type, if it is one.
func RecipientTypeOf(entity string) (RecipientType, bool) {
	switch entity {
	case "contact":
		return RecipientContact, true
	case "lead":
		return RecipientLead, true
	case "account":
		return RecipientAccount, true
	}
	return "", false
}

// Valid reports whether r is one of the three recipient types.
func (r RecipientType) Valid() bool { return r.Entity() != "" }

// WebhookAuthMode is how Dataverse proves a webhook call is ours (its authtype 4, 5, 6).
type WebhookAuthMode string

// The webhook authentication modes of Dataverse service endpoints.
const (
	WebhookKey             WebhookAuthMode = "WEBHOOK_KEY"
	WebhookHTTPHeader      WebhookAuthMode = "HTTP_HEADER"
	WebhookHTTPQueryString WebhookAuthMode = "HTTP_QUERY_STRING"
)

// SubscriptionState says whether a subscriber receives marketing e-mail of its group.
type SubscriptionState string

// The subscription states.
const (
	Subscribed   SubscriptionState = "SUBSCRIBED"
	Unsubscribed SubscriptionState = "UNSUBSCRIBED"
)

// DoubleOptInStatus records how consent to marketing e-mail was obtained.
type DoubleOptInStatus string

// The double opt-in statuses.
const (
	OptInUnknown              DoubleOptInStatus = "UNKNOWN"
	OptInExternallyDocumented DoubleOptInStatus = "EXTERNALLY_DOCUMENTED"
	OptInPending              DoubleOptInStatus = "PENDING"
	OptInConfirmed            DoubleOptInStatus = "CONFIRMED"
)

// MappingKind says how a CRM attribute becomes a subscriber field.
type MappingKind string

// The mapping kinds.
const (
	MappingSimple    MappingKind = "SIMPLE"
	MappingLookup    MappingKind = "LOOKUP"
	MappingOptionSet MappingKind = "OPTION_SET"
)

// Connection is one Dataverse organisation that a tenant syncs with. Secrets are kept
// sealed (encrypted with CRMSYNC_SECRET_KEY) and never leave through the API.
type Connection struct {
	ID              string      `bson:"_id"`
	Tenant          string      `bson:"tenant"`
	Name            string      `bson:"name"`
	OrganizationURL string      `bson:"organizationUrl"`
	TokenURL        string      `bson:"tokenUrl,omitempty"`
	EntraTenantID   string      `bson:"entraTenantId,omitempty"`
	ClientID        string      `bson:"clientId,omitempty"`
	ClientSecret    []byte      `bson:"clientSecret,omitempty"`
	WebhookAuth     WebhookAuth `bson:"webhookAuth"`
	// PreviousWebhookAuth is the credential a rotation replaced; it keeps working
	// until its ValidUntil, so Dataverse can be switched over without losing calls.
	PreviousWebhookAuth *WebhookAuth         `bson:"previousWebhookAuth,omitempty"`
	RecipientType       RecipientType        `bson:"recipientType"`
	OwnerLogin          *string              `bson:"ownerLogin,omitempty"`
	ReactivateRecords   bool                 `bson:"reactivateRecords"`
	Bidirectional       bool                 `bson:"bidirectional"`
	DefaultLanguage     string               `bson:"defaultLanguage"`
	ReactionSecret      []byte               `bson:"reactionSecret,omitempty"`
	FieldMappings       []FieldMapping       `bson:"fieldMappings"`
	LanguageMappings    []LanguageMapping    `bson:"languageMappings,omitempty"`
	Registration        *WebhookRegistration `bson:"registration,omitempty"`
	Campaigns           CampaignSettings     `bson:"campaigns"`
	CreatedAt           time.Time            `bson:"createdAt"`
}

// WebhookAuth is how a connection's webhook calls authenticate; Value is sealed.
type WebhookAuth struct {
	Mode  WebhookAuthMode `bson:"mode"`
	Name  string          `bson:"name,omitempty"`
	Value []byte          `bson:"value"`
	// ValidUntil is set on a replaced credential: when it stops working.
	ValidUntil *time.Time `bson:"validUntil,omitempty"`
}

// WebhookRegistration is the outcome of registering crmsync's steps in Dataverse.
type WebhookRegistration struct {
	EndpointID   *string    `bson:"endpointId,omitempty"`
	StepsCreated int        `bson:"stepsCreated"`
	StepsUpdated int        `bson:"stepsUpdated"`
	StepsRemoved int        `bson:"stepsRemoved"`
	Warnings     []string   `bson:"warnings"`
	RegisteredAt *time.Time `bson:"registeredAt,omitempty"`
}

// FieldMapping ties a CRM attribute to a subscriber field.
type FieldMapping struct {
	ID              string         `bson:"id"`
	CRMEntity       string         `bson:"crmEntity"`
	CRMAttribute    string         `bson:"crmAttribute"`
	SubscriberField string         `bson:"subscriberField"`
	Kind            MappingKind    `bson:"kind"`
	LookupPath      *string        `bson:"lookupPath,omitempty"`
	OptionLabels    map[string]any `bson:"optionLabels,omitempty"`
}

// Group is a subscriber group of the eMS, optionally kept in step with a CRM connection.
type Group struct {
	ID           string    `bson:"_id"`
	Tenant       string    `bson:"tenant"`
	Name         string    `bson:"name"`
	ConnectionID string    `bson:"connectionId,omitempty"`
	CRMSync      bool      `bson:"crmSync"`
	CreatedAt    time.Time `bson:"createdAt"`
}

// Subscriber is one address in one group.
type Subscriber struct {
	ID                string            `bson:"_id"`
	Tenant            string            `bson:"tenant"`
	GroupID           string            `bson:"groupId"`
	Email             string            `bson:"email"`
	Fields            map[string]any    `bson:"fields"`
	Language          string            `bson:"language"`
	SubscriptionState SubscriptionState `bson:"subscriptionState"`
	DoubleOptInStatus DoubleOptInStatus `bson:"doubleOptInStatus"`
	CRMRecord         *CRMRecordRef     `bson:"crmRecord,omitempty"`
	CRMUnlinkedReason *string           `bson:"crmUnlinkedReason,omitempty"`
	// CRMModifiedOn is the CRM's modifiedon of the newest change applied from the CRM.
	CRMModifiedOn time.Time `bson:"crmModifiedOn,omitempty"`
	// Stamps record, per field ("email", "language", "subscriptionState",
	// "doubleOptInStatus", "fields.<name>"), when and on which side it last changed:
	// merges are last-modified-wins per field, so events applied twice or out of
	// order give the same result.
	Stamps map[string]Stamp `bson:"stamps,omitempty"`

	// RemovedAt is set when the subscriber left its group because it left the CRM
	// list the group follows; it keeps its history and consent, and comes back as
	// itself when the record is added to the list again.
	RemovedAt *time.Time `bson:"removedAt,omitempty"`
	// AddressInvalid is set by a hard bounce, or by SoftBounces reaching the
	// connection's limit: campaign sends leave the address out.
	AddressInvalid bool `bson:"addressInvalid,omitempty"`
	SoftBounces    int  `bson:"softBounces,omitempty"`

	// storedLink is the id of the CRM link known to be stored for this subscriber,
	// so saving it again does not rewrite the link.
	storedLink string
	CreatedAt  time.Time `bson:"createdAt"`
	UpdatedAt  time.Time `bson:"updatedAt"`
}

// Side is where a change was made.
type Side string

// The two sides crmsync keeps in step.
const (
	SideCRM Side = "crm"
	SideEMS Side = "ems"
)

// Stamp is when and where a field last changed.
type Stamp struct {
	At   time.Time `bson:"at"`
	Side Side      `bson:"side"`
}

// Stamp returns the stamp of a field (zero when it never changed).
func (s *Subscriber) Stamp(field string) Stamp { return s.Stamps[stampKey(field)] }

// SetStamp records a change of field.
func (s *Subscriber) SetStamp(field string, at time.Time, side Side) {
	if s.Stamps == nil {
		s.Stamps = map[string]Stamp{}
	}
	s.Stamps[stampKey(field)] = Stamp{At: at.UTC(), Side: side}
}

// stampKey keeps field paths usable as document keys, which may not contain '.'.
func stampKey(field string) string { return strings.ReplaceAll(field, ".", ":") }

// LanguageMapping turns a CRM attribute (an option set or an LCID) into the
// subscriber's language and back, for the records of one business unit.
type LanguageMapping struct {
	BusinessUnitID string            `bson:"businessUnitId"`
	CRMAttribute   string            `bson:"crmAttribute"`
	Values         map[string]string `bson:"values"`
}

// CRMRecordRef points at the CRM row a subscriber is linked to.
type CRMRecordRef struct {
	Entity RecipientType `bson:"entity"`
	ID     string        `bson:"id"`
}
