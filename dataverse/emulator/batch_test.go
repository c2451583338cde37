package emulator

import (
	"bufio"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// batchPart is one response of a batch answer as a test sees it.
type batchPart struct {
	contentID string
	status    int
	header    http.Header
	body      string
	changeSet []batchPart
}

// postBatch sends a raw batch body as it is and parses the answer.
func (b *testBundle) postBatch(t *testing.T, body string, headers ...string) (answer, []batchPart) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/api/data/v9.2/$batch", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("Content-Type", `multipart/mixed; boundary="batch_AAA123"`)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("batch error is not JSON: %s", raw)
		}
	}
	mt, params, err := mime.ParseMediaType(a.header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		return a, nil
	}
	return a, readParts(t, strings.NewReader(a.raw), params["boundary"])
}

func first(a answer, _ []batchPart) answer { return a }

func readParts(t *testing.T, r io.Reader, boundary string) []batchPart {
	t.Helper()
	var out []batchPart
	mr := multipart.NewReader(r, boundary)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("batch answer: %v", err)
		}
		mt, params, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if mt == "multipart/mixed" {
			out = append(out, batchPart{changeSet: readParts(t, p, params["boundary"])})
			continue
		}
		if p.Header.Get("Content-Transfer-Encoding") != "binary" || mt != "application/http" {
			t.Errorf("part headers %v", p.Header)
		}
		resp, err := http.ReadResponse(bufio.NewReader(p), nil)
		if err != nil {
			t.Fatalf("batch part: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		out = append(out, batchPart{contentID: p.Header.Get("Content-ID"), status: resp.StatusCode, header: resp.Header, body: string(body)})
	}
}

// The request of Microsoft's "Reference URIs in request body" example, as
// printed (LF line endings, absolute URLs).
const docBatch = `--batch_AAA123
Content-Type: multipart/mixed; boundary=changeset_dd81ccab-11ce-4d57-b91d-12c4e25c3cab

--changeset_dd81ccab-11ce-4d57-b91d-12c4e25c3cab
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST {org}/api/data/v9.2/leads HTTP/1.1
Content-Type: application/json

{
    "firstname":"first name",
    "lastname":"last name"
}

--changeset_dd81ccab-11ce-4d57-b91d-12c4e25c3cab
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

POST {org}/api/data/v9.2/contacts HTTP/1.1
Content-Type: application/json

{"firstname":"first name"}

--changeset_dd81ccab-11ce-4d57-b91d-12c4e25c3cab
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 3

POST {org}/api/data/v9.2/accounts HTTP/1.1
Content-Type: application/json

{
    "name":"IcM Account",
    "primarycontactid@odata.bind":"$2"
}

--changeset_dd81ccab-11ce-4d57-b91d-12c4e25c3cab--
--batch_AAA123
Content-Type: application/http
Content-Transfer-Encoding: binary

GET /api/data/v9.2/accounts?$select=name,_primarycontactid_value HTTP/1.1


--batch_AAA123--
`

func TestBatchAsMicrosoftDocumentsIt(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	a, parts := b.postBatch(t, strings.ReplaceAll(docBatch, "{org}", b.srv.URL))
	if a.status != http.StatusOK || len(parts) != 2 || len(parts[0].changeSet) != 3 {
		t.Fatalf("%d, %d parts: %s", a.status, len(parts), a.raw)
	}
	for i, p := range parts[0].changeSet {
		if p.status != http.StatusNoContent || p.contentID != string(rune('1'+i)) || p.header.Get("OData-EntityId") == "" || p.header.Get("Location") != p.header.Get("OData-EntityId") {
			t.Errorf("change set answer %d: %+v", i, p)
		}
	}
	contact := parts[0].changeSet[1].header.Get("OData-EntityId")
	contactID := contact[strings.LastIndexByte(contact, '(')+1 : len(contact)-1]
	if get := parts[1]; get.status != http.StatusOK || !strings.Contains(get.body, `"_primarycontactid_value":"`+contactID+`"`) {
		t.Errorf("GET after the change set: %+v", get)
	}
}

func TestBatchErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	part := func(contentID, line, body string) string {
		s := "--changeset_X\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
		if contentID != "" {
			s += "Content-ID: " + contentID + "\r\n"
		}
		s += "\r\n" + line + " HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n" + body + "\r\n"
		return s
	}
	changeSet := func(parts ...string) string {
		return "--batch_AAA123\r\nContent-Type: multipart/mixed; boundary=changeset_X\r\n\r\n" + strings.Join(parts, "") + "--changeset_X--\r\n"
	}
	single := func(line, body string) string {
		return "--batch_AAA123\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" + line + " HTTP/1.1\r\nContent-Type: application/json\r\n\r\n" + body + "\r\n"
	}
	end := "--batch_AAA123--\r\n"

	t.Run("undeclared Content-ID", func(t *testing.T) {
		a, parts := b.postBatch(t, changeSet(part("2", "POST /api/data/v9.2/contacts", `{"lastname":"x","parentcustomerid_account@odata.bind":"$1"}`))+end)
		if a.status != http.StatusBadRequest || len(parts) != 1 || parts[0].contentID != "2" || !strings.Contains(parts[0].body, "Content-ID Reference: '$1' does not exist in the batch context.") {
			t.Errorf("%d %+v", a.status, parts)
		}
	})
	t.Run("GET in a change set", func(t *testing.T) {
		first(b.postBatch(t, changeSet(part("1", "GET /api/data/v9.2/contacts", ""))+end)).
			wantError(t, http.StatusBadRequest, codeODataBadRequest, "HTTP method 'GET' is invalid for a Change Set request")
	})
	t.Run("nested batch", func(t *testing.T) {
		first(b.postBatch(t, single("POST /api/data/v9.2/$batch", "")+end)).wantError(t, http.StatusBadRequest, codeODataBadRequest, "another batch")
	})
	t.Run("more than 1000 requests", func(t *testing.T) {
		var sb strings.Builder
		for range 1001 {
			sb.WriteString(single("POST /api/data/v9.2/contacts", `{"lastname":"n"}`))
		}
		first(b.postBatch(t, sb.String()+end)).wantError(t, http.StatusBadRequest, codeODataBadRequest, "more than 1000")
		if n := len(values(t, b.call(t, http.MethodGet, "contacts?$filter=lastname%20eq%20'n'", nil))); n != 0 {
			t.Errorf("%d contacts made by a refused batch", n)
		}
	})
	t.Run("stop at the first failure", func(t *testing.T) {
		a, parts := b.postBatch(t, single("POST /api/data/v9.2/contacts", `{"lastname":"s1"}`)+
			single("POST contacts", `{"lastname":"`+strings.Repeat("y", 51)+`"}`)+
			single("POST contacts", `{"lastname":"s3"}`)+end)
		if a.status != http.StatusBadRequest || len(parts) != 2 || parts[0].status != http.StatusNoContent || parts[1].status != http.StatusBadRequest ||
			!strings.Contains(parts[1].body, `"code":"0x80044331"`) {
			t.Errorf("%d %+v", a.status, parts)
		}
		if a.header.Get("Preference-Applied") != "" {
			t.Errorf("Preference-Applied %q", a.header.Get("Preference-Applied"))
		}
	})
	t.Run("continue on error", func(t *testing.T) {
		a, parts := b.postBatch(t, single("POST contacts", `{"lastname":"`+strings.Repeat("y", 51)+`"}`)+
			single("POST contacts", `{"lastname":"c2"}`)+end, "Prefer", "odata.continue-on-error")
		if a.status != http.StatusOK || len(parts) != 2 || parts[0].status != http.StatusBadRequest || parts[1].status != http.StatusNoContent ||
			a.header.Get("Preference-Applied") != "odata.continue-on-error" {
			t.Errorf("%d %v %+v", a.status, a.header, parts)
		}
	})
	t.Run("not multipart", func(t *testing.T) {
		b.call(t, http.MethodPost, "$batch", map[string]any{}).wantError(t, http.StatusBadRequest, codeODataBadRequest, "multipart/mixed")
	})
}

// A change set's webhook events go out only when it commits.
func TestBatchChangeSetHoldsWebhooksUntilCommit(t *testing.T) {
	t.Parallel()
	b, rc := receiverSetup(t, stepSpec{message: "Create", table: "contact", stage: 40, mode: 1})
	body := func(second string) string {
		return "--batch_AAA123\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n" +
			"--cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPOST contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"lastname\":\"first\"}\r\n" +
			"--cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nPOST contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n" + second + "\r\n" +
			"--cs--\r\n--batch_AAA123--\r\n"
	}
	if a, _ := b.postBatch(t, body(`{"nosuchcolumn":1}`)); a.status != http.StatusBadRequest {
		t.Fatalf("failing change set: %d %s", a.status, a.raw)
	}
	b.flush(t)
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("%d webhooks for a rolled-back change set", n)
	}
	if a, _ := b.postBatch(t, body(`{"lastname":"second"}`)); a.status != http.StatusOK {
		t.Fatalf("change set: %d %s", a.status, a.raw)
	}
	b.flush(t)
	got := rc.decoded(t)
	if len(got) != 2 || got[0].MessageName != "Create" || got[1].MessageName != "Create" {
		t.Errorf("%d deliveries after the commit, want 2 Creates", len(got))
	}
}
