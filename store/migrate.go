package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Data migrations bring documents written by older versions of crmsync to the
// shape this version reads. They run in order, after the indexes, and each one
// applied is recorded as a document of schemaMigrations whose _id is its version.
//
// There is no lock, though the fleet starts several instances at once: a lock
// that outlives a crashed instance needs a lease, and leases live in Redis, which
// the store does not use (design.md). Instead every migration is idempotent — it touches only documents still in the old shape and writes
// what any instance would write — so instances that run one side by side agree,
// and its record is an insert with a deterministic _id, where a duplicate key
// means another instance recorded it first.

// migration is one change to stored documents.
type migration struct {
	Version int
	Name    string
	// Up rewrites the documents still in the old shape and answers how many it
	// found. It reads and writes in batches of migrationBatch, so that it works
	// on collections of any size.
	Up func(ctx context.Context, s *Store) (int, error)
}

// migrations lists every data migration, in version order starting at 1; a new
// one goes at the end with the next version, and none is ever removed or
// renumbered (stores record them by version).
func migrations() []migration {
	return []migration{
		{Version: 1, Name: "subscriber-updated-at", Up: backfillSubscriberUpdatedAt},
		{Version: 2, Name: "campaign-send-claimed-to", Up: backfillSendClaimedTo},
		{Version: 3, Name: "campaign-recipient-fields", Up: backfillRecipientFields},
	}
}

// migrationBatch is how many documents a data migration holds at a time: memory
// stays bounded whatever the collection's size, and on MongoDB each batch is one
// write command (bulkWrite splits it further for FerretDB).
const migrationBatch = 500

// SchemaTooNewError is what Migrate answers when a newer crmsync has migrated the
// store: an older binary must not run against documents whose shape it does not know.
type SchemaTooNewError struct {
	// Recorded is the newest migration recorded in the store, Known the newest
	// this binary has.
	Recorded, Known int
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("the store's schema is at version %d, newer than this crmsync knows (%d): run the crmsync that migrated it, or a newer one",
		e.Recorded, e.Known)
}

// MigrationInfo names a data migration; for one that was applied, Documents is
// how many documents it found in the old shape and rewrote, Duration how long it
// took.
type MigrationInfo struct {
	Version   int
	Name      string
	Documents int
	Duration  time.Duration
}

// String is how operators see a migration: "v0001 subscriber-updated-at".
func (m MigrationInfo) String() string { return fmt.Sprintf("%s %s", migrationID(m.Version), m.Name) }

// SchemaStatus is where the store stands against this binary's migrations.
type SchemaStatus struct {
	// Version is the schema version: the highest version up to which every
	// migration is recorded.
	Version int
	// Newest is the highest version recorded; above Known, a newer crmsync
	// migrated the store.
	Newest int
	// Known is the newest version this binary has a migration for.
	Known int
	// Pending lists, in order, the migrations of this binary not recorded yet.
	Pending []MigrationInfo
}

// MigrationReport is what one Migrate did.
type MigrationReport struct {
	// Applied lists the migrations this call ran, in order.
	Applied []MigrationInfo
	// Version and Known are the schema version afterwards and the newest version
	// this binary knows.
	Version, Known int
}

// migrationRecord is the document that records an applied migration.
type migrationRecord struct {
	ID         string    `bson:"_id"` // migrationID(Version)
	Version    int       `bson:"version"`
	Name       string    `bson:"name"`
	AppliedAt  time.Time `bson:"appliedAt"`
	DurationMs int64     `bson:"durationMs"`
	// Documents is how many documents the instance found in the old shape.
	Documents int `bson:"documents"`
	// Instance is the host and process that applied it, for the operator who
	// wonders where a migration ran.
	Instance string `bson:"instance"`
}

// migrationID is the _id of a migration's record; zero-padded so ids sort by version.
func migrationID(version int) string { return fmt.Sprintf("v%04d", version) }

