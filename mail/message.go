package mail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Message is one e-mail to one recipient, the unit every Sender delivers.
type Message struct {
	// ID is unique per message. It becomes the Message-ID <ID@host of FromAddr> and the
	// key a sending engine deduplicates on, so a retry must reuse it. Letters, digits
	// and the characters allowed in an RFC 5322 dot-atom.
	ID string
	// FromName is the sender's display name; any Unicode.
	FromName string
	// FromAddr is the sender's bare address, also used as the SMTP envelope sender.
	FromAddr string
	// To is the recipient's bare address.
	To      string
	Subject string
	// HTML and Text are the two bodies; at least one is required, and with both the
	// e-mail is multipart/alternative.
	HTML string
	Text string
	// UnsubscribeURL, when set, is announced in List-Unsubscribe together with
	// List-Unsubscribe-Post, so mail clients offer a one-click unsubscribe (RFC 8058).
	UnsubscribeURL string
	// Headers are extra header fields such as Feedback-ID. Names this package writes
	// itself (From, Subject, Content-Type, …) are refused.
	Headers map[string]string
}

// Sender delivers messages. Implementations are safe for concurrent use; see the
// package documentation for how their errors are classified.
type Sender interface {
	// Send delivers m or says why not.
	Send(ctx context.Context, m *Message) error
	// Close releases the sender's connections; Send afterwards returns ErrClosed.
	Close() error
}

// reservedHeaders are written from Message fields and cannot be overridden by Headers.
var reservedHeaders = []string{
	"Bcc", "Cc", "Content-Transfer-Encoding", "Content-Type", "Date", "From",
	"List-Unsubscribe", "List-Unsubscribe-Post", "Message-Id", "Mime-Version",
	"Reply-To", "Sender", "Subject", "To",
}

// validate says what makes m impossible to send, wrapping ErrInvalidMessage.
func (m *Message) validate() error {
	if m == nil {
		return fmt.Errorf("%w: nil", ErrInvalidMessage)
	}
	if !validMessageID(m.ID) {
		return fmt.Errorf("%w: ID %q is empty or has characters not allowed in a Message-ID", ErrInvalidMessage, m.ID)
	}
	if !bareAddress(m.FromAddr) {
		return fmt.Errorf("%w: FromAddr %q is not a bare e-mail address", ErrInvalidMessage, m.FromAddr)
	}
	if !bareAddress(m.To) {
		return fmt.Errorf("%w: To %q is not a bare e-mail address", ErrInvalidMessage, m.To)
	}
	if strings.ContainsAny(m.FromName, "\r\n") {
		return fmt.Errorf("%w: FromName contains a line break", ErrInvalidMessage)
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return fmt.Errorf("%w: Subject contains a line break", ErrInvalidMessage)
	}
	if m.HTML == "" && m.Text == "" {
		return fmt.Errorf("%w: neither HTML nor Text is set", ErrInvalidMessage)
	}
	if m.UnsubscribeURL != "" && !absoluteHTTP(m.UnsubscribeURL) {
		return fmt.Errorf("%w: UnsubscribeURL is not an absolute http(s) URL", ErrInvalidMessage)
	}
	for name, value := range m.Headers {
		switch {
		case !validFieldName(name):
			return fmt.Errorf("%w: header name %q", ErrInvalidMessage, name)
		case slices.Contains(reservedHeaders, textproto.CanonicalMIMEHeaderKey(name)):
			return fmt.Errorf("%w: header %s is written by the sender", ErrInvalidMessage, name)
		case strings.ContainsAny(value, "\r\n"):
			return fmt.Errorf("%w: header %s contains a line break", ErrInvalidMessage, name)
		}
	}
	return nil
}

