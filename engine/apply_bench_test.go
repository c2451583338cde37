package engine

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"crmsync/dataverse"
	"crmsync/dataverse/emulator"
	"crmsync/store"
	"crmsync/store/storetest"
)

// BenchmarkApplyCRMUpdates applies 10,000 CRM contact updates (10 each to 1,000
// linked subscribers) through the registered steps directly — decode, steps, store
// — without the stream, on the test store (the embedded one unless MONGODB_URI is
// set). "webhook" events carry their row; "over-size-limit" ones do not, so each is
// read back through the Web API of an emulator. Run it once:
//
//	go test ./engine -run '^$' -bench ApplyCRMUpdates -benchtime 1x
//
// It reports events/s and the Web API requests used per 1,000 events.
func BenchmarkApplyCRMUpdates(b *testing.B) {
	const contacts, updates = 1000, 10
	for _, variant := range []string{"webhook", "over-size-limit"} {
		b.Run(variant, func(b *testing.B) {
			dv := emulator.New(emulator.Config{LimitRequests: -1, LimitExecSeconds: -1})
			counter := emulator.NewRequestCounter(dv)
			srv := httptest.NewServer(counter)
			b.Cleanup(srv.Close)
			st := storetest.Open(b)
			ctx := context.Background()
			conn, err := st.CreateConnection(ctx, "acme", store.ConnectionInput{
				Name: "CRM", OrganizationURL: srv.URL, TokenURL: srv.URL + "/t/oauth2/v2.0/token", ClientID: emulator.DefaultClientID,
				ClientSecret: emulator.DefaultClientSecret, WebhookAuthMode: store.WebhookKey, WebhookAuthValue: "0123456789abcdef-secret",
				RecipientType: store.RecipientContact,
			})
			if err != nil {
				b.Fatal(err)
			}
			g, err := st.CreateGroup(ctx, "acme", store.GroupInput{Name: "News", ConnectionID: conn.ID, CRMSync: true})
			if err != nil {
				b.Fatal(err)
			}
			reg := NewRegistry()
			registerRecipientSteps(reg, st, time.Now)
			apply := func(ec *dataverse.ExecutionContext) {
				ev := &Event{Inbox: &store.InboxEvent{ReceivedAt: time.Now()}, Context: ec, Connection: conn}
				for _, s := range reg.Steps(StepKey{Message: ec.MessageName, Entity: ec.PrimaryEntityName, Stage: ec.Stage}) {
					if err := s.Apply(ctx, ev); err != nil {
						b.Fatal(err)
					}
				}
			}

			// Setup: 1,000 subscribers, each linked by its contact's Create.
			t0 := time.Now().UTC().Truncate(time.Second)
			ids := make([]string, contacts)
			in := make([]store.SubscriberInput, contacts)
			for i := range contacts {
				email := fmt.Sprintf("p%04d@example.de", i)
				in[i] = store.SubscriberInput{Email: email}
				if ids[i], err = dv.Create("contacts", map[string]any{"emailaddress1": email, "lastname": "Start"}); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := st.UpsertSubscribers(ctx, "acme", g.ID, in); err != nil {
				b.Fatal(err)
			}
			for i, id := range ids {
				apply(decodeBench(b, webhookBody("Create", "contact", id, t0, attrs{"emailaddress1": in[i].Email, "lastname": "Start"}, nil)))
			}
			bodies := make([][]byte, 0, contacts*updates)
			for u := range updates {
				for i, id := range ids {
					bodies = append(bodies, webhookBody("Update", "contact", id, t0.Add(time.Duration(u+1)*time.Second),
						attrs{"lastname": fmt.Sprintf("Name %d", u)}, attrs{"emailaddress1": in[i].Email}))
				}
			}
			before := counter.Requests(dv.ApplicationUserID())
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				for _, body := range bodies {
					ec := decodeBench(b, body)
					if variant == "over-size-limit" {
						ec.InputParameters, ec.PreEntityImages = nil, nil
						ec.MarkSizeExceeded()
					}
					apply(ec)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			n := float64(b.N * len(bodies))
			b.ReportMetric(n/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(counter.Requests(dv.ApplicationUserID())-before)*1000/n, "requests/1000")
		})
	}
}

func decodeBench(b *testing.B, body []byte) *dataverse.ExecutionContext {
	ec, err := dataverse.Decode(body)
	if err != nil {
		b.Fatal(err)
	}
	return ec
}
