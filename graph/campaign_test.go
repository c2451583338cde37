package graph_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/golang-jwt/jwt/v5"

	"crmsync/graph"
	"crmsync/store"
)

// storeCampaigns stands in for engine.Campaigns: it refuses an empty subject, as
// the engine does, and stores the send as asked.
type storeCampaigns struct{ st *store.Store }

func (c storeCampaigns) CreateSend(ctx context.Context, in graph.SendRequest) (*store.CampaignSend, error) {
	if strings.TrimSpace(in.Subject) == "" {
		return nil, &store.InvalidError{Field: "subject", Reason: "must not be empty"}
	}
	cs := &store.CampaignSend{Tenant: in.Tenant, GroupID: in.GroupID, ListIDs: in.ListIDs, Subject: in.Subject,
		SenderName: in.SenderName, SenderEmail: in.SenderEmail, HTMLBody: in.HTMLBody, TextBody: in.TextBody,
		ScheduledAt: in.ScheduledAt, Status: store.SendScheduled, Trigger: in.Trigger, CreatedBy: in.CreatedBy}
	if in.Draft {
		cs.Status = store.SendDraft
	}
	if in.CRMCampaignActivityID != "" {
		cs.CRMCampaignActivityID = &in.CRMCampaignActivityID
	}
	if _, err := c.st.CreateSend(ctx, cs); err != nil {
		return nil, err
	}
	return c.st.Send(ctx, in.Tenant, cs.ID)
}

