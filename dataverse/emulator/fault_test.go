package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

func TestFaultShares(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rate float64
	}{{0}, {0.1}, {0.3}, {1}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.rate), func(t *testing.T) {
			t.Parallel()
			f := &faults{rate: tt.rate, rnd: rand.New(rand.NewPCG(1, 2))}
			const n = 20000
			count := map[fault]int{}
			for range n {
				count[f.next()]++
			}
			hits := n - count[faultNone]
			if got := float64(hits) / n; got < tt.rate-0.02 || got > tt.rate+0.02 {
				t.Errorf("fault share %.3f, want %.2f", got, tt.rate)
			}
			if hits == 0 {
				return
			}
			// Half 503s, half cuts, the cuts split evenly around the change.
			for kind, want := range map[fault]float64{faultUnavailable: 0.5, faultCutBefore: 0.25, faultCutAfter: 0.25} {
				if got := float64(count[kind]) / float64(hits); got < want-0.03 || got > want+0.03 {
					t.Errorf("fault %d: share %.3f of faults, want %.2f", kind, got, want)
				}
			}
		})
	}
}

// outcome is what a client saw of one request: a status, or "cut".
func outcome(t *testing.T, b *testBundle, method, path string, body any) string {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, b.srv.URL+"/api/data/v9.2/"+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		return "cut"
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.NewDecoder(resp.Body).Decode(&e) != nil || e.Error.Code != codeUnavailable || e.Error.Message == "" {
			t.Errorf("503 without Dataverse's error JSON")
		}
	}
	return fmt.Sprint(resp.StatusCode)
}

func TestFaultsAreReproducibleAndCutsMayComeAfterTheChange(t *testing.T) {
	t.Parallel()
	run := func() []string {
		b := setup(t, Config{FaultRate: 0.4, Rand: rand.NewPCG(7, 7)})
		var seen []string
		for i := range 60 {
			id := fmt.Sprintf("00000000-0000-0000-0000-%012d", i)
			got := outcome(t, b, http.MethodPost, "contacts", map[string]any{"contactid": id, "lastname": "F"})
			b.e.mu.RLock()
			_, exists := b.e.rows["contact"][id]
			b.e.mu.RUnlock()
			seen = append(seen, fmt.Sprintf("%s/%v", got, exists))
		}
		return seen
	}
	first, second := run(), run()
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Fatalf("same seed, different faults:\n%v\n%v", first, second)
	}
	count := map[string]int{}
	for _, s := range first {
		count[s]++
	}
	// Every kind happens: success, a 503 that changed nothing, and cuts both before
	// and after the row was made.
	for _, want := range []string{"204/true", "503/false", "cut/false", "cut/true"} {
		if count[want] == 0 {
			t.Errorf("no %q among %v", want, count)
		}
	}
	if len(count) != 4 {
		t.Errorf("unexpected outcomes %v", count)
	}
}

func TestLatencyIsAdded(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Latency: 30 * time.Millisecond})
	start := time.Now()
	if a := b.call(t, http.MethodGet, "WhoAmI", nil); a.status != http.StatusOK {
		t.Fatal(a.status)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("request took %v, want at least the 30ms latency", d)
	}
}
