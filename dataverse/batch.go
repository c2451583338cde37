package dataverse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// MaxBatchOps is the most operations one $batch may hold (reference/dataverse.md
// §4.5).
const MaxBatchOps = 1000

// ErrOutcomeUnknown matches the failure of a request that may or may not have
// taken effect — no answer, or a 5xx — which the client does not send again on its
// own because repeating it could do things twice (a $batch). The caller decides,
// for example by reading the rows back.
var ErrOutcomeUnknown = errors.New("dataverse: outcome unknown")

// BatchOp is one operation of a $batch, so many writes travel in one request and
// count once against the request limit (§7.3).
type BatchOp struct {
	// Method is GET, POST, PATCH, PUT or DELETE.
	Method string
	// Path is the operation's URL below the Web API root, with its query if any:
	// "contacts", "contacts(<id>)", "lists(<id>)/Microsoft.Dynamics.CRM.AddMemberList";
	// or "$<ContentID>" of an earlier operation of the same change set, optionally
	// followed by more path ("$1/lastname").
	Path string
	// Header holds extra request headers (If-Match, Prefer, MSCRM.*).
	Header http.Header
	// Body is sent as JSON when not nil. An "@odata.bind" value may be
	// "$<ContentID>" inside a change set.
	Body any
	// ChangeSet groups operations into an atomic change set: consecutive operations
	// with the same non-empty ChangeSet run as one transaction, all or nothing. GET
	// is not allowed in one.
	ChangeSet string
	// ContentID names an operation of a change set for later "$<ContentID>"
	// references; default its 1-based position in the batch.
	ContentID string
}

// BatchCreate is the batch form of Create: a POST whose row carries a client-made
// id in its primary-key column (unless it names one), so the result names the row.
func BatchCreate(entitySet string, row map[string]any) BatchOp {
	pk := primaryKey(entitySet)
	if id, _ := row[pk].(string); id == "" {
		row = maps.Clone(row)
		if row == nil {
			row = map[string]any{}
		}
		row[pk] = uuid.NewString()
	}
	return BatchOp{Method: http.MethodPost, Path: entitySet, Body: row}
}

// BatchUpdate is the batch form of Update: a PATCH with If-Match: *, which never
// creates the row.
func BatchUpdate(entitySet, id string, row map[string]any) BatchOp {
	return BatchOp{Method: http.MethodPatch, Path: entitySet + "(" + id + ")", Body: row, Header: http.Header{"If-Match": {"*"}}}
}

// BatchDelete is the batch form of Delete.
func BatchDelete(entitySet, id string) BatchOp {
	return BatchOp{Method: http.MethodDelete, Path: entitySet + "(" + id + ")"}
}

// BatchResult is the answer to one operation of a batch.
type BatchResult struct {
	// Status is the operation's HTTP status.
	Status int
	// Header holds the operation's response headers.
	Header http.Header
	// Body is the operation's JSON answer, empty for 204.
	Body []byte
	// ID is the row the operation created or wrote, from OData-EntityId, if any.
	ID string
	// Err is the operation's failure (an *APIError inside a *BatchError), nil when
	// it succeeded.
	Err error
}

// Row decodes the operation's answer, for GETs and writes with
// Prefer: return=representation.
func (r BatchResult) Row() (Row, error) {
	var row Row
	if len(r.Body) == 0 {
		return nil, nil
	}
	if err := decodeJSON(bytes.NewReader(r.Body), &row); err != nil {
		return nil, err
	}
	return row, nil
}

// BatchError tells which operation of a batch failed and what Dataverse said, so
// callers can retry, fix or park exactly that operation.
type BatchError struct {
	// Index is the failed operation's position in the ops given to Batch. When a
	// change set failed without saying which of its operations did, it is the
	// change set's first operation.
	Index int
	// Method and Path repeat the operation, for logs.
	Method, Path string
	// ChangeSet is the change set the operation was in, "" if none; nothing of a
	// failed change set was applied.
	ChangeSet string
	// Err is Dataverse's answer.
	Err *APIError
}

// Error names the operation and the server's error.
func (e *BatchError) Error() string {
	if e.ChangeSet != "" {
		return fmt.Sprintf("batch operation %d (%s %s) in change set %q: %v", e.Index, e.Method, e.Path, e.ChangeSet, e.Err)
	}
	return fmt.Sprintf("batch operation %d (%s %s): %v", e.Index, e.Method, e.Path, e.Err)
}

// Unwrap gives the *APIError, so errors.Is(err, ErrNotFound) works on a batch.
func (e *BatchError) Unwrap() error { return e.Err }

// Batch sends ops as one $batch and stops at the first failure, as Dataverse does
// by default: results then hold the answers of the operations before the failed
// one (none for a change set that failed, whose operations were rolled back) and
// err is a *BatchError. A batch is never repeated after a failure that may have
// left part of it done; such errors match ErrOutcomeUnknown.
func (c *Client) Batch(ctx context.Context, ops []BatchOp) ([]BatchResult, error) {
	return c.batch(ctx, ops, false)
}

