package store_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"crmsync/store"
	"crmsync/store/storetest"
)

// formInput is a valid double opt-in form of a group.
func formInput(groupID string) store.FormInput {
	return store.FormInput{
		GroupID: groupID, Name: "Newsletter",
		Fields: []store.FormField{
			{Name: "email", Label: "E-mail", Type: store.FieldEmail, SubscriberField: "email"},
			{Name: "firstName", Type: store.FieldText, SubscriberField: "fields.firstName", MaxLength: 20},
			{Name: "consent", Type: store.FieldCheckbox, Required: true},
		},
		DoubleOptIn:  true,
		Confirmation: &store.FormEmail{Subject: "Please confirm", TextBody: "Confirm: {{confirmUrl}}", SenderName: "Shop", SenderEmail: "News@Shop.example"},
		ConsentText:  "Yes, send me the newsletter.",
	}
}

func newGroup(t *testing.T, s *store.Store, tenant string) *store.Group {
	t.Helper()
	g, err := s.CreateGroup(context.Background(), tenant, store.GroupInput{Name: "News"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCreateFormFillsDefaults(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	g := newGroup(t, s, "t1")
	in := formInput(g.ID)
	in.AllowedOrigins = []string{"HTTPS://Shop.example/", "https://shop.example"}
	f, err := s.CreateForm(context.Background(), "t1", in)
	if err != nil {
		t.Fatal(err)
	}
	if f.PendingHours != store.DefaultPendingHours || f.DoubleOptInStatus != store.OptInUnknown || !strings.HasPrefix(f.ConsentVersion, "sha256:") {
		t.Errorf("defaults: pendingHours %d, doubleOptInStatus %s, consentVersion %q", f.PendingHours, f.DoubleOptInStatus, f.ConsentVersion)
	}
	if !reflect.DeepEqual(f.AllowedOrigins, []string{"https://shop.example"}) {
		t.Errorf("origins %q, want one, normalised", f.AllowedOrigins)
	}
	if !f.Fields[0].Required || f.Confirmation.SenderEmail != "news@shop.example" || f.EmailField() != "email" {
		t.Errorf("the e-mail field must be required and the sender normalised: %+v %+v", f.Fields[0], f.Confirmation)
	}
	if !f.AllowsOrigin("https://SHOP.example") || f.AllowsOrigin("https://evil.example") {
		t.Error("AllowsOrigin must match the allowed origins exactly, in any case")
	}
}

func TestCreateFormNamesTheInvalidField(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	g := newGroup(t, s, "t1")
	other := newGroup(t, s, "t2")
	for _, tc := range []struct {
		field  string
		change func(*store.FormInput)
	}{
		{"groupId", func(in *store.FormInput) { in.GroupID = other.ID }},
		{"name", func(in *store.FormInput) { in.Name = " " }},
		{"fields", func(in *store.FormInput) { in.Fields = nil }},
		{"fields", func(in *store.FormInput) { in.Fields = in.Fields[1:] }},
		{"fields[1].name", func(in *store.FormInput) { in.Fields[1].Name = "first name" }},
		{"fields[2].name", func(in *store.FormInput) { in.Fields[2].Name = "website" }},
		{"fields[2].name", func(in *store.FormInput) { in.Fields[2].Name = "email" }},
		{"fields[1].type", func(in *store.FormInput) { in.Fields[1].Type = "DATE" }},
		{"fields[1].maxLength", func(in *store.FormInput) { in.Fields[1].MaxLength = -1 }},
		{"fields[1].subscriberField", func(in *store.FormInput) { in.Fields[1].SubscriberField = "phone" }},
		{"fields[1].subscriberField", func(in *store.FormInput) { in.Fields[1].SubscriberField = "email" }},
		{"fields[0].subscriberField", func(in *store.FormInput) { in.Fields[0].Type = store.FieldText }},
		{"doubleOptInStatus", func(in *store.FormInput) { in.DoubleOptInStatus = store.OptInConfirmed }},
		{"confirmation", func(in *store.FormInput) { in.Confirmation = nil }},
		{"confirmation.subject", func(in *store.FormInput) { in.Confirmation.Subject = "a\nb" }},
		{"confirmation.senderEmail", func(in *store.FormInput) { in.Confirmation.SenderEmail = "news" }},
		{"confirmation.htmlBody", func(in *store.FormInput) { in.Confirmation.TextBody = "" }},
		{"redirectUrl", func(in *store.FormInput) { in.RedirectURL = "javascript:alert(1)" }},
		{"allowedOrigins[1]", func(in *store.FormInput) { in.AllowedOrigins = []string{"https://a.example", "https://b.example/path"} }},
		{"pendingHours", func(in *store.FormInput) { in.PendingHours = store.MaxPendingHours + 1 }},
	} {
		in := formInput(g.ID)
		in.Fields = append([]store.FormField(nil), in.Fields...)
		conf := *in.Confirmation
		in.Confirmation = &conf
		tc.change(&in)
		_, err := s.CreateForm(context.Background(), "t1", in)
		var inv *store.InvalidError
		if !errors.As(err, &inv) || inv.Field != tc.field {
			t.Errorf("want invalid %s, got %v", tc.field, err)
		}
	}
}

func TestFormBelongsToItsTenant(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	g := newGroup(t, s, "t1")
	f, err := s.CreateForm(ctx, "t1", formInput(g.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Form(ctx, "t2", f.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant's Form: %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateForm(ctx, "t2", f.ID, formInput(g.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant's UpdateForm: %v, want ErrNotFound", err)
	}
	in := formInput(g.ID)
	in.Name, in.DoubleOptIn, in.Confirmation, in.DoubleOptInStatus = "Fair", false, nil, store.OptInExternallyDocumented
	up, err := s.UpdateForm(ctx, "t1", f.ID, in)
	if err != nil || up.Name != "Fair" || up.DoubleOptIn || up.Confirmation != nil || up.CreatedAt != f.CreatedAt {
		t.Fatalf("UpdateForm replaces the settings: %+v, %v", up, err)
	}
	if got, err := s.FormByID(ctx, f.ID); err != nil || got.Name != "Fair" || got.Tenant != "t1" {
		t.Errorf("FormByID: %+v, %v", got, err)
	}
	second, err := s.CreateForm(ctx, "t1", formInput(g.ID))
	if err != nil {
		t.Fatal(err)
	}
	page, more, err := s.FormsPage(ctx, "t1", "", 1)
	if err != nil || len(page) != 1 || !more || page[0].ID != f.ID {
		t.Fatalf("first page: %d forms, more %v, %v", len(page), more, err)
	}
	page, more, err = s.FormsPage(ctx, "t1", f.ID, 5)
	if err != nil || len(page) != 1 || more || page[0].ID != second.ID {
		t.Fatalf("second page: %d forms, more %v, %v", len(page), more, err)
	}
	if n, err := s.CountForms(ctx, "t1"); err != nil || n != 2 {
		t.Errorf("CountForms t1 = %d, %v", n, err)
	}
	if n, err := s.CountForms(ctx, "t2"); err != nil || n != 0 {
		t.Errorf("CountForms t2 = %d, %v", n, err)
	}
}

func TestFormsOfGroupAndDeleteForm(t *testing.T) {
	t.Parallel()
	s := storetest.Open(t)
	ctx := context.Background()
	g, other := newGroup(t, s, "t1"), newGroup(t, s, "t1")
	var ids []string
	for _, name := range []string{"A", "B", "C"} {
		in := formInput(g.ID)
		in.Name = name
		f, err := s.CreateForm(ctx, "t1", in)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f.ID)
	}
	if _, err := s.CreateForm(ctx, "t1", formInput(other.ID)); err != nil {
		t.Fatal(err)
	}
	names := func(forms []*store.Form) []string {
		out := []string{}
		for _, f := range forms {
			out = append(out, f.Name)
		}
		return out
	}
	for _, tc := range []struct {
		limit     int
		want      []string
		wantTotal int
	}{
		{limit: 2, want: []string{"A", "B"}, wantTotal: 3},
		{limit: 3, want: []string{"A", "B", "C"}, wantTotal: 3},
		{limit: 5, want: []string{"A", "B", "C"}, wantTotal: 3},
		{limit: 0, want: []string{"A", "B", "C"}, wantTotal: 3},
	} {
		forms, total, err := s.FormsOfGroup(ctx, "t1", g.ID, tc.limit)
		if err != nil || !reflect.DeepEqual(names(forms), tc.want) || total != tc.wantTotal {
			t.Errorf("FormsOfGroup(limit %d) = %v, %d, %v; want %v, %d", tc.limit, names(forms), total, err, tc.want, tc.wantTotal)
		}
	}
	if forms, total, err := s.FormsOfGroup(ctx, "t2", g.ID, 5); err != nil || len(forms) != 0 || total != 0 {
		t.Errorf("another tenant sees %d of the group's forms (total %d), %v", len(forms), total, err)
	}

	if err := s.DeleteForm(ctx, "t2", ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant's DeleteForm: %v, want ErrNotFound", err)
	}
	if err := s.DeleteForm(ctx, "t1", ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FormByID(ctx, ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted form: %v, want ErrNotFound", err)
	}
	if err := s.DeleteForm(ctx, "t1", ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting it again: %v, want ErrNotFound", err)
	}
	if forms, total, err := s.FormsOfGroup(ctx, "t1", g.ID, 1); err != nil || !reflect.DeepEqual(names(forms), []string{"B"}) || total != 2 {
		t.Errorf("after the delete: %v, %d, %v", names(forms), total, err)
	}
}

func TestFormCheckGivesOneMessagePerField(t *testing.T) {
	t.Parallel()
	f := &store.Form{Fields: []store.FormField{
		{Name: "email", Type: store.FieldEmail, Required: true, SubscriberField: "email"},
		{Name: "firstName", Type: store.FieldText, Required: true, MaxLength: 5, SubscriberField: "fields.firstName"},
		{Name: "lang", Type: store.FieldText, SubscriberField: "language"},
		{Name: "news", Type: store.FieldCheckbox, SubscriberField: "fields.news"},
		{Name: "consent", Type: store.FieldCheckbox, Required: true},
		{Name: "note", Type: store.FieldText},
	}}
	_, errs := f.Check(map[string]string{"email": "not-an-address", "firstName": "Annabelle", "lang": "deutsch", "note": strings.Repeat("x", 501)})
	want := store.FieldErrors{
		"email": "not a valid e-mail address", "firstName": "must be at most 5 characters",
		"lang": `must be a two-letter language code such as "de"`, "consent": "must be checked", "note": "must be at most 500 characters",
	}
	if !reflect.DeepEqual(errs, want) {
		t.Errorf("errors\n got %v\nwant %v", errs, want)
	}
	if _, errs := f.Check(map[string]string{}); errs["email"] != "is required" || errs["firstName"] != "is required" {
		t.Errorf("missing values: %v", errs)
	}
	sub, errs := f.Check(map[string]string{"email": " Ann@Example.DE ", "firstName": "Ann", "lang": "EN", "news": "on", "consent": "true", "other": "ignored"})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	wantSub := &store.Submission{Email: "ann@example.de", Fields: map[string]any{"firstName": "Ann", "news": true}, Language: "en"}
	if !reflect.DeepEqual(sub, wantSub) {
		t.Errorf("submission\n got %+v\nwant %+v", sub, wantSub)
	}
}
