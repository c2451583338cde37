package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"crmsync/store"
	"crmsync/store/storetest"
)

// unmigrated opens a store on a database of the test's own that no Migrate has
// touched, and a plain driver handle on the same database for writing documents
// in the shapes older versions wrote.
func unmigrated(t *testing.T) (*store.Store, store.Config, *mongo.Database) {
	t.Helper()
	cfg := storetest.Config(t)
	s := openOn(t, cfg)
	client, err := mongo.Connect(options.Client().ApplyURI(cfg.URI))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := s.DropDatabase(ctx); err != nil {
			t.Logf("drop test database: %v", err)
		}
		_ = client.Disconnect(ctx)
	})
	return s, cfg, client.Database(cfg.Database)
}

// openOn opens one more handle (its own client) on cfg's database.
func openOn(t *testing.T, cfg store.Config) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// migrationRecords reads the recorded migrations' ids, in order.
func migrationRecords(t *testing.T, db *mongo.Database) []string {
	t.Helper()
	cur, err := db.Collection("schemaMigrations").Find(context.Background(), bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var recs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(context.Background(), &recs); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}

func wantRecords(known int) []string {
	ids := make([]string, known)
	for i := range ids {
		ids[i] = fmt.Sprintf("v%04d", i+1)
	}
	return ids
}

func TestMigrateFreshStoreAppliesAndRecordsEveryMigration(t *testing.T) {
	t.Parallel()
	s, _, db := unmigrated(t)
	ctx := context.Background()
	before, err := s.SchemaStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Version != 0 || before.Known < 3 || len(before.Pending) != before.Known {
		t.Fatalf("status of a fresh store: %+v", before)
	}
	rep, err := s.MigrateWithReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Applied) != before.Known || rep.Version != before.Known || rep.Known != before.Known {
		t.Errorf("report: %+v; want all %d applied", rep, before.Known)
	}
	for i, m := range rep.Applied {
		if m.Version != i+1 || m.Name != before.Pending[i].Name {
			t.Errorf("applied[%d] = %v; want %v, in order", i, m, before.Pending[i])
		}
	}
	if got, want := migrationRecords(t, db), wantRecords(before.Known); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("records %v; want %v", got, want)
	}
	after, err := s.SchemaStatus(ctx)
	if err != nil || after.Version != after.Known || after.Newest != after.Known || len(after.Pending) != 0 {
		t.Errorf("status after Migrate: %+v, %v", after, err)
	}
}

func TestMigrateTwiceIsANoOp(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t) // migrated once already
	ctx := context.Background()
	rep, err := s.MigrateWithReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Applied) != 0 || rep.Version != rep.Known {
		t.Errorf("second Migrate: %+v; want nothing applied and the version kept", rep)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Errorf("third Migrate: %v", err)
	}
}

// TestMigrateFromThreeInstancesAtOnce starts three store handles, each with its
// own client, on one database holding documents in their old shapes, as the
// fleet's three serve processes do: each migration ends up recorded once and
// every document is migrated.
func TestMigrateFromThreeInstancesAtOnce(t *testing.T) {
	t.Parallel()
	_, cfg, db := unmigrated(t)
	ctx := context.Background()
	created := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	ids := insertOldSubscribers(t, db, 120, created)
	insertOldSend(t, db)

	stores := []*store.Store{openOn(t, cfg), openOn(t, cfg), openOn(t, cfg)}
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	st, err := stores[0].SchemaStatus(ctx)
	if err != nil || st.Version != st.Known || len(st.Pending) != 0 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if got, want := migrationRecords(t, db), wantRecords(st.Known); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("records %v; want each migration once: %v", got, want)
	}
	checkSubscribersUpdated(t, stores[1], ids, created)
	checkSendMigrated(t, stores[2])
}

