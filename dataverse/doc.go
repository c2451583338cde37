// Package dataverse is the single place that knows how Dataverse (Dynamics 365) talks to
// crmsync: the RemoteExecutionContext JSON its webhooks POST.
//
// Decode turns a webhook body — the DataContractJsonSerializer form of
// Microsoft.Xrm.Sdk.RemoteExecutionContext — into an ExecutionContext, so no other
// package parses that format. Keyed collections ([{"key":…,"value":…},…]: Attributes,
// FormattedValues, KeyAttributes, InputParameters, OutputParameters, SharedVariables and
// images) become maps, and values are decoded by the type named before the first ':'
// of their "__type":
//
//	Entity            *Entity
//	EntityReference   EntityReference
//	OptionSetValue    OptionSetValue (a JSON array of them: OptionSetValues)
//	Money             Money
//	EntityCollection  *EntityCollection
//	Relationship      Relationship
//	Guid, DateTime and other {"__type":…,"__value":…} wrappers: the wrapped primitive
//	KeyValuePairOf…   its value (an array of key/value objects becomes a map)
//
// Objects without "__type" (images, party-list rows) are an *Entity when they have
// Attributes and LogicalName, an EntityReference when they have LogicalName and Id.
// "/Date(ms)/" strings (with or without a ±hhmm suffix, which only marks a Local kind)
// become a UTC time.Time; whole JSON numbers become int64, others float64; other arrays
// become []any. Unknown types and fields never fail: they stay a map[string]any.
//
// DataContractJsonSerializer always writes "__type" first; such a value is read straight
// into its Go type, and a known field with the wrong JSON type (an OptionSetValue whose
// Value is a string) is a DecodeError naming that field. An object whose "__type" comes
// later is read generically and converted when its fields fit, else kept as a map.
//
// When the body exceeded 256 KB, Dataverse strips InputParameters, images and
// ParentContext and sets the x-ms-dynamics-msg-size-exceeded header; such an event
// reports NeedsReread, and the row has to be read back through the Web API.
//
// The other half is the Web API client (Client), through which crmsync writes back:
// single-row CRUD, queries (Query, FetchXML), $batch with change sets (Batch), the
// bulk messages (CreateMultiple, UpdateMultiple, UpsertMultiple), the
// marketing-list actions and N:N associations, and change tracking (Changes), all
// throttled and retried as reference/dataverse.md §4.6 and §7.3 ask.
package dataverse
