package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"crmsync/store"
)

// TestDemoShowsTheLoop is issue #10's proof: `serve --demo` prints where to look
// and three curl lines, and each of them does what it says when run as printed —
// a CRM change reaches crmsync's subscriber, and crmsync's unsubscribe reaches the
// CRM's eMS subscription. A restart on the same data seeds nothing twice, finds
// the same connection and group, and the same lines work again.
func TestDemoShowsTheLoop(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	getenv := func(k string) string { return env[k] }
	t.Cleanup(func() { dropDatabase(t, getenv) })

	first := startDemo(t, getenv)
	if !first.created || first.subscribers != 3 {
		t.Fatalf("first start: created %v, %d subscribers; want a new connection and the list's 3 Berlin contacts", first.created, first.subscribers)
	}
	if resp, err := http.Get(first.base + "/graphiql"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the printed GraphiQL URL answers %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}
	first.checkLoop(t)
	first.stop(t)

	second := startDemo(t, getenv)
	if second.created || second.connectionID != first.connectionID || second.groupID != first.groupID || second.emulatorURL != first.emulatorURL {
		t.Fatalf("restart: connection %s (created %v), group %s, emulator %s; want %s, %s and %s again",
			second.connectionID, second.created, second.groupID, second.emulatorURL, first.connectionID, first.groupID, first.emulatorURL)
	}
	var counts struct {
		Connections      []struct{ ID string }
		SubscriberGroups struct{ TotalCount int }
		MarketingLists   struct{ TotalCount int }
		SubscriberGroup  struct{ SubscriberCount int }
	}
	api := &opClient{base: second.base, token: second.vars["CRMSYNC_TOKEN"], http: http.DefaultClient}
	if err := api.do(t.Context(), `query($c: ID!, $g: ID!) { connections { id } subscriberGroups { totalCount }
		marketingLists(connectionId: $c) { totalCount } subscriberGroup(id: $g) { subscriberCount } }`,
		map[string]any{"c": second.connectionID, "g": second.groupID}, &counts); err != nil {
		t.Fatal(err)
	}
	if len(counts.Connections) != 1 || counts.SubscriberGroups.TotalCount != 1 || counts.MarketingLists.TotalCount != 1 || counts.SubscriberGroup.SubscriberCount != 3 {
		t.Errorf("after a restart the demo tenant has %+v; want one connection, group and list, and 3 subscribers", counts)
	}
	// The restart brought the demo back to its start: the same lines show the loop again.
	second.checkLoop(t)
	second.stop(t)
}

// demoRun is a running `serve --demo` and what it printed.
type demoRun struct {
	*demoShell
	base, emulatorURL     string
	connectionID, groupID string
	created               bool
	subscribers           int
	// lines are the three printed command lines, in order.
	lines []string
	stop  func(t *testing.T)
}

var (
	demoEmulatorLine = regexp.MustCompile(`^Demo: the Dataverse emulator listens on (\S+) with`)
	demoTenantLine   = regexp.MustCompile(`^Tenant "demo": connection (\S+) \((created|found from an earlier start)\) .* group "[^"]+" \((\S+)\) with (\d+) subscribers`)
)

