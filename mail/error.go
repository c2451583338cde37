package mail

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidMessage is wrapped by every error about a Message that cannot be sent as
// built (a missing recipient, a line break in a header); retrying cannot help.
var ErrInvalidMessage = errors.New("invalid message")

// ErrClosed is returned by Send after Close, so a shutdown does not look like an outage.
var ErrClosed = errors.New("mail: sender closed")

// ErrBadToken is the one answer Verify gives for every token it does not accept, so a
// caller cannot learn which part of a forged token was wrong.
var ErrBadToken = errors.New("mail: bad token")

// Rejected is a hard bounce: the recipient's server refused the address for good at
// RCPT TO, and sending to it again would only hurt the sender's reputation.
type Rejected struct {
	Code     int    // SMTP reply code, 5xx
	Enhanced string // enhanced status code such as "5.1.1", empty when the server gave none
	Msg      string // the server's text
}

// Error reads as the server's answer, for logs.
func (e *Rejected) Error() string {
	if e.Enhanced == "" {
		return fmt.Sprintf("recipient rejected: %d %s", e.Code, e.Msg)
	}
	return fmt.Sprintf("recipient rejected: %d %s %s", e.Code, e.Enhanced, e.Msg)
}

// Refused is a sending engine's permanent "no" to a message (a 4xx other than 408 and
// 429): sending the same request again cannot succeed, but the recipient is not at fault.
type Refused struct {
	StatusCode int
	Body       string // the start of the engine's answer, for the operator
}

// Error gives the status and the start of the engine's reason, for logs.
func (e *Refused) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("sending engine refused the message: HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("sending engine refused the message: HTTP %d: %s", e.StatusCode, e.Body)
}

// Deferred is a transient failure after the sender used up its own attempts, so the
// caller knows to schedule the message again rather than give up on it.
type Deferred struct {
	// RetryAfter is how long the receiver asked to be left alone (Retry-After), zero
	// when it did not say.
	RetryAfter time.Duration
	Err        error
}

// Error names the wait, if any, and the last failure.
func (e *Deferred) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("deferred, retry after %s: %v", e.RetryAfter, e.Err)
	}
	return fmt.Sprintf("deferred: %v", e.Err)
}

// Unwrap lets errors.Is and errors.As see the last failure.
func (e *Deferred) Unwrap() error { return e.Err }

// IsHardBounce reports whether err means the recipient's address must not be mailed
// again.
func IsHardBounce(err error) bool {
	var rejected *Rejected
	return errors.As(err, &rejected)
}

// IsPermanent reports whether sending the same message again is pointless: a hard
// bounce, a refusal by the sending engine or an invalid message. Every other error from
// a Sender is transient.
func IsPermanent(err error) bool {
	var refused *Refused
	return IsHardBounce(err) || errors.As(err, &refused) || errors.Is(err, ErrInvalidMessage)
}
