package mail

import (
	"strings"
	"unicode"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// TextFromHTML turns an HTML body into readable plain text for the text/plain part:
// tags are dropped, block elements end lines, list items get "- ", links read
// "text (url)", entities are decoded and runs of white space collapse as a browser
// would collapse them (except inside <pre>). Scripts, styles and the title are left out.
func TextFromHTML(doc string) string {
	var w textWriter
	var links []link // open <a> elements, innermost last
	hidden, pre := 0, 0
	z := html.NewTokenizer(strings.NewReader(doc))
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return w.String()
		case html.TextToken:
			if hidden == 0 {
				w.text(string(z.Text()), pre > 0)
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			switch t.DataAtom {
			case atom.Script, atom.Style, atom.Title, atom.Template:
				if tt == html.StartTagToken {
					hidden++
				}
			case atom.Br:
				w.lineBreak()
			case atom.Pre:
				w.block(2)
				if tt == html.StartTagToken {
					pre++
				}
			case atom.Li:
				w.block(1)
				w.prefix("- ")
			case atom.Td, atom.Th:
				w.space()
			case atom.A:
				if tt == html.StartTagToken {
					links = append(links, link{href: hrefForText(t), start: w.len()})
				}
			default:
				w.block(blockSpacing(t.DataAtom))
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch a := atom.Lookup(name); a {
			case atom.Script, atom.Style, atom.Title, atom.Template:
				hidden = max(hidden-1, 0)
			case atom.Pre:
				pre = max(pre-1, 0)
				w.block(2)
			case atom.A:
				if n := len(links); n > 0 {
					w.link(links[n-1])
					links = links[:n-1]
				}
			default:
				w.block(blockSpacing(a))
			}
		}
	}
}

// blockSpacing is how many line breaks an element puts around itself: 2 for a
// paragraph-like block, 1 for other blocks, 0 for inline elements.
func blockSpacing(a atom.Atom) int {
	switch a {
	case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Blockquote,
		atom.Table, atom.Ul, atom.Ol, atom.Dl, atom.Hr:
		return 2
	case atom.Div, atom.Tr, atom.Section, atom.Article, atom.Header, atom.Footer, atom.Nav,
		atom.Aside, atom.Main, atom.Address, atom.Figure, atom.Figcaption, atom.Dt, atom.Dd,
		atom.Tbody, atom.Thead, atom.Tfoot, atom.Caption, atom.Center, atom.Form, atom.Body:
		return 1
	}
	return 0
}

// link is an open <a> element: where its text starts in the output and what to show
// after it.
type link struct {
	href  string
	start int
}

// hrefForText returns the part of an <a>'s href worth showing in plain text: absolute
// http(s) URLs and mailto: addresses.
func hrefForText(t html.Token) string {
	for _, a := range t.Attr {
		if a.Namespace != "" || a.Key != "href" {
			continue
		}
		href := strings.TrimSpace(a.Val)
		if addr, ok := cutPrefixFold(href, "mailto:"); ok {
			return addr
		}
		if absoluteHTTP(href) {
			return href
		}
		return ""
	}
	return ""
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// textWriter collects text, holding back spaces and line breaks until text follows, so
// that none pile up at the start, at the end or around blocks.
type textWriter struct {
	b      strings.Builder
	breaks int    // line breaks owed before the next text
	spaced bool   // a space owed before the next text
	lead   string // a list marker owed after the line breaks
}

func (w *textWriter) len() int { return w.b.Len() }

// text writes s, collapsing white space unless pre.
func (w *textWriter) text(s string, pre bool) {
	if pre {
		if s != "" {
			w.flush()
			w.b.WriteString(s)
		}
		return
	}
	for _, r := range s {
		if unicode.IsSpace(r) {
			w.space()
			continue
		}
		w.flush()
		w.b.WriteRune(r)
	}
}

// flush writes what is owed before the next piece of text.
func (w *textWriter) flush() {
	if w.b.Len() > 0 {
		switch {
		case w.breaks > 0:
			w.b.WriteString(strings.Repeat("\n", w.breaks))
		case w.spaced:
			w.b.WriteByte(' ')
		}
	}
	w.b.WriteString(w.lead)
	w.breaks, w.spaced, w.lead = 0, false, ""
}

func (w *textWriter) space() {
	if w.breaks == 0 && w.lead == "" {
		w.spaced = true
	}
}

// block owes n line breaks, unless more are owed already.
func (w *textWriter) block(n int) {
	if n > 0 {
		w.breaks = max(w.breaks, n)
		w.spaced = false
	}
}

// lineBreak writes a <br>: it counts even when nothing follows on the line.
func (w *textWriter) lineBreak() {
	w.breaks++
	w.spaced = false
}

func (w *textWriter) prefix(p string) { w.lead = p }

// link ends an <a>: its URL follows its text in parentheses, or stands alone when the
// element had no text or the text is the URL itself.
func (w *textWriter) link(l link) {
	if l.href == "" {
		return
	}
	text := strings.TrimSpace(w.b.String()[min(l.start, w.b.Len()):])
	switch text {
	case l.href, "mailto:" + l.href:
		return
	case "":
		w.flush()
		w.b.WriteString(l.href)
	default:
		w.b.WriteString(" (" + l.href + ")")
	}
}

func (w *textWriter) String() string {
	return strings.TrimRight(w.b.String(), " \n")
}