// startDemo runs `serve --demo` in this process and reads what it prints up to its
// last line.
func startDemo(t *testing.T, getenv func(string) string) *demoRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--demo"}, getenv, outW, testWriter{t})
		outW.Close()
	}()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	d := &demoRun{demoShell: &demoShell{t: t, vars: map[string]string{}}}
	stopped := false
	d.stop = func(t *testing.T) {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve --demo returned %v on shutdown", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("serve --demo did not shut down")
		}
	}
	t.Cleanup(func() { d.stop(t) })

	timeout := time.After(3 * time.Minute)
	for end := false; !end; {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
			if !ok {
				t.Fatalf("serve --demo ended before it printed the demo: %v", <-done)
			}
		case <-timeout:
			t.Fatal("serve --demo printed no demo within 3 minutes")
		}
		t.Log(line)
		switch text := strings.TrimSpace(line); {
		case strings.HasPrefix(line, "Demo: "):
			m := demoEmulatorLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("demo line %q", line)
			}
			d.emulatorURL = m[1]
		case strings.HasPrefix(line, "Tenant "):
			m := demoTenantLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("tenant line %q", line)
			}
			d.connectionID, d.created, d.groupID = m[1], m[2] == "created", m[3]
			d.subscribers, _ = strconv.Atoi(m[4])
		case strings.HasPrefix(line, "GraphiQL:  "):
			d.base = strings.TrimSuffix(strings.Fields(line)[1], "/graphiql")
		case strings.HasPrefix(line, "Dashboard: "):
			if u := strings.Fields(line)[1]; u != d.base+"/ui" {
				t.Errorf("dashboard URL %q, want %s/ui", u, d.base)
			}
		case strings.HasPrefix(text, "export "):
			d.run(text)
		case strings.HasPrefix(text, "CRM_TOKEN=") || strings.HasPrefix(text, "curl "):
			d.lines = append(d.lines, text)
		case strings.HasPrefix(line, "The demo runs until interrupted"):
			end = true
		}
	}
	if d.emulatorURL == "" || d.connectionID == "" || d.base == "" || d.vars["CRMSYNC_TOKEN"] == "" || d.vars["CRMSYNC_URL"] != d.base || len(d.lines) != 3 {
		t.Fatalf("the demo printed base %q, emulator %q, connection %q, CRMSYNC_URL %q, token %v and %d command lines; want all, and 3 lines",
			d.base, d.emulatorURL, d.connectionID, d.vars["CRMSYNC_URL"], d.vars["CRMSYNC_TOKEN"] != "", len(d.lines))
	}
	return d
}

// demoSubscriber is the answer of the second line.
type demoSubscriber struct {
	Data struct {
		SubscriberByEmail struct {
			Email             string
			Fields            map[string]any
			SubscriptionState string
		}
	}
}

// checkLoop runs the three printed lines as a newcomer would, and checks that each
// change travelled.
func (d *demoRun) checkLoop(t *testing.T) {
	t.Helper()
	subscriber := func() demoSubscriber {
		t.Helper()
		var s demoSubscriber
		out := d.run(d.lines[1])
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("line 2 printed %q: %v", out, err)
		}
		return s
	}
	// Before: the subscriber is as seeded.
	if s := subscriber().Data.SubscriberByEmail; s.Email != "anna.schmidt@example.com" || s.Fields["lastName"] != "Schmidt" || s.SubscriptionState != "SUBSCRIBED" {
		t.Fatalf("before line 1 the subscriber is %+v; want Anna Schmidt, subscribed", s)
	}

	if out := d.run(d.lines[0]); !strings.HasPrefix(out, "HTTP/1.1 204 ") {
		t.Fatalf("line 1 printed %q; want the CRM's 204", out)
	}
	waitUntil(t, func() bool { return subscriber().Data.SubscriberByEmail.Fields["lastName"] == demoNewLastName })

	var rows []map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := strings.Split(strings.TrimSpace(d.run(d.lines[2])), "\n")
		if len(out) != 2 || !strings.Contains(out[0], `"subscriptionState":"UNSUBSCRIBED"`) {
			t.Fatalf("line 3 printed %q; want the unsubscribe's answer, then the CRM's rows", out)
		}
		var got struct{ Value []map[string]any }
		if err := json.Unmarshal([]byte(out[1]), &got); err != nil {
			t.Fatalf("line 3's GET printed %q: %v", out[1], err)
		}
		rows = got.Value
		if len(rows) == 1 && rows[0]["cs_subscribed"] == false && rows[0]["cs_groupid"] == d.groupID {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CRM's subscriptions of the contact are %v; want one for group %s with cs_subscribed false", rows, d.groupID)
		}
	}
}

// dropDatabase removes the test's database once the demo has stopped.
func dropDatabase(t *testing.T, getenv func(string) string) {
	cfg, err := loadConfig(getenv)
	if err != nil {
		t.Error(err)
		return
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URI: cfg.MongoURI, Database: cfg.MongoDatabase, SecretKey: cfg.SecretKey})
	if err != nil {
		t.Error(err)
		return
	}
	_ = st.DropDatabase(ctx)
	_ = st.Close(ctx)
}

// demoShell runs the printed lines as bash would, for what they use: words in
// single and double quotes, $NAME and $(…) expansions, export and assignments,
// &&, ; and |, and the commands curl (over net/http, not the curl binary),
// sed -E 's/…/…/' and sleep. Anything else fails the test, so a line that would
// not run in a shell does not pass here.
type demoShell struct {
	t    *testing.T
	vars map[string]string
}

var shellAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// run runs a line and answers what it printed.
func (sh *demoShell) run(line string) string {
	sh.t.Helper()
	out, err := sh.exec(line)
	if err != nil {
		sh.t.Fatalf("%v\nin: %s", err, line)
	}
	return out
}

