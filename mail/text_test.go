package mail

import "testing"

func TestTextFromHTML(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, html, want string
	}{
		{"paragraphs", "<p>One\n   two</p><p>Three</p>", "One two\n\nThree"},
		{"line breaks", "a<br>b<br/><br>c", "a\nb\n\nc"},
		{"entities", "<p>Caf&eacute; &amp; Bar&nbsp;&lt;3 &#8364;</p>", "Café & Bar <3 €"},
		{"link with text", `<p>See <a href="https://x.example/a">our shop</a>.</p>`, "See our shop (https://x.example/a)."},
		{"link showing its URL", `<a href="https://x.example/">https://x.example/</a>`, "https://x.example/"},
		{"link around an image", `<a href="https://x.example/"><img src="logo.png"></a>`, "https://x.example/"},
		{"mail link", `<a href="mailto:help@example.com">write us</a>`, "write us (help@example.com)"},
		{"relative link", `<a href="/x">here</a>`, "here"},
		{"lists", "<ul><li>one</li><li>two</li></ul><p>after</p>", "- one\n- two\n\nafter"},
		{"headings and divs", "<h1>Title</h1><div>a</div><div>b</div>", "Title\n\na\nb"},
		{"table cells", "<table><tr><td>Name</td><td>Ana</td></tr><tr><td>City</td><td>Köln</td></tr></table>", "Name Ana\nCity Köln"},
		{"hidden parts", "<html><head><title>T</title><style>p{color:red}</style></head><body><script>x()</script><p>Hi</p><!-- note --></body></html>", "Hi"},
		{"pre keeps spacing", "<pre>a  b\n  c</pre><p>d</p>", "a  b\n  c\n\nd"},
		{"inline tags", "<p>a <b>bold</b> and <i>it</i></p>", "a bold and it"},
		{"empty", "", ""},
	} {
		if got := TextFromHTML(tc.html); got != tc.want {
			t.Errorf("%s: TextFromHTML(%q) = %q, want %q", tc.name, tc.html, got, tc.want)
		}
	}
}