// startSend stores a send and starts it as a runner would (fence 1): SENDING, its
// recipients resolved.
func startSend(t *testing.T, st *store.Store, cs *store.CampaignSend) *store.CampaignSend {
	t.Helper()
	ctx := context.Background()
	if _, err := st.CreateSend(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if err := st.StartSend(ctx, cs, 1); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	cs.Status, cs.Resolved, cs.StartedAt = store.SendSending, true, &now
	saveProgress(t, st, cs)
	return cs
}

func saveProgress(t *testing.T, st *store.Store, cs *store.CampaignSend) {
	t.Helper()
	if err := st.SaveSendProgress(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
}

// campaignSend is what the tests read of a CampaignSend.
type campaignSend struct {
	ID, Status, Subject, Trigger string
	ScheduledAt                  *time.Time
	ListIDs                      []string `json:"listIds"`
	Group                        *struct{ ID string }
	Excluded                     map[string]int
	Stats                        struct{ Sent, Opens, Clicks, Bounces, Unsubscribes, Complaints int }
	Progress                     struct{ Sent, Bounced, Total int }
}

const sendFields = `id status subject trigger scheduledAt listIds group { id } excluded
	stats { sent opens clicks bounces unsubscribes complaints } progress { sent bounced total }`

// decode reads one field of a result into v, failing on errors.
func decode(t *testing.T, r result, field string, v any) {
	t.Helper()
	if r.code() != "" {
		t.Fatalf("%s: %+v", field, r.Errors)
	}
	if err := json.Unmarshal(r.Data[field], v); err != nil {
		t.Fatalf("%s: %v (%s)", field, err, r.Data[field])
	}
}

// refusal is an input a mutation refuses for a caller, with the code and field of
// the answer.
type refusal struct {
	name, tok   string
	input       map[string]any
	code, field string
}

// wantError checks that a call failed with code, naming field ("" for none).
func wantError(t *testing.T, name string, r result, code, field string) {
	t.Helper()
	if r.code() != code {
		t.Errorf("%s: %+v, want %s", name, r.Errors, code)
		return
	}
	if f, _ := r.Errors[0].Extensions["field"].(string); f != field {
		t.Errorf("%s: field %q, want %q", name, f, field)
	}
}

// pageIDs reads a root connection page by page from its start through query (which
// takes $first and $after and selects totalCount, pageInfo and the nodes' ids),
// checks each page's totalCount, and answers the ids in order.
func (b *bundle) pageIDs(t *testing.T, tok, query, field string, first, total int) []string {
	t.Helper()
	var ids []string
	after := ""
	for range total + 1 {
		var p struct {
			TotalCount int
			PageInfo   struct {
				HasNextPage bool
				EndCursor   string
			}
			Edges []struct{ Node struct{ ID string } }
		}
		decode(t, b.do(t, tok, query, map[string]any{"first": first, "after": after}), field, &p)
		if p.TotalCount != total {
			t.Errorf("%s: totalCount = %d, want %d", field, p.TotalCount, total)
		}
		for _, e := range p.Edges {
			ids = append(ids, e.Node.ID)
		}
		if !p.PageInfo.HasNextPage {
			break
		}
		after = p.PageInfo.EndCursor
	}
	return ids
}

func callerToken(t *testing.T, tenant, role string) string {
	return token(t, claims(tenant, role, time.Now().Add(time.Hour)), jwt.SigningMethodHS256, secret)
}

func TestSendCampaignAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	editor, viewer, other := callerToken(t, "acme", "editor"), callerToken(t, "acme", "viewer"), callerToken(t, "globex", "admin")
	send := func(tok string, input map[string]any) result {
		in := map[string]any{"subject": "Autumn fair", "senderName": "Acme", "senderEmail": "news@acme.example", "htmlBody": "<p>Hi</p>"}
		for k, v := range input {
			in[k] = v
		}
		return b.do(t, tok, `mutation($in: SendCampaignInput!) { sendCampaign(input: $in) { `+sendFields+` } }`, map[string]any{"in": in})
	}

	at := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	var cs campaignSend
	decode(t, send(editor, map[string]any{"groupId": b.group.ID, "scheduledAt": at}), "sendCampaign", &cs)
	if cs.Status != "SCHEDULED" || cs.Trigger != "api" || cs.Subject != "Autumn fair" || cs.Group == nil || cs.Group.ID != b.group.ID ||
		cs.ScheduledAt == nil || !cs.ScheduledAt.Equal(at) || len(cs.ListIDs) != 0 || cs.Excluded == nil || cs.Progress.Total != 0 {
		t.Errorf("created %+v", cs)
	}
	if stored, err := b.store.Send(ctx, "acme", cs.ID); err != nil || stored.CreatedBy != "t" {
		t.Errorf("stored %+v, %v; want created by the caller's subject", stored, err)
	}
	var got campaignSend
	decode(t, b.do(t, viewer, `query($id: ID!) { campaignSend(id: $id) { `+sendFields+` } }`, map[string]any{"id": cs.ID}), "campaignSend", &got)
	if got.ID != cs.ID || got.Status != "SCHEDULED" {
		t.Errorf("campaignSend = %+v", got)
	}

	var draft campaignSend
	upper := strings.ToUpper(b.list.CRMListID)
	decode(t, send(editor, map[string]any{"listIds": []string{upper}, "draft": true}), "sendCampaign", &draft)
	if draft.Status != "DRAFT" || len(draft.ListIDs) != 1 || draft.ListIDs[0] != b.list.CRMListID || draft.Group != nil {
		t.Errorf("draft = %+v", draft)
	}

	for _, tt := range []refusal{
		{"empty subject", editor, map[string]any{"subject": " ", "groupId": b.group.ID}, "BAD_USER_INPUT", "subject"},
		{"list id not a GUID", editor, map[string]any{"listIds": []string{b.list.CRMListID, "fair"}}, "BAD_USER_INPUT", "listIds[1]"},
		{"viewer", viewer, map[string]any{"groupId": b.group.ID}, "FORBIDDEN", ""},
	} {
		wantError(t, tt.name, send(tt.tok, tt.input), tt.code, tt.field)
	}

	// Another tenant does not see the send, nor cancel it.
	if r := b.do(t, other, `query($id: ID!) { campaignSend(id: $id) { id } }`, map[string]any{"id": cs.ID}); r.code() != "NOT_FOUND" || string(r.Data["campaignSend"]) != "null" {
		t.Errorf("other tenant's campaignSend: %s %+v", r.Data["campaignSend"], r.Errors)
	}
	if r := b.do(t, other, `mutation($id: ID!) { cancelCampaignSend(id: $id) { id } }`, map[string]any{"id": cs.ID}); r.code() != "NOT_FOUND" {
		t.Errorf("other tenant's cancel: %+v", r.Errors)
	}

	// The group cannot go while its send is scheduled.
	r := b.do(t, editor, `mutation($g: ID!) { deleteSubscriberGroup(id: $g) }`, map[string]any{"g": b.group.ID})
	if r.code() != "CONFLICT" || r.Errors[0].Extensions["field"] != "id" {
		t.Errorf("delete a group with a scheduled send: %s %+v", r.Data["deleteSubscriberGroup"], r.Errors)
	}

	var cancelled campaignSend
	decode(t, b.do(t, editor, `mutation($id: ID!) { cancelCampaignSend(id: $id) { `+sendFields+` } }`, map[string]any{"id": cs.ID}), "cancelCampaignSend", &cancelled)
	if cancelled.Status != "CANCELLED" {
		t.Errorf("cancelled = %+v", cancelled)
	}
	if r := b.do(t, editor, `mutation($id: ID!) { cancelCampaignSend(id: $id) { id } }`, map[string]any{"id": cs.ID}); r.code() != "CONFLICT" {
		t.Errorf("cancel again: %+v", r.Errors)
	}
	if r := b.do(t, editor, `mutation($g: ID!) { deleteSubscriberGroup(id: $g) }`, map[string]any{"g": b.group.ID}); string(r.Data["deleteSubscriberGroup"]) != "true" {
		t.Errorf("delete the group once its send is cancelled: %+v", r.Errors)
	}
}

func TestCampaignSendsPaging(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	for i := range 5 {
		cs := &store.CampaignSend{ID: fmt.Sprintf("send%d", i), Tenant: "acme", GroupID: b.group.ID, Subject: "S", SenderName: "N",
			SenderEmail: "n@example.com", Status: store.SendScheduled, Trigger: store.SendTriggerAPI, CreatedAt: base.Add(time.Duration(i) * time.Minute)}
		if _, err := b.store.CreateSend(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.store.CreateSend(ctx, &store.CampaignSend{ID: "theirs", Tenant: "globex", Subject: "S", Status: store.SendScheduled, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	viewer := callerToken(t, "acme", "viewer")
	ids := b.pageIDs(t, viewer, `query($first: Int, $after: String) { campaignSends(first: $first, after: $after) {
		totalCount pageInfo { hasNextPage endCursor } edges { node { id } } } }`, "campaignSends", 2, 5)
	if strings.Join(ids, ",") != "send4,send3,send2,send1,send0" {
		t.Errorf("paged %v", ids)
	}
	if r := b.do(t, viewer, `{ campaignSends(after: "bm9wZQ") { totalCount } }`, nil); r.code() != "BAD_USER_INPUT" {
		t.Errorf("bad cursor: %+v", r.Errors)
	}
}

func TestCampaignReactionsAndStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	cs := startSend(t, b.store, &store.CampaignSend{Tenant: "acme", GroupID: b.group.ID, Subject: "S", SenderName: "N", SenderEmail: "n@example.com", Status: store.SendScheduled})
	cs.RecipientCount, cs.Sent, cs.NextSeq = 3, 3, 3
	saveProgress(t, b.store, cs)

	if _, err := b.store.UpsertSubscribers(ctx, "acme", b.group.ID, []store.SubscriberInput{{Email: "gone@example.com"}}); err != nil {
		t.Fatal(err)
	}
	gone, err := b.store.SubscriberByEmail(ctx, "acme", b.group.ID, "gone@example.com")
	if err != nil {
		t.Fatal(err)
	}
	theirGroup, err := b.store.CreateGroup(ctx, "globex", store.GroupInput{Name: "Theirs"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.UpsertSubscribers(ctx, "globex", theirGroup.ID, []store.SubscriberInput{{Email: "x@globex.example"}}); err != nil {
		t.Fatal(err)
	}
	theirs, err := b.store.SubscriberByEmail(ctx, "globex", theirGroup.ID, "x@globex.example")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for _, re := range []*store.Reaction{
		{Message: "m1", SubscriberID: b.sub.ID, Type: store.ReactionOpen},
		{Message: "m1", SubscriberID: b.sub.ID, Type: store.ReactionClick, URL: "https://acme.example/fair"},
		{Message: "m2", SubscriberID: gone.ID, Type: store.ReactionOpen},
		{Message: "m3", SubscriberID: theirs.ID, Type: store.ReactionBounce, BounceType: "hard"},
		{Message: "m1", SubscriberID: b.sub.ID, Type: store.ReactionComplaint},
	} {
		re.Tenant, re.SendID, re.OccurredAt = "acme", cs.ID, at
		if _, _, err := b.store.AddReaction(ctx, re); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.store.DeleteSubscriber(ctx, "acme", gone.ID, "test"); err != nil {
		t.Fatal(err)
	}

	viewer := callerToken(t, "acme", "viewer")
	type reactions struct {
		TotalCount int
		PageInfo   struct{ HasNextPage bool }
		Edges      []struct {
			Node struct {
				Type, OccurredAt string
				URL, BounceType  *string
				Subscriber       *struct{ Email string }
			}
		}
	}
	var got struct {
		Stats                       struct{ Sent, Opens, Clicks, Bounces, Unsubscribes, Complaints int }
		Progress                    struct{ Sent, Total int }
		All, Clicks, Opens, Bounces reactions
	}
	decode(t, b.do(t, viewer, `query($id: ID!) { campaignSend(id: $id) {
		stats { sent opens clicks bounces unsubscribes complaints } progress { sent total }
		all: reactions { totalCount }
		clicks: reactions(type: CLICK) { totalCount edges { node { type url bounceType subscriber { email } } } }
		opens: reactions(type: OPEN, first: 1) { totalCount pageInfo { hasNextPage } edges { node { type subscriber { email } } } }
		bounces: reactions(type: BOUNCE) { edges { node { bounceType url subscriber { email } } } }
	} }`, map[string]any{"id": cs.ID}), "campaignSend", &got)

	if s := got.Stats; s.Sent != 3 || s.Opens != 2 || s.Clicks != 1 || s.Bounces != 1 || s.Unsubscribes != 0 || s.Complaints != 1 {
		t.Errorf("stats = %+v", s)
	}
	if got.Progress.Sent != 3 || got.Progress.Total != 3 {
		t.Errorf("progress = %+v", got.Progress)
	}
	if got.All.TotalCount != 5 {
		t.Errorf("all reactions = %d", got.All.TotalCount)
	}
	if c := got.Clicks; c.TotalCount != 1 || len(c.Edges) != 1 || c.Edges[0].Node.Type != "CLICK" || c.Edges[0].Node.URL == nil ||
		*c.Edges[0].Node.URL != "https://acme.example/fair" || c.Edges[0].Node.BounceType != nil ||
		c.Edges[0].Node.Subscriber == nil || c.Edges[0].Node.Subscriber.Email != "a@example.com" {
		t.Errorf("clicks = %+v", c)
	}
	if o := got.Opens; o.TotalCount != 2 || len(o.Edges) != 1 || !o.PageInfo.HasNextPage || o.Edges[0].Node.Type != "OPEN" {
		t.Errorf("opens = %+v", o)
	}
	// A bounce of another tenant's subscriber: the reaction shows, the subscriber not.
	if bo := got.Bounces; len(bo.Edges) != 1 || bo.Edges[0].Node.BounceType == nil || *bo.Edges[0].Node.BounceType != "hard" ||
		bo.Edges[0].Node.URL != nil || bo.Edges[0].Node.Subscriber != nil {
		t.Errorf("bounces = %+v", bo)
	}
	// The deleted subscriber's open is still counted, with no subscriber.
	var opens struct{ Reactions reactions }
	decode(t, b.do(t, viewer, `query($id: ID!) { campaignSend(id: $id) { reactions(type: OPEN) { edges { node { subscriber { email } } } } } }`,
		map[string]any{"id": cs.ID}), "campaignSend", &opens)
	var emails []string
	for _, e := range opens.Reactions.Edges {
		if e.Node.Subscriber == nil {
			emails = append(emails, "null")
		} else {
			emails = append(emails, e.Node.Subscriber.Email)
		}
	}
	if strings.Join(emails, ",") != "a@example.com,null" {
		t.Errorf("open subscribers = %v", emails)
	}
}

func TestSetCampaignSettings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin, editor := callerToken(t, "acme", "admin"), callerToken(t, "acme", "editor")
	const settings = `campaignSettings { sendRatePerMinute responses softBounceLimit sendingEngineUrl hasSendingEngineSecret }`
	type got struct {
		CampaignSettings struct {
			SendRatePerMinute      int
			Responses              string
			SoftBounceLimit        int
			SendingEngineURL       *string `json:"sendingEngineUrl"`
			HasSendingEngineSecret bool
		}
	}
	var before got
	decode(t, b.do(t, editor, `query($c: ID!) { connection(id: $c) { `+settings+` } }`, map[string]any{"c": b.conn.ID}), "connection", &before)
	if s := before.CampaignSettings; s.SendRatePerMinute != 0 || s.Responses != "PER_REACTION" || s.SoftBounceLimit != 3 || s.SendingEngineURL != nil || s.HasSendingEngineSecret {
		t.Errorf("defaults = %+v", s)
	}

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	engineSecret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	set := func(tok string, input map[string]any) result {
		return b.do(t, tok, `mutation($c: ID!, $in: CampaignSettingsInput!) { setCampaignSettings(connectionId: $c, input: $in) { `+settings+` } }`,
			map[string]any{"c": b.conn.ID, "in": input})
	}
	r := set(admin, map[string]any{"sendRatePerMinute": 600, "responses": "FIRST_PER_TYPE", "softBounceLimit": 5,
		"sendingEngineUrl": "https://ems.example/send", "sendingEngineSecret": engineSecret})
	var after got
	decode(t, r, "setCampaignSettings", &after)
	if s := after.CampaignSettings; s.SendRatePerMinute != 600 || s.Responses != "FIRST_PER_TYPE" || s.SoftBounceLimit != 5 ||
		s.SendingEngineURL == nil || *s.SendingEngineURL != "https://ems.example/send" || !s.HasSendingEngineSecret {
		t.Errorf("after = %+v", s)
	}
	if strings.Contains(string(r.Data["setCampaignSettings"]), base64.StdEncoding.EncodeToString(key)) {
		t.Errorf("the secret came back: %s", r.Data["setCampaignSettings"])
	}
	// A partial change keeps the rest.
	decode(t, set(admin, map[string]any{"sendRatePerMinute": 0}), "setCampaignSettings", &after)
	if s := after.CampaignSettings; s.SendRatePerMinute != 0 || s.Responses != "FIRST_PER_TYPE" || !s.HasSendingEngineSecret {
		t.Errorf("after a partial change = %+v", s)
	}

	for _, tt := range []refusal{
		{"editor", editor, map[string]any{"sendRatePerMinute": 10}, "FORBIDDEN", ""},
		{"negative rate", admin, map[string]any{"sendRatePerMinute": -1}, "BAD_USER_INPUT", "sendRatePerMinute"},
		{"soft bounce limit 0", admin, map[string]any{"softBounceLimit": 0}, "BAD_USER_INPUT", "softBounceLimit"},
		{"not a URL", admin, map[string]any{"sendingEngineUrl": "ftp://ems.example"}, "BAD_USER_INPUT", "sendingEngineUrl"},
		{"engine without a secret", admin, map[string]any{"sendingEngineSecret": ""}, "BAD_USER_INPUT", "sendingEngineSecret"},
		{"bad secret", admin, map[string]any{"sendingEngineSecret": "hunter2"}, "BAD_USER_INPUT", "sendingEngineSecret"},
	} {
		wantError(t, tt.name, set(tt.tok, tt.input), tt.code, tt.field)
	}
	other := callerToken(t, "globex", "admin")
	if r := set(other, map[string]any{"sendRatePerMinute": 1}); r.code() != "NOT_FOUND" {
		t.Errorf("another tenant's connection: %+v", r.Errors)
	}
}

// wsMessage is a message of the graphql-transport-ws protocol.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// subscribe starts a subscription over a websocket of its own with the token.
func (b *bundle) subscribe(ctx context.Context, t *testing.T, tok, query string, vars map[string]any) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, strings.Replace(b.srv.URL, "http://", "ws://", 1), &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	init, _ := json.Marshal(map[string]string{"Authorization": "Bearer " + tok})
	if err := wsjson.Write(ctx, conn, wsMessage{Type: "connection_init", Payload: init}); err != nil {
		t.Fatal(err)
	}
	var ack wsMessage
	if err := wsjson.Read(ctx, conn, &ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("connection_init answered %+v, %v", ack, err)
	}
	payload, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err := wsjson.Write(ctx, conn, wsMessage{ID: "1", Type: "subscribe", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	return conn
}

// progressUpdate is one message of campaignSendProgress: a send, or errors.
type progressUpdate struct {
	Data struct {
		CampaignSendProgress *struct {
			Status   string
			Progress struct{ Sent, Total int }
		}
	}
	Errors []struct {
		Extensions map[string]any
	}
}

func readUpdate(ctx context.Context, t *testing.T, conn *websocket.Conn) (string, progressUpdate) {
	t.Helper()
	var m wsMessage
	if err := wsjson.Read(ctx, conn, &m); err != nil {
		t.Fatalf("read: %v", err)
	}
	var u progressUpdate
	if m.Type == "next" {
		if err := json.Unmarshal(m.Payload, &u); err != nil {
			t.Fatal(err)
		}
	} else if m.Type == "error" {
		if err := json.Unmarshal(m.Payload, &u.Errors); err != nil {
			t.Fatal(err)
		}
	}
	return m.Type, u
}

func TestCampaignSendProgressSubscription(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := &store.CampaignSend{Tenant: "acme", GroupID: b.group.ID, Subject: "S", SenderName: "N", SenderEmail: "n@example.com", Status: store.SendScheduled}
	if _, err := b.store.CreateSend(ctx, cs); err != nil {
		t.Fatal(err)
	}
	const query = `subscription($id: ID!) { campaignSendProgress(id: $id) { status progress { sent total } } }`
	conn := b.subscribe(ctx, t, callerToken(t, "acme", "viewer"), query, map[string]any{"id": cs.ID})

	expect := func(status string, sent, total int) {
		t.Helper()
		typ, u := readUpdate(ctx, t, conn)
		got := u.Data.CampaignSendProgress
		if typ != "next" || got == nil || got.Status != status || got.Progress.Sent != sent || got.Progress.Total != total {
			t.Fatalf("got %s %+v, want %s %d/%d", typ, got, status, sent, total)
		}
	}
	expect("SCHEDULED", 0, 0)

	if err := b.store.StartSend(ctx, cs, 1); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	cs.Status, cs.Resolved, cs.RecipientCount, cs.StartedAt = store.SendSending, true, 2, &now
	saveProgress(t, b.store, cs)
	expect("SENDING", 0, 2)

	cs.Sent, cs.NextSeq = 1, 1
	saveProgress(t, b.store, cs)
	expect("SENDING", 1, 2)

	cs.Sent, cs.NextSeq, cs.Status, cs.FinishedAt = 2, 2, store.SendSent, &now
	saveProgress(t, b.store, cs)
	expect("SENT", 2, 2)
	if typ, _ := readUpdate(ctx, t, conn); typ != "complete" {
		t.Errorf("after SENT: %s, want complete", typ)
	}

	// A finished send: once, then complete.
	done := b.subscribe(ctx, t, callerToken(t, "acme", "viewer"), query, map[string]any{"id": cs.ID})
	if typ, u := readUpdate(ctx, t, done); typ != "next" || u.Data.CampaignSendProgress == nil || u.Data.CampaignSendProgress.Status != "SENT" {
		t.Errorf("finished send: %s %+v", typ, u)
	}
	if typ, _ := readUpdate(ctx, t, done); typ != "complete" {
		t.Errorf("finished send then %s, want complete", typ)
	}

	// Another tenant's send is not found.
	theirs := b.subscribe(ctx, t, callerToken(t, "globex", "admin"), query, map[string]any{"id": cs.ID})
	typ, u := readUpdate(ctx, t, theirs)
	if len(u.Errors) == 0 || u.Errors[0].Extensions["code"] != "NOT_FOUND" || (u.Data.CampaignSendProgress != nil) {
		t.Errorf("another tenant's send: %s %+v", typ, u)
	}
}
