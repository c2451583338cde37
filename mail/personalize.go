package mail

import (
	"fmt"
	"html"
	"regexp"
	"strings"
)

// placeholder matches {{ name }} with optional spaces, where name is a dotted path
// such as email or fields.firstName.
var placeholder = regexp.MustCompile(`\{\{\s*[A-Za-z_][\w-]*(?:\.[\w-]+)*\s*\}\}`)

// Personalize fills the {{ email }} and {{ fields.name }} placeholders of tpl with what
// lookup returns for the name between the braces. Unknown names become empty strings,
// so a recipient never sees template syntax; with isHTML the values are HTML-escaped,
// so a subscriber's field cannot inject markup.
func Personalize(tpl string, lookup func(name string) (string, bool), isHTML bool) string {
	if !strings.Contains(tpl, "{{") {
		return tpl
	}
	return placeholder.ReplaceAllStringFunc(tpl, func(match string) string {
		if lookup == nil {
			return ""
		}
		value, ok := lookup(strings.TrimSpace(match[2 : len(match)-2]))
		switch {
		case !ok:
			return ""
		case isHTML:
			return html.EscapeString(value)
		}
		return value
	})
}

// RecipientValues answers the placeholders of one recipient's message, for
// Personalize and LinkURL: {{email}}, {{fields.<name>}} from fields (a field that
// is missing or null is unknown), and the names of named, such as the message's
// own unsubscribe link.
func RecipientValues(email string, fields map[string]any, named map[string]string) func(name string) (string, bool) {
	return func(name string) (string, bool) {
		if value, ok := named[name]; ok {
			return value, true
		}
		if name == "email" {
			return email, true
		}
		if field, ok := strings.CutPrefix(name, "fields."); ok {
			if v := fields[field]; v != nil {
				return fmt.Sprint(v), true
			}
		}
		return "", false
	}
}
