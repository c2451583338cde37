package dataverse

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinels for the Web API answers callers branch on, so a step can write
// errors.Is(err, dataverse.ErrNotFound) without knowing HTTP.
var (
	// ErrNotFound matches a 404: the row (or a row a lookup points at) does not exist.
	ErrNotFound = errors.New("dataverse: not found")
	// ErrPreconditionFailed matches a 412: a stale etag on UpdateIfMatch, an existing
	// row on CreateOnly, or a duplicate-detection hit.
	ErrPreconditionFailed = errors.New("dataverse: precondition failed")
	// ErrThrottled matches a 429 that was still answered after the retries: the
	// service-protection limits of reference/dataverse.md §7.3.
	ErrThrottled = errors.New("dataverse: throttled")
	// ErrUnauthorized matches a 401 from the Web API or the token endpoint, so a
	// connection test can tell bad credentials from an unreachable server.
	ErrUnauthorized = errors.New("dataverse: unauthorized")
	// ErrDuplicateRecord matches Dataverse's DuplicateRecord (0x80040237): a create
	// with the id of a row that exists, a second association of the same rows.
	ErrDuplicateRecord = errors.New("dataverse: duplicate record")
)

// APIError is a failed Web API or token request with what Dataverse (or Entra ID)
// said, so callers can log the server's code and message and decide whether to try
// again later.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is Dataverse's error.code ("0x80040217"), or Entra ID's error
	// ("invalid_client") for token requests; it may be empty.
	Code string
	// Message is Dataverse's error.message (Entra ID's error_description).
	Message string
	// RetryAfter is the server's Retry-After, zero when absent; the client never
	// retries a 429 sooner.
	RetryAfter time.Duration
}

// Error renders the status, code and message in one line.
func (e *APIError) Error() string {
	text := http.StatusText(e.Status)
	switch {
	case e.Code != "" && e.Message != "":
		return fmt.Sprintf("dataverse: %d %s: %s: %s", e.Status, text, e.Code, e.Message)
	case e.Message != "":
		return fmt.Sprintf("dataverse: %d %s: %s", e.Status, text, e.Message)
	case e.Code != "":
		return fmt.Sprintf("dataverse: %d %s: %s", e.Status, text, e.Code)
	}
	return fmt.Sprintf("dataverse: %d %s", e.Status, text)
}

// Retryable says whether the same request may succeed later: throttling (429),
// timeouts (408) and server errors (5xx other than 501 Not Implemented and 505).
// Other 4xx answers describe the request and fail the same way every time.
func (e *APIError) Retryable() bool {
	switch {
	case e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout:
		return true
	case e.Status == http.StatusNotImplemented, e.Status == http.StatusHTTPVersionNotSupported:
		return false
	}
	return e.Status >= 500 && e.Status <= 599
}

// Is maps the status to the package's sentinels for errors.Is.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrPreconditionFailed:
		return e.Status == http.StatusPreconditionFailed
	case ErrThrottled:
		return e.Status == http.StatusTooManyRequests
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrDuplicateRecord:
		return e.Code == codeDuplicateRecord
	}
	return false
}
