package h1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Error is a request the server refuses; Status is its answer (400, 501,
// 505) and Reason a short text safe to show the client.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Reason) }

func bad(reason string) error { return &Error{Status: http.StatusBadRequest, Reason: reason} }

// Options bound what ReadRequest accepts.
type Options struct {
	// MaxBodyBytes is the largest request body; a body announced larger is
	// refused with 413 and a chunked one that grows larger fails with a
	// 413 BodyError. Zero: no limit.
	MaxBodyBytes int64
	// Reuse, if set, is filled in place of a new request: a server's
	// conn keeps one (see NewReusable) and hands it to one handler call
	// after another, saving the request, its URL and its header map, three
	// of the six allocations a proxied request costs. A handler must then
	// not keep the request past its return.
	Reuse *Reusable
}

// Reusable is a request ReadRequest fills again and again; its context is
// the one it was made with. Its fields are written by ReadRequest only.
type Reusable struct {
	tmpl http.Request // the pristine request, context included
	req  http.Request
	url  url.URL
}

// NewReusable returns a reusable request whose context is ctx.
func NewReusable(ctx context.Context) *Reusable {
	r := &Reusable{}
	t, _ := http.NewRequestWithContext(ctx, http.MethodGet, "", nil) // cannot fail: no URL to parse
	r.tmpl = *t
	r.tmpl.URL, r.tmpl.Header = nil, nil
	r.req.Header = http.Header{}
	return r
}

// next resets the reusable request for another round; copying the
// template is how its context (an unexported field) comes along.
func (r *Reusable) next() *http.Request {
	h := r.req.Header
	clear(h)
	r.req = r.tmpl
	r.url = url.URL{}
	r.req.URL, r.req.Header = &r.url, h
	return &r.req
}

// ReadRequest reads one request head from br and frames its body, with
// the checks net/http's server makes and those a proxy needs on top
// (RFC 9112):
//
//   - the target is origin-form, absolute-form (http or https) or "*"
//     for OPTIONS; anything else ("GET t:80") is a 400;
//   - HTTP/1.1 needs exactly one valid Host; absolute-form's authority
//     wins over it, as net/http does;
//   - field names are tokens, values have no control bytes, obs-fold and
//     whitespace before the colon are refused;
//   - Content-Length is digits, and repeated only with the same value;
//   - Transfer-Encoding is "chunked" alone (else 501). With a
//     Content-Length too, or in an HTTP/1.0 request, the framing is
//     suspect (RFC 9112 6.1): the request is served (chunked wins; 1.0
//     ignores the coding, as net/http does) and req.Close is set, so the
//     conn is closed after the answer and nothing after it is read as a
//     request.
//
// The Host field moves to req.Host as with http.ReadRequest. req.Body is
// a *Body, or http.NoBody. The request's context is ctx, or with
// opts.Reuse the one that was made with.
func ReadRequest(ctx context.Context, br *bufio.Reader, opts Options) (*http.Request, error) {
	total := 0
	line, err := readLine(br, &total)
	if err != nil {
		return nil, err
	}
	var req *http.Request
	if opts.Reuse != nil {
		req = opts.Reuse.next()
	} else {
		// NewRequestWithContext makes the Request, its URL and header map
		// with the context in place: no WithContext copy per request.
		if req, err = http.NewRequestWithContext(ctx, http.MethodGet, "", nil); err != nil {
			return nil, err
		}
	}
	target, err := parseRequestLine(req, line)
	if err != nil {
		return nil, err
	}
	// The target and every field value end up in one string.
	var valBuf [1024]byte
	f, all, err := readRequestFields(br, req.Header, &total, append(valBuf[:0], target...))
	if err != nil {
		return nil, err
	}
	if err := setTarget(req, all[:len(target)]); err != nil {
		return nil, err
	}
	http11 := req.ProtoMinor == 1
	switch {
	case f.hosts > 1:
		return nil, bad("more than one Host field")
	case f.hosts == 0 && http11:
		return nil, bad("missing Host field")
	}
	if !ValidHost(f.host) || !ValidHost(req.Host) {
		return nil, bad("malformed Host")
	}
	if req.Host == "" {
		req.Host = f.host
	}
	// Connection management, as net/http decides it.
	conn := req.Header["Connection"]
	if http11 {
		req.Close = HasToken(conn, "close")
	} else {
		req.Close = !HasToken(conn, "keep-alive")
	}
	// Framing.
	switch {
	case f.teFields > 0 && !http11:
		// RFC 9112 6.1: treat as faulty framing; net/http ignores the
		// coding of an HTTP/1.0 request, and so do we, but the conn ends.
		req.Close = true
		fallthrough
	case f.teFields == 0:
		req.ContentLength = max(f.length, 0)
		if f.length > 0 {
			if opts.MaxBodyBytes > 0 && f.length > opts.MaxBodyBytes {
				return nil, &Error{Status: http.StatusRequestEntityTooLarge, Reason: "request body too large"}
			}
			req.Body = &Body{br: br, left: f.length}
		} else {
			req.Body = http.NoBody
		}
	default:
		if !strings.EqualFold(f.te, "chunked") || f.teFields > 1 {
			return nil, &Error{Status: http.StatusNotImplemented, Reason: "unsupported Transfer-Encoding"}
		}
		if f.length >= 0 || f.lengths > 0 {
			req.Close = true // CL+TE: possibly a smuggling attempt
			delete(req.Header, "Content-Length")
		}
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		req.Body = &Body{br: br, chunked: newChunkedReader(br), limit: opts.MaxBodyBytes}
	}
	return req, nil
}

// parseRequestLine reads "METHOD target HTTP/1.x" into req and returns
// the target, valid until the next read from the reader.
func parseRequestLine(req *http.Request, line []byte) ([]byte, error) {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return nil, bad("malformed request line")
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return nil, bad("malformed request line")
	}
	method, target, proto := line[:sp1], rest[:sp2], rest[sp2+1:]
	if !IsToken(method) {
		return nil, bad("malformed method")
	}
	switch string(proto) {
	case "HTTP/1.1":
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	case "HTTP/1.0":
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.0", 1, 0
	default:
		if len(proto) == 8 && string(proto[:5]) == "HTTP/" && proto[6] == '.' && proto[5] >= '0' && proto[5] <= '9' && proto[7] >= '0' && proto[7] <= '9' {
			return nil, &Error{Status: http.StatusHTTPVersionNotSupported, Reason: "only HTTP/1.x is served here"}
		}
		return nil, bad("malformed protocol version")
	}
	req.Method = internMethod(method)
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return nil, bad("malformed request target")
		}
	}
	return target, nil
}

