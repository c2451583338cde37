package mail

import (
	"net/url"
	"strings"
)

// LinkURL fills the placeholders of a link as a campaign's template wrote it (one
// that Links returned) for one recipient, for the click route, which redirects
// there. Values are escaped for where they stand: after the first '?' or '#' with
// url.QueryEscape, before it with url.PathEscape, so a value cannot end a path
// segment, start a query or fragment, or add a parameter. Names lookup does not
// know become empty, as in Personalize.
//
// A value never changes where the link goes: when the filled link is not an
// absolute http(s) URL with the scheme, user information and host of the link
// without its placeholders, LinkURL answers the link without its placeholders
// instead, which was in the message too. ok is false only when even that is no
// absolute http(s) URL, a link Links would not have returned.
func LinkURL(link string, lookup func(name string) (string, bool)) (target string, ok bool) {
	bare := placeholder.ReplaceAllLiteralString(link, "")
	origin, ok := httpOrigin(bare)
	if !ok {
		return "", false
	}
	if bare == link {
		return link, true
	}
	query := strings.IndexAny(link, "?#")
	var b strings.Builder
	last := 0
	for _, at := range placeholder.FindAllStringIndex(link, -1) {
		b.WriteString(link[last:at[0]])
		last = at[1]
		value := Personalize(link[at[0]:at[1]], lookup, false)
		if query >= 0 && at[0] > query {
			b.WriteString(url.QueryEscape(value))
		} else {
			b.WriteString(url.PathEscape(value))
		}
	}
	b.WriteString(link[last:])
	filled := b.String()
	if o, ok := httpOrigin(filled); !ok || o != origin {
		return bare, true
	}
	return filled, true
}

// httpOrigin answers the scheme, user information and host of an absolute http(s)
// URL, in lower case: what a placeholder's value must not change.
func httpOrigin(raw string) (string, bool) {
	if !absoluteHTTP(raw) {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", false
	}
	return strings.ToLower(u.Scheme + "://" + u.User.String() + "@" + u.Host), true
}