// exec runs a list of pipelines joined by && or ;.
func (sh *demoShell) exec(line string) (string, error) {
	parts, err := splitShell(line)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	var in string
	for _, p := range parts {
		o, err := sh.command(p.text, in)
		if err != nil {
			return out.String(), err
		}
		if p.op == "|" {
			in = o
			continue
		}
		in = ""
		out.WriteString(o)
	}
	return out.String(), nil
}

type shellPart struct{ text, op string }

// splitShell cuts a line at the &&, ; and | outside quotes and $(…).
func splitShell(s string) ([]shellPart, error) {
	var parts []shellPart
	start := 0
	for i := 0; i < len(s); i++ {
		if end, ok := quoted(s, i); ok {
			if i = end; i >= len(s) {
				return nil, fmt.Errorf("unterminated quote in %q", s)
			}
			continue
		}
		switch c := s[i]; {
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			end, err := closingParen(s, i+2)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '&' && i+1 < len(s) && s[i+1] == '&':
			parts = append(parts, shellPart{s[start:i], "&&"})
			i++
			start = i + 1
		case c == '|' || c == ';':
			parts = append(parts, shellPart{s[start:i], string(c)})
			start = i + 1
		}
	}
	return append(parts, shellPart{s[start:], ""}), nil
}

// quoted answers where the quoted string or backslash escape that starts at s[i]
// ends (len(s) when it does not); ok is false when none starts there.
func quoted(s string, i int) (end int, ok bool) {
	switch s[i] {
	case '\\':
		return i + 1, true
	case '\'':
		if j := strings.IndexByte(s[i+1:], '\''); j >= 0 {
			return i + 1 + j, true
		}
		return len(s), true
	case '"':
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '\\':
				j++
			case '"':
				return j, true
			}
		}
		return len(s), true
	}
	return i, false
}

// words splits a command into words, expanding variables and $(…) as it goes.
func (sh *demoShell) words(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			continue
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0:
					i++
					cur.WriteByte(s[i])
				case s[i] == '$':
					n, err := sh.variable(s[i+1:], &cur)
					if err != nil {
						return nil, err
					}
					i += n
				default:
					cur.WriteByte(s[i])
				}
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			end, err := closingParen(s, i+2)
			if err != nil {
				return nil, err
			}
			out, err := sh.exec(s[i+2 : end])
			if err != nil {
				return nil, err
			}
			cur.WriteString(strings.TrimRight(out, "\n"))
			i = end
		case c == '$':
			n, err := sh.variable(s[i+1:], &cur)
			if err != nil {
				return nil, err
			}
			i += n
		default:
			cur.WriteByte(c)
		}
		inWord = true
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// variable writes the value of the name at the start of s ($ already read) and
// answers the name's length; a name not set is an error, since the printed lines
// must set what they use.
func (sh *demoShell) variable(s string, w *strings.Builder) (int, error) {
	n := 0
	for n < len(s) && (s[n] == '_' || s[n] >= 'A' && s[n] <= 'Z' || s[n] >= 'a' && s[n] <= 'z' || n > 0 && s[n] >= '0' && s[n] <= '9') {
		n++
	}
	if n == 0 {
		w.WriteByte('$')
		return 0, nil
	}
	v, ok := sh.vars[s[:n]]
	if !ok {
		return 0, fmt.Errorf("$%s is not set", s[:n])
	}
	w.WriteString(v)
	return n, nil
}

