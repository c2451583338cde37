package mail

import "testing"

func TestPersonalize(t *testing.T) {
	t.Parallel()
	values := map[string]string{
		"email":            "ana@example.org",
		"fields.firstName": `Ana <b>"&"</b>`,
		"fields.last-name": "Lima",
	}
	lookup := func(name string) (string, bool) {
		v, ok := values[name]
		return v, ok
	}
	for _, tc := range []struct {
		name, tpl string
		html      bool
		want      string
	}{
		{"spaces inside braces", "Hi {{ fields.last-name }}, {{email}}!", false, "Hi Lima, ana@example.org!"},
		{"tabs and no spaces", "{{\tfields.last-name}}{{fields.last-name  }}", false, "LimaLima"},
		{"text is not escaped", "{{fields.firstName}}", false, `Ana <b>"&"</b>`},
		{"html is escaped", "<p>{{ fields.firstName }}</p>", true, "<p>Ana &lt;b&gt;&#34;&amp;&#34;&lt;/b&gt;</p>"},
		{"unknown name is empty", "[{{ fields.unknown }}][{{ nope }}]", true, "[][]"},
		{"not a placeholder", "{{ fields. }} {{}} { {email} } {{ a b }}", false, "{{ fields. }} {{}} { {email} } {{ a b }}"},
		{"extra braces stay", "{{{email}}}", false, "{ana@example.org}"},
		{"no placeholders", "plain", true, "plain"},
	} {
		if got := Personalize(tc.tpl, lookup, tc.html); got != tc.want {
			t.Errorf("%s: Personalize(%q) = %q, want %q", tc.name, tc.tpl, got, tc.want)
		}
	}
	if got := Personalize("a{{email}}b", nil, false); got != "ab" {
		t.Errorf("with nil lookup = %q, want %q", got, "ab")
	}
}
