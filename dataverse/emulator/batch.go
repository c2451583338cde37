package emulator

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// $batch (reference/dataverse.md §4.5 and Microsoft's page on batch operations):
// POST /$batch with a multipart/mixed body whose parts are application/http
// requests or change sets (a nested multipart/mixed of requests). Requests run in
// order as the caller; the answer is a multipart/mixed of the responses in the
// same order, a change set's responses nested in a part of their own.
//
//   - At most 1000 requests, no nested batch, no GET inside a change set.
//   - A change set is atomic: the first failure rolls back what its earlier
//     requests did and is its only response (the emulator adds the failing
//     request's Content-ID to it, so a client can tell which one failed); webhook
//     events of a change set go out only once it committed.
//   - Content-ID n names what a request created (its OData-EntityId); later
//     requests of the same change set use "$n" at the start of their URL or as
//     the value of an @odata.bind or @odata.id. An undeclared "$n" is a 400.
//   - The batch stops at the first failing request or change set and answers with
//     that failure's status, the responses so far and the failure in the body;
//     with Prefer: odata.continue-on-error it goes on, answers 200 and reports
//     Preference-Applied.
//
// The whole batch counts as one request for the service-protection limits (§7.3).

// maxBatchRequests is the most requests one $batch may hold (§4.5).
const maxBatchRequests = 1000

// batchRequest is one application/http part of a batch.
type batchRequest struct {
	contentID string
	method    string
	target    string // the URL as written: absolute, /api/data/v9.2/…, relative or $n…
	header    http.Header
	body      []byte
}

// batchItem is a request on its own or a change set.
type batchItem struct {
	single    *batchRequest
	changeSet []*batchRequest
}

// batchAnswer is one inner response.
type batchAnswer struct {
	contentID string
	status    int
	header    http.Header
	body      []byte
}

// batch handles POST /$batch.
func (e *Emulator) batch(w http.ResponseWriter, r *http.Request, caller *principal) error {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return errorf(http.StatusBadRequest, codeODataBadRequest, "The content type '%s' is not valid for a batch request; send multipart/mixed with a boundary.", r.Header.Get("Content-Type"))
	}
	items, err := readBatch(http.MaxBytesReader(w, r.Body, maxBody), params["boundary"])
	if err != nil {
		return err
	}
	_, goOn := parsePrefer(r.Header)["odata.continue-on-error"]

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary("batchresponse_" + uuid.NewString()); err != nil {
		return err
	}
	status := http.StatusOK
	for _, it := range items {
		var failed *batchAnswer
		if it.single != nil {
			e.gate.RLock()
			a := e.runBatchRequest(r, caller, it.single, nil)
			e.gate.RUnlock()
			if err := writeAnswerPart(mw, a); err != nil {
				return err
			}
			if a.status >= 400 {
				failed = a
			}
		} else {
			answers, bad := e.runChangeSet(r, caller, it.changeSet)
			if bad != nil {
				failed = bad
				if err := writeAnswerPart(mw, bad); err != nil {
					return err
				}
			} else if err := writeChangeSetPart(mw, answers); err != nil {
				return err
			}
		}
		if failed != nil && !goOn {
			status = failed.status
			break
		}
	}
	if err := mw.Close(); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	h.Set("OData-Version", "4.0")
	if goOn {
		h.Set("Preference-Applied", "odata.continue-on-error")
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// runChangeSet runs the requests of a change set as one transaction, holding the
// gate so no other request runs meanwhile; it returns their answers, or the first
// failure after rolling back.
func (e *Emulator) runChangeSet(outer *http.Request, caller *principal, reqs []*batchRequest) ([]*batchAnswer, *batchAnswer) {
	e.gate.Lock()
	defer e.gate.Unlock()
	e.mu.Lock()
	tx := e.beginLocked()
	e.mu.Unlock()
	refs := map[string]string{} // Content-ID → "contacts(<id>)"
	answers := make([]*batchAnswer, 0, len(reqs))
	for _, req := range reqs {
		a := e.runBatchRequest(outer, caller, req, refs)
		if a.status >= 400 {
			e.mu.Lock()
			tx.rollbackLocked()
			e.mu.Unlock()
			return nil, a
		}
		if req.contentID != "" {
			if path, ok := createdPath(a.header); ok {
				refs[req.contentID] = path
			}
		}
		answers = append(answers, a)
	}
	e.mu.Lock()
	calls := tx.commitLocked()
	e.mu.Unlock()
	e.enqueue(calls)
	return answers, nil
}

// createdPath is "contacts(<id>)" from a response's OData-EntityId or Location.
func createdPath(h http.Header) (string, bool) {
	loc := cmp.Or(h.Get("OData-EntityId"), h.Get("Location"))
	_, path, ok := strings.Cut(loc, "/api/data/v9.2/")
	return path, ok && path != ""
}

// runBatchRequest runs one request of a batch through the ordinary routing, as the
// batch's caller; refs resolves "$n" inside a change set (nil outside one).
func (e *Emulator) runBatchRequest(outer *http.Request, caller *principal, br *batchRequest, refs map[string]string) *batchAnswer {
	rec := &recorder{h: http.Header{}}
	req, err := innerRequest(outer, br, refs)
	if err == nil {
		err = e.route(rec, req, caller)
	}
	if err != nil {
		if req == nil {
			req = outer
		}
		rec = &recorder{h: http.Header{}}
		e.writeError(rec, req, err)
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &batchAnswer{contentID: br.contentID, status: rec.status, header: rec.h, body: rec.body.Bytes()}
}

// innerRequest turns a batch part into an *http.Request for route: the URL
// resolved against the service root and "$n" references replaced.
func innerRequest(outer *http.Request, br *batchRequest, refs map[string]string) (*http.Request, error) {
	target := br.target
	if strings.HasPrefix(target, "$") {
		n, rest := target[1:], ""
		if i := strings.IndexAny(n, "/?"); i >= 0 {
			n, rest = n[:i], n[i:]
		}
		path, ok := refs[n]
		if !ok {
			return nil, errReference(n)
		}
		target = path + rest
	}
	rest := target
	if u, err := url.Parse(target); err == nil && u.IsAbs() {
		rest = u.RequestURI()
	}
	if p, ok := strings.CutPrefix(rest, "/api/data/v9.2/"); ok {
		rest = p
	} else if strings.HasPrefix(rest, "/") {
		return nil, errorf(http.StatusNotFound, "", "No HTTP resource was found that matches the request URI '%s'.", rest)
	}
	body := br.body
	if bytes.Contains(body, []byte(`"$`)) {
		var err error
		if body, err = resolveBodyRefs(outer, body, refs); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(outer.Context(), br.method, baseURL(outer)+"/api/data/v9.2/"+rest, bytes.NewReader(body))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "The request URL '%s' in the batch is not valid.", br.target)
	}
	req.Header = br.header.Clone()
	req.Host, req.TLS = outer.Host, outer.TLS
	path, _ := strings.CutPrefix(req.URL.Path, "/api/data/v9.2/")
	req.SetPathValue("rest", path)
	return req, nil
}

// resolveBodyRefs replaces "$n" values of @odata.bind and @odata.id properties,
// in the rows of a deep insert too.
func resolveBodyRefs(outer *http.Request, body []byte, refs map[string]string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return body, nil // the handler reports what is wrong with it
	}
	changed, err := resolveRefs(outer, m, refs)
	if err != nil || !changed {
		return body, err
	}
	return json.Marshal(m)
}

