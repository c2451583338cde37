package graph_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"crmsync/store"
)

// formFields selects all of a Form.
const formFields = `id name group { id } fields { name label type required maxLength subscriberField }
	doubleOptIn doubleOptInStatus confirmation { subject htmlBody textBody senderName senderEmail }
	redirectUrl confirmedUrl allowedOrigins consentText consentVersion pendingHours submitUrl createdAt updatedAt`

// form is what the tests read of a Form.
type form struct {
	ID, Name, DoubleOptInStatus, SubmitURL string
	Group                                  struct{ ID string }
	Fields                                 []struct {
		Name, Label, Type string
		Required          bool
		MaxLength         *int
		SubscriberField   *string
	}
	DoubleOptIn  bool
	Confirmation *struct {
		Subject, SenderName, SenderEmail string
		HTMLBody, TextBody               *string
	}
	RedirectURL, ConfirmedURL, ConsentText, ConsentVersion *string
	AllowedOrigins                                         []string
	PendingHours                                           int
	CreatedAt, UpdatedAt                                   time.Time
}

// formInput is a double opt-in form of group with three fields, changed by changes.
func formInput(group string, changes map[string]any) map[string]any {
	in := map[string]any{
		"groupId": group, "name": "Newsletter", "doubleOptIn": true,
		"fields": []any{
			map[string]any{"name": "email", "label": "E-mail", "type": "EMAIL", "subscriberField": "email"},
			map[string]any{"name": "firstName", "type": "TEXT", "maxLength": 80, "subscriberField": "fields.firstName"},
			map[string]any{"name": "consent", "type": "CHECKBOX", "required": true},
		},
		"confirmation":   map[string]any{"subject": "Please confirm", "textBody": "Confirm: {{confirmUrl}}", "senderName": "Acme", "senderEmail": " News@Acme.example "},
		"redirectUrl":    "https://acme.example/thanks",
		"confirmedUrl":   "https://acme.example/welcome",
		"allowedOrigins": []string{"HTTPS://Acme.example", "https://acme.example/"},
		"consentText":    "I would like the newsletter.",
		"pendingHours":   48,
	}
	maps.Copy(in, changes)
	return in
}

// emailOnly is a form's fields with just the address.
var emailOnly = []any{map[string]any{"name": "email", "type": "EMAIL", "subscriberField": "email"}}

