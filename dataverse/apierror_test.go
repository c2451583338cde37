package dataverse

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestAPIError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err       *APIError
		text      string
		retryable bool
		is        error
	}{
		{&APIError{Status: 404, Code: "0x80040217", Message: "Entity 'contact' With Id = x Does Not Exist"},
			"dataverse: 404 Not Found: 0x80040217: Entity 'contact' With Id = x Does Not Exist", false, ErrNotFound},
		{&APIError{Status: 412, Code: "0x80060882", Message: "The version of the existing record doesn't match the RowVersion property provided."},
			"dataverse: 412 Precondition Failed: 0x80060882: The version of the existing record doesn't match the RowVersion property provided.", false, ErrPreconditionFailed},
		{&APIError{Status: 429, Code: "0x80072322", Message: "Number of requests exceeded…", RetryAfter: 5 * time.Second},
			"dataverse: 429 Too Many Requests: 0x80072322: Number of requests exceeded…", true, ErrThrottled},
		{&APIError{Status: 401, Code: "invalid_client"}, "dataverse: 401 Unauthorized: invalid_client", false, ErrUnauthorized},
		{&APIError{Status: 503}, "dataverse: 503 Service Unavailable", true, nil},
		{&APIError{Status: 500, Message: "boom"}, "dataverse: 500 Internal Server Error: boom", true, nil},
		{&APIError{Status: 408}, "dataverse: 408 Request Timeout", true, nil},
		{&APIError{Status: 501}, "dataverse: 501 Not Implemented", false, nil},
		{&APIError{Status: 400, Code: "0x80048408"}, "dataverse: 400 Bad Request: 0x80048408", false, nil},
	}
	sentinels := []error{ErrNotFound, ErrPreconditionFailed, ErrThrottled, ErrUnauthorized}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			t.Parallel()
			if tt.err.Error() != tt.text {
				t.Errorf("Error() = %q", tt.err.Error())
			}
			if tt.err.Retryable() != tt.retryable {
				t.Errorf("Retryable() = %v", tt.err.Retryable())
			}
			wrapped := fmt.Errorf("update contacts(x): %w", tt.err)
			for _, s := range sentinels {
				if got := errors.Is(wrapped, s); got != (s == tt.is) {
					t.Errorf("errors.Is(…, %v) = %v", s, got)
				}
			}
			var ae *APIError
			if !errors.As(wrapped, &ae) || ae != tt.err {
				t.Error("errors.As lost the *APIError")
			}
		})
	}
}
