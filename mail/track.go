package mail

import (
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Links returns the distinct absolute http and https URLs in the href attributes of
// the <a> elements of an HTML body, in order of first appearance: the links a campaign
// tracks. Entities in attributes are decoded; mailto:, tel:, relative and fragment
// links are left out.
func Links(doc string) []string {
	var links []string
	seen := make(map[string]bool)
	z := html.NewTokenizer(strings.NewReader(doc))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return links
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			if i := trackableHref(t); i >= 0 && !seen[t.Attr[i].Val] {
				seen[t.Attr[i].Val] = true
				links = append(links, t.Attr[i].Val)
			}
		}
	}
}

// Track rewrites the trackable hrefs of doc (those Links returns) to the URL click
// gives for each, leaving a link alone when click answers false, and adds a 1×1 <img>
// for pixelURL just before </body>, or at the end without one; an empty pixelURL adds
// none. Everything else in doc is kept byte for byte, since mail clients are fussy.
func Track(doc string, click func(url string) (string, bool), pixelURL string) string {
	var out strings.Builder
	out.Grow(len(doc) + 256)
	pixelDone := pixelURL == ""
	z := html.NewTokenizer(strings.NewReader(doc))
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			out.Write(z.Raw())
			if !pixelDone {
				out.WriteString(pixel(pixelURL))
			}
			return out.String()
		case html.StartTagToken, html.SelfClosingTagToken:
			raw := string(z.Raw()) // Token reuses the tokenizer's buffer
			t := z.Token()
			if i := trackableHref(t); i >= 0 && click != nil {
				if tracked, ok := click(t.Attr[i].Val); ok {
					t.Attr[i].Val = tracked
					out.WriteString(t.String())
					continue
				}
			}
			out.WriteString(raw)
		case html.EndTagToken:
			if name, _ := z.TagName(); !pixelDone && atom.Lookup(name) == atom.Body {
				out.WriteString(pixel(pixelURL))
				pixelDone = true
			}
			out.Write(z.Raw())
		default:
			out.Write(z.Raw())
		}
	}
}

// trackableHref returns the index of the href attribute of t when t is an <a> start tag
// whose href is an absolute http(s) URL, else -1. The value is trimmed in place, and
// its placeholders lose their inner spaces ({{ email }} → {{email}}), so that a link
// written with them is tracked, and filled URL-escaped on click (LinkURL), like one
// written without.
func trackableHref(t html.Token) int {
	if t.DataAtom != atom.A {
		return -1
	}
	for i, a := range t.Attr {
		if a.Namespace != "" || a.Key != "href" {
			continue
		}
		t.Attr[i].Val = placeholder.ReplaceAllStringFunc(strings.TrimSpace(a.Val), tightPlaceholder)
		if !absoluteHTTP(t.Attr[i].Val) {
			return -1
		}
		return i
	}
	return -1
}

// pixel is the open-tracking image: tiny, borderless and without alt text, so that a
// client that blocks images shows nothing.
func pixel(url string) string {
	return `<img src="` + html.EscapeString(url) + `" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">`
}

// tightPlaceholder writes a placeholder without the spaces inside its braces.
func tightPlaceholder(p string) string {
	return "{{" + strings.TrimSpace(p[2:len(p)-2]) + "}}"
}