// closingParen finds the ) that closes a $( whose text starts at start.
func closingParen(s string, start int) (int, error) {
	depth := 1
	for i := start; i < len(s); i++ {
		if end, ok := quoted(s, i); ok {
			i = end
			continue
		}
		switch s[i] {
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("unterminated $( in %q", s)
}

// command runs one simple command with stdin.
func (sh *demoShell) command(text, stdin string) (string, error) {
	words, err := sh.words(text)
	if err != nil {
		return "", err
	}
	if len(words) == 0 {
		return "", fmt.Errorf("empty command in %q", text)
	}
	if words[0] == "export" || shellAssignment.MatchString(words[0]) {
		for _, w := range words[1:] {
			if !shellAssignment.MatchString(w) {
				return "", fmt.Errorf("%q is not an assignment", w)
			}
		}
		for _, w := range words {
			if name, value, ok := strings.Cut(w, "="); ok {
				sh.vars[name] = value
			}
		}
		return "", nil
	}
	switch words[0] {
	case "curl":
		return curl(words[1:])
	case "sed":
		return sed(words[1:], stdin)
	case "sleep":
		if len(words) != 2 {
			return "", fmt.Errorf("sleep %v", words[1:])
		}
		secs, err := strconv.ParseFloat(words[1], 64)
		if err != nil {
			return "", err
		}
		time.Sleep(time.Duration(secs * float64(time.Second)))
		return "", nil
	}
	return "", fmt.Errorf("the test's shell has no command %q", words[0])
}

// curl does what curl does with the options the demo prints: -s, -S, -i, -G, -X,
// -H, -d, --data-urlencode and -w.
func curl(args []string) (string, error) {
	var method, format, target string
	var data []string
	header := http.Header{}
	get, include := false, false
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() (string, error) {
			if i++; i >= len(args) {
				return "", fmt.Errorf("curl: %s needs a value", a)
			}
			return args[i], nil
		}
		var v string
		var err error
		switch a {
		case "-X", "-H", "-d", "--data", "--data-urlencode", "-w":
			if v, err = value(); err != nil {
				return "", err
			}
		}
		switch {
		case a == "-X":
			method = v
		case a == "-H":
			k, hv, ok := strings.Cut(v, ":")
			if !ok {
				return "", fmt.Errorf("curl: header %q", v)
			}
			header.Add(strings.TrimSpace(k), strings.TrimSpace(hv))
		case a == "-d" || a == "--data":
			if strings.HasPrefix(v, "@") {
				return "", fmt.Errorf("curl: -d %s reads a file", v)
			}
			data = append(data, v)
		case a == "--data-urlencode":
			if name, content, ok := strings.Cut(v, "="); ok {
				data = append(data, name+"="+url.QueryEscape(content))
			} else {
				data = append(data, url.QueryEscape(v))
			}
		case a == "-w":
			format = v
		case len(a) > 1 && a[0] == '-' && a[1] != '-':
			for _, f := range a[1:] {
				switch f {
				case 's', 'S':
				case 'i':
					include = true
				case 'G':
					get = true
				default:
					return "", fmt.Errorf("curl: the test's curl has no -%c", f)
				}
			}
		case strings.HasPrefix(a, "-"):
			return "", fmt.Errorf("curl: the test's curl has no %s", a)
		case target != "":
			return "", fmt.Errorf("curl: a second URL %q", a)
		default:
			target = a
		}
	}
	var body io.Reader
	switch {
	case get && len(data) > 0:
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		target += sep + strings.Join(data, "&")
		method = cmp.Or(method, http.MethodGet)
	case len(data) > 0:
		body = strings.NewReader(strings.Join(data, "&"))
		method = cmp.Or(method, http.MethodPost)
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	default:
		method = cmp.Or(method, http.MethodGet)
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		return "", fmt.Errorf("curl: %w", err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("curl: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("curl: %w", err)
	}
	var out strings.Builder
	if include {
		fmt.Fprintf(&out, "HTTP/1.1 %s\r\n", resp.Status)
		_ = resp.Header.Write(&out)
		out.WriteString("\r\n")
	}
	out.Write(raw)
	format = strings.ReplaceAll(format, `\n`, "\n")
	out.WriteString(strings.ReplaceAll(format, "%{http_code}", strconv.Itoa(resp.StatusCode)))
	return out.String(), nil
}

// sed runs `sed -E 's/RE/REPLACEMENT/'` on each line of stdin.
func sed(args []string, stdin string) (string, error) {
	if len(args) != 2 || args[0] != "-E" || !strings.HasPrefix(args[1], "s/") {
		return "", fmt.Errorf("the test's sed runs only -E 's/…/…/', not %q", args)
	}
	parts := strings.Split(args[1][2:], "/")
	if len(parts) != 3 || parts[2] != "" {
		return "", fmt.Errorf("sed: script %q", args[1])
	}
	re, err := regexp.Compile(parts[0])
	if err != nil {
		return "", fmt.Errorf("sed: %w", err)
	}
	repl := regexp.MustCompile(`\\([0-9])`).ReplaceAllString(parts[1], `$${$1}`)
	var out strings.Builder
	for line := range strings.Lines(stdin) {
		out.WriteString(re.ReplaceAllString(strings.TrimSuffix(line, "\n"), repl) + "\n")
	}
	return out.String(), nil
}