// BatchContinueOnError sends ops as one $batch with Prefer: odata.continue-on-error:
// every operation runs, results has one entry per operation, failed ones with Err
// set, and err joins their *BatchErrors (nil when all succeeded).
func (c *Client) BatchContinueOnError(ctx context.Context, ops []BatchOp) ([]BatchResult, error) {
	return c.batch(ctx, ops, true)
}

// batchGroup is a run of operations sent as one part: a single operation or a
// change set.
type batchGroup struct {
	changeSet string
	ops       []int // indexes into ops
}

func (c *Client) batch(ctx context.Context, ops []BatchOp, goOn bool) ([]BatchResult, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	if len(ops) > MaxBatchOps {
		return nil, fmt.Errorf("batch: %d operations, at most %d allowed", len(ops), MaxBatchOps)
	}
	groups, ids, err := planBatch(ops)
	if err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	body, boundary, err := encodeBatch(ops, groups, ids)
	if err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	h := http.Header{"Content-Type": {`multipart/mixed; boundary="` + boundary + `"`}}
	if goOn {
		h.Set("Prefer", "odata.continue-on-error")
	}
	resp, err := c.do(ctx, &request{method: http.MethodPost, url: c.api + "$batch", header: h, body: body, once: true,
		accept: func(resp *http.Response) bool {
			mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			return mt == "multipart/mixed"
		}})
	if err != nil {
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status >= 500 {
			return nil, fmt.Errorf("batch of %d operations: %w: %w", len(ops), ErrOutcomeUnknown, err)
		}
		return nil, fmt.Errorf("batch of %d operations: %w", len(ops), err)
	}
	defer drain(resp)
	answers, err := c.readBatchAnswer(resp)
	if err != nil {
		return nil, fmt.Errorf("batch of %d operations: %w: %w", len(ops), ErrOutcomeUnknown, err)
	}
	results, errs := matchBatchAnswers(ops, groups, ids, answers, c.now())
	if goOn {
		return results, errors.Join(errs...)
	}
	if len(errs) > 0 {
		ok := slices.IndexFunc(results, func(r BatchResult) bool { return r.Err != nil })
		return results[:ok], errs[0]
	}
	return results, nil
}

// planBatch checks the operations, groups them into parts and assigns the
// Content-IDs of change-set operations.
func planBatch(ops []BatchOp) ([]batchGroup, []string, error) {
	ids := make([]string, len(ops))
	used := map[string]bool{}
	for i, op := range ops {
		switch op.Method {
		case http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete:
		default:
			return nil, nil, fmt.Errorf("operation %d: method %q is not GET, POST, PATCH, PUT or DELETE", i, op.Method)
		}
		if op.Path == "" || strings.ContainsAny(op.Path, " \r\n") || strings.HasPrefix(op.Path, "/") {
			return nil, nil, fmt.Errorf("operation %d: path %q must be relative to the Web API root, without spaces", i, op.Path)
		}
		if op.ChangeSet != "" && op.Method == http.MethodGet {
			return nil, nil, fmt.Errorf("operation %d: GET is not allowed in change set %q", i, op.ChangeSet)
		}
		if op.ContentID != "" {
			if used[op.ContentID] {
				return nil, nil, fmt.Errorf("operation %d: Content-ID %q used twice", i, op.ContentID)
			}
			used[op.ContentID] = true
		}
	}
	var groups []batchGroup
	for i, op := range ops {
		if op.ChangeSet != "" && len(groups) > 0 && groups[len(groups)-1].changeSet == op.ChangeSet {
			g := &groups[len(groups)-1]
			g.ops = append(g.ops, i)
		} else {
			groups = append(groups, batchGroup{changeSet: op.ChangeSet, ops: []int{i}})
		}
		if op.ChangeSet == "" {
			continue
		}
		ids[i] = op.ContentID
		if ids[i] == "" {
			ids[i] = strconv.Itoa(i + 1)
			if used[ids[i]] {
				return nil, nil, fmt.Errorf("operation %d: its default Content-ID %q is taken by another operation", i, ids[i])
			}
			used[ids[i]] = true
		}
	}
	return groups, ids, nil
}

// encodeBatch writes the multipart/mixed body (§4.5).
func encodeBatch(ops []BatchOp, groups []batchGroup, ids []string) ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary("batch_" + uuid.NewString()); err != nil {
		return nil, "", err
	}
	for _, g := range groups {
		if g.changeSet == "" {
			if err := writeBatchOp(mw, ops[g.ops[0]], ""); err != nil {
				return nil, "", err
			}
			continue
		}
		var inner bytes.Buffer
		cw := multipart.NewWriter(&inner)
		if err := cw.SetBoundary("changeset_" + uuid.NewString()); err != nil {
			return nil, "", err
		}
		for _, i := range g.ops {
			if err := writeBatchOp(cw, ops[i], ids[i]); err != nil {
				return nil, "", err
			}
		}
		if err := cw.Close(); err != nil {
			return nil, "", err
		}
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {`multipart/mixed; boundary="` + cw.Boundary() + `"`}})
		if err != nil {
			return nil, "", err
		}
		if _, err := pw.Write(inner.Bytes()); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), mw.Boundary(), nil
}

