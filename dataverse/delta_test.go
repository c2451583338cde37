package dataverse

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// ids lists the primary keys of rows, sorted.
func ids(rows []Row, pk string) []string {
	var out []string
	for _, r := range rows {
		id, _ := r.String(pk)
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func TestChangeTrackingFromInitialSyncToDeltas(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	c := b.client
	var seeded []string
	for _, name := range []string{"One", "Two", "Three"} {
		id, err := c.Create(ctx, "contacts", map[string]any{"lastname": name, "emailaddress1": strings.ToLower(name) + "@example.de"})
		if err != nil {
			t.Fatal(err)
		}
		seeded = append(seeded, id)
	}

	// Initial sync: every row, the selected columns and a delta link.
	rows, deleted, link, err := c.AllChanges(ctx, "contacts", "", []string{"lastname"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(rows, "contactid"); !slices.Equal(got, sorted(seeded...)) || len(deleted) != 0 || link == "" {
		t.Fatalf("initial sync: rows %v, deleted %v, link %q", got, deleted, link)
	}
	if _, ok := rows[0]["emailaddress1"]; ok || rows[0].ETag() == "" {
		t.Errorf("initial rows carry %v; want lastname, the key and the etag", rows[0])
	}
	if u, _ := url.Parse(link); !strings.Contains(u.RawQuery, "$deltatoken=") || !strings.Contains(u.RawQuery, "$select=lastname") {
		t.Errorf("delta link %q", link)
	}

	// Nothing changed: nothing reported, a new link.
	rows, deleted, link2, err := c.AllChanges(ctx, "contacts", link, []string{"lastname"})
	if err != nil || len(rows)+len(deleted) != 0 || link2 == "" {
		t.Fatalf("empty delta: %v %v %q %v", rows, deleted, link2, err)
	}

	// A create, an update and a delete show up once, in the next delta.
	b.clock.Add(time.Hour)
	created, err := c.Create(ctx, "contacts", map[string]any{"lastname": "Four"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, "contacts", seeded[0], map[string]any{"lastname": "One (renamed)"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "contacts", seeded[1]); err != nil {
		t.Fatal(err)
	}
	// Made and gone between two syncs: still reported deleted (§7.2).
	ghost, err := c.Create(ctx, "contacts", map[string]any{"lastname": "Ghost"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "contacts", ghost); err != nil {
		t.Fatal(err)
	}
	rows, deleted, link3, err := c.AllChanges(ctx, "contacts", link2, []string{"lastname"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(rows, "contactid"), sorted(seeded[0], created); !slices.Equal(got, want) {
		t.Errorf("changed %v, want %v", got, want)
	}
	for _, r := range rows {
		if id, _ := r.String("contactid"); id == seeded[0] && r["lastname"] != "One (renamed)" {
			t.Errorf("updated row %v", r)
		}
	}
	if slices.Sort(deleted); !slices.Equal(deleted, sorted(seeded[1], ghost)) {
		t.Errorf("deleted %v, want %v", deleted, sorted(seeded[1], ghost))
	}
	rows, deleted, _, err = c.AllChanges(ctx, "contacts", link3, []string{"lastname"})
	if err != nil || len(rows)+len(deleted) != 0 {
		t.Errorf("after the delta: %v %v %v", rows, deleted, err)
	}
	// An old link still works within the retention, and repeats what it saw.
	if rows, _, _, err := c.AllChanges(ctx, "contacts", link2, []string{"lastname"}); err != nil || len(rows) != 2 {
		t.Errorf("reading an old link again: %d rows, %v", len(rows), err)
	}

	// Past organization.expirechangetrackingindays the link is dead: full sync.
	b.clock.Add(8 * 24 * time.Hour)
	_, _, _, err = c.AllChanges(ctx, "contacts", link3, nil)
	if !errors.Is(err, ErrDeltaExpired) {
		t.Fatalf("expired link: %v", err)
	}
	wantAPIError(t, err, http.StatusBadRequest, "0x80044352")
	if !strings.Contains(err.Error(), "Version stamp associated with the client has expired. Please perform a full sync.") {
		t.Errorf("message %q", err)
	}

	// A token that is none is a clear 400, not "expired".
	garbage := strings.Split(link3, "$deltatoken=")[0] + "$deltatoken=garbage"
	_, _, _, err = c.AllChanges(ctx, "contacts", garbage, nil)
	if ae := wantAPIError(t, err, http.StatusBadRequest, ""); errors.Is(err, ErrDeltaExpired) || !strings.Contains(ae.Message, "delta token") {
		t.Errorf("garbage token: %v", err)
	}
	// A link of another table or host is refused before anything is sent.
	if _, _, _, err := c.AllChanges(ctx, "accounts", link3, nil); err == nil {
		t.Error("a contacts link was taken for accounts")
	}
	if _, _, _, err := c.AllChanges(ctx, "contacts", "https://evil.example/api/data/v9.2/contacts?$deltatoken=1", nil); err == nil {
		t.Error("a link to another host was followed")
	}
}

func TestChangeTrackingPagesAndTables(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	c := b.client
	seed(t, b.e, MaxPageSize+1)

	// The initial sync pages; the delta link comes with the last page only.
	d := c.Changes(ctx, "contacts", "", []string{"lastname"})
	n := 0
	for d.Next(ctx) {
		if d.Row() == nil {
			t.Fatal("a deletion in the initial sync")
		}
		n++
	}
	if d.Err() != nil || n != MaxPageSize+1 || d.rows.Pages() != 2 || d.DeltaLink() == "" {
		t.Fatalf("initial sync: %d rows, %d pages, link %q, %v", n, d.rows.Pages(), d.DeltaLink(), d.Err())
	}

	// List membership changes the list's membercount: the list is reported.
	list, err := c.Create(ctx, "lists", map[string]any{"listname": "L", "createdfromcode": ListMemberContact})
	if err != nil {
		t.Fatal(err)
	}
	_, _, listLink, err := c.AllChanges(ctx, "lists", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	member, _ := c.Create(ctx, "contacts", map[string]any{"lastname": "M"})
	if _, err := c.AddListMember(ctx, list, member); err != nil {
		t.Fatal(err)
	}
	rows, _, _, err := c.AllChanges(ctx, "lists", listLink, []string{"membercount"})
	if err != nil || len(rows) != 1 || rows[0]["membercount"] == nil {
		t.Errorf("list delta: %v %v", rows, err)
	}

	// A table without change tracking answers rows but no link.
	if _, _, _, err := c.AllChanges(ctx, "campaigns", "", nil); !errors.Is(err, ErrNotTracked) {
		t.Errorf("campaigns: %v", err)
	}
}
