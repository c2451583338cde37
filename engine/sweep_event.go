package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"crmsync/dataverse"
	"crmsync/store"
)

// SourceSweep marks inbox events that the anti-entropy sweep made from rows read
// through change tracking, as if Dataverse had sent them.
const SourceSweep = "sweep"

// contractType is the namespace of the SDK types in a RemoteExecutionContext.
const contractType = ":http://schemas.microsoft.com/xrm/2011/Contracts"

// sweepEvent makes the inbox event of one change the sweep found: an Update whose
// Target carries every column read (or a Delete of the row), in the body a webhook
// would have had, so the engine applies it with the same steps. Its id is derived
// from the connection, the row and the row's version (its etag), so finding the
// same change again stores nothing new.
func sweepEvent(conn *store.Connection, table, id string, row dataverse.Row, now time.Time) (*store.InboxEvent, error) {
	msg, version := dataverse.MessageDelete, "deleted"
	target := map[string]any{"__type": "EntityReference" + contractType, "Id": id, "LogicalName": table, "Name": nil, "KeyAttributes": []any{}, "RowVersion": nil}
	at := now
	if row != nil {
		msg, version = dataverse.MessageUpdate, row.ETag()
		if version == "" {
			version, _ = row.String("modifiedon")
		}
		e := rowEntity(table, id, row)
		if t, ok := e.Time("modifiedon"); ok {
			at = t
		}
		attrs := make([]any, 0, len(e.Attributes))
		for k, v := range e.Attributes {
			attrs = append(attrs, map[string]any{"key": k, "value": contractValue(v)})
		}
		target = map[string]any{"__type": "Entity" + contractType, "Attributes": attrs, "EntityState": nil, "FormattedValues": []any{},
			"Id": id, "KeyAttributes": []any{}, "LogicalName": table, "RelatedEntities": []any{}, "RowVersion": nil}
	}
	body, err := json.Marshal(map[string]any{
		"MessageName": msg, "PrimaryEntityName": table, "PrimaryEntityId": id, "Stage": dataverse.StagePostOperation, "Mode": 1, "Depth": 1,
		"OperationCreatedOn": contractDate(at), "InputParameters": []any{map[string]any{"key": dataverse.ParamTarget, "value": target}},
	})
	if err != nil {
		return nil, fmt.Errorf("encode the sweep's event for %s %s: %w", table, id, err)
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s", conn.ID, table, id, version))
	return &store.InboxEvent{
		ID: "sweep-" + hex.EncodeToString(sum[:16]), Tenant: conn.Tenant, ConnectionID: conn.ID, Source: SourceSweep,
		Message: msg, Entity: table, RecordID: id, Stage: dataverse.StagePostOperation, Body: string(body), ReceivedAt: now.UTC(),
	}, nil
}

// contractValue writes a value the way DataContractJsonSerializer does in a
// webhook body, for the types rowEntity produces.
func contractValue(v any) any {
	switch x := v.(type) {
	case time.Time:
		return contractDate(x)
	case dataverse.EntityReference:
		return map[string]any{"__type": "EntityReference" + contractType, "Id": x.ID, "LogicalName": x.LogicalName, "Name": nil, "KeyAttributes": []any{}, "RowVersion": nil}
	}
	return v
}

func contractDate(t time.Time) string { return fmt.Sprintf("/Date(%d)/", t.UnixMilli()) }
