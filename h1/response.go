package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Limits on a backend's response head, far above what an app sends.
const (
	maxHeadLine  = 64 << 10
	maxHeadBytes = 1 << 20
)

// errMalformed marks a response that is not valid HTTP/1.x.
var errMalformed = errors.New("malformed response")

// Response is the parsed head of a backend's answer; the header fields
// themselves went straight into the client's header map.
type Response struct {
	Status int
	Close  bool      // the conn cannot carry another request after this body
	Length int64     // body length, -1 when unknown (chunked or until close)
	Body   io.Reader // nil when the response has no body
	Stream bool      // flush as it comes: unknown length or server-sent events
	// Upgrade is the Upgrade field of a 101 answer to an upgrade request;
	// the conn then carries the new protocol.
	Upgrade string
}

// ReadResponse reads a response head from br, puts its end-to-end header
// fields into h and sets up the body reader. It replaces http.ReadResponse
// on the hot path: no Response, no intermediate header map, no copy.
// Interim 1xx responses are skipped; a 101 is accepted only when upgrade
// (the request asked to switch protocols). A field value with a control
// byte makes the response malformed: it is not passed on. On error h may
// hold partial fields; the caller clears it. fixed becomes the body reader
// of a body with a Content-Length: the conn's own, reused for every
// response on it.
func ReadResponse(br *bufio.Reader, h http.Header, method string, upgrade bool, fixed *LengthBody) (Response, error) {
	var resp Response
	total := 0
	for {
		line, err := readLine(br, &total)
		if err != nil {
			return resp, err
		}
		status, http10, ok := parseStatusLine(line)
		if !ok {
			return resp, fmt.Errorf("%w: status line %q", errMalformed, truncate(line))
		}
		rf, err := readFields(br, h, &total, status == http.StatusSwitchingProtocols)
		if err != nil {
			return resp, err
		}
		if status == http.StatusSwitchingProtocols && (!upgrade || rf.upgrade == "") {
			return resp, fmt.Errorf("%w: 101 to a request that did not ask to switch protocols", errMalformed)
		}
		if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
			clear(h) // an interim response's fields are not the final one's
			continue
		}
		resp.Status = status
		resp.Close = rf.connClose || (http10 && !rf.keepAlive)
		switch {
		case status == http.StatusSwitchingProtocols:
			resp.Upgrade = rf.upgrade
			resp.Close = true // never pooled: it now speaks another protocol
		case method == http.MethodHead || status < 200 || status == http.StatusNoContent || status == http.StatusNotModified:
			if method != http.MethodHead {
				// readFields passed Content-Length on; only HEAD keeps it.
				delete(h, "Content-Length")
			}
			resp.Length = 0
		case rf.chunked:
			resp.Length = -1
			resp.Body = &chunkedBody{br: br, cr: newChunkedReader(br)}
			resp.Stream = true
		case rf.length >= 0:
			resp.Length = rf.length // readFields passed Content-Length on
			if rf.length > 0 {
				*fixed = LengthBody{br: br, n: rf.length}
				resp.Body = fixed
			}
		default:
			// No length, not chunked: the body runs until the backend closes.
			resp.Length = -1
			resp.Body = br
			resp.Close = true
			resp.Stream = true
		}
		if !resp.Stream {
			if ct := h["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream") {
				resp.Stream = true
			}
		}
		return resp, nil
	}
}

// parseStatusLine accepts "HTTP/1.x NNN[ reason]".
func parseStatusLine(line []byte) (status int, http10, ok bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, false, false
	}
	switch line[7] {
	case '0':
		http10 = true
	case '1':
	default:
		return 0, false, false
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return 0, false, false
		}
		status = status*10 + int(d-'0')
	}
	return status, http10, status >= 100
}

// field is one header field kept for the client: its value is
// value[start:end] of the head's one string, built once all are read.
type field struct {
	key        string
	start, end int
}

// responseFields is what a response head says about framing and the conn.
type responseFields struct {
	length               int64 // -1: none
	chunked              bool
	connClose, keepAlive bool
	upgrade              string // the Upgrade field, read only for a 101
}

