package emulator

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Change tracking (reference/dataverse.md §7.2) for the tables marked tracked:
// a collection GET with Prefer: odata.track-changes answers every row and, on its
// last page, an @odata.deltaLink; GET of that link answers the rows created or
// changed since (selected columns, primary key, @odata.etag) and then the rows
// deleted since as $deletedEntity entries, with a fresh deltaLink.
//
// A delta token is "<row version>!<MM/dd/yyyy HH:mm:ss>", shaped like Dataverse's
// sample "919042!08/22/2017 08:10:44": the global row version when it was issued
// and the time. Every write advances the version, so "changed since" is "version
// above the token's". Deletions are kept as tombstones for
// Config.ChangeTrackingRetention; a token older than that fails with
// ExpiredVersionStamp, and the client must start over with a full sync.

// tombstone is one deleted row of a tracked table.
type tombstone struct {
	id      string
	version int64 // the version the deletion took
	at      time.Time
}

// Change-tracking errors. ExpiredVersionStamp's code and text are §7.2's (assumed
// for data by the reference, unverified); its status and the answer to a token
// that is not one at all are the emulator's choice.
const (
	codeExpiredVersionStamp = "0x80044352"
	msgExpiredVersionStamp  = "Version stamp associated with the client has expired. Please perform a full sync."
)

// tokenTime is the time layout of a delta token.
const tokenTime = "01/02/2006 15:04:05"

// tombstoneLocked remembers the deletion of a row of a tracked table and forgets
// deletions older than the retention.
func (e *Emulator) tombstoneLocked(t *table, id string) {
	if !t.tracked {
		return
	}
	now := e.now().UTC()
	prev := e.deleted[t.logical]
	edge := now.Add(-e.cfg.ChangeTrackingRetention)
	i := 0
	for i < len(prev) && prev[i].at.Before(edge) {
		i++
	}
	e.version++
	e.deleted[t.logical] = append(prev[i:], tombstone{id: id, version: e.version, at: now})
	if e.journal != nil {
		e.journal.undo = append(e.journal.undo, func() { e.deleted[t.logical] = prev })
	}
}

// deltaToken renders a token for the version v issued now.
func deltaToken(v int64, now time.Time) string {
	return strconv.FormatInt(v, 10) + "!" + now.UTC().Format(tokenTime)
}

// parseDeltaToken reads a token; callers check its age and version.
func parseDeltaToken(s string) (int64, time.Time, bool) {
	vs, ts, ok := strings.Cut(s, "!")
	if !ok {
		return 0, time.Time{}, false
	}
	v, err := strconv.ParseInt(vs, 10, 64)
	if err != nil || v < 0 {
		return 0, time.Time{}, false
	}
	at, err := time.Parse(tokenTime, ts)
	if err != nil {
		return 0, time.Time{}, false
	}
	return v, at, true
}

// checkTrackingOptions refuses what Dataverse refuses next to change tracking.
func checkTrackingOptions(r *http.Request) error {
	q := r.URL.Query()
	for _, k := range []string{"$filter", "$orderby", "$expand", "$top"} {
		if q.Has(k) {
			return errorf(http.StatusBadRequest, codeODataBadRequest, "The %q query parameter isn't supported when Change Tracking is enabled.", k)
		}
	}
	return nil
}

// deltaCursor is the position inside one delta answer that spans pages: the
// version the delta ends at, whether the changed rows are done, and the last key
// handed out (a row id, or a tombstone's version and id).
type deltaCursor struct {
	page    int
	to      int64
	deletes bool
	version int64
	id      string
}

func (c deltaCursor) encode() string {
	phase := "c"
	if c.deletes {
		phase = "d"
	}
	raw := strconv.FormatInt(c.to, 10) + "\x1f" + phase + "\x1f" + strconv.FormatInt(c.version, 10) + "\x1f" + c.id
	return `<cookie pagenumber="` + strconv.Itoa(c.page) + `" pagingcookie="` + base64.RawURLEncoding.EncodeToString([]byte(raw)) + `" istracking="True" />`
}

func decodeDeltaCursor(s string) (deltaCursor, bool) {
	var c deltaCursor
	page, ok1 := cookieAttr(s, "pagenumber")
	enc, ok2 := cookieAttr(s, "pagingcookie")
	if !ok1 || !ok2 {
		return c, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return c, false
	}
	parts := strings.Split(string(raw), "\x1f")
	if len(parts) != 4 || (parts[1] != "c" && parts[1] != "d") {
		return c, false
	}
	var err1, err2, err3 error
	c.page, err1 = strconv.Atoi(page)
	c.to, err2 = strconv.ParseInt(parts[0], 10, 64)
	c.version, err3 = strconv.ParseInt(parts[2], 10, 64)
	c.deletes, c.id = parts[1] == "d", parts[3]
	return c, err1 == nil && err2 == nil && err3 == nil
}

