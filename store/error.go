package store

import (
	"errors"
	"fmt"
)

// ErrNotFound is returned when a document does not exist or belongs to another tenant;
// callers cannot tell the two apart, which is the point.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a change contradicts the current state, such as
// changing a connection's recipient type after it was set.
var ErrConflict = errors.New("conflict")

// ErrUnavailable wraps failures of the database itself, so HTTP callers can answer
// "try again" (503) rather than "you sent something wrong".
var ErrUnavailable = errors.New("store unavailable")

// InvalidError reports input that cannot be stored, naming the field so an API can
// point the caller at it.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ConflictError explains a conflict while still matching ErrConflict with errors.Is.
type ConflictError struct {
	Field  string
	Reason string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict on %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrConflict) hold for every ConflictError.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}
