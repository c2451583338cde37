package webhook_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
)

// FuzzDataverseHandler throws random connection ids, query strings, headers and
// bodies at the webhook route: it never panics, answers only 202, 400, 401, 413 or
// 503 (never 429 or another 5xx, which Dataverse would not retry), always with a JSON
// body, and stores an event only when it answers 202.
func FuzzDataverseHandler(f *testing.F) {
	for _, name := range []string{"contact_create.json", "contact_update.json"} {
		body, err := os.ReadFile("../testdata/webhooks/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("key", "code=the-webhook-key-123", "", "", body)
		f.Add("header", "", "X-Crmsync-Key", "the-header-key-123", body)
		f.Add("query", "secret=the-query-key-1234", "X-Ms-Dynamics-Msg-Size-Exceeded", "1", body)
		f.Add("nope", "code=%zz", "Content-Length", "-1", body[:len(body)/2])
	}
	f.Add("key", "code=the-webhook-key-123", "", "", []byte(`{"MessageName":"Create","PrimaryEntityName":"contact","PrimaryEntityId":"x"}`))
	f.Add("key", "code=the-webhook-key-123", "", "", []byte(`[{"MessageName":1}]`))
	f.Fuzz(func(t *testing.T, conn, rawQuery, hName, hValue string, body []byte) {
		b := setup(t)
		target := "/webhooks/dataverse/" + url.PathEscape(conn)
		if rawQuery != "" {
			target += "?" + url.PathEscape(rawQuery)
		}
		req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return
		}
		if hName != "" && validHeader(hName, hValue) {
			req.Header.Set(hName, hValue)
		}
		rec := httptest.NewRecorder()
		b.mux.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted, http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge,
			http.StatusServiceUnavailable, http.StatusNotFound, http.StatusMethodNotAllowed:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		if rec.Code == http.StatusNotFound || rec.Code == http.StatusMethodNotAllowed {
			return // the mux itself: the path did not name a connection
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("status %d with a body that is not JSON: %q", rec.Code, rec.Body.String())
		}
		if stored := b.inbox.count(); (rec.Code == http.StatusAccepted) != (stored == 1) {
			t.Fatalf("status %d but %d events stored", rec.Code, stored)
		}
	})
}

func validHeader(name, value string) bool {
	for _, c := range name {
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
