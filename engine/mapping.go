package engine

import (
	"strings"
	"time"

	"crmsync/dataverse"
	"crmsync/store"
)

// applyMappings copies the row's mapped attributes into the subscriber's fields.
// Mapped fields belong to the CRM: a column sent as null clears the field. Columns
// the event does not carry leave their fields alone.
func applyMappings(sub *store.Subscriber, mappings []store.FieldMapping, entity string, row *dataverse.Entity) {
	for _, m := range mappings {
		if m.CRMEntity != entity || m.Kind != store.MappingSimple {
			continue
		}
		name, ok := strings.CutPrefix(m.SubscriberField, "fields.")
		if !ok {
			continue // email, language and consent have rules of their own
		}
		v, present := row.Attributes[m.CRMAttribute]
		if !present {
			continue
		}
		if sub.Fields == nil {
			sub.Fields = map[string]any{}
		}
		if pv := plainValue(v); pv != nil {
			sub.Fields[name] = pv
		} else {
			delete(sub.Fields, name)
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