// setTarget sets req's RequestURI and URL from the request target.
func setTarget(req *http.Request, uri string) error {
	req.RequestURI = uri
	switch {
	case uri[0] == '/':
		if path, query, ok := originForm(uri); ok {
			*req.URL = url.URL{Path: path, RawQuery: query}
			return nil
		}
		u, err := url.ParseRequestURI(uri)
		if err != nil {
			return bad("malformed request target")
		}
		req.URL = u
	case uri == "*":
		if req.Method != http.MethodOptions {
			return bad(`"*" is a target for OPTIONS only`)
		}
		req.URL = &url.URL{Path: "*"}
	case req.Method == http.MethodConnect:
		// authority-form: the server refuses CONNECT with 405.
		req.URL = &url.URL{Host: uri}
		req.Host = uri
	default:
		u, err := url.ParseRequestURI(uri)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" || u.User != nil {
			return bad("malformed request target: want a path or an http(s) URL")
		}
		req.URL = u
		req.Host = u.Host
	}
	return nil
}

// originForm splits a plain path, the usual case, without url.Parse: a
// path with no escapes and an optional query.
func originForm(uri string) (path, query string, ok bool) {
	path, query, _ = strings.Cut(uri, "?")
	if strings.ContainsAny(path, "%#") || strings.IndexByte(query, '#') >= 0 {
		return "", "", false
	}
	return path, query, true
}

// internMethod returns the common methods without allocating.
func internMethod(m []byte) string {
	switch string(m) {
	case "GET":
		return http.MethodGet
	case "POST":
		return http.MethodPost
	case "HEAD":
		return http.MethodHead
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return string(m)
}

// requestFields is what a request head says about framing and Host.
type requestFields struct {
	length   int64  // -1: no Content-Length
	lengths  int    // Content-Length fields seen
	lenText  string // the first one's digits: a repeat must be identical
	te       string
	teFields int
	host     string
	hosts    int
}

// readRequestFields reads the fields up to the blank line into h, values
// gathered in one string as in readFields. Host, Content-Length and
// Transfer-Encoding are interpreted; Content-Length stays in h (once),
// Transfer-Encoding and Host do not, as with http.ReadRequest.
func readRequestFields(br *bufio.Reader, h http.Header, total *int, vals []byte) (requestFields, string, error) {
	f := requestFields{length: -1}
	var fieldBuf [16]field
	fields := fieldBuf[:0]
	for {
		line, err := readLine(br, total)
		if err != nil {
			return f, "", err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return f, "", bad("folded header line")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !IsToken(line[:colon]) {
			return f, "", bad("malformed header line")
		}
		value := bytes.Trim(line[colon+1:], " \t")
		if !ValidFieldValue(value) {
			return f, "", bad("control character in a header value")
		}
		key := CanonicalKey(line[:colon])
		switch key {
		case "Host":
			f.hosts++
			f.host = string(value)
			continue
		case "Content-Length":
			if f.length >= 0 {
				if string(value) != f.lenText {
					return f, "", bad("conflicting Content-Length fields")
				}
				f.lengths++
				continue // the same value again: keep one
			}
			n, ok := parseLength(value)
			if !ok {
				return f, "", bad("malformed Content-Length")
			}
			f.lengths++
			f.length = n
			f.lenText = string(value)
		case "Transfer-Encoding":
			f.teFields++
			f.te = string(value)
			continue
		}
		start := len(vals)
		vals = append(vals, value...)
		fields = append(fields, field{key: key, start: start, end: len(vals)})
	}
	all := string(vals)
	storeFields(h, fields, all, 0)
	return f, all, nil
}
