package webhook

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

// readBody reads the whole body up to limit bytes; a larger one gives 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int) {
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, http.StatusRequestEntityTooLarge
	}
	if err != nil {
		// The client went away or sent a broken body: nothing was stored. A 400 is
		// the honest answer, and it is not read by anyone anyway.
		return nil, http.StatusBadRequest
	}
	return body, 0
}

// readBodyOrRefuse reads the body, or answers the refusal itself and returns false.
func readBodyOrRefuse(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, status := readBody(w, r, limit)
	switch status {
	case http.StatusRequestEntityTooLarge:
		writeError(w, status, "body too large", "the limit is "+byteSize(limit))
		return nil, false
	case http.StatusBadRequest:
		writeError(w, status, "unreadable body", "the request body could not be read to its end")
		return nil, false
	}
	return body, true
}

func byteSize(n int64) string {
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	if n%(1<<10) == 0 {
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
