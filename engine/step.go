package engine

import (
	"context"
	"errors"
	"fmt"

	"crmsync/dataverse"
	"crmsync/store"
)

// Event is what a step works on: the stored event, its decoded context and the
// connection it arrived through.
type Event struct {
	Inbox      *store.InboxEvent
	Context    *dataverse.ExecutionContext
	Connection *store.Connection

	warnings []string
}

// Warn records something a step could not apply in full (an unknown option value, a
// refused status): the event still succeeds, and the warning is its sync event's detail.
func (ev *Event) Warn(msg string) { ev.warnings = append(ev.warnings, msg) }

// Step is one unit of sync logic. Steps must be idempotent and order-insensitive:
// the same events applied twice, or in another order, leave the same state.
type Step interface {
	Apply(ctx context.Context, ev *Event) error
}

// BatchStep is a Step that can also apply many events at once, so work that costs
// a remote request per event (a write to the CRM) is shared by the events of one
// read. The engine hands it consecutive events whose only step it is, in stream
// order; it returns one outcome per event, in the same order, and a failure of one
// event must not fail the others. Events about one record may appear more than
// once; the step applies them as their order requires.
type BatchStep interface {
	Step
	ApplyBatch(ctx context.Context, evs []*Event) []error
}

// StepFunc adapts a function to a Step, as http.HandlerFunc does for handlers.
type StepFunc func(ctx context.Context, ev *Event) error

// Apply calls f.
func (f StepFunc) Apply(ctx context.Context, ev *Event) error { return f(ctx, ev) }

// StepKey is what a step is registered for: a message on a table at a stage.
type StepKey struct {
	Message string
	Entity  string
	Stage   int
}

func (k StepKey) String() string { return fmt.Sprintf("%s/%s/%d", k.Message, k.Entity, k.Stage) }

// Registry maps step keys to the steps that run, in registration order.
type Registry struct {
	steps map[StepKey][]Step
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{steps: map[StepKey][]Step{}} }

// Handle registers s for key.
func (r *Registry) Handle(key StepKey, s Step) {
	r.steps[key] = append(r.steps[key], s)
}

// Steps returns the steps registered for key.
func (r *Registry) Steps(key StepKey) []Step { return r.steps[key] }

// PermanentError marks a failure that retrying cannot fix (a malformed event, a
// deleted connection): the event fails at once instead of after every attempt.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError.
func Permanent(err error) error { return &PermanentError{Err: err} }

func isPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
