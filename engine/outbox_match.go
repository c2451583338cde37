package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"crmsync/dataverse"
	"crmsync/store"
)

// Matching by e-mail address reads the CRM for many addresses at once: one query
// per table and matchChunk addresses (an `or` chain of comparisons, which the
// emulator and Dataverse both take), all of them GETs of one $batch — inside a
// batch a URL may be 64 KB long (reference/dataverse.md §4.4) — together with the
// owner's systemuser. So matching a read's worth of subscribers is one request.

// matchChunk is how many addresses one query looks for; its URL stays near 12 KB.
const matchChunk = 200

// maxMatchPage is the page size asked for; a query that finds more rows is read
// again on its own, page by page.
const maxMatchPage = dataverse.MaxPageSize

// matchOrder is the order in which an e-mail address is looked for in the CRM.
var matchOrder = []store.RecipientType{store.RecipientContact, store.RecipientAccount, store.RecipientLead}

// candidate is a CRM row that holds an address looked for.
type candidate struct {
	id    string
	state int64
}

// lookup is what the queries found: per address and table, the rows holding it,
// oldest first; and the systemuser of the owner login ("" for none found).
type lookup struct {
	rows  map[string]map[store.RecipientType][]candidate
	owner string
}

// matchQuery is one query of a lookup, kept so a long answer can be read again.
type matchQuery struct {
	set string
	rt  store.RecipientType // "" for the owner's query
	q   dataverse.Query
}

// findByEmail looks up lower-cased addresses in contacts, accounts and leads, and
// the owner login's systemuser when ownerLogin is not empty.
func findByEmail(ctx context.Context, client *dataverse.Client, emails []string, ownerLogin string) (*lookup, error) {
	var queries []matchQuery
	if ownerLogin != "" {
		queries = append(queries, matchQuery{set: "systemusers", q: dataverse.Query{
			Select: []string{"systemuserid"}, Filter: "domainname eq " + dataverse.QuoteString(ownerLogin), Top: 2,
		}})
	}
	for start := 0; start < len(emails); start += matchChunk {
		terms := make([]string, 0, matchChunk)
		for _, e := range emails[start:min(len(emails), start+matchChunk)] {
			terms = append(terms, "emailaddress1 eq "+dataverse.QuoteString(e))
		}
		for _, rt := range matchOrder {
			queries = append(queries, matchQuery{set: entitySet(rt), rt: rt, q: dataverse.Query{
				Select: []string{rt.Entity() + "id", "statecode", "emailaddress1"},
				Filter: strings.Join(terms, " or "), OrderBy: []string{"createdon asc"},
			}})
		}
	}
	l := &lookup{rows: map[string]map[store.RecipientType][]candidate{}}
	for start := 0; start < len(queries); start += dataverse.MaxBatchOps {
		part := queries[start:min(len(queries), start+dataverse.MaxBatchOps)]
		ops := make([]dataverse.BatchOp, len(part))
		for i, mq := range part {
			ops[i] = dataverse.BatchOp{Method: http.MethodGet, Path: queryPath(mq), Header: http.Header{
				"Prefer": {"odata.maxpagesize=" + strconv.Itoa(maxMatchPage)},
			}}
		}
		results, err := client.Batch(ctx, ops)
		if err != nil {
			return nil, fmt.Errorf("match e-mail addresses: %w", err)
		}
		for i, res := range results {
			rows, err := answerRows(ctx, client, part[i], res)
			if err != nil {
				return nil, fmt.Errorf("match e-mail addresses: %w", err)
			}
			l.add(part[i], rows)
		}
	}
	return l, nil
}

// queryPath is a query as a $batch operation's path.
func queryPath(mq matchQuery) string {
	params := []string{"$select=" + odataValue(strings.Join(mq.q.Select, ","))}
	if mq.q.Filter != "" {
		params = append(params, "$filter="+odataValue(mq.q.Filter))
	}
	if len(mq.q.OrderBy) > 0 {
		params = append(params, "$orderby="+odataValue(strings.Join(mq.q.OrderBy, ",")))
	}
	if mq.q.Top > 0 {
		params = append(params, "$top="+strconv.Itoa(mq.q.Top))
	}
	return mq.set + "?" + strings.Join(params, "&")
}

// odataValue escapes a query option's value, spaces as %20.
func odataValue(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// answerRows reads the rows of a query's answer; an answer with more pages is read
// again with the client, which follows them.
func answerRows(ctx context.Context, client *dataverse.Client, mq matchQuery, res dataverse.BatchResult) ([]dataverse.Row, error) {
	var page struct {
		Value []dataverse.Row `json:"value"`
		Next  string          `json:"@odata.nextLink"`
	}
	if err := json.Unmarshal(res.Body, &page); err != nil {
		return nil, fmt.Errorf("decode the answer to %s: %w", mq.set, err)
	}
	if page.Next == "" {
		return page.Value, nil
	}
	var out []dataverse.Row
	rows := client.Query(ctx, mq.set, mq.q)
	for rows.Next(ctx) {
		out = append(out, rows.Row())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query %s: %w", mq.set, err)
	}
	return out, nil
}

// add files the rows a query found.
func (l *lookup) add(mq matchQuery, rows []dataverse.Row) {
	if mq.rt == "" {
		if len(rows) > 0 {
			l.owner, _ = rows[0].String("systemuserid")
		}
		return
	}
	pk := mq.rt.Entity() + "id"
	for _, row := range rows {
		raw, _ := row.String("emailaddress1")
		email := strings.ToLower(strings.TrimSpace(raw))
		id, _ := row.String(pk)
		state, _ := row.Int("statecode")
		if l.rows[email] == nil {
			l.rows[email] = map[store.RecipientType][]candidate{}
		}
		l.rows[email][mq.rt] = append(l.rows[email][mq.rt], candidate{id: strings.ToLower(id), state: state})
	}
}

// match is the record an address matches: the first found in the order Contact,
// Account, Lead, oldest first, never a qualified lead, a deactivated one only when
// the connection reactivates records (reactivate then says it must be). why
// explains a record passed over.
func (l *lookup) match(email string, reactivateRecords bool) (ref *store.CRMRecordRef, reactivate bool, why string) {
	for _, rt := range matchOrder {
		for _, c := range l.rows[email][rt] {
			switch {
			case rt == store.RecipientLead && c.state == 1:
				why = "a qualified lead with this address was passed over"
				continue
			case c.state != 0 && !reactivateRecords:
				why = fmt.Sprintf("a deactivated %s with this address was not reactivated (the connection does not reactivate records)", rt.Entity())
				continue
			}
			return &store.CRMRecordRef{Entity: rt, ID: c.id}, c.state != 0, why
		}
	}
	return nil, false, why
}
