package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"crmsync/dataverse"
	"crmsync/logctx"
	"crmsync/store"
)

// OutboxWriter is the step that brings subscribers changed in the eMS (the events
// Outbox queues) to the CRM. It is a BatchStep: the events of one read share their
// requests, so a 10,000-subscriber import costs tens of Web API requests:
//   - an unlinked subscriber is matched by e-mail address (Contact, then Account,
//     then Lead; qualified leads never; a deactivated match reactivated only when
//     the connection says so), all addresses in one $batch of queries, or created
//     as the connection's recipient type with its mapped fields (sent once, at
//     creation) and the owner login's systemuser as owner — one CreateMultiple,
//     and one record for all the groups' subscribers with that address;
//   - a linked subscriber whose e-mail address the eMS changed last has it
//     written with UpdateMultiple;
//   - a subscription state the eMS changed last is written to the group's
//     cs_subscription row with UpsertMultiple.
//
// Subscribers whose double opt-in is pending are not sent. Each event gets its
// own outcome: a row the CRM refuses fails only the events of its subscriber.
type OutboxWriter struct {
	// Store is the source of truth; required.
	Store OutboundStore
	// Clients gives each connection's Web API client; required.
	Clients *CRMClients
	// MaxBulkRows is the most rows one CreateMultiple, UpdateMultiple or
	// UpsertMultiple request carries; default DefaultMaxBulkRows. After a failed
	// request the writer sends fewer, and more again as requests succeed. (The
	// client splits requests above its own BulkSize, 1,000 by default.)
	MaxBulkRows int
	// Now is the clock; default time.Now.
	Now func() time.Time

	sizes bulkSizes
}

func (w *OutboxWriter) maxBulkRows() int {
	if w.MaxBulkRows <= 0 {
		return DefaultMaxBulkRows
	}
	return w.MaxBulkRows
}

func (w *OutboxWriter) now() time.Time {
	if w.Now == nil {
		return time.Now().UTC()
	}
	return w.Now().UTC()
}

// Apply brings the subscriber of one event to the CRM.
func (w *OutboxWriter) Apply(ctx context.Context, ev *Event) error {
	return w.ApplyBatch(ctx, []*Event{ev})[0]
}

// ApplyBatch brings the subscribers of many events to the CRM and gives each
// event its outcome. Several events about one subscriber are applied once: the
// step reads the subscriber as it is now, not as the event saw it.
func (w *OutboxWriter) ApplyBatch(ctx context.Context, evs []*Event) []error {
	var conns [][]*item
	byConn := map[string]int{}
	bySub := map[string]*item{}
	for _, ev := range evs {
		key := ev.Connection.ID + "|" + ev.Context.PrimaryEntityID
		it := bySub[key]
		if it == nil {
			it = &item{}
			bySub[key] = it
			c, ok := byConn[ev.Connection.ID]
			if !ok {
				c = len(conns)
				byConn[ev.Connection.ID] = c
				conns = append(conns, nil)
			}
			conns[c] = append(conns[c], it)
		}
		it.events = append(it.events, ev)
	}
	for _, items := range conns {
		w.syncConnection(ctx, items[0].events[0].Connection, items)
	}
	errs := make([]error, len(evs))
	for i, ev := range evs {
		errs[i] = bySub[ev.Connection.ID+"|"+ev.Context.PrimaryEntityID].err
	}
	return errs
}

// item is one subscriber of a batch and the events about it.
type item struct {
	events []*Event
	sub    *store.Subscriber
	group  *store.Group
	// ref is the record an unlinked subscriber is to be linked to.
	ref *store.CRMRecordRef
	err error
}

// fail records the first thing that went wrong for the subscriber.
func (it *item) fail(err error) {
	if it.err == nil {
		it.err = err
	}
}

// warn records something not applied in full on every event of the subscriber.
func (it *item) warn(msg string) {
	for _, ev := range it.events {
		ev.Warn(msg)
	}
}

