package loadgen_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/loadgen"
)

func TestBodiesAreRemoteExecutionContexts(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	create, err := dataverse.Decode(loadgen.Body("run", 0, 7, true, "a@example.de", at))
	if err != nil {
		t.Fatal(err)
	}
	update, err := dataverse.Decode(loadgen.Body("run", 1, 7, false, "a@example.de", at.Add(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if create.MessageName != "Create" || update.MessageName != "Update" || create.PrimaryEntityID != update.PrimaryEntityID || create.OperationID == update.OperationID {
		t.Errorf("create %+v / update %+v", create, update)
	}
	row := update.Merged()
	if e, _ := row.String("emailaddress1"); e != "a@example.de" {
		t.Errorf("the update's pre-image has no e-mail: %v", row.Attributes)
	}
	if m, _ := row.Time("modifiedon"); !m.Equal(at.Add(time.Second)) {
		t.Errorf("modifiedon = %v", m)
	}
}

func TestRunAccountsForEveryRequest(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ec, err := dataverse.Decode(body)
		if err != nil {
			http.Error(w, `{"error":"bad"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		n++
		if n%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":"unavailable"}`)
			return
		}
		dup := seen[ec.OperationID]
		seen[ec.OperationID] = true
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]any{"eventId": ec.OperationID, "duplicate": dup})
	}))
	defer srv.Close()
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: srv.URL, Count: 200, Records: 20, Workers: 4, Redeliver: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 220 || !res.Balanced() || res.Rejected != 22 || res.ByStatus[503] != 22 {
		t.Errorf("result %+v", res)
	}
	if res.Accepted+res.Duplicates != 198 || len(res.EventIDs) != res.Accepted || res.Latency(0.99) <= 0 {
		t.Errorf("accepted %d, duplicates %d, ids %d", res.Accepted, res.Duplicates, len(res.EventIDs))
	}
	all := loadgen.Merge(res, res)
	if all.Sent != 440 || !all.Balanced() {
		t.Errorf("merged %+v", all)
	}
}