// TestMigrateBackfillsSubscriberUpdatedAt: subscribers stored without updatedAt
// (missing, or the zero time the driver wrote for an unset field) get their
// creation time, more of them than one batch; one with a real updatedAt keeps it.
func TestMigrateBackfillsSubscriberUpdatedAt(t *testing.T) {
	t.Parallel()
	s, _, db := unmigrated(t)
	ctx := context.Background()
	created := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
	ids := insertOldSubscribers(t, db, 1100, created)
	updated := created.Add(48 * time.Hour)
	if _, err := db.Collection("subscribers").InsertOne(ctx, bson.D{
		{Key: "_id", Value: "sub-current"}, {Key: "tenant", Value: "t1"}, {Key: "groupId", Value: "g1"}, {Key: "email", Value: "current@example.de"},
		{Key: "createdAt", Value: created}, {Key: "updatedAt", Value: updated},
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := s.MigrateWithReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Applied) == 0 || rep.Applied[0].Name != "subscriber-updated-at" || rep.Applied[0].Documents != len(ids) {
		t.Errorf("applied %v; want subscriber-updated-at first, finding %d subscribers", rep.Applied, len(ids))
	}
	checkSubscribersUpdated(t, s, ids, created)
	got, err := s.SubscribersByIDs(ctx, "t1", []string{"sub-current"})
	if err != nil || got["sub-current"] == nil || !got["sub-current"].UpdatedAt.Equal(updated) {
		t.Errorf("a subscriber with an updatedAt: %+v, %v; want it kept at %v", got["sub-current"], err, updated)
	}
}

// insertOldSubscribers stores n subscribers as versions before e7ca639 did: half
// without updatedAt, half with the zero time; it returns their ids.
func insertOldSubscribers(t *testing.T, db *mongo.Database, n int, created time.Time) []string {
	t.Helper()
	docs := make([]any, n)
	ids := make([]string, n)
	for i := range docs {
		ids[i] = fmt.Sprintf("sub-%05d", i)
		doc := bson.D{
			{Key: "_id", Value: ids[i]}, {Key: "tenant", Value: "t1"}, {Key: "groupId", Value: "g1"},
			{Key: "email", Value: fmt.Sprintf("old%d@example.de", i)}, {Key: "fields", Value: bson.D{{Key: "firstName", Value: fmt.Sprintf("Old %d", i)}}},
			{Key: "language", Value: "de"}, {Key: "subscriptionState", Value: store.Subscribed}, {Key: "doubleOptInStatus", Value: store.OptInUnknown},
			{Key: "createdAt", Value: created},
		}
		if i%2 == 1 {
			doc = append(doc, bson.E{Key: "updatedAt", Value: time.Time{}})
		}
		docs[i] = doc
	}
	if _, err := db.Collection("subscribers").InsertMany(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
	return ids
}

func checkSubscribersUpdated(t *testing.T, s *store.Store, ids []string, created time.Time) {
	t.Helper()
	subs, err := s.SubscribersByIDs(context.Background(), "t1", ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != len(ids) {
		t.Fatalf("read %d subscribers; want %d", len(subs), len(ids))
	}
	for _, id := range ids {
		if sub := subs[id]; !sub.UpdatedAt.Equal(created) {
			t.Fatalf("subscriber %s: updatedAt %v; want its createdAt %v", id, sub.UpdatedAt, created)
		}
	}
}

// insertOldSend stores, as versions before ceae79b did, a send going out (no
// claimedTo; recipients without a snapshot of the fields) and a finished one.
func insertOldSend(t *testing.T, db *mongo.Database) {
	t.Helper()
	ctx := context.Background()
	sends := []any{
		bson.D{{Key: "_id", Value: "send-going"}, {Key: "tenant", Value: "t1"}, {Key: "groupId", Value: "g1"}, {Key: "status", Value: store.SendSending},
			{Key: "resolved", Value: true}, {Key: "recipientCount", Value: 3}, {Key: "nextSeq", Value: 2}},
		bson.D{{Key: "_id", Value: "send-done"}, {Key: "tenant", Value: "t1"}, {Key: "groupId", Value: "g1"}, {Key: "status", Value: store.SendSent},
			{Key: "resolved", Value: true}, {Key: "recipientCount", Value: 1}, {Key: "nextSeq", Value: 1}},
	}
	if _, err := db.Collection("campaignSends").InsertMany(ctx, sends); err != nil {
		t.Fatal(err)
	}
	var rs []any
	for seq, sub := range []string{"sub-00000", "sub-00001", "sub-gone"} {
		rs = append(rs, bson.D{{Key: "_id", Value: fmt.Sprintf("send-going|%09d", seq)}, {Key: "tenant", Value: "t1"}, {Key: "sendId", Value: "send-going"},
			{Key: "seq", Value: seq}, {Key: "email", Value: sub + "@example.de"}, {Key: "subscriberId", Value: sub}, {Key: "groupId", Value: "g1"}, {Key: "message", Value: fmt.Sprintf("m%d", seq)}})
	}
	rs = append(rs, bson.D{{Key: "_id", Value: "send-done|000000000"}, {Key: "tenant", Value: "t1"}, {Key: "sendId", Value: "send-done"},
		{Key: "seq", Value: 0}, {Key: "subscriberId", Value: "sub-00000"}, {Key: "groupId", Value: "g1"}, {Key: "message", Value: "m-done"}})
	if _, err := db.Collection("campaignRecipients").InsertMany(ctx, rs); err != nil {
		t.Fatal(err)
	}
}

func checkSendMigrated(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := context.Background()
	going, err := s.SendByID(ctx, "send-going")
	if err != nil {
		t.Fatal(err)
	}
	if going.ClaimedTo != going.RecipientCount {
		t.Errorf("a send going out: claimedTo %d; want its recipient count %d", going.ClaimedTo, going.RecipientCount)
	}
	rs, err := s.Recipients(ctx, "send-going", 0, 3)
	if err != nil || len(rs) != 3 {
		t.Fatalf("recipients: %v, %v", rs, err)
	}
	for i, want := range []string{"Old 0", "Old 1", ""} {
		if got, _ := rs[i].Fields["firstName"].(string); got != want {
			t.Errorf("recipient %d: fields %v; want firstName %q from its subscriber", i, rs[i].Fields, want)
		}
	}
	done, err := s.Recipients(ctx, "send-done", 0, 1)
	if err != nil || len(done) != 1 || done[0].Fields != nil {
		t.Errorf("a finished send's recipient was rewritten: %+v, %v", done, err)
	}
}

func TestMigrateBackfillsCampaignSendsGoingOut(t *testing.T) {
	t.Parallel()
	s, _, db := unmigrated(t)
	insertOldSubscribers(t, db, 2, time.Now().UTC())
	insertOldSend(t, db)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkSendMigrated(t, s)
}

// TestMigrateRefusesAStoreMigratedByANewerVersion: an older binary must not run
// against a newer schema, and says so.
func TestMigrateRefusesAStoreMigratedByANewerVersion(t *testing.T) {
	t.Parallel()
	s, _, db := unmigrated(t)
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.SchemaStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newer := st.Known + 1
	if _, err := db.Collection("schemaMigrations").InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("v%04d", newer)}, {Key: "version", Value: newer}, {Key: "name", Value: "from-the-future"}}); err != nil {
		t.Fatal(err)
	}
	err = s.Migrate(ctx)
	var tooNew *store.SchemaTooNewError
	if !errors.As(err, &tooNew) || tooNew.Recorded != newer || tooNew.Known != st.Known {
		t.Fatalf("Migrate = %v; want a SchemaTooNewError for %d over %d", err, newer, st.Known)
	}
	if !strings.Contains(err.Error(), "newer than this crmsync knows") {
		t.Errorf("message %q does not say the store is newer", err)
	}
	if st, err := s.SchemaStatus(ctx); err != nil || st.Newest != newer || st.Version != newer {
		t.Errorf("status: %+v, %v", st, err)
	}
}

