package dataverse

import "testing"

// TestExpandReadsRelatedRows: $expand on a lookup puts the related row (with its
// $select) into each row, and null where the lookup is empty.
func TestExpandReadsRelatedRows(t *testing.T) {
	t.Parallel()
	rt := newRoundTrip(t)
	ctx := t.Context()
	acct, err := rt.user.Create(ctx, "accounts", map[string]any{"name": "Acme", "emailaddress1": "info@acme.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.user.Create(ctx, "contacts", map[string]any{"lastname": "Linked", "parentcustomerid_account@odata.bind": Bind("accounts", acct)}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.user.Create(ctx, "contacts", map[string]any{"lastname": "Alone"}); err != nil {
		t.Fatal(err)
	}
	rows := rt.user.Query(ctx, "contacts", Query{Select: []string{"lastname"}, OrderBy: []string{"lastname asc"},
		Expand: []string{"parentcustomerid_account($select=name)"}})
	var got []string
	for rows.Next(ctx) {
		r := rows.Row()
		last, _ := r.String("lastname")
		if related, ok := r.Expanded("parentcustomerid_account"); ok {
			name, _ := related.String("name")
			if _, extra := related["emailaddress1"]; extra {
				t.Error("the expansion ignored its $select")
			}
			got = append(got, last+"→"+name)
		} else {
			got = append(got, last+"→nil")
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "Alone→nil" || got[1] != "Linked→Acme" {
		t.Errorf("got %v", got)
	}
}
