package dataverse

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
)

var actionNamePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// InvokeBound calls a bound action, such as a custom API bound to a table
// (POST <set>(<id>)/Microsoft.Dynamics.CRM.<action>), with its parameters by unique
// name; the bound row is the action's Target. It is not retried after an attempt
// that may have gone through: an action may not be safe to run twice.
func (c *Client) InvokeBound(ctx context.Context, entitySet, id, action string, params map[string]any) error {
	u, err := c.rowURL(entitySet, id)
	if err != nil {
		return fmt.Errorf("invoke %s: %w", action, err)
	}
	if !actionNamePattern.MatchString(action) {
		return fmt.Errorf("invoke %s: not an action name", action)
	}
	if params == nil {
		params = map[string]any{}
	}
	body, err := jsonBody(params)
	if err != nil {
		return fmt.Errorf("invoke %s: %w", action, err)
	}
	resp, err := c.do(ctx, &request{method: http.MethodPost, url: u + "/Microsoft.Dynamics.CRM." + action, body: body, once: true})
	if err != nil {
		return fmt.Errorf("invoke %s on %s(%s): %w", action, entitySet, id, err)
	}
	drain(resp)
	return nil
}
