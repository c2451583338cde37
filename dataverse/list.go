package dataverse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Marketing-list membership (reference/dataverse.md §4.7, §4.3): the list actions
// Dataverse offers for it and the N:N relationships behind it. Each raises the
// event §3.6 names — AddMember, AddListMembers, RemoveMember, Associate,
// Disassociate — which comes back to crmsync as a webhook like any other change.

// Member types of a marketing list (list.createdfromcode, §5), so code names them
// instead of writing 1, 2 and 4.
const (
	ListMemberAccount = 1
	ListMemberContact = 2
	ListMemberLead    = 4
)

// ListMemberTable is the table and entity set a list's members come from, by the
// list's createdfromcode.
func ListMemberTable(createdFromCode int) (table, entitySet string, ok bool) {
	switch createdFromCode {
	case ListMemberAccount:
		return "account", "accounts", true
	case ListMemberContact:
		return "contact", "contacts", true
	case ListMemberLead:
		return "lead", "leads", true
	}
	return "", "", false
}

// AddListMember adds a record to a static list (the bound action AddMemberList)
// and returns the listmember id; the record must be of the list's member type.
func (c *Client) AddListMember(ctx context.Context, listID, memberID string) (string, error) {
	u, err := c.rowURL("lists", listID)
	if err != nil {
		return "", fmt.Errorf("add list member: %w", err)
	}
	if !isGUID(memberID) {
		return "", fmt.Errorf("add list member: invalid member id %q: want a GUID", memberID)
	}
	body, err := jsonBody(map[string]any{"EntityId": memberID})
	if err != nil {
		return "", fmt.Errorf("add list member: %w", err)
	}
	var answer struct {
		ID string `json:"Id"`
	}
	_, err = c.do(ctx, &request{method: http.MethodPost, url: u + "/Microsoft.Dynamics.CRM.AddMemberList", body: body,
		decode: func(r io.Reader) error { answer.ID = ""; return decodeJSON(r, &answer) }})
	if err != nil {
		return "", fmt.Errorf("add list member %s to list %s: %w", memberID, listID, err)
	}
	return answer.ID, nil
}

// AddListMembers adds records of memberSet ("contacts", "leads", "accounts") to a
// static list with the unbound action AddListMembersList, Config.BulkSize members
// per request; each request adds all its members or none.
func (c *Client) AddListMembers(ctx context.Context, listID, memberSet string, memberIDs []string) error {
	if !isGUID(listID) {
		return fmt.Errorf("add list members: invalid list id %q: want a GUID", listID)
	}
	if _, err := c.setURL(memberSet); err != nil {
		return fmt.Errorf("add list members: %w", err)
	}
	typ, pk := "Microsoft.Dynamics.CRM."+logicalName(memberSet), primaryKey(memberSet)
	for start := 0; start < len(memberIDs); start += c.bulk {
		chunk := memberIDs[start:min(start+c.bulk, len(memberIDs))]
		members := make([]map[string]any, len(chunk))
		for i, id := range chunk {
			if !isGUID(id) {
				return fmt.Errorf("add list members: invalid member id %q: want a GUID", id)
			}
			members[i] = map[string]any{"@odata.type": typ, pk: id}
		}
		body, err := jsonBody(map[string]any{
			"List":    map[string]any{"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": listID},
			"Members": members,
		})
		if err != nil {
			return fmt.Errorf("add list members: %w", err)
		}
		resp, err := c.do(ctx, &request{method: http.MethodPost, url: c.api + "AddListMembersList", body: body})
		if err != nil {
			return fmt.Errorf("add %d list members to list %s: %w", len(chunk), listID, err)
		}
		drain(resp)
	}
	return nil
}

// RemoveListMember takes a record out of a static list (RemoveMemberList).
func (c *Client) RemoveListMember(ctx context.Context, listID, memberID string) error {
	u, err := c.rowURL("lists", listID)
	if err != nil {
		return fmt.Errorf("remove list member: %w", err)
	}
	if !isGUID(memberID) {
		return fmt.Errorf("remove list member: invalid member id %q: want a GUID", memberID)
	}
	body, err := jsonBody(map[string]any{"EntityId": memberID})
	if err != nil {
		return fmt.Errorf("remove list member: %w", err)
	}
	resp, err := c.do(ctx, &request{method: http.MethodPost, url: u + "/Microsoft.Dynamics.CRM.RemoveMemberList", body: body})
	if err != nil {
		return fmt.Errorf("remove list member %s from list %s: %w", memberID, listID, err)
	}
	drain(resp)
	return nil
}

