package emulator

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// The emulator writes response JSON by appending to a byte slice: pages of 5,000
// rows are its hot path, and the property order (annotations before their property,
// @odata.etag first) is part of what it imitates.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as encoding/json does apart from
// HTML characters.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Time formats of the Web API: date-and-time columns in UTC with seconds, date-only
// columns as a bare date.
const (
	dateTimeLayout = "2006-01-02T15:04:05Z"
	dateLayout     = "2006-01-02"
)

// appendValue appends a stored column value as JSON.
func appendValue(b []byte, c *column, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, v)
	case bool:
		return strconv.AppendBool(b, v)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case float64:
		return strconv.AppendFloat(b, v, 'f', -1, 64)
	case time.Time:
		b = append(b, '"')
		if c != nil && c.typ == typeDateOnly {
			b = v.AppendFormat(b, dateLayout)
		} else {
			b = v.AppendFormat(b, dateTimeLayout)
		}
		return append(b, '"')
	case ref:
		return appendString(b, v.id)
	}
	return append(b, "null"...)
}
