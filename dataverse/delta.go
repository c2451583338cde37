package dataverse

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Change tracking (reference/dataverse.md §7.2): a first read of a table with
// Prefer: odata.track-changes returns every row and an @odata.deltaLink; reading
// that link later returns what was created, changed or deleted since, and a new
// link. Saving the link between runs turns a full sync into an incremental one.

var (
	// ErrDeltaExpired matches a delta link older than the organisation keeps
	// change-tracking data (ExpiredVersionStamp, organization.
	// expirechangetrackingindays): drop the link and start over with a full sync.
	ErrDeltaExpired = errors.New("dataverse: delta link expired")
	// ErrNotTracked matches a table without change tracking: Dataverse answered
	// the rows but no delta link.
	ErrNotTracked = errors.New("dataverse: change tracking is not enabled for the table")
)

// codeExpiredVersionStamp is the error code §7.2 gives for an expired token.
const codeExpiredVersionStamp = "0x80044352"

// Delta streams one change-tracking answer: changed (or, on a first sync, all)
// rows and then deleted rows, page by page, ending with the link for the next
// call.
type Delta struct {
	rows      *Rows
	set       string
	deltaLink string
	row       Row
	deleted   string
	err       error
}

// Changes reads what changed in entitySet since deltaLink, or every row when
// deltaLink is "" (the initial sync). sel names the columns the initial sync reads
// (the primary key comes always); a delta link keeps the columns it was made
// with, so sel is ignored then. Iterate with Next; after the last entry, DeltaLink
// is the link to save for the next call. An expired link fails with
// ErrDeltaExpired, a table without change tracking with ErrNotTracked.
func (c *Client) Changes(ctx context.Context, entitySet, deltaLink string, sel []string) *Delta {
	d := &Delta{set: entitySet}
	u, err := c.setURL(entitySet)
	if err != nil {
		d.err = fmt.Errorf("changes %s: %w", entitySet, err)
		return d
	}
	prefer := "odata.maxpagesize=" + fmt.Sprint(MaxPageSize) + "," + preferLookupNames
	if deltaLink == "" {
		prefer = "odata.track-changes," + prefer
		if len(sel) > 0 {
			u += "?$select=" + odataEscape(strings.Join(sel, ","))
		}
	} else {
		if !sameOrigin(deltaLink, c.api) || linkSet(deltaLink, c.api) != entitySet {
			d.err = fmt.Errorf("changes %s: delta link %q is not one of %s%s", entitySet, deltaLink, c.api, entitySet)
			return d
		}
		u = deltaLink
	}
	d.rows = &Rows{c: c, set: entitySet, top: -1, prefer: prefer, next: u}
	d.rows.follow = func(p *page) (string, error) {
		if p.DeltaLink != "" {
			if !sameOrigin(p.DeltaLink, c.api) {
				return "", fmt.Errorf("@odata.deltaLink %q leaves %s", p.DeltaLink, c.api)
			}
			d.deltaLink = p.DeltaLink
		}
		return p.NextLink, nil
	}
	d.rows.fetch(ctx)
	return d
}

// linkSet is the entity set a link below the Web API root points at.
func linkSet(link, api string) string {
	l, err1 := url.Parse(link)
	a, err2 := url.Parse(api)
	if err1 != nil || err2 != nil {
		return ""
	}
	return strings.TrimPrefix(l.Path, a.Path)
}

// Next advances to the next changed row or deletion; false at the end or on an
// error (see Err).
func (d *Delta) Next(ctx context.Context) bool {
	d.row, d.deleted = nil, ""
	if d.err != nil || d.rows == nil {
		return false
	}
	if !d.rows.Next(ctx) {
		if err := d.rows.Err(); err != nil {
			d.err = err
			var ae *APIError
			if errors.As(err, &ae) && (ae.Code == codeExpiredVersionStamp || strings.Contains(ae.Message, "Version stamp associated with the client has expired")) {
				d.err = fmt.Errorf("changes %s: %w: %w", d.set, ErrDeltaExpired, err)
			}
		} else if d.deltaLink == "" {
			d.err = fmt.Errorf("changes %s: %w", d.set, ErrNotTracked)
		}
		return false
	}
	row := d.rows.Row()
	if ctxURL, _ := row["@odata.context"].(string); strings.HasSuffix(ctxURL, "/$deletedEntity") {
		d.deleted, _ = row["id"].(string)
		return true
	}
	d.row = row
	return true
}

// Row is the current changed row, nil when the current entry is a deletion.
func (d *Delta) Row() Row { return d.row }

// Deleted is the id of the row the current entry reports deleted, "" for a
// changed row.
func (d *Delta) Deleted() string { return d.deleted }

// DeltaLink is the link for the next Changes call, known once Next has returned
// false without an error.
func (d *Delta) DeltaLink() string {
	if d.err != nil {
		return ""
	}
	return d.deltaLink
}

// Err is the error that ended the iteration, nil at a normal end.
func (d *Delta) Err() error { return d.err }

// AllChanges is Changes read to the end: the changed rows, the ids of the deleted
// ones and the next delta link, for tables small enough to hold in memory.
func (c *Client) AllChanges(ctx context.Context, entitySet, deltaLink string, sel []string) (changed []Row, deleted []string, next string, err error) {
	d := c.Changes(ctx, entitySet, deltaLink, sel)
	for d.Next(ctx) {
		if id := d.Deleted(); id != "" {
			deleted = append(deleted, id)
		} else {
			changed = append(changed, d.Row())
		}
	}
	if err := d.Err(); err != nil {
		return nil, nil, "", err
	}
	return changed, deleted, d.DeltaLink(), nil
}