// syncConnection brings the subscribers of one connection's events to its CRM.
func (w *OutboxWriter) syncConnection(ctx context.Context, conn *store.Connection, items []*item) {
	// The writes serve many events; the lines about them name the connection.
	ctx = logctx.With(ctx, slog.String(logctx.Tenant, conn.Tenant), slog.String(logctx.Connection, conn.ID))
	items = w.load(ctx, conn, items)
	if len(items) == 0 {
		return
	}
	client, err := w.Clients.For(conn)
	if err != nil {
		for _, it := range items {
			it.fail(Permanent(err))
		}
		return
	}
	var unlinked []*item
	emails := tableRows{}
	for _, it := range items {
		if it.sub.CRMRecord == nil {
			unlinked = append(unlinked, it)
			continue
		}
		if it.sub.Stamp("email").Side == store.SideEMS {
			ref := *it.sub.CRMRecord
			emails.add(entitySet(ref.Entity), ref.ID, it, func() bulkRow {
				return bulkRow{Ref: ref.ID, Body: map[string]any{"emailaddress1": it.sub.Email}}
			})
		}
	}
	w.write(ctx, client, conn.ID, bulkUpdate, emails, nil)
	if len(unlinked) > 0 {
		w.link(ctx, client, conn, unlinked)
	}
	w.writeSubscriptions(ctx, client, conn, items)
	w.writeListMemberships(ctx, client, items)
}

// load reads the subscribers of the items and keeps those to be sent: not deleted
// since, in a group CRM-synced with this connection, with confirmed consent.
func (w *OutboxWriter) load(ctx context.Context, conn *store.Connection, items []*item) []*item {
	var out []*item
	groups := map[string]*store.Group{}
	for _, it := range items {
		sub, err := w.Store.Subscriber(ctx, conn.Tenant, it.events[0].Context.PrimaryEntityID)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since
		}
		if err != nil {
			it.fail(err)
			continue
		}
		g, ok := groups[sub.GroupID]
		if !ok {
			g, err = w.Store.Group(ctx, conn.Tenant, sub.GroupID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				it.fail(err)
				continue
			}
			groups[sub.GroupID] = g
		}
		switch {
		case g == nil || !g.CRMSync || g.ConnectionID != conn.ID:
			it.warn("the group is not CRM-synced with this connection (any more)")
			continue
		case !conn.Bidirectional:
			it.warn("the connection syncs CRM → eMS only")
			continue
		case sub.DoubleOptInStatus == store.OptInPending:
			it.warn("the subscriber has not confirmed the double opt-in yet")
			continue
		}
		it.sub, it.group = sub, g
		out = append(out, it)
	}
	return out
}

// link matches unlinked subscribers in the CRM, reactivating or creating records
// as needed, and stores the links.
func (w *OutboxWriter) link(ctx context.Context, client *dataverse.Client, conn *store.Connection, items []*item) {
	var emails []string
	seen := map[string]bool{}
	for _, it := range items {
		if !seen[it.sub.Email] {
			seen[it.sub.Email] = true
			emails = append(emails, it.sub.Email)
		}
	}
	ownerLogin := ""
	if conn.OwnerLogin != nil {
		ownerLogin = *conn.OwnerLogin
	}
	found, err := findByEmail(ctx, client, emails, ownerLogin)
	if err != nil {
		for _, it := range items {
			it.fail(crmError(err))
		}
		return
	}
	reactivate, create := tableRows{}, tableRows{}
	for _, it := range items {
		ref, inactive, why := found.match(it.sub.Email, conn.ReactivateRecords)
		if why != "" {
			it.warn(why)
		}
		switch {
		case ref == nil:
			create.add(entitySet(conn.RecipientType), it.sub.Email, it, func() bulkRow {
				return bulkRow{Body: newRecord(conn, it.sub, found.owner)}
			})
		case inactive:
			it.ref = ref
			// Status 1 is the default active status of contact and account, and New for lead.
			reactivate.add(entitySet(ref.Entity), ref.ID, it, func() bulkRow {
				return bulkRow{Ref: ref.ID, Body: map[string]any{"statecode": 0, "statuscode": 1}}
			})
		default:
			it.ref = ref
		}
	}
	w.write(ctx, client, conn.ID, bulkUpdate, reactivate, nil)
	if len(create) > 0 && ownerLogin != "" && found.owner == "" {
		err := Permanent(fmt.Errorf("the connection's owner login %q resolves to no systemuser in the CRM", ownerLogin))
		for _, p := range create {
			for _, its := range p.items {
				for _, it := range its {
					it.fail(err)
				}
			}
		}
	} else {
		w.write(ctx, client, conn.ID, bulkCreate, create, func(it *item, _, id string) {
			it.ref = &store.CRMRecordRef{Entity: conn.RecipientType, ID: id}
		})
	}
	for _, it := range items {
		if it.err != nil || it.ref == nil {
			continue
		}
		it.sub.CRMRecord = it.ref
		it.sub.CRMUnlinkedReason = nil
		it.sub.UpdatedAt = w.now()
		if err := w.Store.SaveSubscriber(ctx, it.sub); err != nil {
			it.fail(err)
		}
	}
}