// SchemaStatus reads which migrations the store has recorded, for `crmsync
// migrate --status` and for Migrate's check that the store is not newer than
// this binary. It changes nothing.
func (s *Store) SchemaStatus(ctx context.Context) (*SchemaStatus, error) {
	recs, err := findAll[migrationRecord](ctx, s.db.Collection(colSchemaMigrations), "schema migrations", bson.D{})
	if err != nil {
		return nil, err
	}
	recorded := make(map[int]bool, len(recs))
	st := &SchemaStatus{}
	for _, r := range recs {
		recorded[r.Version] = true
		st.Newest = max(st.Newest, r.Version)
	}
	for recorded[st.Version+1] {
		st.Version++
	}
	for _, m := range migrations() {
		st.Known = max(st.Known, m.Version)
		if !recorded[m.Version] {
			st.Pending = append(st.Pending, MigrationInfo{Version: m.Version, Name: m.Name})
		}
	}
	return st, nil
}

// MigrateWithReport is Migrate, answering what it did: it refuses a store that
// a newer crmsync migrated, declares the indexes, then runs the pending data
// migrations in order and records each one as soon as it is done, so a failure
// leaves the earlier ones recorded.
func (s *Store) MigrateWithReport(ctx context.Context) (*MigrationReport, error) {
	before, err := s.SchemaStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if before.Newest > before.Known {
		return nil, &SchemaTooNewError{Recorded: before.Newest, Known: before.Known}
	}
	if err := s.createIndexes(ctx); err != nil {
		return nil, err
	}
	rep := &MigrationReport{}
	instance := instanceLabel()
	for _, m := range migrations() {
		pending := slices.ContainsFunc(before.Pending, func(p MigrationInfo) bool { return p.Version == m.Version })
		if !pending {
			continue
		}
		// Another instance may have finished it while this one ran the earlier ones.
		done, err := s.migrationRecorded(ctx, m.Version)
		if err != nil {
			return rep, fmt.Errorf("migrate: %w", err)
		}
		if done {
			continue
		}
		start := time.Now()
		n, err := m.Up(ctx, s)
		if err != nil {
			return rep, fmt.Errorf("migrate: %s %s: %w", migrationID(m.Version), m.Name, err)
		}
		took := time.Since(start)
		rec := migrationRecord{ID: migrationID(m.Version), Version: m.Version, Name: m.Name,
			AppliedAt: s.now().UTC(), DurationMs: took.Milliseconds(), Documents: n, Instance: instance}
		if _, err := s.db.Collection(colSchemaMigrations).InsertOne(ctx, rec); err != nil && !mongo.IsDuplicateKeyError(err) {
			return rep, fmt.Errorf("migrate: %w", unavailable("record migration "+rec.ID, err))
		}
		rep.Applied = append(rep.Applied, MigrationInfo{Version: m.Version, Name: m.Name, Documents: n, Duration: took})
	}
	after, err := s.SchemaStatus(ctx)
	if err != nil {
		return rep, fmt.Errorf("migrate: %w", err)
	}
	rep.Version, rep.Known = after.Version, after.Known
	return rep, nil
}

func (s *Store) migrationRecorded(ctx context.Context, version int) (bool, error) {
	var rec migrationRecord
	err := s.findByID(ctx, colSchemaMigrations, migrationID(version), &rec)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// instanceLabel names this process in the records it writes: host/pid.
func instanceLabel() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// backfillSubscriberUpdatedAt gives an updatedAt to subscribers that list syncs
// and sign-up forms created before e7ca639: they were stored with none (the zero
// time), which the API returns as its non-null updatedAt and the suppression list
// as the time of a suppression. Their creation is the last change known.
func backfillSubscriberUpdatedAt(ctx context.Context, s *Store) (int, error) {
	// Missing, null, or the zero time.Time that the driver writes for an unset field.
	noUpdate := bson.D{{Key: "$in", Value: bson.A{nil, time.Time{}}}}
	col := s.db.Collection(colSubscribers)
	type oldSubscriber struct {
		ID        string    `bson:"_id"`
		CreatedAt time.Time `bson:"createdAt"`
	}
	return eachBatch(ctx, col, "subscribers without updatedAt",
		bson.D{{Key: "updatedAt", Value: noUpdate}}, bson.D{{Key: "createdAt", Value: 1}},
		func(subs []oldSubscriber) error {
			models := make([]mongo.WriteModel, len(subs))
			for i, sub := range subs {
				at := sub.CreatedAt
				if at.IsZero() {
					at = s.now().UTC() // no time at all on record: the backfill is the first known
				}
				models[i] = mongo.NewUpdateOneModel().SetFilter(s.byIDWhere(sub.ID, "updatedAt", noUpdate)).
					SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "updatedAt", Value: at}}}})
			}
			return s.bulkWrite(ctx, colSubscribers, "backfill subscribers' updatedAt", models)
		})
}