// writeBatchOp writes one operation as an application/http part.
func writeBatchOp(mw *multipart.Writer, op BatchOp, contentID string) error {
	h := textproto.MIMEHeader{"Content-Type": {"application/http"}, "Content-Transfer-Encoding": {"binary"}}
	if contentID != "" {
		h.Set("Content-ID", contentID)
	}
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	target := APIPath + op.Path
	if strings.HasPrefix(op.Path, "$") {
		target = op.Path // a Content-ID reference stands for the whole URL
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", op.Method, target)
	var body []byte
	if op.Body != nil {
		if body, err = json.Marshal(op.Body); err != nil {
			return fmt.Errorf("encode body of %s %s: %w", op.Method, op.Path, err)
		}
		b.WriteString("Content-Type: application/json; type=entry\r\n")
	}
	for _, k := range slices.Sorted(maps.Keys(op.Header)) {
		for _, v := range op.Header[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	b.Write(body)
	_, err = pw.Write(b.Bytes())
	return err
}

// batchAnswer is one part of a batch answer: a response, or a change set's
// responses.
type batchAnswer struct {
	contentID string
	status    int
	header    http.Header
	body      []byte
	changeSet []batchAnswer // a committed change set
}

// readBatchAnswer parses the multipart/mixed answer of a batch.
func (c *Client) readBatchAnswer(resp *http.Response) ([]batchAnswer, error) {
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, fmt.Errorf("read batch answer: content type %q is not multipart/mixed", resp.Header.Get("Content-Type"))
	}
	return readBatchParts(io.LimitReader(resp.Body, 256<<20), params["boundary"], true)
}

func readBatchParts(r io.Reader, boundary string, outer bool) ([]batchAnswer, error) {
	var out []batchAnswer
	mr := multipart.NewReader(r, boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read batch answer: %w", &transportError{err})
		}
		mt, params, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch {
		case mt == "application/http":
			resp, err := http.ReadResponse(bufio.NewReader(p), nil)
			if err != nil {
				return nil, fmt.Errorf("read batch answer: %w", &transportError{err})
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("read batch answer: %w", &transportError{err})
			}
			out = append(out, batchAnswer{contentID: strings.TrimSpace(p.Header.Get("Content-ID")),
				status: resp.StatusCode, header: resp.Header, body: body})
		case mt == "multipart/mixed" && outer:
			inner, err := readBatchParts(p, params["boundary"], false)
			if err != nil {
				return nil, err
			}
			out = append(out, batchAnswer{changeSet: inner})
		default:
			return nil, fmt.Errorf("read batch answer: unexpected part of type %q", p.Header.Get("Content-Type"))
		}
	}
}

// matchBatchAnswers pairs the answer parts with the operations, in order.
func matchBatchAnswers(ops []BatchOp, groups []batchGroup, ids []string, answers []batchAnswer, now time.Time) ([]BatchResult, []error) {
	var results []BatchResult
	var errs []error
	fail := func(i int, a batchAnswer) *BatchError {
		ae := &APIError{Status: a.status, RetryAfter: parseRetryAfter(a.header.Get("Retry-After"), now)}
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(a.body, &e) == nil && (e.Error.Code != "" || e.Error.Message != "") {
			ae.Code, ae.Message = e.Error.Code, e.Error.Message
		} else {
			ae.Message = snippet(a.body)
		}
		return &BatchError{Index: i, Method: ops[i].Method, Path: ops[i].Path, ChangeSet: ops[i].ChangeSet, Err: ae}
	}
	result := func(i int, a batchAnswer) BatchResult {
		r := BatchResult{Status: a.status, Header: a.header, Body: a.body}
		r.ID, _ = idFromEntityID(a.header.Get("OData-EntityId"))
		if a.status >= 400 {
			be := fail(i, a)
			r.Err = be
			errs = append(errs, be)
		}
		return r
	}
	for gi, g := range groups {
		if gi >= len(answers) {
			break // the batch stopped before this part
		}
		a := answers[gi]
		if g.changeSet == "" {
			results = append(results, result(g.ops[0], a))
			continue
		}
		if a.changeSet == nil {
			// The change set failed as a whole: its one answer is the failure, and
			// none of its operations took effect.
			failed := g.ops[0]
			for _, i := range g.ops {
				if a.contentID != "" && ids[i] == a.contentID {
					failed = i
				}
			}
			be := fail(failed, a)
			errs = append(errs, be)
			for range g.ops {
				results = append(results, BatchResult{Status: a.status, Header: a.header, Body: a.body, Err: be})
			}
			continue
		}
		byID := map[string]batchAnswer{}
		for _, ca := range a.changeSet {
			byID[ca.contentID] = ca
		}
		for k, i := range g.ops {
			ca, ok := byID[ids[i]]
			if !ok && k < len(a.changeSet) {
				ca, ok = a.changeSet[k], true
			}
			if !ok {
				ca = batchAnswer{status: http.StatusBadGateway, body: []byte("no answer for this operation in the change set")}
			}
			results = append(results, result(i, ca))
		}
	}
	return results, errs
}