// delta handles GET /<set>?$deltatoken=…: what changed since the token.
func (e *Emulator) delta(w http.ResponseWriter, r *http.Request, t *table) error {
	if !t.tracked {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "Change tracking is not enabled for the entity '%s'.", t.logical)
	}
	if err := checkTrackingOptions(r); err != nil {
		return err
	}
	if err := checkQueryOptions(r, "$select", "$deltatoken", "$skiptoken"); err != nil {
		return err
	}
	q := r.URL.Query()
	sel, err := parseSelect(t, q.Get("$select"))
	if err != nil {
		return err
	}
	token := q.Get("$deltatoken")
	from, at, ok := parseDeltaToken(token)
	prefs := parsePrefer(r.Header)
	pageSize := maxPageSize
	var applied []string
	if n, err := strconv.Atoi(prefs["odata.maxpagesize"]); err == nil && n > 0 {
		pageSize = min(n, maxPageSize)
		applied = append(applied, "odata.maxpagesize="+strconv.Itoa(pageSize))
	}
	ann := parseAnnotations(prefs["odata.include-annotations"])
	now := e.now().UTC()

	e.mu.RLock()
	defer e.mu.RUnlock()
	if !ok || from > e.version {
		return errorf(http.StatusBadRequest, codeODataBadRequest, "The delta token '%s' is not valid.", token)
	}
	if now.Sub(at) > e.cfg.ChangeTrackingRetention {
		return errorf(http.StatusBadRequest, codeExpiredVersionStamp, msgExpiredVersionStamp)
	}
	cur := deltaCursor{page: 1, to: e.version}
	if v := q.Get("$skiptoken"); v != "" {
		if cur, ok = decodeDeltaCursor(v); !ok || cur.to > e.version || cur.to < from {
			return errorf(http.StatusBadRequest, codeODataBadRequest, "The $skiptoken '%s' is not valid for this query.", v)
		}
	}

	var changed []*record
	if !cur.deletes {
		for _, rec := range e.rows[t.logical] {
			if rec.version > from && rec.version <= cur.to && rec.id > cur.id {
				changed = append(changed, rec)
			}
		}
		slices.SortFunc(changed, func(a, b *record) int { return strings.Compare(a.id, b.id) })
	}
	var gone []tombstone
	for _, ts := range e.deleted[t.logical] {
		if ts.version <= from || ts.version > cur.to || (cur.deletes && ts.version <= cur.version) {
			continue
		}
		if rec := e.rows[t.logical][ts.id]; rec != nil && rec.version > ts.version {
			continue // deleted and made again with the same id: it is a changed row
		}
		gone = append(gone, ts)
	}

	b := make([]byte, 0, 512+len(changed)*512)
	b = append(b, `{"@odata.context":`...)
	b = appendString(b, contextURL(r, t, sel, false)+"/$delta")
	b = append(b, `,"value":[`...)
	n := 0
	next := cur
	for _, rec := range changed {
		if n == pageSize {
			break
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = e.appendRow(b, t, rec, sel, ann)
		next.id = rec.id
		n++
	}
	more := n < len(changed)
	if !more {
		if !next.deletes {
			next.deletes, next.id = true, ""
		}
		deletedContext := baseURL(r) + "/api/data/v9.2/$metadata#" + t.set + "/$deletedEntity"
		for _, ts := range gone {
			if n == pageSize {
				more = true
				break
			}
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"@odata.context":`...)
			b = appendString(b, deletedContext)
			b = append(b, `,"id":`...)
			b = appendString(b, ts.id)
			b = append(b, `,"reason":"deleted"}`...)
			next.version, next.id = ts.version, ts.id
			n++
		}
	}
	b = append(b, ']')
	if more {
		next.page = cur.page + 1
		b = append(b, `,"@odata.nextLink":`...)
		b = appendString(b, withParams(r, t.set, []string{"$skiptoken"}, "$skiptoken", next.encode()))
	} else {
		b = append(b, `,"@odata.deltaLink":`...)
		b = appendString(b, withParams(r, t.set, []string{"$skiptoken", "$deltatoken"}, "$deltatoken", deltaToken(cur.to, now)))
	}
	b = append(b, '}')
	if len(applied) > 0 {
		w.Header().Set("Preference-Applied", strings.Join(applied, ","))
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// withParams is the URL of path (below the service root) with the request's query
// options, the named ones dropped and one added, the others kept as the caller
// encoded them: a nextLink or deltaLink.
func withParams(r *http.Request, path string, drop []string, key, value string) string {
	var params []string
	for p := range strings.SplitSeq(r.URL.RawQuery, "&") {
		k, _, _ := strings.Cut(p, "=")
		if name, err := url.QueryUnescape(k); p == "" || (err == nil && slices.Contains(drop, name)) {
			continue
		}
		params = append(params, p)
	}
	params = append(params, key+"="+strings.ReplaceAll(url.QueryEscape(value), "+", "%20"))
	return baseURL(r) + "/api/data/v9.2/" + path + "?" + strings.Join(params, "&")
}