// newRecord is the row of a record created for a subscriber: its address, its
// mapped fields, the name or subject the table needs, and its owner.
func newRecord(conn *store.Connection, sub *store.Subscriber, owner string) map[string]any {
	rt := conn.RecipientType
	row := map[string]any{"emailaddress1": sub.Email}
	for _, m := range conn.FieldMappings {
		name, ok := strings.CutPrefix(m.SubscriberField, "fields.")
		if !ok || m.CRMEntity != rt.Entity() || m.Kind != store.MappingSimple {
			continue
		}
		if v, ok := sub.Fields[name]; ok && v != nil {
			row[m.CRMAttribute] = v
		}
	}
	switch rt {
	case store.RecipientAccount:
		if _, ok := row["name"]; !ok {
			row["name"] = sub.Email
		}
	case store.RecipientLead:
		row["subject"] = "crmsync: " + sub.Email
	}
	if owner != "" {
		row["ownerid@odata.bind"] = dataverse.Bind("systemusers", owner)
	}
	return row
}

// writeSubscriptions writes the subscription state of linked subscribers whose
// state the eMS changed last to their group's cs_subscription row.
func (w *OutboxWriter) writeSubscriptions(ctx context.Context, client *dataverse.Client, conn *store.Connection, items []*item) {
	rows := tableRows{}
	now := w.now().Format(time.RFC3339)
	for _, it := range items {
		if it.err != nil || it.sub.CRMRecord == nil || it.sub.Stamp("subscriptionState").Side != store.SideEMS {
			continue
		}
		ref := *it.sub.CRMRecord
		key := dataverse.AlternateKey("cs_subscriptions", map[string]any{
			"cs_groupid": it.group.ID, "_cs_" + ref.Entity.Entity() + "id_value": ref.ID,
		})
		rows.add("cs_subscriptions", key, it, func() bulkRow {
			return bulkRow{Ref: key, Body: map[string]any{
				"cs_subscribed": it.sub.SubscriptionState == store.Subscribed, "cs_lastsyncedon": now,
			}}
		})
	}
	w.write(ctx, client, conn.ID, bulkUpsert, rows, nil)
}

// OptOutOfBulkEmail sets donotbulkemail on CRM records: what a complaint or an
// "unsubscribe from all" in the eMS means for the CRM (contract.md, "Consent").
// The records' webhooks then unsubscribe the person from every group of the
// connection. The writes are bulk requests, as for the rest of the outbox; the
// answer holds one outcome per record, in order. Campaign reactions call it.
func (w *OutboxWriter) OptOutOfBulkEmail(ctx context.Context, conn *store.Connection, refs []store.CRMRecordRef) []error {
	items := make([]*item, len(refs))
	errs := make([]error, len(refs))
	client, err := w.Clients.For(conn)
	if err != nil {
		for i := range errs {
			errs[i] = Permanent(err)
		}
		return errs
	}
	rows := tableRows{}
	for i, ref := range refs {
		items[i] = &item{}
		rows.add(entitySet(ref.Entity), ref.ID, items[i], func() bulkRow {
			return bulkRow{Ref: ref.ID, Body: map[string]any{"donotbulkemail": true}}
		})
	}
	w.write(ctx, client, conn.ID, bulkUpdate, rows, nil)
	for i, it := range items {
		errs[i] = it.err
	}
	return errs
}
