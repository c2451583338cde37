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
//     reference gives them;
//   - service protection (§4.6, §7.3, throttle.go): per user and sliding five-minute
//     window a request limit and a handling-time limit, and a limit on requests in
//     flight, answered 429 with Retry-After; x-ms-dop-hint on every answer;
//   - faults on purpose (fault.go): latency, 503s and cut connections, some of them
//     after the change was made, from a seedable source;
//   - webhooks (§1–§3, §7.6): service endpoints, steps and images registered through
//     the Web API (sdktables.go); every create, update, delete, state and owner
//     change goes to the matching steps as a RemoteExecutionContext
//     (webhook.go, remotecontext.go), sent asynchronously with Dataverse's headers,
//     authentication, 60-second timeout and single retry after 502/503/504
//     (delivery.go), and logged for tests (Deliveries);
//   - $batch (§4.5, batch.go): multipart/mixed requests and atomic change sets with
//     Content-ID references, at most 1000 requests, stop at the first failure unless
//     Prefer: odata.continue-on-error;
//   - bulk messages (§7.1, bulk.go): CreateMultiple, UpdateMultiple and
//     UpsertMultiple, each all or nothing, raising the per-row Create and Update
//     events; alternate keys (altkey.go) on cs_subscription for UpsertMultiple and
//     in URLs;
//   - marketing lists (§4.7, listaction.go): AddMemberList, AddListMembersList,
//     RemoveMemberList, CopyDynamicListToStatic, with AddMember, AddListMembers,
//     RemoveMember and CopyDynamicListToStatic events (§3.6);
//   - N:N relationships (§4.3, relationship.go): the lists' with contacts,
//     accounts and leads, campaignlist_association and
//     campaignactivitylist_association, written through $ref from either side
//     with Associate and Disassociate events, and read from either side with GET
//     of the navigation property, which takes the options of a collection;
//   - campaigns (§5, campaign.go): AddItemCampaign bound to a list and the
//     unbound AddItemCampaignActivity, in the Web API form Microsoft's action
//     reference documents, with their own events; the intersect rows are
//     campaignitem and campaignactivityitem;
//   - activity parties (§5, party.go): a campaign response's customer and from
//     parties written by deep insert through campaignresponse_activity_parties
//     (in $batch too), stored as activityparty rows, read through /activityparties
//     or the navigation property;
//   - FetchXML (§4.4, fetchxml.go) with link-entity, paging cookies and
//     case-insensitive conditions; dynamic lists store and validate theirs;
//   - change tracking (§7.2, changetrack.go) on contact, account, lead, list and
//     cs_subscription: Prefer: odata.track-changes, delta links, $deletedEntity
//     entries and ExpiredVersionStamp after Config.ChangeTrackingRetention.
//
// Transactions (txn.go) undo a failed change set, bulk message, list action or
// deep insert and hold its webhook events until it commits.
//
// The schema (tables, columns, states, keys) is the data in tables.go and
// sdktables.go, where a platform table is added, with crmsync's Dataverse solution
// applied (solution.go): the cs_ columns, the cs_subscription table and the eMS
// Campaign channel come from package solution, the solution's own source. Columns the reference marks required —
// list.listname, and campaignresponse's ApplicationRequired subject and
// regardingobjectid — are refused when missing on create, as SystemRequired
// ones are. $expand covers single-valued navigation properties with $select
// (expand.go); the solution's custom APIs are seeded and callable (customapi.go).
// $metadata, FetchXML aggregates, collection-valued $expand, deep update, deep
// insert through single-valued navigation properties, other custom APIs, reads
// of other navigation properties, and campaign items that are products or sales
// literature are not implemented: such requests answer 501 so nobody mistakes
// them for supported. A body naming a collection-valued navigation property the
// emulator does not know (the only one is campaignresponse_activity_parties) is
// refused as an invalid property.
package emulator
