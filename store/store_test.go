package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"crmsync/store"
	"crmsync/store/embedded"
	"crmsync/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func validConnection() store.ConnectionInput {
	return store.ConnectionInput{
		Name:             "Org",
		OrganizationURL:  "https://org.crm4.dynamics.com/",
		WebhookAuthMode:  store.WebhookKey,
		WebhookAuthValue: "0123456789abcdef-key",
		RecipientType:    store.RecipientContact,
		Bidirectional:    true,
	}
}

func TestCreateConnection(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()

	c, err := s.CreateConnection(ctx, "t1", validConnection())
	if err != nil {
		t.Fatal(err)
	}
	if c.OrganizationURL != "https://org.crm4.dynamics.com" || c.DefaultLanguage != "de" || len(c.FieldMappings) != 3 {
		t.Errorf("unexpected connection: %+v", c)
	}
	if string(c.WebhookAuth.Value) == "0123456789abcdef-key" {
		t.Error("webhook key stored in plain text")
	}
	if got, err := s.WebhookCredentials(c); err != nil || len(got) != 1 || got[0].Secret != "0123456789abcdef-key" || got[0].Mode != store.WebhookKey {
		t.Errorf("WebhookCredentials = %+v, %v", got, err)
	}
	got, err := s.Connection(ctx, "t1", c.ID)
	if err != nil || got.Name != "Org" {
		t.Fatalf("Connection = %+v, %v", got, err)
	}
	if _, err := s.Connection(ctx, "t2", c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("other tenant's connection: err = %v, want ErrNotFound", err)
	}
	list, err := s.Connections(ctx, "t2")
	if err != nil || len(list) != 0 {
		t.Errorf("other tenant lists %d connections, %v", len(list), err)
	}
}

func TestCreateConnectionInvalid(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	tests := []struct {
		field string
		edit  func(*store.ConnectionInput)
	}{
		{"name", func(in *store.ConnectionInput) { in.Name = " " }},
		{"organizationUrl", func(in *store.ConnectionInput) { in.OrganizationURL = "org.example" }},
		{"organizationUrl", func(in *store.ConnectionInput) { in.OrganizationURL = "https://u:p@org.example" }},
		{"recipientType", func(in *store.ConnectionInput) { in.RecipientType = "PERSON" }},
		{"defaultLanguage", func(in *store.ConnectionInput) { in.DefaultLanguage = "deutsch" }},
		{"webhookAuth.value", func(in *store.ConnectionInput) { in.WebhookAuthValue = "short" }},
		{"webhookAuth.name", func(in *store.ConnectionInput) { in.WebhookAuthMode = store.WebhookHTTPHeader }},
		{"webhookAuth.mode", func(in *store.ConnectionInput) { in.WebhookAuthMode = "BASIC" }},
		{"reactionSecret", func(in *store.ConnectionInput) { in.ReactionSecret = "whsec_tooshort" }},
	}
	for _, tt := range tests {
		in := validConnection()
		tt.edit(&in)
		_, err := s.CreateConnection(context.Background(), "t1", in)
		var ie *store.InvalidError
		if !errors.As(err, &ie) || ie.Field != tt.field {
			t.Errorf("%s: err = %v, want InvalidError on %s", tt.field, err, tt.field)
		}
	}
}