// addSubscriber stores a subscriber of a group and answers it.
func addSubscriber(t *testing.T, st *store.Store, tenant, groupID, email string) *store.Subscriber {
	t.Helper()
	ctx := context.Background()
	if _, err := st.UpsertSubscribers(ctx, tenant, groupID, []store.SubscriberInput{{Email: email}}); err != nil {
		t.Fatal(err)
	}
	sub, err := st.SubscriberByEmail(ctx, tenant, groupID, email)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestForms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	editor, viewer, other := callerToken(t, "acme", "editor"), callerToken(t, "acme", "viewer"), callerToken(t, "globex", "admin")
	create := func(tok string, in map[string]any) result {
		return b.do(t, tok, `mutation($in: FormInput!) { createForm(input: $in) { `+formFields+` } }`, map[string]any{"in": in})
	}
	update := func(tok, id string, in map[string]any) result {
		return b.do(t, tok, `mutation($id: ID!, $in: FormInput!) { updateForm(id: $id, input: $in) { `+formFields+` } }`, map[string]any{"id": id, "in": in})
	}

	var f form
	decode(t, create(editor, formInput(b.group.ID, nil)), "createForm", &f)
	if f.Name != "Newsletter" || f.Group.ID != b.group.ID || !f.DoubleOptIn || f.DoubleOptInStatus != "UNKNOWN" || f.PendingHours != 48 ||
		f.SubmitURL != "https://crmsync.example/forms/"+f.ID || f.CreatedAt.IsZero() || !f.UpdatedAt.Equal(f.CreatedAt) {
		t.Errorf("created %+v", f)
	}
	if len(f.Fields) != 3 {
		t.Fatalf("fields = %+v", f.Fields)
	}
	if e := f.Fields[0]; e.Name != "email" || e.Label != "E-mail" || e.Type != "EMAIL" || !e.Required || e.MaxLength != nil || *e.SubscriberField != "email" {
		t.Errorf("the address field (always required) = %+v", e)
	}
	if n := f.Fields[1]; n.Type != "TEXT" || n.Required || n.MaxLength == nil || *n.MaxLength != 80 || *n.SubscriberField != "fields.firstName" {
		t.Errorf("the name field = %+v", n)
	}
	if c := f.Fields[2]; c.Type != "CHECKBOX" || !c.Required || c.Label != "" || c.SubscriberField != nil {
		t.Errorf("the consent box = %+v", c)
	}
	if c := f.Confirmation; c == nil || c.Subject != "Please confirm" || c.SenderEmail != "news@acme.example" || c.SenderName != "Acme" ||
		c.HTMLBody != nil || c.TextBody == nil || *c.TextBody != "Confirm: {{confirmUrl}}" {
		t.Errorf("confirmation = %+v", f.Confirmation)
	}
	if *f.RedirectURL != "https://acme.example/thanks" || *f.ConfirmedURL != "https://acme.example/welcome" ||
		!slices.Equal(f.AllowedOrigins, []string{"https://acme.example"}) || *f.ConsentText != "I would like the newsletter." ||
		!strings.HasPrefix(*f.ConsentVersion, "sha256:") {
		t.Errorf("created %+v", f)
	}
	var read form
	decode(t, b.do(t, viewer, `query($id: ID!) { form(id: $id) { `+formFields+` } }`, map[string]any{"id": f.ID}), "form", &read)
	// The store keeps times to the millisecond.
	if read.ID != f.ID || read.Name != f.Name || len(read.Fields) != 3 || !read.UpdatedAt.Equal(f.UpdatedAt.Truncate(time.Millisecond)) {
		t.Errorf("form = %+v", read)
	}

	// updateForm replaces every setting: what the input leaves out is cleared.
	var upd form
	decode(t, update(editor, f.ID, map[string]any{"groupId": b.group.ID, "name": "Fair", "doubleOptIn": false,
		"doubleOptInStatus": "EXTERNALLY_DOCUMENTED", "fields": emailOnly}), "updateForm", &upd)
	if upd.ID != f.ID || upd.Name != "Fair" || upd.DoubleOptIn || upd.DoubleOptInStatus != "EXTERNALLY_DOCUMENTED" || len(upd.Fields) != 1 ||
		upd.Confirmation != nil || upd.RedirectURL != nil || upd.ConfirmedURL != nil || upd.ConsentText != nil || upd.ConsentVersion != nil ||
		len(upd.AllowedOrigins) != 0 || upd.PendingHours != 72 || upd.SubmitURL != f.SubmitURL || !upd.CreatedAt.Equal(f.CreatedAt.Truncate(time.Millisecond)) || upd.UpdatedAt.Before(f.UpdatedAt) {
		t.Errorf("updated %+v", upd)
	}

	// Paging in creation order, and only acme's forms.
	ids := []string{f.ID}
	for _, name := range []string{"Second", "Third"} {
		var more form
		decode(t, create(editor, formInput(b.group.ID, map[string]any{"name": name})), "createForm", &more)
		ids = append(ids, more.ID)
	}
	theirGroup, err := b.store.CreateGroup(context.Background(), "globex", store.GroupInput{Name: "Theirs"})
	if err != nil {
		t.Fatal(err)
	}
	var theirs form
	decode(t, create(other, formInput(theirGroup.ID, nil)), "createForm", &theirs)
	paged := b.pageIDs(t, viewer, `query($first: Int, $after: String) { forms(first: $first, after: $after) {
		totalCount pageInfo { hasNextPage endCursor } edges { node { id } } } }`, "forms", 2, 3)
	if !slices.Equal(paged, ids) {
		t.Errorf("paged %v, want %v", paged, ids)
	}

	for _, tt := range []refusal{
		{"viewer", viewer, nil, "FORBIDDEN", ""},
		{"no name", editor, map[string]any{"name": " "}, "BAD_USER_INPUT", "name"},
		{"unknown group", editor, map[string]any{"groupId": "nope"}, "BAD_USER_INPUT", "groupId"},
		{"another tenant's group", editor, map[string]any{"groupId": theirGroup.ID}, "BAD_USER_INPUT", "groupId"},
		{"no address field", editor, map[string]any{"fields": []any{map[string]any{"name": "name", "type": "TEXT"}}}, "BAD_USER_INPUT", "fields"},
		{"the honeypot's name", editor, map[string]any{"fields": append([]any{map[string]any{"name": "website", "type": "TEXT"}}, emailOnly...)}, "BAD_USER_INPUT", "fields[0].name"},
		{"a name twice", editor, map[string]any{"fields": append(slices.Clone(emailOnly), map[string]any{"name": "email", "type": "TEXT"})}, "BAD_USER_INPUT", "fields[1].name"},
		{"address in a text field", editor, map[string]any{"fields": []any{map[string]any{"name": "email", "type": "TEXT", "subscriberField": "email"}}}, "BAD_USER_INPUT", "fields[0].subscriberField"},
		{"negative maxLength", editor, map[string]any{"fields": append(slices.Clone(emailOnly), map[string]any{"name": "x", "type": "TEXT", "maxLength": -1})}, "BAD_USER_INPUT", "fields[1].maxLength"},
		{"double opt-in without confirmation", editor, map[string]any{"confirmation": nil}, "BAD_USER_INPUT", "confirmation"},
		{"confirmation without subject", editor, map[string]any{"confirmation": map[string]any{"subject": "", "textBody": "x", "senderEmail": "n@acme.example"}}, "BAD_USER_INPUT", "confirmation.subject"},
		{"confirmation without body", editor, map[string]any{"confirmation": map[string]any{"subject": "S", "senderEmail": "n@acme.example"}}, "BAD_USER_INPUT", "confirmation.htmlBody"},
		{"confirmation from no address", editor, map[string]any{"confirmation": map[string]any{"subject": "S", "textBody": "x", "senderEmail": "acme"}}, "BAD_USER_INPUT", "confirmation.senderEmail"},
		{"status of the opt-in itself", editor, map[string]any{"doubleOptInStatus": "CONFIRMED"}, "BAD_USER_INPUT", "doubleOptInStatus"},
		{"redirect not http", editor, map[string]any{"redirectUrl": "ftp://acme.example/thanks"}, "BAD_USER_INPUT", "redirectUrl"},
		{"confirmed not a URL", editor, map[string]any{"confirmedUrl": "welcome"}, "BAD_USER_INPUT", "confirmedUrl"},
		{"origin with a path", editor, map[string]any{"allowedOrigins": []string{"https://a.example", "https://b.example/form"}}, "BAD_USER_INPUT", "allowedOrigins[1]"},
		{"pending too long", editor, map[string]any{"pendingHours": 1000}, "BAD_USER_INPUT", "pendingHours"},
	} {
		wantError(t, tt.name, create(tt.tok, formInput(b.group.ID, tt.input)), tt.code, tt.field)
	}
	wantError(t, "update with bad input", update(editor, f.ID, formInput(b.group.ID, map[string]any{"pendingHours": -1})), "BAD_USER_INPUT", "pendingHours")
	wantError(t, "viewer updates", update(viewer, f.ID, formInput(b.group.ID, nil)), "FORBIDDEN", "")
	wantError(t, "update an unknown form", update(editor, "nope", formInput(b.group.ID, nil)), "NOT_FOUND", "")

	// Another tenant sees none of acme's forms, and cannot change one.
	wantError(t, "another tenant's form", b.do(t, other, `query($id: ID!) { form(id: $id) { id } }`, map[string]any{"id": f.ID}), "NOT_FOUND", "")
	wantError(t, "update another tenant's form", update(other, f.ID, formInput(theirGroup.ID, nil)), "NOT_FOUND", "")
	wantError(t, "move a form to another tenant's group", update(editor, f.ID, formInput(theirGroup.ID, nil)), "BAD_USER_INPUT", "groupId")
	var theirList struct{ TotalCount int }
	decode(t, b.do(t, other, `{ forms { totalCount } }`, nil), "forms", &theirList)
	if theirList.TotalCount != 1 {
		t.Errorf("globex sees %d forms, want its own 1", theirList.TotalCount)
	}
}

