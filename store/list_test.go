package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"crmsync/store"
	"crmsync/store/storetest"
)

// listFixture makes a connection, a list of contacts and a group linked to it.
func listFixture(t *testing.T, s *store.Store) (*store.MarketingList, *store.Group) {
	t.Helper()
	ctx := context.Background()
	c, err := s.CreateConnection(ctx, "t1", validConnection())
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.SaveListFromCRM(ctx, "t1", c.ID, store.ListFromCRM{
		CRMListID: "AAAAAAAA-0000-0000-0000-000000000001", Name: "Newsletter", Type: store.ListDynamic, MemberType: store.RecipientContact, SyncToEMS: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.CreateGroup(ctx, "t1", store.GroupInput{Name: l.Name, ConnectionID: c.ID, CRMSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LinkList(ctx, l, g.ID, nil); err != nil {
		t.Fatal(err)
	}
	return l, g
}

func contactMember(id, email string) store.CRMMember {
	return store.CRMMember{Ref: store.CRMRecordRef{Entity: store.RecipientContact, ID: id}, Email: email}
}

func applyName(name string) store.MemberApply {
	return func(m store.CRMMember, sub *store.Subscriber, isNew bool) (bool, string) {
		if sub.CRMRecord != nil && *sub.CRMRecord != m.Ref {
			return false, "linked to another record"
		}
		changed := sub.Fields["firstName"] != name || sub.CRMRecord == nil
		sub.Fields["firstName"] = name
		ref := m.Ref
		sub.CRMRecord = &ref
		return changed, ""
	}
}

func TestListMembersJoinLeaveAndComeBack(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	l, g := listFixture(t, s)
	if l.CRMListID != "aaaaaaaa-0000-0000-0000-000000000001" {
		t.Errorf("list id not normalised: %q", l.CRMListID)
	}

	// An eMS subscriber with one of the addresses exists already: it is adopted.
	res, err := s.UpsertSubscribers(ctx, "t1", g.ID, []store.SubscriberInput{{Email: "b@example.com", Fields: map[string]any{"note": "kept"}}})
	if err != nil || res.Created != 1 {
		t.Fatalf("upsert: %+v, %v", res, err)
	}
	adopted := res.Changed[0]

	members := []store.CRMMember{contactMember("c1", "a@example.com"), contactMember("c2", "b@example.com"), contactMember("c3", "")}
	out, err := s.ApplyListMembers(ctx, l, false, members, applyName("Ann"))
	if err != nil {
		t.Fatal(err)
	}
	if !out[0].Created || !out[0].Joined || out[1].Created || out[1].SubscriberID != adopted || !out[1].Joined {
		t.Errorf("outcomes = %+v", out)
	}
	if out[2].Skipped == "" || out[2].SubscriberID != "" {
		t.Errorf("a member without an address must be skipped with a reason: %+v", out[2])
	}
	if n, _ := s.CountListMembers(ctx, "t1", l.CRMListID); n != 2 {
		t.Errorf("members = %d, want 2", n)
	}
	sub, err := s.SubscriberByCRMRecord(ctx, "t1", g.ID, store.CRMRecordRef{Entity: store.RecipientContact, ID: "c2"})
	if err != nil || sub.ID != adopted || sub.Fields["note"] != "kept" || sub.Fields["firstName"] != "Ann" {
		t.Fatalf("adopted subscriber = %+v, %v", sub, err)
	}

	// The same members again: nothing joins, nothing changes.
	out, err = s.ApplyListMembers(ctx, l, false, members[:2], applyName("Ann"))
	if err != nil || out[0].Joined || out[0].Changed || out[1].Joined {
		t.Fatalf("second apply = %+v, %v", out, err)
	}

	// A run that saw only c1 removes c2, which leaves the group keeping its data.
	var gone []store.ListMember
	err = s.EachListMember(ctx, l, 1, func(page []store.ListMember) error {
		if len(page) != 1 {
			t.Errorf("a page of %d members, want batches of 1", len(page))
		}
		if page[0].RecordID == "c2" {
			gone = append(gone, page...)
		}
		return nil
	})
	if err != nil || len(gone) != 1 || gone[0].SubscriberID != adopted || gone[0].Email != "b@example.com" {
		t.Fatalf("members = %+v, %v", gone, err)
	}
	if err := s.RemoveMembersByID(ctx, l, gone); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountSubscribers(ctx, "t1", g.ID); n != 1 {
		t.Errorf("group counts %d subscribers after the removal, want 1", n)
	}
	removed, err := s.Subscriber(ctx, "t1", adopted)
	if err != nil || removed.RemovedAt == nil || removed.Fields["note"] != "kept" {
		t.Fatalf("removed subscriber = %+v, %v; want kept with RemovedAt", removed, err)
	}

	// Added again (by a membership event, no run): the same subscriber returns.
	out, err = s.ApplyListMembers(ctx, l, false, members[1:2], applyName("Ann"))
	if err != nil || out[0].SubscriberID != adopted || !out[0].Joined || out[0].Created {
		t.Fatalf("re-add = %+v, %v", out, err)
	}
	if back, _ := s.Subscriber(ctx, "t1", adopted); back.RemovedAt != nil {
		t.Error("re-added subscriber still marked removed")
	}

	// RemoveMember of c1 by event.
	left, err := s.RemoveListMembers(ctx, l, []string{"C1"})
	if err != nil || len(left) != 1 || left[0].Email != "a@example.com" {
		t.Fatalf("RemoveListMembers = %+v, %v", left, err)
	}
}

func TestDryRunWritesNoMembers(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	l, g := listFixture(t, s)
	members := []store.CRMMember{contactMember("c1", "a@example.com")}
	out, err := s.ApplyListMembers(ctx, l, true, members, applyName("Ann"))
	if err != nil || !out[0].Created || !out[0].Joined {
		t.Fatalf("dry apply = %+v, %v", out, err)
	}
	if n, _ := s.CountSubscribers(ctx, "t1", g.ID); n != 0 {
		t.Errorf("a dry run created %d subscribers", n)
	}
	if n, _ := s.CountListMembers(ctx, "t1", l.CRMListID); n != 0 {
		t.Errorf("a dry run recorded %d members", n)
	}
}

func TestLinkListOnePerMemberType(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	l, g := listFixture(t, s)
	other, err := s.SaveListFromCRM(ctx, "t1", l.ConnectionID, store.ListFromCRM{CRMListID: "l2", Name: "Other", Type: store.ListStatic, MemberType: store.RecipientContact})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LinkList(ctx, other, g.ID, nil); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second contact list on one group: err = %v, want conflict", err)
	}
	leads, err := s.SaveListFromCRM(ctx, "t1", l.ConnectionID, store.ListFromCRM{CRMListID: "l3", Name: "Leads", Type: store.ListStatic, MemberType: store.RecipientLead})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LinkList(ctx, leads, g.ID, nil); err != nil {
		t.Errorf("a lead list next to a contact list: %v", err)
	}
	if got, _ := s.ListsOfGroup(ctx, "t1", g.ID); len(got) != 2 {
		t.Errorf("group links %d lists, want 2", len(got))
	}
	if _, err := s.List(ctx, "t2", l.CRMListID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant's list: %v", err)
	}
}

func TestRunIsFencedAndOncePerID(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	r := &store.SyncRun{ID: "sched-1", Tenant: "t1", CRMListID: "l1", Trigger: store.TriggerSchedule}
	if created, err := s.CreateRun(ctx, r); err != nil || !created {
		t.Fatalf("CreateRun = %v, %v", created, err)
	}
	if created, err := s.CreateRun(ctx, &store.SyncRun{ID: "sched-1", Tenant: "t1", CRMListID: "l1"}); err != nil || created {
		t.Fatalf("second CreateRun with one id = %v, %v; want not created", created, err)
	}
	old := *r
	if err := s.StartRun(ctx, &old, 1); err != nil {
		t.Fatal(err)
	}
	// A newer runner (token 2) takes over; the old one's writes are refused.
	if err := s.StartRun(ctx, r, 2); err != nil {
		t.Fatal(err)
	}
	old.Added = 5
	if err := s.CheckpointRun(ctx, &old, []store.SyncChange{{Email: "x@example.com", Action: store.ChangeAdd}}); !errors.Is(err, store.ErrFenced) {
		t.Errorf("stale checkpoint: %v, want ErrFenced", err)
	}
	if err := s.StartRun(ctx, &old, 1); !errors.Is(err, store.ErrFenced) {
		t.Errorf("stale start: %v, want ErrFenced", err)
	}
	r.Added = 1
	if err := s.CheckpointRun(ctx, r, []store.SyncChange{{Email: "a@example.com", Action: store.ChangeAdd, Applied: true}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	r.Status, r.FinishedAt = store.RunApplied, &now
	if err := s.FinishRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Run(ctx, "t1", "sched-1")
	if err != nil || got.Status != store.RunApplied || got.Added != 1 || got.Changes != 1 {
		t.Fatalf("run = %+v, %v", got, err)
	}
	changes, more, err := s.ChangesPage(ctx, got, "", 10)
	if err != nil || more || len(changes) != 1 || changes[0].Email != "a@example.com" {
		t.Errorf("changes = %+v, %v, %v; the stale runner's change must not be there", changes, more, err)
	}
	if runs, _ := s.RunnableRuns(ctx, time.Now().Add(time.Hour), 10); len(runs) != 0 {
		t.Errorf("a finished run is runnable: %+v", runs)
	}
}

func TestScheduleFiresOncePerDueTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s := storetest.Open(t, func(c *store.Config) { c.Now = clock })
	ctx := context.Background()
	l, _ := listFixture(t, s)
	hourly := store.IntervalHourly
	l, err := s.SetListSchedule(ctx, "t1", l.CRMListID, true, &hourly, nil)
	if err != nil || l.NextSyncAt == nil || !l.NextSyncAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("schedule = %+v, %v", l, err)
	}
	if _, err := s.SetListSchedule(ctx, "t1", l.CRMListID, true, nil, nil); err == nil {
		t.Error("periodic without an interval was accepted")
	}
	pit := store.IntervalPointInTime
	if _, err := s.SetListSchedule(ctx, "t1", l.CRMListID, true, &pit, nil); err == nil {
		t.Error("a point in time without syncAt was accepted")
	}

	// Three and a half hours later (the instance was down): due once, next at 14:00.
	now = now.Add(3*time.Hour + 30*time.Minute)
	due, err := s.DueLists(ctx, now, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due = %d, %v", len(due), err)
	}
	first, second := *due[0], *due[0]
	ok1, err1 := s.AdvanceSchedule(ctx, &first, *due[0].NextSyncAt)
	ok2, err2 := s.AdvanceSchedule(ctx, &second, *due[0].NextSyncAt)
	if err1 != nil || err2 != nil || !ok1 || ok2 {
		t.Fatalf("two instances advancing one due time: %v %v, %v %v; want exactly one", ok1, err1, ok2, err2)
	}
	if want := time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC); !first.NextSyncAt.Equal(want) {
		t.Errorf("next = %v, want %v", first.NextSyncAt, want)
	}
	if due, _ := s.DueLists(ctx, now, 10); len(due) != 0 {
		t.Errorf("still due after advancing: %d", len(due))
	}
}

// TestDeletedSubscriberLeavesItsListsWithoutItsAddress: deleting a subscriber ends
// its memberships and erases its address from them; the engine reads which CRM
// records to take out of the lists, then drops them.
func TestDeletedSubscriberLeavesItsListsWithoutItsAddress(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	l, _ := listFixture(t, s)
	out, err := s.ApplyListMembers(ctx, l, false, []store.CRMMember{contactMember("c1", "a@example.com")}, applyName("Ann"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSubscriber(ctx, "t1", out[0].SubscriberID, "tester"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountListMembers(ctx, "t1", l.CRMListID); n != 0 {
		t.Errorf("%d members after the delete", n)
	}
	ms, err := s.SubscriberMemberships(ctx, "t1", out[0].SubscriberID)
	if err != nil || len(ms) != 1 || ms[0].RecordID != "c1" || ms[0].CRMListID != l.CRMListID {
		t.Fatalf("memberships = %+v, %v", ms, err)
	}
	var gone []store.ListMember
	_ = s.EachListMember(ctx, l, 10, func(p []store.ListMember) error { gone = append(gone, p...); return nil })
	if len(gone) != 0 {
		t.Errorf("active members %+v", gone)
	}
	if err := s.DropSubscriberMemberships(ctx, "t1", out[0].SubscriberID); err != nil {
		t.Fatal(err)
	}
	if ms, _ := s.SubscriberMemberships(ctx, "t1", out[0].SubscriberID); len(ms) != 0 {
		t.Errorf("memberships after the drop: %+v", ms)
	}
}

func TestRunRetentionKeepsPendingAndRecentRuns(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	now := time.Now().UTC()
	old, recent := now.Add(-30*24*time.Hour), now.Add(-time.Hour)
	for _, r := range []struct {
		id       string
		finished *time.Time
	}{{"old", &old}, {"recent", &recent}, {"pending", nil}} {
		run := &store.SyncRun{ID: r.id, Tenant: "t1", CRMListID: "l1", StartedAt: old}
		if _, err := s.CreateRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		if err := s.StartRun(ctx, run, 1); err != nil {
			t.Fatal(err)
		}
		if err := s.CheckpointRun(ctx, run, []store.SyncChange{{Email: r.id + "@example.com", Action: store.ChangeAdd}}); err != nil {
			t.Fatal(err)
		}
		if r.finished != nil {
			run.Status, run.FinishedAt = store.RunApplied, r.finished
			if err := s.FinishRun(ctx, run); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := s.DeleteRunsBefore(ctx, now.Add(-14*24*time.Hour), 100); err != nil || n != 1 {
		t.Fatalf("DeleteRunsBefore = %d, %v; want the one old finished run", n, err)
	}
	if _, err := s.Run(ctx, "t1", "old"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old run: %v", err)
	}
	if changes, _, _ := s.ChangesPage(ctx, &store.SyncRun{ID: "old", Fence: 1}, "", 10); len(changes) != 0 {
		t.Errorf("the old run's changes stayed: %v", changes)
	}
	for _, id := range []string{"recent", "pending"} {
		r, err := s.Run(ctx, "t1", id)
		if err != nil {
			t.Fatalf("%s run: %v", id, err)
		}
		if changes, _, _ := s.ChangesPage(ctx, r, "", 10); len(changes) != 1 {
			t.Errorf("%s run lost its changes: %v", id, changes)
		}
	}
	if n, _ := s.DeleteRunsBefore(ctx, now.Add(-14*24*time.Hour), 100); n != 0 {
		t.Errorf("second pass removed %d", n)
	}
}

// TestListMemberSubscribersHaveTheirTimes: a subscriber a list sync creates has
// its creation and update times (the API's non-null updatedAt).
func TestListMemberSubscribersHaveTheirTimes(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	l, g := listFixture(t, s)
	if _, err := s.ApplyListMembers(ctx, l, false, []store.CRMMember{contactMember("c-times", "times@example.de")}, applyName("T")); err != nil {
		t.Fatal(err)
	}
	sub, err := s.SubscriberByEmail(ctx, "t1", g.ID, "times@example.de")
	if err != nil || sub.CreatedAt.IsZero() || sub.UpdatedAt.IsZero() {
		t.Fatalf("subscriber from a list: %+v, %v", sub, err)
	}
}