// resolveRefs replaces the "$n" references in one object and the objects nested
// in its arrays, and says whether it did.
func resolveRefs(outer *http.Request, m map[string]any, refs map[string]string) (bool, error) {
	changed := false
	for k, v := range m {
		if items, ok := v.([]any); ok {
			for _, item := range items {
				if nested, ok := item.(map[string]any); ok {
					c, err := resolveRefs(outer, nested, refs)
					if err != nil {
						return false, err
					}
					changed = changed || c
				}
			}
			continue
		}
		s, ok := v.(string)
		if !ok || !strings.HasPrefix(s, "$") || (!strings.HasSuffix(k, "@odata.bind") && k != "@odata.id") {
			continue
		}
		path, ok := refs[s[1:]]
		if !ok {
			return false, errReference(s[1:])
		}
		if k == "@odata.id" {
			m[k] = baseURL(outer) + "/api/data/v9.2/" + path
		} else {
			m[k] = "/" + path
		}
		changed = true
	}
	return changed, nil
}

func errReference(n string) *apiError {
	return errorf(http.StatusBadRequest, codeODataBadRequest, "Content-ID Reference: '$%s' does not exist in the batch context.", n)
}

// readBatch parses a batch body into its requests and change sets.
func readBatch(body io.Reader, boundary string) ([]batchItem, error) {
	bad := func(format string, args ...any) error {
		return errorf(http.StatusBadRequest, codeODataBadRequest, format, args...)
	}
	var items []batchItem
	count := 0
	ids := map[string]bool{}
	mr := multipart.NewReader(body, boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return nil, errorf(http.StatusRequestEntityTooLarge, codeODataBadRequest, "The request body exceeds the limit of %d bytes.", tooBig.Limit)
			}
			return nil, bad("The batch request body is not valid multipart/mixed: %s", err)
		}
		mt, params, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			return nil, bad("A batch part has no valid Content-Type.")
		}
		switch mt {
		case "application/http":
			req, err := readBatchRequest(p)
			if err != nil {
				return nil, err
			}
			items = append(items, batchItem{single: req})
			count++
		case "multipart/mixed":
			var set []*batchRequest
			cr := multipart.NewReader(p, params["boundary"])
			for {
				cp, err := cr.NextPart()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return nil, bad("A change set is not valid multipart/mixed: %s", err)
				}
				if cmt, _, _ := mime.ParseMediaType(cp.Header.Get("Content-Type")); cmt != "application/http" {
					return nil, bad("A change set may hold only application/http parts, not '%s'; batches do not nest.", cp.Header.Get("Content-Type"))
				}
				req, err := readBatchRequest(cp)
				if err != nil {
					return nil, err
				}
				if req.method == http.MethodGet {
					return nil, bad("HTTP method 'GET' is invalid for a Change Set request. Allowed methods are POST, PUT, DELETE and PATCH.")
				}
				set = append(set, req)
				count++
			}
			if len(set) == 0 {
				return nil, bad("A change set holds no requests.")
			}
			items = append(items, batchItem{changeSet: set})
		default:
			return nil, bad("The batch part content type '%s' is not supported; use application/http or multipart/mixed.", mt)
		}
		if count > maxBatchRequests {
			return nil, bad("The batch holds more than %d requests.", maxBatchRequests)
		}
	}
	for _, it := range items {
		reqs := it.changeSet
		if it.single != nil {
			reqs = []*batchRequest{it.single}
		}
		for _, req := range reqs {
			if req.contentID == "" {
				continue
			}
			if ids[req.contentID] {
				return nil, bad("The Content-ID '%s' is used more than once in the batch.", req.contentID)
			}
			ids[req.contentID] = true
		}
	}
	if len(items) == 0 {
		return nil, bad("The batch holds no requests.")
	}
	return items, nil
}