// CopyDynamicListToStatic freezes a dynamic list's current members into a new
// static list and returns its id. It is not retried after an attempt that may
// have gone through, which would make a second copy.
func (c *Client) CopyDynamicListToStatic(ctx context.Context, listID string) (string, error) {
	u, err := c.rowURL("lists", listID)
	if err != nil {
		return "", fmt.Errorf("copy dynamic list: %w", err)
	}
	var answer struct {
		ListID       string `json:"listid"`
		StaticListID string `json:"StaticListId"`
	}
	_, err = c.do(ctx, &request{method: http.MethodPost, url: u + "/Microsoft.Dynamics.CRM.CopyDynamicListToStatic", body: []byte("{}"), once: true,
		decode: func(r io.Reader) error { answer.ListID, answer.StaticListID = "", ""; return decodeJSON(r, &answer) }})
	if err != nil {
		return "", fmt.Errorf("copy dynamic list %s: %w", listID, err)
	}
	if answer.ListID == "" {
		answer.ListID = answer.StaticListID // the SDK response's name
	}
	if !isGUID(answer.ListID) {
		return "", fmt.Errorf("copy dynamic list %s: no list id in the answer", listID)
	}
	return answer.ListID, nil
}

// Associate links two rows through an N:N relationship
// (POST <set>(<id>)/<relationship>/$ref), e.g. a contact to a list through
// RelationshipListContact; Dataverse raises Associate. Linking rows that are
// linked already fails with DuplicateRecord (ErrPreconditionFailed).
func (c *Client) Associate(ctx context.Context, entitySet, id, relationship, relatedSet, relatedID string) error {
	u, err := c.rowURL(entitySet, id)
	if err != nil {
		return fmt.Errorf("associate: %w", err)
	}
	related, err := c.rowURL(relatedSet, relatedID)
	if err != nil {
		return fmt.Errorf("associate: %w", err)
	}
	if _, err := c.setURL(relationship); err != nil {
		return fmt.Errorf("associate: relationship: %w", err)
	}
	body, err := jsonBody(map[string]any{"@odata.id": related})
	if err != nil {
		return fmt.Errorf("associate: %w", err)
	}
	// create: a retry that finds the link made by an attempt whose answer was lost
	// gets DuplicateRecord, which then means done.
	resp, err := c.do(ctx, &request{method: http.MethodPost, url: u + "/" + relationship + "/$ref", body: body, create: true})
	if errors.Is(err, errCreatedEarlier) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("associate %s(%s) with %s(%s): %w", entitySet, id, relatedSet, relatedID, err)
	}
	drain(resp)
	return nil
}

// Disassociate undoes Associate
// (DELETE <set>(<id>)/<relationship>(<relatedID>)/$ref); Dataverse raises
// Disassociate.
func (c *Client) Disassociate(ctx context.Context, entitySet, id, relationship, relatedID string) error {
	u, err := c.rowURL(entitySet, id)
	if err != nil {
		return fmt.Errorf("disassociate: %w", err)
	}
	if !isGUID(relatedID) {
		return fmt.Errorf("disassociate: invalid id %q: want a GUID", relatedID)
	}
	if _, err := c.setURL(relationship); err != nil {
		return fmt.Errorf("disassociate: relationship: %w", err)
	}
	resp, err := c.do(ctx, &request{method: http.MethodDelete, url: u + "/" + relationship + "(" + relatedID + ")/$ref"})
	if err != nil {
		return fmt.Errorf("disassociate %s(%s) from %s: %w", entitySet, id, relatedID, err)
	}
	drain(resp)
	return nil
}

// ListMembers reads the members of a marketing list whatever its kind: a static
// list's through its listmember rows, a dynamic list's by running its stored
// FetchXML query now. columns are the member table's logical column names (the
// primary key comes back always); none reads every column.
func (c *Client) ListMembers(ctx context.Context, listID string, columns []string) *Rows {
	list, err := c.Get(ctx, "lists", listID, []string{"type", "createdfromcode", "query"})
	if err != nil {
		return &Rows{c: c, set: "lists", err: fmt.Errorf("list members of %s: %w", listID, err)}
	}
	code, _ := list.Int("createdfromcode")
	table, set, ok := ListMemberTable(int(code))
	if !ok {
		return &Rows{c: c, set: "lists", err: fmt.Errorf("list members of %s: unknown member type %d", listID, code)}
	}
	if dynamic, _ := list.Bool("type"); !dynamic {
		return c.FetchXML(ctx, set, StaticListMembersFetch(table, listID, columns...))
	}
	query, _ := list.String("query")
	fetch, err := SetFetchAttributes(query, columns)
	if err != nil {
		return &Rows{c: c, set: set, err: fmt.Errorf("list members of %s: query: %w", listID, err)}
	}
	return c.FetchXML(ctx, set, fetch)
}