// backfillSendClaimedTo gives claimedTo to the campaign sends still to run that
// were stored before ceae79b. The runner skips the lookup of earlier claims on
// pages at or past claimedTo, so a send going out during the upgrade would read
// 0, skip it on the page it stopped in, and leave the messages already claimed
// there uncounted (neither sent nor unconfirmed). No claim lies past the
// recipient count, so that is a safe bound: such a send looks its claims up on
// every page, as the version that started it did.
func backfillSendClaimedTo(ctx context.Context, s *Store) (int, error) {
	unset := bson.D{{Key: "$exists", Value: false}}
	type oldSend struct {
		ID             string `bson:"_id"`
		RecipientCount int    `bson:"recipientCount"`
	}
	return eachBatch(ctx, s.db.Collection(colSends), "campaign sends without claimedTo",
		bson.D{{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{SendScheduled, SendSending}}}}, {Key: "claimedTo", Value: unset}},
		bson.D{{Key: "recipientCount", Value: 1}},
		func(sends []oldSend) error {
			models := make([]mongo.WriteModel, len(sends))
			for i, cs := range sends {
				models[i] = mongo.NewUpdateOneModel().SetFilter(s.byIDWhere(cs.ID, "claimedTo", unset)).
					SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "claimedTo", Value: cs.RecipientCount}}}})
			}
			return s.bulkWrite(ctx, colSends, "backfill campaign sends' claimedTo", models)
		})
}

// backfillRecipientFields gives the recipients of sends still to run, stored
// before ceae79b, the snapshot of their subscriber's fields that messages are now
// personalised from; without it a send going out during the upgrade would fill
// every fields.* placeholder with nothing. The version that resolved them read
// the subscriber's fields when it sent each message, which is what the snapshot
// holds now. Recipients whose subscriber has no fields (or is gone) need none.
func backfillRecipientFields(ctx context.Context, s *Store) (int, error) {
	sends, err := findAll[CampaignSend](ctx, s.db.Collection(colSends), "campaign sends to run", bson.D{
		{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{SendScheduled, SendSending}}}},
		{Key: "resolved", Value: true},
	}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, err
	}
	unset := bson.D{{Key: "$exists", Value: false}}
	type oldRecipient struct {
		ID           string `bson:"_id"`
		SubscriberID string `bson:"subscriberId"`
	}
	found := 0
	for _, cs := range sends {
		n, err := eachBatch(ctx, s.db.Collection(colRecipients), "campaign recipients without fields",
			bson.D{{Key: "sendId", Value: cs.ID}, {Key: "fields", Value: unset}}, bson.D{{Key: "subscriberId", Value: 1}},
			func(rs []oldRecipient) error {
				ids := make(bson.A, len(rs))
				for i, r := range rs {
					ids[i] = r.SubscriberID
				}
				var subs []*Subscriber
				if err := s.findIn(ctx, colSubscribers, ids, &subs); err != nil {
					return err
				}
				fields := make(map[string]map[string]any, len(subs))
				for _, sub := range subs {
					fields[sub.ID] = sub.Fields
				}
				var models []mongo.WriteModel
				for _, r := range rs {
					if f := fields[r.SubscriberID]; len(f) > 0 {
						models = append(models, mongo.NewUpdateOneModel().SetFilter(s.byIDWhere(r.ID, "fields", unset)).
							SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "fields", Value: f}}}}))
					}
				}
				return s.bulkWrite(ctx, colRecipients, "backfill campaign recipients' fields", models)
			})
		found += n
		if err != nil {
			return found, err
		}
	}
	return found, nil
}

// byIDWhere selects the document with the given _id while field still matches
// cond, so that on MongoDB a migration's update skips a document that a running
// instance changed since it was read. FerretDB scans the whole collection for any
// filter other than exactly {_id} and would not make the condition atomic
// anyway (design.md), so there the filter is the _id alone.
func (s *Store) byIDWhere(id, field string, cond bson.D) bson.D {
	if s.ferret {
		return bson.D{{Key: "_id", Value: id}}
	}
	return bson.D{{Key: "_id", Value: id}, {Key: field, Value: cond}}
}

