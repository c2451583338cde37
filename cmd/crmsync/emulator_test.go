package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEmulatorCommandServesTheCurlExample starts `crmsync dataverse-emulator` on a
// free port and does with net/http what the two curl lines of its usage do: get a
// token, then create a contact.
func TestEmulatorCommandServesTheCurlExample(t *testing.T) {
	t.Parallel()
	base, stop := startEmulatorCommand(t, "--token-ttl", "10m")
	tok := emulatorToken(t, base)

	// The second: POST /api/data/v9.2/contacts with the bearer token.
	body := `{"firstname":"Anna","lastname":"Schmidt","emailaddress1":"anna@example.de"}`
	req, _ := http.NewRequest(http.MethodPost, base+"/api/data/v9.2/contacts", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := emulatorHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	entity := resp.Header.Get("OData-EntityId")
	if resp.StatusCode != http.StatusNoContent || !strings.HasPrefix(entity, base+"/api/data/v9.2/contacts(") {
		t.Fatalf("create contact: %d, OData-EntityId %q", resp.StatusCode, entity)
	}
	req, _ = http.NewRequest(http.MethodGet, entity+"?$select=fullname", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = emulatorHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var row map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&row)
	resp.Body.Close()
	if row["fullname"] != "Anna Schmidt" {
		t.Errorf("read back %v", row)
	}
	if tok.ExpiresIn != 599 {
		t.Errorf("expires_in %d, want 599 for --token-ttl 10m", tok.ExpiresIn)
	}
	stop()
}

// emulatorHTTP is the client of these tests, with a transport of its own:
// parallel tests closing httptest servers call CloseIdleConnections on
// http.DefaultTransport, which breaks requests in flight.
var emulatorHTTP = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: time.Minute}

// emulatorTokenAnswer is the token endpoint's answer.
type emulatorTokenAnswer struct {
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	AccessToken string `json:"access_token"`
}

// emulatorToken does what the usage's first curl line does: client credentials
// at /common/oauth2/v2.0/token.
func emulatorToken(t *testing.T, base string) emulatorTokenAnswer {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"emulator"}, "client_secret": {"emulator-secret"},
		"scope": {base + "/.default"}}
	resp, err := emulatorHTTP.PostForm(base+"/common/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok emulatorTokenAnswer
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || tok.TokenType != "Bearer" || tok.AccessToken == "" {
		t.Fatalf("token: %d %+v %v", resp.StatusCode, tok, err)
	}
	return tok
}

// startEmulatorCommand runs `crmsync dataverse-emulator --addr 127.0.0.1:0 args…`
// until stop (or the end of the test) and returns its printed base URL.
func startEmulatorCommand(t *testing.T, args ...string) (base string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"dataverse-emulator", "--addr", "127.0.0.1:0"}, args...),
			func(string) string { return "" }, stdoutW, testWriter{t})
		stdoutW.Close()
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdoutR)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case line := <-lines:
		var ok bool
		if base, ok = strings.CutPrefix(line, "listening on "); !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
			t.Fatalf("first line %q, want \"listening on http://127.0.0.1:<port>\"", line)
		}
	case err := <-done:
		t.Fatalf("command ended before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no \"listening on\" line")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("command returned %v on shutdown", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("command did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return base, stop
}

// TestEmulatorCommandThrottles shows the limit flags at work: two requests per
// five minutes, a recommended parallelism of 7, and no faults.
func TestEmulatorCommandThrottles(t *testing.T) {
	t.Parallel()
	base, _ := startEmulatorCommand(t, "--limit-requests", "2", "--limit-exec-seconds", "0", "--limit-concurrent", "5",
		"--dop-hint", "7", "--latency", "1ms", "--fault-rate", "0", "--fault-seed", "9", "--webhook-timeout", "5s")
	tok := emulatorToken(t, base)
	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests} {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/data/v9.2/WhoAmI", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := emulatorHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error struct{ Code string } }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("x-ms-dop-hint") != "7" {
			t.Fatalf("request %d: %d (dop hint %q), want %d", i, resp.StatusCode, resp.Header.Get("x-ms-dop-hint"), want)
		}
		if want == http.StatusTooManyRequests && (body.Error.Code != "0x80072322" || resp.Header.Get("Retry-After") != "300") {
			t.Errorf("429: code %q, Retry-After %q", body.Error.Code, resp.Header.Get("Retry-After"))
		}
	}
}

func TestEmulatorCommandUsage(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"dataverse-emulator", "-h"}, func(string) string { return "" }, io.Discard, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	out := stderr.String()
	// The curl lines must match what TestEmulatorCommandServesTheCurlExample proves.
	for _, want := range []string{
		"-d grant_type=client_credentials -d client_id=emulator -d client_secret=emulator-secret --data-urlencode scope=http://127.0.0.1:8090/.default http://127.0.0.1:8090/common/oauth2/v2.0/token",
		`-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d '{"firstname":"Anna","lastname":"Schmidt","emailaddress1":"anna@example.de"}' http://127.0.0.1:8090/api/data/v9.2/contacts`,
		"-client-id", "-client-secret", "-user-client-id", "-user-client-secret", "-token-ttl", "127.0.0.1:8090",
		"-limit-requests", "-limit-exec-seconds", "-limit-concurrent", "-latency", "-fault-rate", "-fault-seed", "-dop-hint", "-webhook-timeout",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("usage lacks %q:\n%s", want, out)
		}
	}
}

func TestEmulatorCommandRefusesBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--token-ttl", "0s"}, "--token-ttl"},
		{[]string{"--user-client-id", "emulator"}, "must differ"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--addr", "256.0.0.1:x"}, "dataverse-emulator"},
		{[]string{"--limit-requests", "-1"}, "--limit-requests"},
		{[]string{"--limit-exec-seconds", "-2"}, "--limit-exec-seconds"},
		{[]string{"--limit-concurrent", "-1"}, "--limit-concurrent"},
		{[]string{"--dop-hint", "-1"}, "--dop-hint"},
		{[]string{"--latency", "-1s"}, "--latency"},
		{[]string{"--fault-rate", "1.5"}, "--fault-rate"},
		{[]string{"--fault-rate", "-0.1"}, "--fault-rate"},
		{[]string{"--webhook-timeout", "0s"}, "--webhook-timeout"},
	}
	for _, tt := range tests {
		err := emulatorCommand(t.Context(), tt.args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}
