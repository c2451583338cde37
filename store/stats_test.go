package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"crmsync/store"
	"crmsync/store/storetest"
)

// statsNow is the clock of the statistics tests.
var statsNow = time.Date(2026, 11, 2, 10, 30, 20, 0, time.UTC)

func openAt(t *testing.T, now time.Time) *store.Store {
	t.Helper()
	return storetest.Open(t, func(c *store.Config) { c.Now = func() time.Time { return now } })
}

// inboxEvent is one event for addEvents: received ago before statsNow, then
// finished with status (pending when empty).
type inboxEvent struct {
	tenant, conn, source string
	ago                  time.Duration
	status               store.InboxStatus
}

func addEvents(t *testing.T, s *store.Store, evs ...inboxEvent) {
	t.Helper()
	ctx := context.Background()
	docs := make([]*store.InboxEvent, len(evs))
	for i, e := range evs {
		docs[i] = &store.InboxEvent{ID: fmt.Sprintf("%s-%s-%d", e.tenant, e.conn, i), Tenant: e.tenant, ConnectionID: e.conn, Source: e.source,
			Message: "Update", Entity: "contact", RecordID: fmt.Sprintf("row%d", i), Body: "{}", ReceivedAt: statsNow.Add(-e.ago)}
	}
	if _, err := s.AddInboxEvents(ctx, docs); err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.status != "" && e.status != store.InboxPending {
			if err := s.FinishInboxEvent(ctx, docs[i].ID, e.status, 1, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestSyncStatsCountsPerMinuteDirectionAndStatus: events since the minute of since
// are counted by the minute they arrived, their direction (from their source) and
// their status now; other connections, tenants and older events are not.
func TestSyncStatsCountsPerMinuteDirectionAndStatus(t *testing.T) {
	t.Parallel()
	s := openAt(t, statsNow)
	ok, failed := store.InboxProcessed, store.InboxFailed
	addEvents(t, s,
		inboxEvent{"acme", "c1", "dataverse", 10 * time.Second, ok},  // 10:30
		inboxEvent{"acme", "c1", "dataverse", 15 * time.Second, ok},  // 10:30
		inboxEvent{"acme", "c1", "sweep", 18 * time.Second, failed},  // 10:30
		inboxEvent{"acme", "c1", "ems", 5 * time.Second, ""},         // 10:30
		inboxEvent{"acme", "c1", "reaction", 90 * time.Second, ok},   // 10:28
		inboxEvent{"acme", "c1", "dataverse", 25 * time.Minute, ok},  // 10:05
		inboxEvent{"acme", "c1", "dataverse", 40 * time.Minute, ok},  // 09:50, before since
		inboxEvent{"acme", "c2", "dataverse", time.Minute, ok},       // another connection
		inboxEvent{"globex", "c1", "dataverse", time.Minute, failed}, // another tenant
	)
	st, err := s.SyncStats(context.Background(), "acme", "c1", statsNow.Add(-30*time.Minute)) // 10:00:20 → from 10:00
	if err != nil {
		t.Fatal(err)
	}
	at := func(hm string) time.Time {
		t, _ := time.Parse("2006-01-02 15:04", "2026-11-02 "+hm)
		return t
	}
	want := []store.SyncStatsBucket{
		{Minute: at("10:05"), Direction: store.CRMToEMS, Status: ok, Count: 1},
		{Minute: at("10:28"), Direction: store.EMSToCRM, Status: ok, Count: 1},
		{Minute: at("10:30"), Direction: store.CRMToEMS, Status: ok, Count: 2},
		{Minute: at("10:30"), Direction: store.CRMToEMS, Status: failed, Count: 1},
		{Minute: at("10:30"), Direction: store.EMSToCRM, Status: store.InboxPending, Count: 1},
	}
	if !reflect.DeepEqual(want, st.Buckets) {
		t.Errorf("buckets\n got %+v\nwant %+v", st.Buckets, want)
	}
	if st.Total != 6 || st.Truncated || !st.Since.Equal(at("10:00")) || !st.Until.Equal(statsNow) {
		t.Errorf("total %d, truncated %v, since %s, until %s", st.Total, st.Truncated, st.Since, st.Until)
	}
}

// TestSyncStatsRefusesSpansOutOfBounds: since may reach back a day (a minute of
// slack for clocks) and may not lie ahead.
func TestSyncStatsRefusesSpansOutOfBounds(t *testing.T) {
	t.Parallel()
	s := openAt(t, statsNow)
	ctx := context.Background()
	for name, since := range map[string]time.Time{
		"two days back": statsNow.Add(-48 * time.Hour),
		"a day and 2 m": statsNow.Add(-store.MaxStatsSpan - 2*time.Minute),
		"an hour ahead": statsNow.Add(time.Hour),
	} {
		_, err := s.SyncStats(ctx, "acme", "c1", since)
		var inv *store.InvalidError
		if !errors.As(err, &inv) || inv.Field != "since" {
			t.Errorf("%s: %v, want an invalid since", name, err)
		}
	}
	for name, since := range map[string]time.Time{
		"a day back": statsNow.Add(-store.MaxStatsSpan),
		"now":        statsNow.Add(time.Second),
	} {
		if st, err := s.SyncStats(ctx, "acme", "c1", since); err != nil || st.Total != 0 {
			t.Errorf("%s: %+v, %v", name, st, err)
		}
	}
}

// TestConnectionActivity: the last hour's outcomes, every dead letter, the oldest
// pending event and the newest event of each connection, even one idle for longer
// than the hour, and its last check; none of another tenant's.
func TestConnectionActivity(t *testing.T) {
	t.Parallel()
	s := openAt(t, statsNow)
	ctx := context.Background()
	ok, failed := store.InboxProcessed, store.InboxFailed
	addEvents(t, s,
		inboxEvent{"acme", "busy", "dataverse", time.Minute, ok},
		inboxEvent{"acme", "busy", "ems", 2 * time.Minute, failed},
		inboxEvent{"acme", "busy", "dataverse", 3 * time.Minute, ""},
		inboxEvent{"acme", "busy", "dataverse", 9 * time.Minute, ""},
		inboxEvent{"acme", "busy", "dataverse", 5 * time.Hour, failed}, // an old dead letter
		inboxEvent{"acme", "idle", "dataverse", 3 * time.Hour, ok},
		inboxEvent{"acme", "idle", "dataverse", 2 * time.Hour, ok},
		inboxEvent{"globex", "busy", "dataverse", time.Minute, failed},
	)
	for _, c := range []*store.ConnectionCheck{
		{Tenant: "acme", ConnectionID: "busy", OK: true, Detail: "old", At: statsNow.Add(-time.Hour)},
		{Tenant: "acme", ConnectionID: "busy", OK: false, Detail: "refused", LatencyMs: 12, At: statsNow.Add(-time.Minute)},
		{Tenant: "globex", ConnectionID: "idle", OK: false, Detail: "not acme's", At: statsNow},
	} {
		if err := s.SaveConnectionCheck(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ConnectionActivity(ctx, "acme", []string{"busy", "idle", "new"})
	if err != nil {
		t.Fatal(err)
	}
	ago := func(d time.Duration) *time.Time { t := statsNow.Add(-d); return &t }
	busy, idle, fresh := got["busy"], got["idle"], got["new"]
	if busy.Applied != 1 || busy.Failed != 1 || busy.Pending != 2 || busy.DeadLetters != 2 ||
		!busy.OldestPendingAt.Equal(*ago(9 * time.Minute)) || !busy.LastEventAt.Equal(*ago(time.Minute)) {
		t.Errorf("busy: %+v", busy)
	}
	if c := busy.LastCheck; c == nil || c.OK || c.Detail != "refused" || c.LatencyMs != 12 || !c.At.Equal(*ago(time.Minute)) {
		t.Errorf("busy's check: %+v", c)
	}
	if idle.Applied+idle.Failed+idle.Pending != 0 || idle.DeadLetters != 0 || idle.LastCheck != nil ||
		idle.LastEventAt == nil || !idle.LastEventAt.Equal(*ago(2 * time.Hour)) {
		t.Errorf("idle: %+v", idle)
	}
	if !reflect.DeepEqual(fresh, &store.ConnectionActivity{}) {
		t.Errorf("a connection without events: %+v", fresh)
	}
}

func TestDirectionFollowsTheSource(t *testing.T) {
	t.Parallel()
	for source, want := range map[string]store.SyncDirection{
		"dataverse": store.CRMToEMS, "sweep": store.CRMToEMS, "": store.CRMToEMS,
		"ems": store.EMSToCRM, "reaction": store.EMSToCRM,
	} {
		if got := (&store.InboxEvent{Source: source}).Direction(); got != want {
			t.Errorf("source %q: %s, want %s", source, got, want)
		}
	}
}
