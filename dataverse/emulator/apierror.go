package emulator

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
)

// Error codes the Web API puts in error.code. Where reference/dataverse.md or
// Microsoft's troubleshooting pages give a code, it is that one; the others are
// marked as the emulator's choice.
const (
	codeODataGeneric       = "0x0"        // OData parser errors such as an unknown $select property
	codeResourceNotFound   = "0x8006088a" // "Resource not found for the segment '…'."
	codeODataBadRequest    = "0x80060888" // bad query options, invalid properties in a body
	codePayload            = "0x80048d19" // "Error identified in Payload provided by the user…"
	codeObjectDoesNotExist = "0x80040217" // "Entity 'contact' With Id = … Does Not Exist"
	codeVersionMismatch    = "0x80060882" // ConcurrencyVersionMismatch (412)
	codeDuplicateRecord    = "0x80040237" // DuplicateRecord (412)
	codeInvalidStateStatus = "0x80048408" // InvalidStateCodeStatusCode
	codeValidation         = "0x80044331" // attribute validation (length, option range)
	codeInvalidArgument    = "0x80040203" // InvalidArgument: missing required column and similar
	codeBusinessRule       = "0x80040265" // what a refusing plug-in or business rule answers; used for qualified leads (emulator's choice)
	codeNotAuthenticated   = "0x80072560" // emulator's choice for a missing or invalid bearer token
	codeNotImplemented     = "0x80040800" // emulator's choice: a real feature the emulator does not have yet
)

// apiError is a Web API failure; the handler renders it as Dataverse does:
// {"error":{"code":"0x…","message":"…"}} with its HTTP status.
type apiError struct {
	status     int
	code       string
	message    string
	retryAfter int // seconds; sent as Retry-After when positive
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func errNotFound(t *table, id string) *apiError {
	return errorf(http.StatusNotFound, codeObjectDoesNotExist, "Entity '%s' With Id = %s Does Not Exist", t.logical, id)
}

func errSegment(segment string) *apiError {
	return errorf(http.StatusNotFound, codeResourceNotFound, "Resource not found for the segment '%s'.", segment)
}

func errNoProperty(t *table, name string) *apiError {
	return errorf(http.StatusBadRequest, codeODataGeneric, "Could not find a property named '%s' on type '%s'.", name, t.typeName())
}

func errInvalidProperty(t *table, name string) *apiError {
	return errorf(http.StatusBadRequest, codeODataBadRequest, "Invalid property '%s' was found in entity '%s'.", name, t.typeName())
}

// errPayload wraps an OData reader message the way current Dataverse versions do.
func errPayload(t *table, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, codePayload,
		"Error identified in Payload provided by the user for Entity :'%s', For more information on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  InnerException : Microsoft.OData.ODataException: %s",
		t.set, fmt.Sprintf(format, args...))
}

func errNotImplemented(what string) *apiError {
	return errorf(http.StatusNotImplemented, codeNotImplemented, "The Dataverse emulator does not implement %s.", what)
}

// writeError renders an error; anything that is not an apiError is a bug in the
// emulator and becomes a 500 that is logged with the request.
func (e *Emulator) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae, ok := err.(*apiError)
	if !ok {
		e.log.ErrorContext(r.Context(), "emulator: internal error",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
		ae = errorf(http.StatusInternalServerError, "0x80040216", "An unexpected error occurred.")
	}
	b := append([]byte(`{"error":{"code":`), appendString(nil, ae.code)...)
	b = append(b, `,"message":`...)
	b = appendString(b, ae.message)
	b = append(b, "}}"...)
	h := w.Header()
	h.Set("Content-Type", "application/json; odata.metadata=minimal")
	h.Set("OData-Version", "4.0")
	if ae.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	w.WriteHeader(ae.status)
	_, _ = w.Write(b)
}