// consentEvent is what the tests read of a ConsentEvent.
type consentEvent struct {
	ID, Action, Source, Email                                                         string
	At                                                                                time.Time
	IP, UserAgent, FormID, TokenID, TextVersion, Actor, Detail, SubscriberID, GroupID *string
}

const consentFields = `id action source at email ip userAgent formId tokenId textVersion actor detail subscriberId groupId`

func TestConsentHistory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	someoneElse := addSubscriber(t, b.store, "acme", b.group.ID, "b@example.com")
	ours := []*store.ConsentEvent{
		{Action: store.ConsentRequested, Source: store.SourceForm, At: base, IP: "203.0.113.7", UserAgent: "Firefox", FormID: "form1", TextVersion: "v1"},
		{Action: store.ConsentConfirmed, Source: store.SourceConfirmation, At: base.Add(time.Hour), TokenID: "tok1"},
		{Action: store.ConsentUnsubscribed, Source: store.SourceOperator, At: base.Add(2 * time.Hour), Actor: "ops", Detail: "asked by phone"},
	}
	for _, ev := range ours {
		ev.Tenant, ev.SubscriberID, ev.GroupID, ev.Email = "acme", b.sub.ID, b.group.ID, b.sub.Email
	}
	if err := b.store.AppendConsent(ctx, ours...); err != nil {
		t.Fatal(err)
	}
	if err := b.store.AppendConsent(ctx,
		&store.ConsentEvent{Tenant: "acme", SubscriberID: someoneElse.ID, GroupID: b.group.ID, Email: someoneElse.Email, Action: store.ConsentSubscribed, Source: store.SourceCRM},
		&store.ConsentEvent{Tenant: "globex", SubscriberID: b.sub.ID, GroupID: "g", Email: b.sub.Email, Action: store.ConsentSubscribed, Source: store.SourceCRM},
	); err != nil {
		t.Fatal(err)
	}

	viewer := callerToken(t, "acme", "viewer")
	ids := b.pageIDs(t, viewer, `query($first: Int, $after: String) { consentHistory(subscriberId: "`+b.sub.ID+`", first: $first, after: $after) {
		totalCount pageInfo { hasNextPage endCursor } edges { node { id } } } }`, "consentHistory", 2, 3)
	if want := []string{ours[0].ID, ours[1].ID, ours[2].ID}; !slices.Equal(ids, want) {
		t.Errorf("paged %v, want the ledger's order %v", ids, want)
	}

	var h struct{ Edges []struct{ Node consentEvent } }
	decode(t, b.do(t, viewer, `query($s: ID!) { consentHistory(subscriberId: $s) { edges { node { `+consentFields+` } } } }`,
		map[string]any{"s": b.sub.ID}), "consentHistory", &h)
	if len(h.Edges) != 3 {
		t.Fatalf("history = %+v", h)
	}
	req, conf, unsub := h.Edges[0].Node, h.Edges[1].Node, h.Edges[2].Node
	if req.Action != "REQUESTED" || req.Source != "FORM" || !req.At.Equal(base) || req.Email != "a@example.com" || *req.IP != "203.0.113.7" ||
		*req.UserAgent != "Firefox" || *req.FormID != "form1" || *req.TextVersion != "v1" || req.TokenID != nil || req.Actor != nil ||
		*req.SubscriberID != b.sub.ID || *req.GroupID != b.group.ID {
		t.Errorf("requested = %s", show(req))
	}
	if conf.Action != "CONFIRMED" || conf.Source != "CONFIRMATION" || *conf.TokenID != "tok1" || conf.IP != nil || conf.FormID != nil {
		t.Errorf("confirmed = %s", show(conf))
	}
	if unsub.Action != "UNSUBSCRIBED" || unsub.Source != "OPERATOR" || *unsub.Actor != "ops" || *unsub.Detail != "asked by phone" {
		t.Errorf("unsubscribed = %s", show(unsub))
	}

	query := `query($s: ID!) { consentHistory(subscriberId: $s) { totalCount } }`
	wantError(t, "another tenant's subscriber", b.do(t, callerToken(t, "globex", "admin"), query, map[string]any{"s": b.sub.ID}), "NOT_FOUND", "")
	wantError(t, "unknown subscriber", b.do(t, viewer, query, map[string]any{"s": "nope"}), "NOT_FOUND", "")
	wantError(t, "bad cursor", b.do(t, viewer, `query($s: ID!) { consentHistory(subscriberId: $s, after: "bm9wZQ") { totalCount } }`,
		map[string]any{"s": b.sub.ID}), "BAD_USER_INPUT", "after")
}

