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
	"testing"
	"time"
)

// TestEmulatorCommandServesTheCurlExample starts `crmsync dataverse-emulator` on a
// free port and does with net/http what the two curl lines of its usage do: get a
// token, then create a contact.
func TestEmulatorCommandServesTheCurlExample(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dataverse-emulator", "--addr", "127.0.0.1:0", "--token-ttl", "10m"},
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
	var base string
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

	// The usage's first curl line: client credentials at /common/oauth2/v2.0/token.
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"emulator"}, "client_secret": {"emulator-secret"},
		"scope": {base + "/.default"}}
	resp, err := http.PostForm(base+"/common/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || tok.TokenType != "Bearer" || tok.ExpiresIn != 599 || tok.AccessToken == "" {
		t.Fatalf("token: %d %+v %v", resp.StatusCode, tok, err)
	}

	// The second: POST /api/data/v9.2/contacts with the bearer token.
	body := `{"firstname":"Anna","lastname":"Schmidt","emailaddress1":"anna@example.de"}`
	req, _ := http.NewRequest(http.MethodPost, base+"/api/data/v9.2/contacts", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
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
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var row map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&row)
	resp.Body.Close()
	if row["fullname"] != "Anna Schmidt" {
		t.Errorf("read back %v", row)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("command returned %v on shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("command did not stop")
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
	}
	for _, tt := range tests {
		err := emulatorCommand(t.Context(), tt.args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}
