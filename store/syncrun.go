package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// RunStatus is where a list sync run stands (the API's SyncStatus).
type RunStatus string

// The run statuses: PENDING until it finishes, then APPLIED, SKIPPED (a dry run)
// or FAILED.
const (
	RunPending RunStatus = "PENDING"
	RunApplied RunStatus = "APPLIED"
	RunSkipped RunStatus = "SKIPPED"
	RunFailed  RunStatus = "FAILED"
)

// What started a run.
const (
	TriggerManual   = "manual"
	TriggerSchedule = "schedule"
	TriggerCRM      = "crm"
)

// SyncRun is one full reconcile of a marketing list with its group.
type SyncRun struct {
	ID           string     `bson:"_id"`
	Tenant       string     `bson:"tenant"`
	ConnectionID string     `bson:"connectionId"`
	CRMListID    string     `bson:"crmListId"`
	DryRun       bool       `bson:"dryRun"`
	Trigger      string     `bson:"trigger"`
	Status       RunStatus  `bson:"status"`
	Added        int        `bson:"added"`
	Removed      int        `bson:"removed"`
	Updated      int        `bson:"updated"`
	Changes      int        `bson:"changes"`
	StartedAt    time.Time  `bson:"startedAt"`
	FinishedAt   *time.Time `bson:"finishedAt,omitempty"`
	Error        *string    `bson:"error,omitempty"`
	Attempts     int        `bson:"attempts"`
	// NextAttemptAt is when a pending run may start (again, after a failure).
	NextAttemptAt time.Time `bson:"nextAttemptAt"`
	// Fence is the fencing token of the job lease its current runner holds: the
	// store takes a runner's writes only while the run carries its token.
	Fence int64 `bson:"fence"`
}

// SyncChange is one member a run added, removed or updated (or would have).
type SyncChange struct {
	ID    string `bson:"_id"` // run id | fence | sequence
	RunID string `bson:"runId"`
	// Fence is the token of the runner that recorded the change: only the changes
	// of the run's current runner are its changes.
	Fence   int64        `bson:"fence"`
	Email   string       `bson:"email"`
	Action  ChangeAction `bson:"action"`
	Applied bool         `bson:"applied"`
}

// ChangeAction is what a run did to a member.
type ChangeAction string

// The change actions.
const (
	ChangeAdd    ChangeAction = "ADD"
	ChangeRemove ChangeAction = "REMOVE"
	ChangeUpdate ChangeAction = "UPDATE"
)

// ErrFenced is returned to a runner whose fencing token is no longer the run's: a
// newer runner took the run over, and the old one must stop.
var ErrFenced = errors.New("the run was taken over by another runner")

// CreateRun stores a new pending run. A run whose id exists already is left alone
// and reported with created false: ids derived from a schedule's due time or an
// event's id make each run happen once.
func (s *Store) CreateRun(ctx context.Context, r *SyncRun) (created bool, err error) {
	r.Status = RunPending
	if r.StartedAt.IsZero() {
		r.StartedAt = s.now().UTC()
	}
	if r.NextAttemptAt.IsZero() {
		r.NextAttemptAt = r.StartedAt
	}
	dup, err := insertManyIgnoringDuplicates(ctx, s.db.Collection(colRuns), []any{r})
	if err != nil {
		return false, err
	}
	return !dup[0], nil
}

// Run loads one of the tenant's runs.
func (s *Store) Run(ctx context.Context, tenant, id string) (*SyncRun, error) {
	var r SyncRun
	if err := s.findOwned(ctx, colRuns, tenant, id, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RunnableRuns lists pending runs, of every tenant, whose next attempt is due.
func (s *Store) RunnableRuns(ctx context.Context, now time.Time, limit int) ([]*SyncRun, error) {
	return findAll[SyncRun](ctx, s.db.Collection(colRuns), "runnable runs", bson.D{
		{Key: "status", Value: RunPending},
		{Key: "nextAttemptAt", Value: bson.D{{Key: "$lte", Value: now.UTC()}}},
	}, options.Find().SetSort(bson.D{{Key: "nextAttemptAt", Value: 1}}).SetLimit(int64(limit)))
}

// RunsPage lists a list's runs, newest first, after the given run id.
func (s *Store) RunsPage(ctx context.Context, tenant, crmListID, afterID string, first int) ([]*SyncRun, bool, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}, {Key: "crmListId", Value: crmListID}}
	if afterID != "" {
		after, err := s.Run(ctx, tenant, afterID)
		if err != nil {
			return nil, false, invalid("after", "the cursor names no run of this list")
		}
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "startedAt", Value: bson.D{{Key: "$lt", Value: after.StartedAt}}}},
			bson.D{{Key: "startedAt", Value: after.StartedAt}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: after.ID}}}},
		}})
	}
	return findPage[SyncRun](ctx, s.db.Collection(colRuns), "runs", filter, bson.D{{Key: "startedAt", Value: -1}, {Key: "_id", Value: -1}}, first)
}

// CountRuns counts a list's runs.
func (s *Store) CountRuns(ctx context.Context, tenant, crmListID string) (int, error) {
	n, err := s.db.Collection(colRuns).CountDocuments(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "crmListId", Value: crmListID}})
	if err != nil {
		return 0, unavailable("count runs", err)
	}
	return int(n), nil
}