// readFields reads header fields up to the blank line. Framing and
// hop-by-hop fields are interpreted, not copied. The kept values are
// gathered in one buffer and become one string, and their []string
// slots come from one slice: two allocations per head instead of two
// per field.
func readFields(br *bufio.Reader, h http.Header, total *int, switching bool) (rf responseFields, err error) {
	length := int64(-1)
	var chunked, connClose, keepAlive bool
	var listed []string // extra hop-by-hop fields named in Connection
	var fieldBuf [16]field
	fields := fieldBuf[:0]
	var valBuf [512]byte
	vals := valBuf[:0]
	clStart, clEnd := -1, -1 // Content-Length's value in vals, reused for the client
	for {
		line, err := readLine(br, total)
		if err != nil {
			return rf, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return rf, fmt.Errorf("%w: folded header line", errMalformed)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !IsToken(line[:colon]) {
			return rf, fmt.Errorf("%w: header line %q", errMalformed, truncate(line))
		}
		key := CanonicalKey(line[:colon])
		value := bytes.Trim(line[colon+1:], " \t")
		if !ValidFieldValue(value) {
			return rf, fmt.Errorf("%w: control character in %s", errMalformed, key)
		}
		switch key {
		case "Content-Length":
			n, ok := parseLength(value)
			// A repeat must be the same digits, as net/http requires.
			if !ok || (length >= 0 && string(value) != string(vals[clStart:clEnd])) {
				return rf, fmt.Errorf("%w: Content-Length %q", errMalformed, truncate(value))
			}
			if length < 0 {
				clStart = len(vals)
				vals = append(vals, value...)
				clEnd = len(vals)
			}
			length = n
		case "Transfer-Encoding":
			if !bytes.EqualFold(value, []byte("chunked")) {
				return rf, fmt.Errorf("%w: Transfer-Encoding %q", errMalformed, truncate(value))
			}
			chunked = true
		case "Upgrade":
			if switching {
				rf.upgrade = string(value)
			}
		case "Connection":
			for _, t := range strings.Split(string(value), ",") {
				t = strings.TrimSpace(t)
				switch {
				case strings.EqualFold(t, "close"):
					connClose = true
				case strings.EqualFold(t, "keep-alive"):
					keepAlive = true
				case t != "":
					listed = append(listed, http.CanonicalHeaderKey(t))
				}
			}
		default:
			if !HopByHop(key) {
				start := len(vals)
				vals = append(vals, value...)
				fields = append(fields, field{key: key, start: start, end: len(vals)})
			}
		}
	}
	all := string(vals)
	slots := storeFields(h, fields, all, 1)
	for _, k := range listed {
		delete(h, k)
	}
	if chunked {
		length = -1 // Transfer-Encoding wins over Content-Length (RFC 9112 6.3)
	}
	if length >= 0 {
		// The backend's own digits, already validated: the client gets
		// them without formatting the number again.
		slots[0] = all[clStart:clEnd]
		h["Content-Length"] = slots[0:1:1]
	}
	rf.length, rf.chunked, rf.connClose, rf.keepAlive = length, chunked, connClose, keepAlive
	return rf, nil
}

// storeFields adds fields, whose values are slices of all, to h. Their
// []string slots come from one slice, with extra spare slots returned for
// the caller.
func storeFields(h http.Header, fields []field, all string, extra int) []string {
	slots := make([]string, len(fields)+extra)
	for i, f := range fields {
		if vv := h[f.key]; len(vv) > 0 {
			h[f.key] = append(vv, all[f.start:f.end])
			continue
		}
		// A capped one-element slice: a later append copies instead of
		// overwriting the next field's slot.
		slots[extra+i] = all[f.start:f.end]
		h[f.key] = slots[extra+i : extra+i+1 : extra+i+1]
	}
	return slots[:extra]
}

// parseLength accepts the decimal digits of a Content-Length; signs,
// spaces and overflow are not.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// CanonicalKey is http.CanonicalHeaderKey without an allocation for the
// fields clients and backends usually send in canonical form.
func CanonicalKey(name []byte) string {
	switch string(name) { // compiled to comparisons: no allocation
	case "Host":
		return "Host"
	case "User-Agent":
		return "User-Agent"
	case "Accept":
		return "Accept"
	case "Accept-Encoding":
		return "Accept-Encoding"
	case "Accept-Language":
		return "Accept-Language"
	case "Cookie":
		return "Cookie"
	case "Referer":
		return "Referer"
	case "Upgrade":
		return "Upgrade"
	case "Expect":
		return "Expect"
	case "Origin":
		return "Origin"
	case "Content-Type":
		return "Content-Type"
	case "Content-Length":
		return "Content-Length"
	case "Date":
		return "Date"
	case "Connection":
		return "Connection"
	case "Transfer-Encoding":
		return "Transfer-Encoding"
	case "Cache-Control":
		return "Cache-Control"
	case "Set-Cookie":
		return "Set-Cookie"
	case "Server":
		return "Server"
	case "Keep-Alive":
		return "Keep-Alive"
	case "Last-Modified":
		return "Last-Modified"
	case "Etag":
		return "Etag"
	case "Vary":
		return "Vary"
	case "Location":
		return "Location"
	case "Content-Encoding":
		return "Content-Encoding"
	case "Expires":
		return "Expires"
	}
	return http.CanonicalHeaderKey(string(name))
}

// readLine returns one line without its CRLF. The slice is only valid
// until the next read from br.
func readLine(br *bufio.Reader, total *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		long := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull && len(long) <= maxHeadLine {
			line, err = br.ReadSlice('\n')
			long = append(long, line...)
		}
		if len(long) > maxHeadLine {
			return nil, fmt.Errorf("%w: header line over %d bytes", errMalformed, maxHeadLine)
		}
		line = long
	}
	if err != nil {
		if err == io.EOF && (len(line) > 0 || *total > 0) {
			err = io.ErrUnexpectedEOF // EOF alone means nothing was sent
		}
		return nil, err
	}
	if *total += len(line); *total > maxHeadBytes {
		return nil, fmt.Errorf("%w: head over %d bytes", errMalformed, maxHeadBytes)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// LengthBody reads exactly n bytes; an early EOF is an error, so a cut
// response is never taken for a complete one.
type LengthBody struct {
	br *bufio.Reader
	n  int64
}

func (b *LengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if err == io.EOF && b.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && b.n == 0 {
		err = io.EOF
	}
	return n, err
}

// chunkedBody decodes a chunked body and then consumes the trailer
// section (dropped), leaving the conn at the next response.
type chunkedBody struct {
	br   *bufio.Reader
	cr   io.Reader
	done bool
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.cr.Read(p)
	if err == io.EOF {
		if terr := readTrailer(b.br); terr != nil {
			return n, terr
		}
		b.done = true
	}
	return n, err
}
