package engine

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"crmsync/dataverse"
	"crmsync/store"
)

// applyMappings copies the row's mapped attributes into the subscriber. Fields mapped
// to fields.<name> belong to the CRM: they follow it whatever the eMS did, except that
// an older CRM change never overwrites a newer one. language and subscriptionState
// flow both ways: the later change wins, a tie goes to the CRM. A column sent as null
// clears its field; columns the event does not carry leave their fields alone. A
// LOOKUP reads the value resolveLookups put under its lookup path.
func applyMappings(ev *Event, sub *store.Subscriber, mappings []store.FieldMapping, entity string, row *dataverse.Entity, changed func(string) bool, at time.Time) {
	for _, m := range mappings {
		if m.CRMEntity != entity || m.SubscriberField == "email" {
			continue
		}
		raw, present := row.Attributes[mappedColumn(m)]
		if !present {
			continue
		}
		stamp := sub.Stamp(m.SubscriberField)
		if name, ok := strings.CutPrefix(m.SubscriberField, "fields."); ok {
			if stamp.Side == store.SideCRM && at.Before(stamp.At) {
				continue
			}
			v, ok := mappedValue(ev, m, raw)
			if !ok {
				continue
			}
			if sub.Fields == nil {
				sub.Fields = map[string]any{}
			}
			if v == nil {
				delete(sub.Fields, name)
			} else {
				sub.Fields[name] = v
			}
			sub.SetStamp(m.SubscriberField, at, store.SideCRM)
			continue
		}
		v, ok := mappedValue(ev, m, raw)
		if !ok || v == nil {
			continue
		}
		label := fmt.Sprint(v)
		switch m.SubscriberField {
		case "language":
			lang := strings.ToLower(strings.TrimSpace(label))
			if len(lang) != 2 {
				ev.Warn(fmt.Sprintf("%s %q is not a two-letter language code; the language was not changed", m.CRMAttribute, label))
				continue
			}
			if !at.Before(stamp.At) {
				sub.Language = lang
				sub.SetStamp("language", at, store.SideCRM)
			}
		case "subscriptionState":
			state := store.SubscriptionState(enumName(label))
			if state != store.Subscribed && state != store.Unsubscribed {
				ev.Warn(fmt.Sprintf("%s %q is neither SUBSCRIBED nor UNSUBSCRIBED; the subscription was not changed", m.CRMAttribute, label))
				continue
			}
			if !at.Before(stamp.At) {
				sub.SubscriptionState = state
				sub.SetStamp("subscriptionState", at, store.SideCRM)
			}
		case "doubleOptInStatus":
			applyDoubleOptIn(ev, sub, m.CRMAttribute, label, at)
		}
	}
}

// applyDoubleOptIn takes the double opt-in status from the CRM, which may only say
// "Unknown" or "Externally documented"; anything else is refused with that reason, and
// a subscriber who confirmed in the eMS is never downgraded.
func applyDoubleOptIn(ev *Event, sub *store.Subscriber, attr, label string, at time.Time) {
	status := store.DoubleOptInStatus(enumName(label))
	if status != store.OptInUnknown && status != store.OptInExternallyDocumented {
		ev.Warn(fmt.Sprintf("%s %q refused: the CRM may set the double opt-in status only to Unknown or Externally documented", attr, label))
		return
	}
	if sub.DoubleOptInStatus == store.OptInConfirmed {
		return
	}
	if at.Before(sub.Stamp("doubleOptInStatus").At) {
		return
	}
	sub.DoubleOptInStatus = status
	sub.SetStamp("doubleOptInStatus", at, store.SideCRM)
}

// enumName turns a label such as "Externally documented" into EXTERNALLY_DOCUMENTED.
func enumName(label string) string {
	return strings.ToUpper(strings.Join(strings.Fields(strings.ReplaceAll(label, "-", " ")), "_"))
}

