package balancer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
)

// Limits on a backend's response head, far above what an app sends.
const (
	maxHeadLine  = 64 << 10
	maxHeadBytes = 1 << 20
)

// errMalformed marks a response that is not valid HTTP/1.x.
var errMalformed = errors.New("malformed response")

// backendResponse is the parsed head of a backend's answer; the header
// fields themselves went straight into the client's header map.
type backendResponse struct {
	status int
	close  bool      // the conn cannot carry another request after this body
	length int64     // body length, -1 when unknown (chunked or until close)
	body   io.Reader // nil when the response has no body
	stream bool      // flush as it comes: unknown length or server-sent events
}

// readResponse reads a response head from br, puts its end-to-end header
// fields into h and sets up the body reader. It replaces http.ReadResponse
// on the hot path: no Response, no intermediate header map, no copy.
// Interim 1xx responses are skipped. On error h may hold partial fields;
// the caller clears it. fixed becomes the body reader of a body with a
// Content-Length: the conn's own, reused for every response on it.
func readResponse(br *bufio.Reader, h http.Header, method string, fixed *lengthBody) (backendResponse, error) {
	var resp backendResponse
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
		length, chunked, connClose, keepAlive, err := readFields(br, h, &total)
		if err != nil {
			return resp, err
		}
		if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
			clear(h) // an interim response's fields are not the final one's
			continue
		}
		resp.status = status
		resp.close = connClose || (http10 && !keepAlive)
		switch {
		case method == http.MethodHead || status < 200 || status == http.StatusNoContent || status == http.StatusNotModified:
			if method != http.MethodHead {
				// readFields passed Content-Length on; only HEAD keeps it.
				delete(h, "Content-Length")
			}
			resp.length = 0
		case chunked:
			resp.length = -1
			resp.body = &chunkedBody{br: br, cr: httputil.NewChunkedReader(br)}
			resp.stream = true
		case length >= 0:
			resp.length = length // readFields passed Content-Length on
			if length > 0 {
				*fixed = lengthBody{br: br, n: length}
				resp.body = fixed
			}
		default:
			// No length, not chunked: the body runs until the backend closes.
			resp.length = -1
			resp.body = br
			resp.close = true
			resp.stream = true
		}
		if !resp.stream {
			if ct := h["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream") {
				resp.stream = true
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

// readFields reads header fields up to the blank line. Framing and
// hop-by-hop fields are interpreted, not copied. The kept values are
// gathered in one buffer and become one string, and their []string
// slots come from one slice: two allocations per head instead of two
// per field.
func readFields(br *bufio.Reader, h http.Header, total *int) (length int64, chunked, connClose, keepAlive bool, err error) {
	length = -1
	var listed []string // extra hop-by-hop fields named in Connection
	var fieldBuf [16]field
	fields := fieldBuf[:0]
	var valBuf [512]byte
	vals := valBuf[:0]
	clStart, clEnd := -1, -1 // Content-Length's value in vals, reused for the client
	for {
		line, err := readLine(br, total)
		if err != nil {
			return 0, false, false, false, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 0, false, false, false, fmt.Errorf("%w: folded header line", errMalformed)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !validFieldName(line[:colon]) {
			return 0, false, false, false, fmt.Errorf("%w: header line %q", errMalformed, truncate(line))
		}
		key := canonicalKey(line[:colon])
		value := bytes.Trim(line[colon+1:], " \t")
		switch key {
		case "Content-Length":
			n, ok := parseLength(value)
			if !ok || (length >= 0 && n != length) {
				return 0, false, false, false, fmt.Errorf("%w: Content-Length %q", errMalformed, truncate(value))
			}
			if length < 0 {
				clStart = len(vals)
				vals = append(vals, value...)
				clEnd = len(vals)
			}
			length = n
		case "Transfer-Encoding":
			if !bytes.EqualFold(value, []byte("chunked")) {
				return 0, false, false, false, fmt.Errorf("%w: Transfer-Encoding %q", errMalformed, truncate(value))
			}
			chunked = true
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
			if !hopByHop(key) && !setByWriter(key) {
				start := len(vals)
				vals = append(vals, value...)
				fields = append(fields, field{key: key, start: start, end: len(vals)})
			}
		}
	}
	all := string(vals)
	slots := make([]string, len(fields)+1)
	for i, f := range fields {
		if vv := h[f.key]; len(vv) > 0 {
			h[f.key] = append(vv, all[f.start:f.end])
			continue
		}
		// A capped one-element slice: a later append copies instead of
		// overwriting the next field's slot.
		slots[i] = all[f.start:f.end]
		h[f.key] = slots[i : i+1 : i+1]
	}
	for _, k := range listed {
		delete(h, k)
	}
	if chunked {
		length = -1 // Transfer-Encoding wins over Content-Length (RFC 9112 6.3)
	}
	if length >= 0 {
		// The backend's own digits, already validated: the client gets
		// them without formatting the number again.
		slots[len(fields)] = all[clStart:clEnd]
		h["Content-Length"] = slots[len(fields):]
	}
	return length, chunked, connClose, keepAlive, nil
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

// canonicalKey is http.CanonicalHeaderKey without an allocation for the
// fields a backend usually sends in canonical form.
func canonicalKey(name []byte) string {
	switch string(name) { // compiled to comparisons: no allocation
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
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
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

func validFieldName(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// lengthBody reads exactly n bytes; an early EOF is an error, so a cut
// response is never taken for a complete one.
type lengthBody struct {
	br *bufio.Reader
	n  int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
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
		total := 0
		for {
			line, lerr := readLine(b.br, &total)
			if lerr != nil {
				return n, lerr
			}
			if len(line) == 0 {
				break
			}
		}
		b.done = true
	}
	return n, err
}