// StartRun hands a pending run to the runner holding fencing token fence. It fails
// with ErrFenced when the run is no longer pending or a runner with a newer token
// has it. Counts and changes of an earlier, interrupted attempt are discarded:
// the run starts over.
func (s *Store) StartRun(ctx context.Context, r *SyncRun, fence int64) error {
	res, err := s.db.Collection(colRuns).UpdateOne(ctx, bson.D{
		{Key: "_id", Value: r.ID}, {Key: "status", Value: RunPending}, {Key: "fence", Value: bson.D{{Key: "$lt", Value: fence}}},
	}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "fence", Value: fence}, {Key: "added", Value: 0}, {Key: "removed", Value: 0}, {Key: "updated", Value: 0}, {Key: "changes", Value: 0},
	}}})
	if err != nil {
		return unavailable("start run", err)
	}
	if res.MatchedCount == 0 {
		return ErrFenced
	}
	if _, err := s.db.Collection(colChanges).DeleteMany(ctx, bson.D{{Key: "runId", Value: r.ID}, {Key: "fence", Value: bson.D{{Key: "$lt", Value: fence}}}}); err != nil {
		return unavailable("start run", err)
	}
	r.Fence, r.Added, r.Removed, r.Updated, r.Changes = fence, 0, 0, 0, 0
	return nil
}

// CheckpointRun records a run's counts so far and the changes of its last step,
// if its runner still holds the run (else ErrFenced: stop).
func (s *Store) CheckpointRun(ctx context.Context, r *SyncRun, changes []SyncChange) error {
	if len(changes) > 0 {
		docs := make([]any, len(changes))
		for i := range changes {
			changes[i].RunID, changes[i].Fence = r.ID, r.Fence
			changes[i].ID = fmt.Sprintf("%s|%012d|%09d", r.ID, r.Fence, r.Changes+i)
			docs[i] = changes[i]
		}
		if _, err := s.db.Collection(colChanges).InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil && !mongo.IsDuplicateKeyError(err) {
			return unavailable("record run changes", err)
		}
		r.Changes += len(changes)
	}
	return s.updateFenced(ctx, r, bson.D{
		{Key: "added", Value: r.Added}, {Key: "removed", Value: r.Removed}, {Key: "updated", Value: r.Updated}, {Key: "changes", Value: r.Changes},
	}, nil)
}

// FinishRun records a run's outcome: status and error, or — for an attempt that
// failed and will be retried — the error and when to try again.
func (s *Store) FinishRun(ctx context.Context, r *SyncRun) error {
	set := bson.D{
		{Key: "status", Value: r.Status}, {Key: "attempts", Value: r.Attempts}, {Key: "nextAttemptAt", Value: r.NextAttemptAt},
		{Key: "added", Value: r.Added}, {Key: "removed", Value: r.Removed}, {Key: "updated", Value: r.Updated}, {Key: "changes", Value: r.Changes},
	}
	if r.FinishedAt != nil {
		set = append(set, bson.E{Key: "finishedAt", Value: *r.FinishedAt})
	}
	var unset bson.D
	if r.Error != nil {
		set = append(set, bson.E{Key: "error", Value: *r.Error})
	} else {
		unset = bson.D{{Key: "error", Value: ""}}
	}
	return s.updateFenced(ctx, r, set, unset)
}

func (s *Store) updateFenced(ctx context.Context, r *SyncRun, set, unset bson.D) error {
	update := bson.D{{Key: "$set", Value: set}}
	if len(unset) > 0 {
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	res, err := s.db.Collection(colRuns).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: r.ID}, {Key: "fence", Value: r.Fence}}, update)
	if err != nil {
		return unavailable("update run", err)
	}
	if res.MatchedCount == 0 {
		return ErrFenced
	}
	return nil
}

// ChangesPage lists a run's changes in order after the given change id: those its
// current runner recorded.
func (s *Store) ChangesPage(ctx context.Context, r *SyncRun, afterID string, first int) ([]*SyncChange, bool, error) {
	filter := bson.D{{Key: "runId", Value: r.ID}, {Key: "fence", Value: r.Fence}}
	if afterID != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: afterID}}})
	}
	return findPage[SyncChange](ctx, s.db.Collection(colChanges), "run changes", filter, byID, first)
}

// DeleteRunsBefore removes up to limit runs, of every tenant, that finished before
// the given time, with their changes, and reports how many it removed; the
// scheduler applies the same retention as the inbox, so that the collections it
// looks through stay bounded.
func (s *Store) DeleteRunsBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	old, err := findAll[SyncRun](ctx, s.db.Collection(colRuns), "finished runs", bson.D{
		{Key: "status", Value: bson.D{{Key: "$ne", Value: RunPending}}},
		{Key: "finishedAt", Value: bson.D{{Key: "$lt", Value: before.UTC()}}},
	}, options.Find().SetLimit(int64(limit)).SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil || len(old) == 0 {
		return 0, err
	}
	ids := make(bson.A, len(old))
	for i, r := range old {
		ids[i] = r.ID
	}
	if _, err := s.db.Collection(colChanges).DeleteMany(ctx, bson.D{{Key: "runId", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
		return 0, unavailable("delete old run changes", err)
	}
	if _, err := s.db.Collection(colRuns).DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
		return 0, unavailable("delete old runs", err)
	}
	return len(old), nil
}