// TestApplyRetentionRemovesEverythingPastIt: one pass removes every processed
// event and finished run older than the retention, past one batch, keeps the
// rest, and records the retention.
func TestApplyRetentionRemovesEverythingPastIt(t *testing.T) {
	t.Parallel()
	s, _, db := unmigrated(t)
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	old, recent := now.Add(-30*24*time.Hour), now.Add(-time.Hour)
	var events, bodies []any
	event := func(id string, status store.InboxStatus, processedAt *time.Time) {
		ev := bson.D{{Key: "_id", Value: id}, {Key: "tenant", Value: "t1"}, {Key: "status", Value: status}, {Key: "receivedAt", Value: old}}
		if processedAt != nil {
			ev = append(ev, bson.E{Key: "processedAt", Value: *processedAt})
		}
		events = append(events, ev)
		bodies = append(bodies, bson.D{{Key: "_id", Value: id}, {Key: "body", Value: "{}"}, {Key: "receivedAt", Value: old}})
	}
	const oldEvents = 1100
	for i := range oldEvents {
		event(fmt.Sprintf("old-%05d", i), store.InboxProcessed, &old)
	}
	event("recent", store.InboxProcessed, &recent)
	event("old-failed", store.InboxFailed, &old)
	event("old-pending", store.InboxPending, nil)
	if _, err := db.Collection("inbox").InsertMany(ctx, events); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("inboxBodies").InsertMany(ctx, bodies); err != nil {
		t.Fatal(err)
	}
	for id, finished := range map[string]time.Time{"old-run": old, "recent-run": recent} {
		run := &store.SyncRun{ID: id, Tenant: "t1", CRMListID: "l1", StartedAt: old}
		if _, err := s.CreateRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		if err := s.StartRun(ctx, run, 1); err != nil {
			t.Fatal(err)
		}
		run.Status, run.FinishedAt = store.RunApplied, &finished
		if err := s.FinishRun(ctx, run); err != nil {
			t.Fatal(err)
		}
	}

	keep := 14 * 24 * time.Hour
	res, err := s.ApplyRetention(ctx, keep)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != oldEvents || res.Runs != 1 {
		t.Errorf("removed %+v; want %d events and 1 run", res, oldEvents)
	}
	for id, want := range map[string]bool{"old-00000": false, "old-01099": false, "recent": true, "old-failed": true, "old-pending": true} {
		if _, err := s.InboxEvent(ctx, id); (err == nil) != want {
			t.Errorf("event %s: %v; want kept %v", id, err, want)
		}
	}
	if _, err := s.Run(ctx, "t1", "old-run"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old run: %v", err)
	}
	if _, err := s.Run(ctx, "t1", "recent-run"); err != nil {
		t.Errorf("recent run: %v", err)
	}
	setting, err := s.Retention(ctx)
	if err != nil || setting.Inbox != keep || setting.RecordedBy == "" {
		t.Errorf("recorded retention: %+v, %v", setting, err)
	}
	if res, err := s.ApplyRetention(ctx, keep); err != nil || res != (store.RetentionResult{}) {
		t.Errorf("second pass: %+v, %v; want nothing removed", res, err)
	}
}
