package h1

import (
	"bufio"
	"net/http"
)

// WriteStatusLine writes "HTTP/1.1 <code> <reason>\r\n"; code must be
// within 100-999.
func WriteStatusLine(bw *bufio.Writer, code int) {
	text := http.StatusText(code)
	if bw.Available() >= len("HTTP/1.1 000 \r\n")+len(text) {
		// Appended in the buffer's free space and committed with one
		// Write: a call per piece cost about twice as much.
		b := bw.AvailableBuffer()
		b = append(b, "HTTP/1.1 "...)
		b = append(b, byte('0'+code/100), byte('0'+code/10%10), byte('0'+code%10), ' ')
		b = append(b, text...)
		b = append(b, "\r\n"...)
		bw.Write(b)
		return
	}
	bw.WriteString("HTTP/1.1 ")
	// Byte by byte because strconv.Itoa allocates for every code above 99.
	bw.WriteByte(byte('0' + code/100))
	bw.WriteByte(byte('0' + code/10%10))
	bw.WriteByte(byte('0' + code%10))
	bw.WriteByte(' ')
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

// WriteField writes one "key: value\r\n" line.
func WriteField(bw *bufio.Writer, k, v string) {
	if bw.Available() >= len(k)+len(v)+4 {
		b := bw.AvailableBuffer() // as in WriteStatusLine
		b = append(b, k...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
		bw.Write(b)
		return
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// WriteFields writes every field of h whose name is a token and whose
// values have no control bytes; others are dropped, so no handler or
// backend can split or truncate the message on the wire.
func WriteFields(bw *bufio.Writer, h http.Header) {
	for k, vv := range h {
		if !IsToken(k) {
			continue
		}
		for _, v := range vv {
			if ValidFieldValue(v) {
				WriteField(bw, k, v)
			}
		}
	}
}
