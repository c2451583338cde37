package webhook_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"crmsync/webhook"
)

func TestClientIPOf(t *testing.T) {
	t.Parallel()
	const proxies = "10.0.0.0/8, fd00::/8,127.0.0.1"
	tests := []struct {
		name    string
		proxies string
		remote  string
		xff     []string // one header line each
		want    string
	}{
		{"no proxies: XFF ignored", "", "10.0.0.1:443", []string{"1.2.3.4"}, "10.0.0.1"},
		{"no proxies, no XFF", "", "203.0.113.7:5000", nil, "203.0.113.7"},
		{"trusted proxy", proxies, "10.0.0.1:443", []string{"1.2.3.4"}, "1.2.3.4"},
		{"chain: left of the client is not used", proxies, "10.0.0.1:443", []string{"spoof, 1.2.3.4, 10.0.0.2"}, "1.2.3.4"},
		{"chain over header lines", proxies, "10.0.0.1:443", []string{"6.6.6.6, 1.2.3.4", "10.0.0.2"}, "1.2.3.4"},
		{"untrusted sender", proxies, "198.51.100.9:443", []string{"1.2.3.4"}, "198.51.100.9"},
		{"no XFF", proxies, "10.0.0.1:443", nil, "10.0.0.1"},
		{"empty XFF", proxies, "10.0.0.1:443", []string{""}, "10.0.0.1"},
		{"malformed XFF", proxies, "10.0.0.1:443", []string{"not-an-ip"}, "10.0.0.1"},
		{"malformed on the way", proxies, "10.0.0.1:443", []string{"1.2.3.4, unknown, 10.0.0.2"}, "10.0.0.1"},
		{"trailing comma", proxies, "10.0.0.1:443", []string{"1.2.3.4,"}, "10.0.0.1"},
		{"leading empty entry behind trusted hops", proxies, "10.0.0.1:443", []string{",10.0.0.2"}, "10.0.0.1"},
		{"all hops trusted: the farthest", proxies, "10.0.0.1:443", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"an entry with a port", proxies, "10.0.0.1:443", []string{"1.2.3.4:5678"}, "1.2.3.4"},
		{"single trusted IP", proxies, "127.0.0.1:8080", []string{"1.2.3.4"}, "1.2.3.4"},
		{"IPv6 proxy and client", proxies, "[fd00::1]:443", []string{"2001:db8::1, fd00::2"}, "2001:db8::1"},
		{"IPv6 client with a port", proxies, "[fd00::1]:443", []string{"[2001:db8::1]:5678"}, "2001:db8::1"},
		{"IPv6 client behind an IPv4 proxy", proxies, "10.0.0.1:443", []string{"2001:DB8:0:0::1"}, "2001:db8::1"},
		{"untrusted IPv6 sender", proxies, "[2001:db8::9]:443", []string{"1.2.3.4"}, "2001:db8::9"},
		{"IPv4-mapped remote address of a trusted proxy", proxies, "[::ffff:10.0.0.1]:443", []string{"1.2.3.4"}, "1.2.3.4"},
		{"IPv4-mapped client", proxies, "10.0.0.1:443", []string{"::ffff:1.2.3.4"}, "1.2.3.4"},
		{"IPv4-mapped trusted prefix", "::ffff:10.0.0.0/104", "10.0.0.1:443", []string{"1.2.3.4"}, "1.2.3.4"},
		{"IPv4-mapped untrusted remote kept as it is", proxies, "[::ffff:198.51.100.9]:443", []string{"1.2.3.4"}, "::ffff:198.51.100.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := webhook.NewClientIP(tt.proxies)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodPost, "/forms/f1", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := c.Of(r); got != tt.want {
				t.Errorf("Of(%s, XFF %q) = %q, want %q", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

func TestClientIPNilTrustsNoProxy(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodPost, "/forms/f1", nil)
	r.RemoteAddr = "10.0.0.1:443"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	if got := (*webhook.ClientIP)(nil).Of(r); got != "10.0.0.1" {
		t.Errorf("nil ClientIP: %q, want the remote address", got)
	}
}

func TestNewClientIPRefusesMalformedEntries(t *testing.T) {
	t.Parallel()
	for _, list := range []string{"10.0.0.0/33", "10.0.0.1,", "proxy.internal", "10.0.0.1:80", "fe80::1%eth0", "fd00::/8;10.0.0.0/8"} {
		if _, err := webhook.NewClientIP(list); err == nil {
			t.Errorf("NewClientIP(%q) took it", list)
		}
	}
	for _, list := range []string{"", " ", "10.0.0.0/8,fd00::/8,127.0.0.1", " 10.0.0.1 , ::1 ", "10.1.2.3/8"} {
		if _, err := webhook.NewClientIP(list); err != nil {
			t.Errorf("NewClientIP(%q): %v", list, err)
		}
	}
}