// render builds m as an RFC 5322 message with CRLF line ends; dot-stuffing is left to
// the SMTP client.
func (m *Message) render(date time.Time) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(m.HTML) + len(m.Text) + 1024)
	writeHeader(&b, "From", (&mail.Address{Name: m.FromName, Address: m.FromAddr}).String())
	writeHeader(&b, "To", "<"+m.To+">")
	writeHeader(&b, "Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	writeHeader(&b, "Date", date.Format(time.RFC1123Z))
	writeHeader(&b, "Message-ID", "<"+m.ID+"@"+domainOf(m.FromAddr)+">")
	writeHeader(&b, "MIME-Version", "1.0")
	if m.UnsubscribeURL != "" {
		writeHeader(&b, "List-Unsubscribe", "<"+m.UnsubscribeURL+">")
		writeHeader(&b, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	}
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		writeHeader(&b, name, mime.QEncoding.Encode("utf-8", m.Headers[name]))
	}

	if m.HTML == "" || m.Text == "" {
		kind, body := "text/html", m.HTML
		if m.HTML == "" {
			kind, body = "text/plain", m.Text
		}
		writeHeader(&b, "Content-Type", kind+"; charset=utf-8")
		writeHeader(&b, "Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQuotedPrintable(&b, body); err != nil {
			return nil, err
		}
		if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
			b.WriteString("\r\n")
		}
		return b.Bytes(), nil
	}

	parts := multipart.NewWriter(&b)
	writeHeader(&b, "Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": parts.Boundary()}))
	b.WriteString("\r\n")
	for _, part := range []struct{ kind, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		w, err := parts.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.kind + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, fmt.Errorf("render message: %w", err)
		}
		if err := writeQuotedPrintable(w, part.body); err != nil {
			return nil, err
		}
	}
	if err := parts.Close(); err != nil {
		return nil, fmt.Errorf("render message: %w", err)
	}
	return b.Bytes(), nil
}

// writeQuotedPrintable encodes body with CRLF line ends and soft breaks at 76 columns.
func writeQuotedPrintable(w io.Writer, body string) error {
	qp := quotedprintable.NewWriter(w)
	if _, err := io.WriteString(qp, body); err != nil {
		return fmt.Errorf("render message: %w", err)
	}
	if err := qp.Close(); err != nil {
		return fmt.Errorf("render message: %w", err)
	}
	return nil
}

// writeHeader writes one header field, folded at spaces to keep lines within 78
// characters where the value allows. Encoded words from mime.QEncoding are separated
// by spaces, so long non-ASCII values fold too; a value whose first word does not fit
// after the name starts on the next line.
func writeHeader(b *bytes.Buffer, name, value string) {
	const width = 78
	b.WriteString(name)
	b.WriteString(":")
	value = " " + value
	col, from := len(name)+1, 0
	for {
		cut := foldPoint(value, from, width-col)
		b.WriteString(value[:cut])
		if value = value[cut:]; value == "" {
			break
		}
		b.WriteString("\r\n")
		col, from = 0, 1
	}
	b.WriteString("\r\n")
}

// foldPoint returns where to break value so the first piece fits in room columns,
// considering breaks at from or later: the last space before a word within room, else
// the first one after it, else the end of value.
func foldPoint(value string, from, room int) int {
	if len(value) <= room {
		return len(value)
	}
	best := -1
	for i := from; i < len(value)-1; i++ {
		if value[i] != ' ' || value[i+1] == ' ' || i > 0 && value[i-1] == ' ' {
			continue
		}
		if i <= room || best < 0 {
			best = i
		}
		if i >= room {
			break
		}
	}
	if best < 0 {
		return len(value)
	}
	return best
}

// validMessageID reports whether id can stand left of the @ in a Message-ID: a dot-atom.
func validMessageID(id string) bool {
	if id == "" || len(id) > 200 || id[0] == '.' || id[len(id)-1] == '.' || strings.Contains(id, "..") {
		return false
	}
	for _, r := range id {
		if !isAtext(r) && r != '.' {
			return false
		}
	}
	return true
}

func isAtext(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

// validFieldName reports whether name is an RFC 5322 field name.
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 33 || name[i] > 126 || name[i] == ':' {
			return false
		}
	}
	return true
}

// bareAddress reports whether s is an address alone, without display name or spaces.
func bareAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

// domainOf returns the part of addr after its last @.
func domainOf(addr string) string {
	return addr[strings.LastIndexByte(addr, '@')+1:]
}

// absoluteHTTP reports whether raw is an absolute http or https URL with a host and
// nothing that would need quoting inside <…> in a header.
func absoluteHTTP(raw string) bool {
	if strings.ContainsAny(raw, " \t\r\n<>\"") {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	return scheme == "http" || scheme == "https"
}
