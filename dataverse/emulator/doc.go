// Package emulator is an in-memory Dataverse: the Web API (OData v4) under
// /api/data/v9.2/ and an Entra-ID-style client-credentials token endpoint at
// /{tenantId}/oauth2/v2.0/token. Tests, `crmsync dataverse-emulator` and
// `serve --demo` use it instead of a real environment.
//
// It follows reference/dataverse.md rather than what crmsync's own client happens to
// send, so a client bug shows up here as it would against Dataverse:
//
//   - tokens: form-encoded client_credentials, scope "<base URL>/.default" (the host
//     may be 127.0.0.1 or localhost), Entra's error shape ({"error":"invalid_client",
//     "error_description":"AADSTS7000215: …"}); tokens are opaque and expire after
//     Config.TokenTTL;
//   - writes: POST (204 + OData-EntityId, or 201 with Prefer: return=representation),
//     PATCH as update (If-Match: * or an etag → 404/412), create-only
//     (If-None-Match: * → 412) or upsert (neither), DELETE; lookups only through
//     "<navigation property>@odata.bind"; unknown properties refused; statecode and
//     statuscode checked as in §7.4; qualified leads refuse updates;
//   - reads: GET by id and collections with $select, $filter, $orderby, $top,
//     $count and paging through Prefer: odata.maxpagesize and @odata.nextLink (an
//     opaque $skiptoken); $skip refused; weak etags from one version counter that
//     every write advances; lookups read as _<name>_value with annotations on request;
//   - errors: {"error":{"code":"0x…","message":"…"}} with Dataverse's codes where the
//     reference gives them.
//
// The schema (tables, columns, states) is the data in tables.go; a table is added
// there. Service-protection limits, faults, $batch, bulk actions, FetchXML and
// webhooks are not implemented yet: such requests answer 501 so nobody mistakes
// them for supported.
package emulator