func TestUpsertSubscribers(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	g, err := s.CreateGroup(ctx, "t1", store.GroupInput{Name: "News"})
	if err != nil {
		t.Fatal(err)
	}
	en := "en"
	unsub := store.Unsubscribed
	res, err := s.UpsertSubscribers(ctx, "t1", g.ID, []store.SubscriberInput{
		{Email: " Anna@Example.DE ", Fields: map[string]any{"firstName": "Anna", "city": "Köln"}},
		{Email: "not-an-address"},
		{Email: "anna@example.de", Fields: map[string]any{"firstName": "Anne"}, Language: &en},
		{Email: "bob@example.com", SubscriptionState: &unsub},
		{Email: "bad@example.com", Fields: map[string]any{"a.b": 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 2 || res.Updated != 0 || res.Merged != 1 || len(res.Rejected) != 2 {
		t.Fatalf("result = %+v", res)
	}
	anna, err := s.SubscriberByEmail(ctx, "t1", g.ID, "ANNA@example.de")
	if err != nil {
		t.Fatal(err)
	}
	if anna.Email != "anna@example.de" || anna.Fields["firstName"] != "Anne" || anna.Fields["city"] != "Köln" ||
		anna.Language != "en" || anna.SubscriptionState != store.Subscribed {
		t.Errorf("anna = %+v", anna)
	}

	// Updating keeps omitted values and unmentioned fields.
	res, err = s.UpsertSubscribers(ctx, "t1", g.ID, []store.SubscriberInput{{Email: "anna@example.de", Fields: map[string]any{"city": "Bonn"}}})
	if err != nil || res.Updated != 1 || res.Created != 0 {
		t.Fatalf("second upsert = %+v, %v", res, err)
	}
	anna2, _ := s.Subscriber(ctx, "t1", anna.ID)
	if anna2.Fields["firstName"] != "Anne" || anna2.Fields["city"] != "Bonn" || anna2.Language != "en" {
		t.Errorf("after update: %+v", anna2)
	}

	if _, err := s.UpsertSubscribers(ctx, "t2", g.ID, []store.SubscriberInput{{Email: "x@example.com"}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("other tenant's group: err = %v", err)
	}
	if _, err := s.Subscriber(ctx, "t2", anna.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("other tenant's subscriber: err = %v", err)
	}

	page, more, err := s.SubscribersPage(ctx, "t1", g.ID, "", 1)
	if err != nil || len(page) != 1 || !more {
		t.Fatalf("page 1 = %d, %v, %v", len(page), more, err)
	}
	page2, more, err := s.SubscribersPage(ctx, "t1", g.ID, page[0].ID, 1)
	if err != nil || len(page2) != 1 || more || page2[0].ID == page[0].ID {
		t.Fatalf("page 2 = %v, %v, %v", page2, more, err)
	}
	if n, err := s.CountSubscribers(ctx, "t1", g.ID); err != nil || n != 2 {
		t.Errorf("count = %d, %v", n, err)
	}
}

func TestCreateGroupNeedsOwnConnection(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	c, err := s.CreateConnection(ctx, "t1", validConnection())
	if err != nil {
		t.Fatal(err)
	}
	var ie *store.InvalidError
	if _, err := s.CreateGroup(ctx, "t1", store.GroupInput{Name: "G", CRMSync: true}); !errors.As(err, &ie) || ie.Field != "crmSync" {
		t.Errorf("crmSync without connection: %v", err)
	}
	if _, err := s.CreateGroup(ctx, "t2", store.GroupInput{Name: "G", ConnectionID: c.ID, CRMSync: true}); !errors.As(err, &ie) || ie.Field != "connectionId" {
		t.Errorf("another tenant's connection: %v", err)
	}
	g, err := s.CreateGroup(ctx, "t1", store.GroupInput{Name: "G", ConnectionID: c.ID, CRMSync: true})
	if err != nil {
		t.Fatal(err)
	}
	groups, err := s.SyncedGroups(ctx, "t1", c.ID)
	if err != nil || len(groups) != 1 || groups[0].ID != g.ID {
		t.Errorf("SyncedGroups = %v, %v", groups, err)
	}
}

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t) // migrates once
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
}

// TestEmbeddedPersistsAcrossRestart runs the in-process server whatever MONGODB_URI
// says: data written before a stop is there after a start on the same directory.
func TestEmbeddedPersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	key := make([]byte, 32)
	var stops []func()
	open := func() *store.Store {
		srv, err := embedded.Start(ctx, embedded.Config{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		s, err := store.Open(ctx, store.Config{URI: srv.URI(), Embedded: srv, SecretKey: key})
		if err != nil {
			t.Fatal(err)
		}
		stops = append(stops, srv.Stop)
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	c, err := s.CreateConnection(ctx, "t1", validConnection())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	stops[0]()
	s = open()
	defer s.Close(ctx)
	got, err := s.Connection(ctx, "t1", c.ID)
	if err != nil || got.Name != c.Name {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
	if creds, err := s.WebhookCredentials(got); err != nil || creds[0].Secret != "0123456789abcdef-key" {
		t.Errorf("secret after restart: %+v, %v", creds, err)
	}
}

func TestAddInboxEventsReportsDuplicates(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	ev := func(id string) *store.InboxEvent {
		return &store.InboxEvent{ID: id, Tenant: "t1", ConnectionID: "c", Message: "Create", Entity: "contact", RecordID: id, Body: "{}"}
	}
	dup, err := s.AddInboxEvents(ctx, []*store.InboxEvent{ev("a"), ev("b")})
	if err != nil || dup[0] || dup[1] {
		t.Fatalf("first = %v, %v", dup, err)
	}
	dup, err = s.AddInboxEvents(ctx, []*store.InboxEvent{ev("c"), ev("a"), ev("c"), ev("d")})
	if err != nil || dup[0] || !dup[1] || !dup[2] || dup[3] {
		t.Fatalf("second = %v, %v; want [false true true false]", dup, err)
	}
	counts, err := s.CountInbox(ctx)
	if err != nil || counts.Pending != 4 {
		t.Errorf("inbox = %+v, %v", counts, err)
	}
	pending, err := s.PendingInboxEvents(ctx, time.Now().Add(time.Minute), 10)
	if err != nil || len(pending) != 4 || pending[0].PartitionKey() != "c|contact|a" {
		t.Errorf("pending = %+v, %v", pending, err)
	}
}

func TestUpdateConnectionRotatesKeyWithGrace(t *testing.T) {
	t.Parallel()
	cfg := storetest.Config(t)
	now := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	cfg.KeyGrace = time.Hour
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	c, err := s.CreateConnection(ctx, "t1", validConnection())
	if err != nil {
		t.Fatal(err)
	}
	lang, name := "EN", "Renamed"
	c, err = s.UpdateConnection(ctx, "t1", c.ID, store.ConnectionUpdate{
		Name: &name, DefaultLanguage: &lang,
		WebhookAuth: &store.WebhookAuthUpdate{Mode: store.WebhookHTTPHeader, Name: "x-crm-key", Value: "a-brand-new-key-0123"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Renamed" || c.DefaultLanguage != "en" {
		t.Errorf("updated = %+v", c)
	}
	secrets := func() []string {
		got, _ := s.Connection(ctx, "t1", c.ID)
		creds, err := s.WebhookCredentials(got)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, cr := range creds {
			out = append(out, string(cr.Mode)+":"+cr.Name+":"+cr.Secret)
		}
		return out
	}
	if got := secrets(); len(got) != 2 || got[0] != "HTTP_HEADER:x-crm-key:a-brand-new-key-0123" || got[1] != "WEBHOOK_KEY::0123456789abcdef-key" {
		t.Errorf("during the grace: %v", got)
	}
	now = now.Add(61 * time.Minute)
	if got := secrets(); len(got) != 1 || got[0] != "HTTP_HEADER:x-crm-key:a-brand-new-key-0123" {
		t.Errorf("after the grace: %v", got)
	}

	same, other := store.RecipientContact, store.RecipientLead
	if _, err := s.UpdateConnection(ctx, "t1", c.ID, store.ConnectionUpdate{RecipientType: &same}); err != nil {
		t.Errorf("same recipient type: %v", err)
	}
	if _, err := s.UpdateConnection(ctx, "t1", c.ID, store.ConnectionUpdate{RecipientType: &other}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("other recipient type: %v, want a conflict", err)
	}
	if _, err := s.UpdateConnection(ctx, "t2", c.ID, store.ConnectionUpdate{Name: &name}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant: %v", err)
	}
	short := &store.WebhookAuthUpdate{Mode: store.WebhookKey, Value: "short"}
	var ie *store.InvalidError
	if _, err := s.UpdateConnection(ctx, "t1", c.ID, store.ConnectionUpdate{WebhookAuth: short}); !errors.As(err, &ie) || ie.Field != "webhookAuth.value" {
		t.Errorf("short key: %v", err)
	}
}

func TestRetentionKeepsUnfinishedEvents(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	s := storetest.Open(t, func(c *store.Config) { c.Now = func() time.Time { return now } }) // its database is dropped at the end
	ctx := context.Background()
	var evs []*store.InboxEvent
	for _, id := range []string{"old-done", "old-failed", "old-pending", "new-done"} {
		evs = append(evs, &store.InboxEvent{ID: id, Tenant: "t1", ConnectionID: "c", Message: "Update", Entity: "contact", RecordID: id, Body: "{}"})
	}
	if _, err := s.AddInboxEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	s.FinishInboxEvent(ctx, "old-done", store.InboxProcessed, 1, "")
	s.FinishInboxEvent(ctx, "old-failed", store.InboxFailed, 5, "no")
	now = now.Add(15 * 24 * time.Hour)
	cut := now.Add(-14 * 24 * time.Hour)
	s.FinishInboxEvent(ctx, "new-done", store.InboxProcessed, 1, "")
	n, err := s.DeleteProcessedBefore(ctx, cut, 100)
	if err != nil || n != 1 {
		t.Fatalf("deleted %d, %v; want 1", n, err)
	}
	for id, want := range map[string]bool{"old-done": false, "old-failed": true, "old-pending": true, "new-done": true} {
		_, err := s.InboxEvent(ctx, id)
		_, berr := s.InboxEventBody(ctx, id)
		if (err == nil) != want || (berr == nil) != want {
			t.Errorf("%s: event %v, body %v; want kept=%v", id, err, berr, want)
		}
	}
}