// show prints a value with its pointers followed, for failure messages.
func show(v any) string {
	out, _ := json.Marshal(v)
	return string(out)
}

func TestConsentExport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	events, err := b.store.CreateGroup(ctx, "acme", store.GroupInput{Name: "Events"})
	if err != nil {
		t.Fatal(err)
	}
	again := addSubscriber(t, b.store, "acme", events.ID, "a@example.com")
	addSubscriber(t, b.store, "acme", events.ID, "b@example.com")
	theirGroup, err := b.store.CreateGroup(ctx, "globex", store.GroupInput{Name: "Theirs"})
	if err != nil {
		t.Fatal(err)
	}
	theirs := addSubscriber(t, b.store, "globex", theirGroup.ID, "a@example.com")
	evs := []*store.ConsentEvent{
		{Tenant: "acme", SubscriberID: b.sub.ID, GroupID: b.group.ID, Email: "a@example.com", Action: store.ConsentSubscribed, Source: store.SourceCRM},
		{Tenant: "acme", SubscriberID: again.ID, GroupID: events.ID, Email: "a@example.com", Action: store.ConsentRequested, Source: store.SourceForm},
		{Tenant: "acme", SubscriberID: again.ID, GroupID: events.ID, Email: "a@example.com", Action: store.ConsentConfirmed, Source: store.SourceConfirmation},
		{Tenant: "acme", SubscriberID: "b", GroupID: events.ID, Email: "b@example.com", Action: store.ConsentSubscribed, Source: store.SourceForm},
		{Tenant: "globex", SubscriberID: theirs.ID, GroupID: theirGroup.ID, Email: "a@example.com", Action: store.ConsentSubscribed, Source: store.SourceForm},
	}
	if err := b.store.AppendConsent(ctx, evs...); err != nil {
		t.Fatal(err)
	}

	admin := callerToken(t, "acme", "admin")
	export := func(tok, email string) result {
		return b.do(t, tok, `query($e: String!) { consentExport(email: $e) { email events { id action groupId } subscribers { id email group { name } } } }`,
			map[string]any{"e": email})
	}
	var got struct {
		Email  string
		Events []struct {
			ID, Action, GroupID string
		}
		Subscribers []struct {
			ID, Email string
			Group     struct{ Name string }
		}
	}
	decode(t, export(admin, " A@Example.com "), "consentExport", &got)
	var evIDs, subIDs []string
	for _, e := range got.Events {
		evIDs = append(evIDs, e.ID)
	}
	for _, s := range got.Subscribers {
		subIDs = append(subIDs, s.ID)
	}
	slices.Sort(subIDs)
	wantSubs := []string{b.sub.ID, again.ID}
	slices.Sort(wantSubs)
	wantEvents := []string{evs[0].ID, evs[1].ID, evs[2].ID}
	if got.Email != "a@example.com" || !slices.Equal(evIDs, wantEvents) || !slices.Equal(subIDs, wantSubs) {
		t.Errorf("export = %s; want events %v and subscribers %v", show(got), wantEvents, wantSubs)
	}

	var none struct {
		Events      []any
		Subscribers []any
	}
	decode(t, export(admin, "nobody@example.com"), "consentExport", &none)
	if none.Events == nil || len(none.Events) != 0 || none.Subscribers == nil || len(none.Subscribers) != 0 {
		t.Errorf("an unknown address: %+v, want empty lists", none)
	}
	wantError(t, "not an address", export(admin, "nobody"), "BAD_USER_INPUT", "email")
	wantError(t, "editor", export(callerToken(t, "acme", "editor"), "a@example.com"), "FORBIDDEN", "")
}