// mappedValue converts a column's value by the mapping's kind. ok is false when the
// value cannot be mapped (reported as a warning, never guessed).
func mappedValue(ev *Event, m store.FieldMapping, raw any) (any, bool) {
	switch m.Kind {
	case store.MappingOptionSet:
		if raw == nil {
			return nil, true
		}
		var values []int
		switch x := raw.(type) {
		case dataverse.OptionSetValue:
			values = []int{x.Value}
		case dataverse.OptionSetValues:
			for _, o := range x {
				values = append(values, o.Value)
			}
		case int64:
			values = []int{int(x)}
		default:
			ev.Warn(fmt.Sprintf("%s is not an option set value; %s was not changed", m.CRMAttribute, m.SubscriberField))
			return nil, false
		}
		labels := make([]any, 0, len(values))
		for _, v := range values {
			l, ok := m.OptionLabels[strconv.Itoa(v)].(string)
			if !ok {
				ev.Warn(fmt.Sprintf("%s has option value %d, which the mapping has no label for; %s was not changed", m.CRMAttribute, v, m.SubscriberField))
				return nil, false
			}
			labels = append(labels, l)
		}
		if _, multi := raw.(dataverse.OptionSetValues); multi {
			return labels, true
		}
		return labels[0], true
	case store.MappingLookup:
		// The related row's attribute, as resolveLookups read it.
		return plainValue(raw), true
	default:
		return plainValue(raw), true
	}
}

// applyLanguage sets the subscriber's language from the record's business unit's
// language mapping (the record's owning business unit, else the context's), when the
// record carries the mapped attribute; the later change wins, a tie goes to the CRM.
func applyLanguage(ev *Event, sub *store.Subscriber, conn *store.Connection, ec *dataverse.ExecutionContext, row *dataverse.Entity, changed func(string) bool, at time.Time) {
	bu := strings.ToLower(ec.BusinessUnitID)
	if ref, ok := row.Reference("owningbusinessunit"); ok && ref.ID != "" {
		bu = strings.ToLower(ref.ID)
	}
	i := slices.IndexFunc(conn.LanguageMappings, func(m store.LanguageMapping) bool { return m.BusinessUnitID == bu })
	if i < 0 {
		return
	}
	m := conn.LanguageMappings[i]
	raw, ok := row.Attributes[m.CRMAttribute]
	if !ok || raw == nil {
		return
	}
	var key string
	switch x := raw.(type) {
	case dataverse.OptionSetValue:
		key = strconv.Itoa(x.Value)
	case int64:
		key = strconv.FormatInt(x, 10)
	case string:
		key = x
	default:
		ev.Warn(fmt.Sprintf("%s is not an option value or LCID; the language was not changed", m.CRMAttribute))
		return
	}
	lang, ok := m.Values[key]
	if !ok {
		ev.Warn(fmt.Sprintf("%s %s has no language in the mapping of business unit %s; the language was not changed", m.CRMAttribute, key, bu))
		return
	}
	if !at.Before(sub.Stamp("language").At) {
		sub.Language = lang
		sub.SetStamp("language", at, store.SideCRM)
	}
}

// applyConsent unsubscribes the subscriber when the CRM says "no marketing e-mail at
// all" (donotbulkemail or donotemail set); the engine does this in every group of
// the connection. Clearing the flags subscribes no one again: consent is given
// explicitly, not by a flag being cleared.
func applyConsent(sub *store.Subscriber, row *dataverse.Entity, changed func(string) bool, at time.Time) {
	for _, col := range []string{"donotbulkemail", "donotemail"} {
		if v, ok := row.Bool(col); ok && v && changed(col) {
			if sub.SubscriptionState != store.Unsubscribed && !at.Before(sub.Stamp("subscriptionState").At) {
				sub.SubscriptionState = store.Unsubscribed
				sub.SetStamp("subscriptionState", at, store.SideCRM)
			}
			return
		}
	}
}

// plainValue turns a decoded Dataverse value into what a subscriber field holds.
func plainValue(v any) any {
	switch x := v.(type) {
	case dataverse.OptionSetValue:
		return int64(x.Value)
	case dataverse.Money:
		return x.Value
	case dataverse.EntityReference:
		return x.ID
	case dataverse.OptionSetValues:
		out := make([]any, len(x))
		for i, o := range x {
			out[i] = int64(o.Value)
		}
		return out
	case time.Time:
		return x.UTC()
	case string, bool, int64, float64, nil:
		return x
	default:
		return nil
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
