package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
	"crmsync/engine"
	"crmsync/store"
)

// statusLog is an observer that writes down the statuses it is told of.
type statusLog struct {
	mu       sync.Mutex
	statuses []int
}

func (l *statusLog) WebAPIRequest(status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.statuses = append(l.statuses, status)
}

func (l *statusLog) WebAPIRetryWait(time.Duration) {}

func (l *statusLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.statuses)
}

// TestCRMClientsObserveEachConnection: the requests of a connection's client and
// of its connection test reach the connection's observer, and Tune's observer
// as well.
func TestCRMClientsObserveEachConnection(t *testing.T) {
	t.Parallel()
	dv := emulator.New(emulator.Config{})
	if err := dv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dv.Close() })
	all := &statusLog{}
	per := map[string]*statusLog{"c1": {}, "c2": {}}
	clients := &engine.CRMClients{
		Secret:  func(*store.Connection) (string, error) { return "emulator-secret", nil },
		Tune:    func(c *dataverse.Config) { c.Observer = all },
		Observe: func(id string) dataverse.Observer { return per[id] },
	}
	conn := func(id string) *store.Connection {
		return &store.Connection{ID: id, OrganizationURL: dv.URL(), TokenURL: dv.URL() + "/t/oauth2/v2.0/token", ClientID: "emulator", RecipientType: store.RecipientContact}
	}
	ctx := context.Background()
	c1, err := clients.For(conn("c1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c1.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := clients.Test(ctx, conn("c2")); err != nil {
		t.Fatal(err)
	}
	if got := [3]int{per["c1"].count(), per["c2"].count(), all.count()}; got != [3]int{1, 2, 3} {
		t.Errorf("requests seen by c1, c2 and Tune's observer: %v, want [1 2 3] (WhoAmI; the test's WhoAmI and read)", got)
	}
}
