package mail

import (
	"slices"
	"strings"
	"testing"
)

const trackDoc = `<html><head><title>x</title><!-- <a href="https://comment.example/">no</a> --></head>
<body>
<p><a href="https://shop.example/a?x=1&amp;y=2">A</a>
<a class="btn" HREF=" HTTPS://Shop.example/b ">B</a>
<a href="mailto:help@example.com">mail</a>
<a href="/relative">rel</a> <a href="#top">top</a> <a href="tel:+49">tel</a>
<a href="javascript:alert(1)">js</a> <a name="anchor">none</a>
<area href="https://map.example/"><link href="https://style.example/x.css">
<a href="https://shop.example/a?x=1&y=2">A again</a>
<script>var s = '<a href="https://script.example/">';</script>
<a href='http://plain.example/c'>C</a>
</p>
</body></html>`

func TestLinks(t *testing.T) {
	t.Parallel()
	want := []string{"https://shop.example/a?x=1&y=2", "HTTPS://Shop.example/b", "http://plain.example/c"}
	if got := Links(trackDoc); !slices.Equal(got, want) {
		t.Errorf("Links = %q, want %q", got, want)
	}
	if got := Links("<p>no links</p>"); len(got) != 0 {
		t.Errorf("Links without links = %q, want none", got)
	}
}

func TestTrackRewritesTrackableLinks(t *testing.T) {
	t.Parallel()
	links := Links(trackDoc)
	click := func(u string) (string, bool) {
		i := slices.Index(links, u)
		if i < 0 {
			t.Errorf("click called with %q, not a link Links returned", u)
			return "", false
		}
		if u == "http://plain.example/c" {
			return "", false // the caller may leave a link untracked
		}
		return "https://crm.example/t/c/tok" + string(rune('0'+i)) + "?a=1&b=2", true
	}
	got := Track(trackDoc, click, "https://crm.example/t/o/open&1")

	for _, want := range []string{
		`<a href="https://crm.example/t/c/tok0?a=1&amp;b=2">A</a>`,
		`<a class="btn" href="https://crm.example/t/c/tok1?a=1&amp;b=2">B</a>`,
		`<a href="https://crm.example/t/c/tok0?a=1&amp;b=2">A again</a>`,
		`<a href='http://plain.example/c'>C</a>`,
		`<a href="mailto:help@example.com">mail</a>`,
		`<a href="/relative">rel</a> <a href="#top">top</a> <a href="tel:+49">tel</a>`,
		`<a href="javascript:alert(1)">js</a> <a name="anchor">none</a>`,
		`<area href="https://map.example/"><link href="https://style.example/x.css">`,
		`<script>var s = '<a href="https://script.example/">';</script>`,
		`<!-- <a href="https://comment.example/">no</a> -->`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Track output lacks %s\n%s", want, got)
		}
	}
	pixel := `<img src="https://crm.example/t/o/open&amp;1" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0"></body>`
	if !strings.Contains(got, pixel) || strings.Count(got, "<img") != 1 {
		t.Errorf("Track output lacks one pixel right before </body>:\n%s", got)
	}
}

func TestTrackPixelPlacement(t *testing.T) {
	t.Parallel()
	const px = `<img src="https://t.example/o" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">`
	for _, tc := range []struct {
		name, doc, pixel, want string
	}{
		{"before body end", "<body><p>x</p></BODY>\n</html>", "https://t.example/o", "<body><p>x</p>" + px + "</BODY>\n</html>"},
		{"at the end without body", "<p>x</p>", "https://t.example/o", "<p>x</p>" + px},
		{"first body end only", "<body>a</body></body>", "https://t.example/o", "<body>a" + px + "</body></body>"},
		{"none when empty", "<body>a</body>", "", "<body>a</body>"},
		{"empty document", "", "https://t.example/o", px},
	} {
		if got := Track(tc.doc, nil, tc.pixel); got != tc.want {
			t.Errorf("%s: Track = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// FuzzTrackKeepsDocument checks that Track changes nothing when it has nothing to do:
// mail HTML must survive byte for byte.
func FuzzTrackKeepsDocument(f *testing.F) {
	f.Add(trackDoc)
	f.Add(`<a href="https://x.example/`)
	f.Add(`<p>unclosed <b attr='x`)
	f.Add("<!DOCTYPE html><table><tr><td>&nbsp;&copy;</td></tr></table><![CDATA[x]]>")
	f.Fuzz(func(t *testing.T, doc string) {
		if got := Track(doc, func(string) (string, bool) { return "", false }, ""); got != doc {
			t.Errorf("Track changed the document:\n in: %q\nout: %q", doc, got)
		}
	})
}

// TestTrackedLinksMayWritePlaceholdersWithSpaces: {{ email }} in an href is the same
// link as {{email}}, so it is tracked (and filled URL-escaped on click) instead of
// being left to plain HTML filling, which would put a raw "+" or "&" into the URL.
func TestTrackedLinksMayWritePlaceholdersWithSpaces(t *testing.T) {
	t.Parallel()
	doc := `<a href="https://shop.example/o?u={{ email }}&amp;n={{fields.firstName }}">Offer</a> <a href="https://shop.example/o?u={{email}}&n={{fields.firstName}}">Again</a>`
	want := "https://shop.example/o?u={{email}}&n={{fields.firstName}}"
	if got := Links(doc); !slices.Equal(got, []string{want}) {
		t.Errorf("Links = %q, want the one link %q", got, want)
	}
	got := Track(doc, func(u string) (string, bool) {
		return "https://crm.example/t/c/" + map[string]string{want: "tok"}[u], u == want
	}, "")
	if strings.Count(got, `href="https://crm.example/t/c/tok"`) != 2 {
		t.Errorf("both spellings are not tracked as one link:\n%s", got)
	}
	filled, ok := LinkURL(want, RecipientValues("a+b@example.de", map[string]any{"firstName": "Ann & Bo"}, nil))
	if !ok || filled != "https://shop.example/o?u=a%2Bb%40example.de&n=Ann+%26+Bo" {
		t.Errorf("filled on click: %s", filled)
	}
}
