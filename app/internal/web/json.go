package web

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// appendPageJSON appends p as encoding/json's Encoder writes it (HTML-safe
// string escaping, RFC 3339 time, a trailing newline), byte for byte:
// json_test.go checks that against encoding/json, hostile names included,
// and fuzzes it. Written out because reflection was a third of the
// handler's CPU on every counted JSON hit (BenchmarkIndexJSON).
func appendPageJSON(b []byte, p page) []byte {
	b = append(b, `{"instance":`...)
	b = appendJSONString(b, p.Instance)
	b = append(b, `,"version":`...)
	b = appendJSONString(b, p.Version)
	b = append(b, `,"total":`...)
	b = strconv.AppendInt(b, p.Total, 10)
	b = append(b, `,"last_day":`...)
	b = strconv.AppendInt(b, p.LastDay, 10)
	b = append(b, `,"minute":"`...)
	b = p.Minute.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","instances":`...)
	if p.Instances == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, c := range p.Instances {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"instance":`...)
			b = appendJSONString(b, c.Instance)
			b = append(b, `,"hits":`...)
			b = strconv.AppendInt(b, c.Hits, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json does with HTML
// escaping on: <, > and & as \u003c..., control bytes as \n, \t... or
// \u00XX, invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
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
