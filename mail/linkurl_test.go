package mail

import (
	"net/url"
	"strings"
	"testing"
)

func TestLinkURL(t *testing.T) {
	t.Parallel()
	ann := RecipientValues("ann@example.de", map[string]any{"firstName": "Ann", "slug": "a b/c?d#e", "note": "Ann & Bob=1#x+y", "city": "Jürgen's", "n": 7}, nil)
	value := func(v string) func(string) (string, bool) {
		return func(string) (string, bool) { return v, true }
	}
	for _, tc := range []struct {
		name, link string
		lookup     func(string) (string, bool)
		want       string
	}{
		{"query values", "https://shop.example/offer?u={{email}}&n={{fields.firstName}}", ann, "https://shop.example/offer?u=ann%40example.de&n=Ann"},
		{"query escaping", "https://shop.example/?q={{fields.note}}&c={{fields.city}}&n={{fields.n}}", ann, "https://shop.example/?q=Ann+%26+Bob%3D1%23x%2By&c=J%C3%BCrgen%27s&n=7"},
		{"path escaping", "https://shop.example/p/{{fields.slug}}/x?u={{email}}", ann, "https://shop.example/p/a%20b%2Fc%3Fd%23e/x?u=ann%40example.de"},
		{"fragment is after '#'", "https://shop.example/#/p?u={{fields.note}}", ann, "https://shop.example/#/p?u=Ann+%26+Bob%3D1%23x%2By"},
		{"missing values are empty", "https://shop.example/offer?u={{fields.unknown}}&n={{nope}}", ann, "https://shop.example/offer?u=&n="},
		{"nil lookup", "https://shop.example/{{email}}?u={{email}}", nil, "https://shop.example/?u="},
		{"no placeholders stays as it is", "HTTPS://Shop.example/a%20b?x=1&y={y}", ann, "HTTPS://Shop.example/a%20b?x=1&y={y}"},
		{"a value is not a placeholder", "https://shop.example/?u={{fields.x}}", value("{{email}}"), "https://shop.example/?u=%7B%7Bemail%7D%7D"},
		{"line breaks are escaped", "https://shop.example/{{fields.x}}?u={{fields.x}}", value("a\r\nSet-Cookie: x"), "https://shop.example/a%0D%0ASet-Cookie:%20x?u=a%0D%0ASet-Cookie%3A+x"},

		// A value never changes where the link goes.
		{"no second slash in the path", "https://shop.example/{{fields.x}}", value("//evil.example/"), "https://shop.example/%2F%2Fevil.example%2F"},
		{"no parameter in the query", "https://shop.example/?next={{fields.x}}", value("x&next=https://evil.example/"), "https://shop.example/?next=x%26next%3Dhttps%3A%2F%2Fevil.example%2F"},
		{"no user information", "https://shop.example{{fields.x}}/", value("@evil.example"), "https://shop.example/"},
		{"no longer host", "https://shop.example{{fields.x}}/", value(".evil.example"), "https://shop.example/"},
		{"no port", "https://shop.example:{{fields.x}}/", value("8443"), "https://shop.example:/"},
		{"no other scheme", "http{{fields.x}}://shop.example/", value("s"), "http://shop.example/"},
		{"a value that keeps the host", "https://shop.example{{fields.x}}/", value(""), "https://shop.example/"},
	} {
		got, ok := LinkURL(tc.link, tc.lookup)
		if !ok || got != tc.want {
			t.Errorf("%s: LinkURL(%q) = %q, %v; want %q", tc.name, tc.link, got, ok, tc.want)
		}
	}
}

// TestLinkURLNotHTTP: a link that is no absolute http(s) URL without its
// placeholders (Links never returns one) is refused, whatever the values.
func TestLinkURLNotHTTP(t *testing.T) {
	t.Parallel()
	lookup := func(string) (string, bool) { return "shop.example", true }
	for _, link := range []string{
		"https://{{fields.host}}/offer", "{{fields.scheme}}://shop.example/", "mailto:{{email}}",
		"/offer?u={{email}}", "javascript:{{fields.x}}", "{{unsubscribeUrl}}", "",
	} {
		if got, ok := LinkURL(link, lookup); ok || got != "" {
			t.Errorf("LinkURL(%q) = %q, %v; want refused", link, got, ok)
		}
	}
}

// FuzzLinkURLKeepsOrigin: whatever the value, the filled link is an absolute
// http(s) URL on the link's own scheme, user information and host.
func FuzzLinkURLKeepsOrigin(f *testing.F) {
	for _, v := range []string{"ann@example.de", "//evil.example", "@evil.example", ".evil.example", "\\evil.example", "%2F%2Fevil", "a\r\nb", "?x#y", "../..", "{{email}}", ":443", "ü"} {
		f.Add(v)
	}
	links := []string{
		"https://shop.example/offer?u={{email}}&n={{fields.x}}",
		"https://shop.example/{{fields.x}}/{{email}}#{{fields.x}}",
		"https://shop.example{{fields.x}}/",
		"https://user{{fields.x}}@shop.example/",
		"http{{fields.x}}://shop.example/?{{fields.x}}",
	}
	f.Fuzz(func(t *testing.T, v string) {
		lookup := func(string) (string, bool) { return v, true }
		for _, link := range links {
			got, ok := LinkURL(link, lookup)
			want, _ := url.Parse(placeholder.ReplaceAllString(link, ""))
			u, err := url.Parse(got)
			if !ok || err != nil || !absoluteHTTP(got) || u.Scheme != want.Scheme || u.Host != want.Host || u.User.String() != want.User.String() {
				t.Errorf("LinkURL(%q) with %q = %q, %v: not on %s://%s", link, v, got, ok, want.Scheme, want.Host)
			}
			if strings.ContainsAny(got, "\r\n") {
				t.Errorf("LinkURL(%q) with %q = %q: a line break", link, v, got)
			}
		}
	})
}

func TestRecipientValues(t *testing.T) {
	t.Parallel()
	lookup := RecipientValues("ann@example.de", map[string]any{"firstName": "Ann", "age": 41, "gone": nil}, map[string]string{"unsubscribeUrl": "https://crm.example/u/x", "email": "named@example.de"})
	for name, want := range map[string]string{
		"email": "named@example.de", "fields.firstName": "Ann", "fields.age": "41", "unsubscribeUrl": "https://crm.example/u/x",
	} {
		if got, ok := lookup(name); !ok || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"fields.gone", "fields.unknown", "fields", "firstName", "confirmUrl"} {
		if got, ok := lookup(name); ok || got != "" {
			t.Errorf("%s = %q, %v; want unknown", name, got, ok)
		}
	}
	if got, ok := RecipientValues("b@example.de", nil, nil)("email"); !ok || got != "b@example.de" {
		t.Errorf("email without fields = %q, %v", got, ok)
	}
}