// readBatchRequest reads the HTTP request inside an application/http part: the
// request line, headers, a blank line and the body (everything up to the next
// boundary; parts carry no Content-Length).
func readBatchRequest(p *multipart.Part) (*batchRequest, error) {
	br := bufio.NewReader(p)
	line := ""
	for line == "" {
		l, err := br.ReadString('\n')
		line = strings.TrimSpace(l)
		if err != nil && line == "" {
			return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "A batch part holds no request line.")
		}
	}
	fields := strings.Fields(line)
	if len(fields) < 2 || len(fields) > 3 || (len(fields) == 3 && !strings.HasPrefix(fields[2], "HTTP/")) {
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "The request line '%s' in the batch is not valid.", line)
	}
	method := strings.ToUpper(fields[0])
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete:
	default:
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "The HTTP method '%s' is not valid in a batch.", fields[0])
	}
	if strings.Contains(fields[1], "$batch") {
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "A batch may not hold another batch.")
	}
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "The headers of the batch request '%s' are not valid: %s", line, err)
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "The body of the batch request '%s' cannot be read: %s", line, err)
	}
	return &batchRequest{
		contentID: strings.TrimSpace(p.Header.Get("Content-ID")),
		method:    method, target: fields[1],
		header: http.Header(hdr), body: bytes.TrimRight(body, "\r\n"),
	}, nil
}

// writeAnswerPart writes one response as an application/http part.
func writeAnswerPart(mw *multipart.Writer, a *batchAnswer) error {
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "application/http")
	h.Set("Content-Transfer-Encoding", "binary")
	if a.contentID != "" {
		h.Set("Content-ID", a.contentID)
	}
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	_, err = pw.Write(httpAnswer(a))
	return err
}

// writeChangeSetPart writes the responses of a committed change set as one
// nested multipart part.
func writeChangeSetPart(mw *multipart.Writer, answers []*batchAnswer) error {
	var inner bytes.Buffer
	cw := multipart.NewWriter(&inner)
	if err := cw.SetBoundary("changesetresponse_" + uuid.NewString()); err != nil {
		return err
	}
	for _, a := range answers {
		if err := writeAnswerPart(cw, a); err != nil {
			return err
		}
	}
	if err := cw.Close(); err != nil {
		return err
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "multipart/mixed; boundary="+cw.Boundary())
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	_, err = pw.Write(inner.Bytes())
	return err
}

// httpAnswer renders a response as Dataverse does inside a batch: status line,
// headers (a created row's OData-EntityId also as Location), blank line, body.
func httpAnswer(a *batchAnswer) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", a.status, http.StatusText(a.status))
	h := a.header.Clone()
	if id := h.Get("OData-EntityId"); id != "" && h.Get("Location") == "" {
		h.Set("Location", id)
	}
	h.Del("Content-Length")
	for _, k := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	b.Write(a.body)
	return b.Bytes()
}

// recorder is the ResponseWriter of a request inside a batch.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
