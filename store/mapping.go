package store

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

var (
	attributePattern  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	lookupPathPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`)
	fieldNamePattern  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)
	guidPattern       = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// The subscriber fields a mapping may target besides fields.<name>.
var mappableFields = map[string]bool{"email": true, "language": true, "doubleOptInStatus": true, "subscriptionState": true}

// SetFieldMappings replaces a connection's field mappings after checking each one;
// the first bad one is reported with its index.
func (s *Store) SetFieldMappings(ctx context.Context, tenant, connectionID string, in []FieldMapping) ([]FieldMapping, error) {
	c, err := s.Connection(ctx, tenant, connectionID)
	if err != nil {
		return nil, err
	}
	out := make([]FieldMapping, len(in))
	seen := map[string]bool{}
	for i, m := range in {
		field := fmt.Sprintf("mappings[%d]", i)
		m.CRMEntity = strings.ToLower(strings.TrimSpace(m.CRMEntity))
		m.CRMAttribute = strings.ToLower(strings.TrimSpace(m.CRMAttribute))
		m.SubscriberField = strings.TrimSpace(m.SubscriberField)
		if _, ok := RecipientTypeOf(m.CRMEntity); !ok {
			return nil, invalid(field+".crmEntity", "must be contact, lead or account")
		}
		if !attributePattern.MatchString(m.CRMAttribute) {
			return nil, invalid(field+".crmAttribute", "must be a Dataverse logical name such as firstname")
		}
		if name, ok := strings.CutPrefix(m.SubscriberField, "fields."); ok {
			if !fieldNamePattern.MatchString(name) {
				return nil, invalid(field+".subscriberField", "fields.<name> needs a plain name (letters, digits, _ and -)")
			}
		} else if !mappableFields[m.SubscriberField] {
			return nil, invalid(field+".subscriberField", "must be email, language, doubleOptInStatus, subscriptionState or fields.<name>")
		}
		key := m.CRMEntity + "|" + m.SubscriberField
		if seen[key] {
			return nil, invalid(field+".subscriberField", "%s is mapped twice for %s", m.SubscriberField, m.CRMEntity)
		}
		seen[key] = true
		switch m.Kind {
		case MappingSimple:
			m.LookupPath, m.OptionLabels = nil, nil
		case MappingLookup:
			if m.LookupPath == nil || !lookupPathPattern.MatchString(*m.LookupPath) {
				return nil, invalid(field+".lookupPath", "LOOKUP needs lookupPath <lookup attribute>.<attribute>, such as parentcustomerid.name")
			}
			if !strings.HasPrefix(m.SubscriberField, "fields.") {
				return nil, invalid(field+".subscriberField", "a LOOKUP fills a fields.<name> (it flows CRM → eMS only)")
			}
			m.OptionLabels = nil
		case MappingOptionSet:
			if len(m.OptionLabels) == 0 {
				return nil, invalid(field+".optionLabels", "OPTION_SET needs optionLabels, such as {\"1\":\"Herr\",\"2\":\"Frau\"}")
			}
			for k, v := range m.OptionLabels {
				if _, ok := v.(string); !ok || strings.TrimSpace(k) == "" {
					return nil, invalid(field+".optionLabels", "must map option values to label strings")
				}
			}
			m.LookupPath = nil
		default:
			return nil, invalid(field+".kind", "must be SIMPLE, LOOKUP or OPTION_SET")
		}
		if m.SubscriberField == "email" && (m.Kind != MappingSimple || m.CRMAttribute != "emailaddress1") {
			return nil, invalid(field+".subscriberField", "email is matched on emailaddress1 with a SIMPLE mapping")
		}
		m.ID = fmt.Sprintf("%s-%d", m.CRMEntity, i+1)
		out[i] = m
	}
	c.FieldMappings = out
	if err := s.replaceByID(ctx, colConnections, c.ID, c); err != nil {
		return nil, err
	}
	return out, nil
}

// SetLanguageMapping sets the language mapping of one business unit of a connection,
// replacing the one it had.
func (s *Store) SetLanguageMapping(ctx context.Context, tenant, connectionID string, in LanguageMapping) (*Connection, error) {
	c, err := s.Connection(ctx, tenant, connectionID)
	if err != nil {
		return nil, err
	}
	in.BusinessUnitID = strings.ToLower(strings.TrimSpace(in.BusinessUnitID))
	in.CRMAttribute = strings.ToLower(strings.TrimSpace(in.CRMAttribute))
	if !guidPattern.MatchString(in.BusinessUnitID) {
		return nil, invalid("businessUnitId", "must be the business unit's GUID")
	}
	if !attributePattern.MatchString(in.CRMAttribute) {
		return nil, invalid("crmAttribute", "must be a Dataverse logical name")
	}
	if len(in.Values) == 0 {
		return nil, invalid("values", "must map option values or LCIDs to ISO 639-1 codes, such as {\"1031\":\"de\"}")
	}
	for k, v := range in.Values {
		v = strings.ToLower(strings.TrimSpace(v))
		if !languagePattern.MatchString(v) {
			return nil, invalid("values", "%q maps to %q, which is not a two-letter ISO 639-1 code", k, v)
		}
		in.Values[k] = v
	}
	kept := c.LanguageMappings[:0]
	for _, m := range c.LanguageMappings {
		if m.BusinessUnitID != in.BusinessUnitID {
			kept = append(kept, m)
		}
	}
	c.LanguageMappings = append(kept, in)
	if err := s.replaceByID(ctx, colConnections, c.ID, c); err != nil {
		return nil, err
	}
	return c, nil
}
