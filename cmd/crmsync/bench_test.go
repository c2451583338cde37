package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"crmsync/loadgen"
)

// BenchmarkIngest measures the webhook route of the whole service (group commit into
// the store, publish to Redis, the engine applying the events meanwhile) with the
// loadgen's realistic bodies, beside a bare net/http handler that only decodes the
// same JSON, in the same run. Run it with a fixed count, e.g.
//
//	go test ./cmd/crmsync -run '^$' -bench Ingest -benchtime 3000x
//
// It reports accepted/s and the 202 latency; ns/op is per event.
func BenchmarkIngest(b *testing.B) {
	b.Run("bare-net-http-decode", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
			var v map[string]any
			if err != nil || json.Unmarshal(body, &v) != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, `{"eventId":"x","duplicate":false}`)
		}))
		defer srv.Close()
		benchLoad(b, srv.URL+"/webhooks/dataverse/x?code=k")
	})
	for _, redis := range []string{"embedded-redis", "real-redis"} {
		b.Run("crmsync-embedded-store-"+redis, func(b *testing.B) {
			env := testEnv(b)
			if redis == "embedded-redis" {
				delete(env, "REDIS_URL")
			}
			in := startInstanceEnv(b, env)
			h := newHarness(b, env)
			target, err := h.client(in.base).Setup(context.Background(), "bench", 1000, loadgen.DefaultEmail)
			if err != nil {
				b.Fatal(err)
			}
			benchLoad(b, target.WebhookURL)
		})
	}
}

func benchLoad(b *testing.B, url string) {
	b.ReportAllocs()
	b.ResetTimer()
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: url, Count: b.N, Records: 1000, Workers: 16})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Accepted+res.Duplicates != b.N {
		b.Fatalf("only %d of %d accepted: %+v", res.Accepted+res.Duplicates, b.N, res.ByStatus)
	}
	b.ReportMetric(res.AcceptedPerSecond(), "accepted/s")
	b.ReportMetric(float64(res.Latency(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.Latency(0.99).Microseconds())/1000, "p99-ms")
}
