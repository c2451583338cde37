package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The operator commands (status, sync-list, replay, import) are GraphQL clients of
// a running instance; this file holds what they share: the --url/--token flags, the
// HTTP call and the translation of GraphQL errors into one clear line.

// opFlags are the flags every operator command takes to find and enter an instance.
type opFlags struct {
	url     *string
	token   *string
	timeout *time.Duration
	getenv  func(string) string
}

// addOpFlags defines --url, --token and --timeout, defaulting to CRMSYNC_URL and
// CRMSYNC_TOKEN.
func addOpFlags(fs *flag.FlagSet, getenv func(string) string) *opFlags {
	return &opFlags{
		url: fs.String("url", cmp.Or(getenv("CRMSYNC_URL"), "http://127.0.0.1:8080"), "base URL of the running instance (CRMSYNC_URL)"),
		// Not a default: -h would print it.
		token:   fs.String("token", "", "a `token` of the instance, as crmsync token mints it (default CRMSYNC_TOKEN)"),
		timeout: fs.Duration("timeout", time.Minute, "how long one API call may take"),
		getenv:  getenv,
	}
}

// client checks the flags and returns a client of the instance they name.
func (f *opFlags) client() (*opClient, error) {
	token := strings.TrimSpace(cmp.Or(*f.token, f.getenv("CRMSYNC_TOKEN")))
	if token == "" {
		return nil, errors.New("no token: pass --token or set CRMSYNC_TOKEN (mint one with `crmsync token --tenant T --role admin`)")
	}
	u, err := url.Parse(strings.TrimSpace(*f.url))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bad --url %q: want the instance's base URL, like http://127.0.0.1:8080", *f.url)
	}
	if *f.timeout <= 0 {
		return nil, fmt.Errorf("bad --timeout %s: want a positive duration", *f.timeout)
	}
	return &opClient{
		base:  strings.TrimRight(u.String(), "/"),
		token: token,
		http:  &http.Client{Timeout: *f.timeout},
	}, nil
}

// parseOpArgs parses flags that may stand before, between or after the positional
// arguments (`sync-list ID --dry-run`), which flag.Parse alone stops at, and checks
// that exactly the named positional arguments are there.
func parseOpArgs(fs *flag.FlagSet, args []string, names ...string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		if parsed := len(args) - fs.NArg(); parsed > 0 && args[parsed-1] == "--" {
			pos = append(pos, fs.Args()...) // after "--", nothing is a flag
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != len(names) {
		fs.Usage()
		if len(pos) < len(names) {
			return nil, fmt.Errorf("%s: %s is required", commandName(fs), strings.Join(names[len(pos):], " and "))
		}
		return nil, fmt.Errorf("%s: unexpected argument %q", commandName(fs), pos[len(names)])
	}
	return pos, nil
}

// commandName is the command a flag set is for ("import"), as errors name it.
func commandName(fs *flag.FlagSet) string { return strings.TrimPrefix(fs.Name(), "crmsync ") }

// inRange refuses a number flag outside lo to hi, naming the flag.
func inRange(fs *flag.FlagSet, name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s: --%s must be between %d and %d, got %d", commandName(fs), name, lo, hi, v)
	}
	return nil
}

// opUsage makes a command's -h show its synopsis above the flags.
func opUsage(fs *flag.FlagSet, synopsis string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n", synopsis)
		fs.PrintDefaults()
	}
}

// opClient calls an instance's GraphQL API over HTTP with a bearer token.
type opClient struct {
	base  string
	token string
	http  *http.Client
}

// gqlError is one entry of a GraphQL answer's `errors`.
type gqlError struct {
	Message    string `json:"message"`
	Path       []any  `json:"path"`
	Extensions struct {
		Code  string `json:"code"`
		Field string `json:"field"`
	} `json:"extensions"`
}

// apiError is an operation the instance answered with errors; it reads as
// "CODE: message", once per distinct error.
type apiError []gqlError

func (e apiError) Error() string {
	var lines []string
	for _, ge := range e {
		line := cmp.Or(ge.Extensions.Code, "ERROR") + ": " + ge.Message
		if ge.Extensions.Field != "" {
			line += " (field " + ge.Extensions.Field + ")"
		}
		if !slices.Contains(lines, line) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "; ")
}

// code is the first error's extensions.code.
func (e apiError) code() string {
	if len(e) == 0 {
		return ""
	}
	return e[0].Extensions.Code
}

// do runs one GraphQL operation and decodes its data into out. A failure is one
// line: the instance cannot be reached, it answered something that is not GraphQL,
// or its errors (an apiError).
func (c *opClient) do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("bad URL %s: %w", c.base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return c.unreachable(ctx, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read the answer of %s: %w", c.base, err)
	}
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors apiError        `json:"errors"`
	}
	if err := json.Unmarshal(raw, &res); err != nil || (res.Data == nil && res.Errors == nil) {
		return fmt.Errorf("%s/graphql answered HTTP %d with %s, not GraphQL: is it a crmsync instance?", c.base, resp.StatusCode, snippet(raw))
	}
	if len(res.Errors) > 0 {
		return res.Errors
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(res.Data, out); err != nil {
		return fmt.Errorf("decode the answer of %s: %w", c.base, err)
	}
	return nil
}

// unreachable says in one line why a call got no answer.
func (c *opClient) unreachable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("no answer from %s within %s", c.base, c.http.Timeout)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Errorf("cannot reach crmsync at %s: %v", c.base, opErr.Err)
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return fmt.Errorf("cannot reach crmsync at %s: %v", c.base, err)
}

// plural is "1 thing" or "n things".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// snippet is the start of an answer that is not GraphQL, on one line.
func snippet(raw []byte) string {
	s := strings.Join(strings.Fields(string(raw)), " ")
	if s == "" {
		return "an empty body"
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}