// eachBatch hands the documents of col that match filter to fn, migrationBatch at
// a time, with only the fields of projection (and _id), and answers how many it
// read. It reads the collection in one pass through one cursor: a query per
// batch would scan the embedded store's collection once per batch. what names
// the documents in errors.
func eachBatch[T any](ctx context.Context, col *mongo.Collection, what string, filter, projection bson.D, fn func([]T) error) (int, error) {
	cur, err := col.Find(ctx, filter, options.Find().SetProjection(projection).SetBatchSize(migrationBatch))
	if err != nil {
		return 0, unavailable("read "+what, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	read := 0
	batch := make([]T, 0, migrationBatch)
	for cur.Next(ctx) {
		var doc T
		if err := cur.Decode(&doc); err != nil {
			return read, fmt.Errorf("decode %s: %w", what, err)
		}
		read++
		batch = append(batch, doc)
		if len(batch) == migrationBatch {
			if err := fn(batch); err != nil {
				return read, err
			}
			batch = batch[:0]
		}
	}
	if err := cur.Err(); err != nil {
		return read, unavailable("read "+what, err)
	}
	if len(batch) > 0 {
		return read, fn(batch)
	}
	return read, nil
}

// retentionBatch is how many documents one deletion of a retention pass removes,
// as the engine's periodic sweep does.
const retentionBatch = 1000

// RetentionSetting is the inbox retention that `crmsync migrate` last applied,
// recorded so that operators can see what the fleet was configured with. The
// engine and scheduler of each instance still sweep with their own
// CRMSYNC_INBOX_RETENTION.
type RetentionSetting struct {
	ID string `bson:"_id"` // retentionSettingID
	// Inbox is how long processed events, and finished list sync runs with their
	// changes, are kept.
	Inbox      time.Duration `bson:"inbox"`
	RecordedAt time.Time     `bson:"recordedAt"`
	RecordedBy string        `bson:"recordedBy"`
}

const retentionSettingID = "retention"

// RetentionResult is what one retention pass removed.
type RetentionResult struct {
	// Events are processed inbox events (with their bodies), Runs finished list
	// sync runs (with their changes).
	Events, Runs int
}

// ApplyRetention records keep as the retention in effect, then removes at once
// what the engine's and scheduler's periodic sweeps would remove over their next
// passes: processed inbox events and finished list sync runs older than keep.
func (s *Store) ApplyRetention(ctx context.Context, keep time.Duration) (RetentionResult, error) {
	var res RetentionResult
	setting := RetentionSetting{ID: retentionSettingID, Inbox: keep, RecordedAt: s.now().UTC(), RecordedBy: instanceLabel()}
	// Two instances upserting at once on FerretDB may both insert: the loser finds
	// the document on its second try.
	err := s.replaceByID(ctx, colSettings, setting.ID, setting)
	if mongo.IsDuplicateKeyError(err) {
		err = s.replaceByID(ctx, colSettings, setting.ID, setting)
	}
	if err != nil {
		return res, fmt.Errorf("record the retention: %w", err)
	}
	before := s.now().Add(-keep)
	// Each deletes at most retentionBatch at a time; a shorter batch is the last.
	drain := func(deleteBefore func(context.Context, time.Time, int) (int, error)) (int, error) {
		total := 0
		for {
			n, err := deleteBefore(ctx, before, retentionBatch)
			total += n
			if err != nil || n < retentionBatch {
				return total, err
			}
		}
	}
	if res.Events, err = drain(s.DeleteProcessedBefore); err != nil {
		return res, fmt.Errorf("apply the inbox retention: %w", err)
	}
	if res.Runs, err = drain(s.DeleteRunsBefore); err != nil {
		return res, fmt.Errorf("apply the list runs' retention: %w", err)
	}
	return res, nil
}

// Retention reads the retention `crmsync migrate` last recorded; ErrNotFound
// when it never ran.
func (s *Store) Retention(ctx context.Context) (*RetentionSetting, error) {
	var setting RetentionSetting
	if err := s.findByID(ctx, colSettings, retentionSettingID, &setting); err != nil {
		return nil, err
	}
	return &setting, nil
}
