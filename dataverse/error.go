package dataverse

import "errors"

// ErrNotContext matches every error Decode returns, so the webhook handler can answer
// 400 for any body that is not a RemoteExecutionContext with one errors.Is check.
var ErrNotContext = errors.New("dataverse: not a RemoteExecutionContext")

// DecodeError tells the sender which part of a webhook body is wrong, so a 400 answer
// (and the log line behind it) points at the offending field instead of "bad JSON".
type DecodeError struct {
	// Field is the path of the offending field, such as "MessageName",
	// "PrimaryEntityId" or "InputParameters[2].value"; it is "" when the body as a
	// whole is wrong (empty, not JSON, or JSON that is not an object).
	Field string
	// Reason says what is wrong, such as "missing", "want a string, got number" or
	// "unexpected end of input"; syntax errors name the byte offset.
	Reason string
}

// Error renders the field path and reason in one line that is safe to show a client:
// of the body it echoes only field names (cut and quoted when odd) and at most one
// offending character, never values.
func (e *DecodeError) Error() string {
	if e.Field == "" {
		return ErrNotContext.Error() + ": " + e.Reason
	}
	return ErrNotContext.Error() + ": " + e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrNotContext) true for every DecodeError.
func (e *DecodeError) Unwrap() error { return ErrNotContext }

// prefix prepends one path segment (a field name or an "[i]" index) to the error's
// Field while the decoder unwinds, so paths are built only when something failed.
func (e *DecodeError) prefix(seg string) {
	switch {
	case e.Field == "":
		e.Field = seg
	case e.Field[0] == '[':
		e.Field = seg + e.Field
	default:
		e.Field = seg + "." + e.Field
	}
}
