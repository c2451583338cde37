package engine_test

import (
	"sync"
	"testing"
	"time"

	"crmsync/engine"
	"crmsync/mail"
	"crmsync/store"
)

// fakeMetrics records what the engine's components report, by label values.
type fakeMetrics struct {
	mu       sync.Mutex
	steps    map[string]int // "message entity outcome"
	runs     map[string]int
	messages map[string]int
}

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{steps: map[string]int{}, runs: map[string]int{}, messages: map[string]int{}}
}

func (m *fakeMetrics) ObserveStep(message, entity, outcome string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d > 0 {
		m.steps[message+" "+entity+" "+outcome]++
	}
}

func (m *fakeMetrics) SyncRun(outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs[outcome]++
}

func (m *fakeMetrics) CampaignMessage(outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.messages[outcome]++
}

func (m *fakeMetrics) get(counts map[string]int, key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return counts[key]
}

func TestStepMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := newFakeMetrics()
	b.start(t, engine.Config{Metrics: m})
	b.addEvent(t, "create", "contact_create.json", true)
	b.waitStatus(t, "create", store.InboxProcessed)
	if n := m.get(m.steps, "Create contact ok"); n != 1 {
		t.Errorf("Create/contact/ok observed %d times, want once: %v", n, m.steps)
	}
}

func TestCampaignMessageMetrics(t *testing.T) {
	t.Parallel()
	f := newCampaignFixture(t, emails(5)...)
	sender := &countingSender{got: map[string]int{}, refuse: map[string]error{emails(5)[3]: &mail.Rejected{Code: 550, Enhanced: "5.1.1", Msg: "no such user"}}}
	m := newFakeMetrics()
	c := f.runner(t, sender, func(cfg *engine.CampaignsConfig) { cfg.Metrics = m })
	cs := f.runUntilDone(t, c, f.send(t, c).ID)
	if cs.Sent != 4 || cs.Bounced != 1 {
		t.Fatalf("send = %+v, want 4 sent and 1 bounced", cs)
	}
	if sent, bounced := m.get(m.messages, "sent"), m.get(m.messages, "bounced"); sent != 4 || bounced != 1 {
		t.Errorf("messages = %v, want 4 sent and 1 bounced", m.messages)
	}
}