func TestSuppression(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	subs := map[string]*store.Subscriber{}
	for _, e := range []string{"unsub@example.com", "bounced@example.com", "complained@example.com", "quiet@example.com"} {
		subs[e] = addSubscriber(t, b.store, "acme", b.group.ID, e)
	}
	for _, e := range []string{"unsub@example.com", "complained@example.com", "quiet@example.com"} {
		if _, err := b.store.Unsubscribe(ctx, "acme", subs[e].ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.store.RecordBounce(ctx, "acme", subs["bounced@example.com"].ID, true, 3); err != nil {
		t.Fatal(err)
	}
	ledger := map[string]store.ConsentAction{"unsub@example.com": store.ConsentUnsubscribed, "bounced@example.com": store.ConsentBounced, "complained@example.com": store.ConsentComplained}
	for e, action := range ledger {
		s := subs[e]
		if err := b.store.AppendConsent(ctx, &store.ConsentEvent{Tenant: "acme", SubscriberID: s.ID, GroupID: s.GroupID, Email: e,
			Action: action, Source: store.SourceReaction, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	// Not of the connection: an unsubscribed subscriber of a group without one.
	plain, err := b.store.CreateGroup(ctx, "acme", store.GroupInput{Name: "Plain"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Unsubscribe(ctx, "acme", addSubscriber(t, b.store, "acme", plain.ID, "elsewhere@example.com").ID); err != nil {
		t.Fatal(err)
	}

	viewer := callerToken(t, "acme", "viewer")
	// A Suppressed has no id: page through the addresses instead.
	paged := b.pageIDs(t, viewer, `query($first: Int, $after: String) { suppression(connectionId: "`+b.conn.ID+`", first: $first, after: $after) {
		totalCount pageInfo { hasNextPage endCursor } edges { node { id: email } } } }`, "suppression", 3, 4)
	if len(paged) != 4 {
		t.Errorf("paged %v", paged)
	}
	var got struct {
		Edges []struct {
			Node struct {
				Email, Reason string
				At            *time.Time
				Subscriber    *struct{ ID, SubscriptionState string }
			}
		}
	}
	decode(t, b.do(t, viewer, `query($c: ID!) { suppression(connectionId: $c) { edges { node { email reason at subscriber { id subscriptionState } } } } }`,
		map[string]any{"c": b.conn.ID}), "suppression", &got)
	want := map[string]string{"unsub@example.com": "UNSUBSCRIBED", "bounced@example.com": "BOUNCED", "complained@example.com": "COMPLAINED", "quiet@example.com": "UNSUBSCRIBED"}
	var emails []string
	for _, e := range got.Edges {
		n := e.Node
		emails = append(emails, n.Email)
		if n.Reason != want[n.Email] || n.At == nil || n.Subscriber == nil || n.Subscriber.ID != subs[n.Email].ID {
			t.Errorf("%s: %s, want reason %s", n.Email, show(n), want[n.Email])
			continue
		}
		if _, inLedger := ledger[n.Email]; inLedger && !n.At.Equal(at) {
			t.Errorf("%s at %v, want the ledger's %v", n.Email, n.At, at)
		}
	}
	if !slices.Equal(emails, paged) || len(emails) != len(want) {
		t.Errorf("suppressed %v (paged %v), want %d addresses", emails, paged, len(want))
	}

	query := `query($c: ID!) { suppression(connectionId: $c) { totalCount } }`
	wantError(t, "another tenant's connection", b.do(t, callerToken(t, "globex", "admin"), query, map[string]any{"c": b.conn.ID}), "NOT_FOUND", "")
	wantError(t, "unknown connection", b.do(t, viewer, query, map[string]any{"c": "nope"}), "NOT_FOUND", "")
	wantError(t, "first over 500", b.do(t, viewer, `query($c: ID!) { suppression(connectionId: $c, first: 501) { totalCount } }`,
		map[string]any{"c": b.conn.ID}), "TOO_COMPLEX", "first")
}

// TestDeleteGroupWithForms: a group that sign-up forms still add subscribers to is
// not deleted, and the answer names the forms and what to do; once they are gone
// or point elsewhere, it is.
func TestDeleteGroupWithForms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	editor, other := callerToken(t, "acme", "editor"), callerToken(t, "globex", "admin")
	var ids []string
	for _, name := range []string{"One", "Two", "Three", "Four"} {
		f, err := b.store.CreateForm(ctx, "acme", store.FormInput{GroupID: b.group.ID, Name: name,
			Fields: []store.FormField{{Name: "email", Type: store.FieldEmail, SubscriberField: "email"}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f.ID)
	}
	del := func(tok string) result {
		return b.do(t, tok, `mutation($g: ID!) { deleteSubscriberGroup(id: $g) }`, map[string]any{"g": b.group.ID})
	}
	refused := func(want string) {
		t.Helper()
		r := del(editor)
		wantError(t, "delete a group with forms", r, "CONFLICT", "id")
		if len(r.Errors) > 0 && !strings.Contains(r.Errors[0].Message, want) {
			t.Errorf("message %q, want it to contain %q", r.Errors[0].Message, want)
		}
		var g struct{ SubscriberCount int }
		decode(t, b.do(t, editor, `query($g: ID!) { subscriberGroup(id: $g) { subscriberCount } }`, map[string]any{"g": b.group.ID}), "subscriberGroup", &g)
		if g.SubscriberCount != 1 {
			t.Errorf("the refused group has %d subscribers, want its 1", g.SubscriberCount)
		}
	}

	refused(`the group has 4 sign-up forms ("One", "Two", "Three" and 1 more) that add subscribers to it; delete them (deleteForm) or point them at another group (updateForm) first`)
	wantError(t, "another tenant deletes the group", del(other), "NOT_FOUND", "")

	for _, id := range ids[:3] {
		if r := b.do(t, editor, `mutation($f: ID!) { deleteForm(id: $f) }`, map[string]any{"f": id}); string(r.Data["deleteForm"]) != "true" {
			t.Fatalf("deleteForm: %+v", r.Errors)
		}
	}
	refused(`the group has a sign-up form ("Four") that adds subscribers to it; delete it (deleteForm) or point it at another group (updateForm) first`)

	// Moved to another group, the last form no longer holds this one.
	var elsewhere struct{ ID string }
	decode(t, b.do(t, editor, `mutation { createSubscriberGroup(input: {name: "Elsewhere"}) { id } }`, nil), "createSubscriberGroup", &elsewhere)
	var moved form
	decode(t, b.do(t, editor, `mutation($id: ID!, $in: FormInput!) { updateForm(id: $id, input: $in) { `+formFields+` } }`,
		map[string]any{"id": ids[3], "in": formInput(elsewhere.ID, map[string]any{"name": "Four"})}), "updateForm", &moved)
	if r := del(editor); string(r.Data["deleteSubscriberGroup"]) != "true" {
		t.Fatalf("delete the group without forms: %+v", r.Errors)
	}
	wantError(t, "the deleted group", b.do(t, editor, `query($g: ID!) { subscriberGroup(id: $g) { id } }`, map[string]any{"g": b.group.ID}), "NOT_FOUND", "")
	var kept form
	decode(t, b.do(t, editor, `query($id: ID!) { form(id: $id) { `+formFields+` } }`, map[string]any{"id": ids[3]}), "form", &kept)
	if kept.Group.ID != elsewhere.ID {
		t.Errorf("the moved form's group = %s, want %s", kept.Group.ID, elsewhere.ID)
	}
}

func TestDeleteForm(t *testing.T) {
	t.Parallel()
	b := setup(t)
	editor, viewer, other := callerToken(t, "acme", "editor"), callerToken(t, "acme", "viewer"), callerToken(t, "globex", "admin")
	var f form
	decode(t, b.do(t, editor, `mutation($in: FormInput!) { createForm(input: $in) { `+formFields+` } }`,
		map[string]any{"in": formInput(b.group.ID, nil)}), "createForm", &f)
	del := func(tok, id string) result {
		return b.do(t, tok, `mutation($f: ID!) { deleteForm(id: $f) }`, map[string]any{"f": id})
	}
	wantError(t, "viewer deletes", del(viewer, f.ID), "FORBIDDEN", "")
	wantError(t, "another tenant deletes", del(other, f.ID), "NOT_FOUND", "")
	wantError(t, "delete an unknown form", del(editor, "nope"), "NOT_FOUND", "")
	if r := del(editor, f.ID); string(r.Data["deleteForm"]) != "true" {
		t.Fatalf("deleteForm: %+v", r.Errors)
	}
	wantError(t, "the deleted form", b.do(t, editor, `query($id: ID!) { form(id: $id) { id } }`, map[string]any{"id": f.ID}), "NOT_FOUND", "")
	wantError(t, "delete it again", del(editor, f.ID), "NOT_FOUND", "")
}
