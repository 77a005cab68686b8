package balancer

import (
	"bufio"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"hits/h1"
)

// setByWriter reports whether a field of a forwarded message is written by
// the balancer itself rather than copied: the length is rewritten from the
// parsed body, and the front server answers 100-continue itself.
func setByWriter(k string) bool {
	return k == "Content-Length" || k == "Expect"
}

// forwarded is what the balancer tells the backend about the client.
type forwarded struct {
	trusted bool // peer is a trusted proxy: keep its X-Forwarded-* claims
	xff     string
	proto   string
	host    string
	// via is the X-LB-Backend value and why the X-LB-Reason for this
	// attempt; via is nil when the debug headers are off.
	via []string
	why Reason
}

// route sets the debug headers' values for an attempt on b.
func (f *forwarded) route(on bool, b *Backend, why Reason) {
	if on {
		f.via, f.why = b.nameHeader(), why
	}
}

func forwardedFor(r *http.Request, trusted []netip.Prefix) forwarded {
	// The peer is the host part of RemoteAddr, taken as a substring: no
	// parsing or allocation on the hot path unless there are trusted
	// proxies to compare with.
	peer := r.RemoteAddr
	if i := strings.LastIndexByte(peer, ':'); i > 0 {
		peer = strings.TrimSuffix(strings.TrimPrefix(peer[:i], "["), "]")
	}
	if strings.HasPrefix(peer, "::ffff:") {
		if ip, err := netip.ParseAddr(peer); err == nil {
			peer = ip.Unmap().String()
		}
	}
	f := forwarded{xff: peer, proto: "http", host: r.Host}
	if r.TLS != nil {
		f.proto = "https"
	}
	if len(trusted) > 0 {
		if ip, err := netip.ParseAddr(peer); err == nil {
			for _, p := range trusted {
				if p.Contains(ip) {
					f.trusted = true
					break
				}
			}
		}
	}
	if f.trusted {
		if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			f.xff = strings.Join(prior, ", ") + ", " + peer
		}
		if v := r.Header.Get("X-Forwarded-Proto"); v != "" {
			f.proto = v
		}
		if v := r.Header.Get("X-Forwarded-Host"); v != "" {
			f.host = v
		}
	}
	return f
}

// requestURI is what goes on the request line: the client's own bytes for
// origin-form, or the path and query of an absolute-form URI (front
// refuses every other form; net/http leaves RequestURI empty for HTTP/2).
func requestURI(r *http.Request) string {
	if u := r.RequestURI; u != "" && (u[0] == '/' || u == "*") {
		return u
	}
	return r.URL.RequestURI()
}

// writeRequest writes r to bw as HTTP/1.1 and flushes. Headers were
// validated by the front server, so they are copied byte for byte minus
// hop-by-hop ones. upgrade keeps Connection/Upgrade for WebSocket.
func writeRequest(bw *bufio.Writer, r *http.Request, f *forwarded, body io.Reader, upgrade bool) error {
	writeRequestLine(bw, r.Method, requestURI(r))
	h1.WriteField(bw, "Host", r.Host)
	conn := r.Header["Connection"] // nil in the usual HTTP/1.1 keep-alive request
	for k, vv := range r.Header {
		if h1.HopByHop(k) || setByWriter(k) || (conn != nil && h1.HasToken(conn, k)) {
			continue
		}
		switch k {
		case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host":
			continue // rewritten below from f
		case "X-Real-Ip", "Forwarded":
			if !f.trusted {
				continue // only a trusted proxy's claims about the client mean anything
			}
		case headerBackend, headerReason:
			continue // only the balancer says where and why
		}
		for _, v := range vv {
			h1.WriteField(bw, k, v)
		}
	}
	if upgrade {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(r.Header.Get("Upgrade"))
		bw.WriteString("\r\n")
	}
	h1.WriteField(bw, "X-Forwarded-For", f.xff)
	h1.WriteField(bw, "X-Forwarded-Proto", f.proto)
	h1.WriteField(bw, "X-Forwarded-Host", f.host)
	if f.via != nil {
		h1.WriteField(bw, "X-LB-Backend", f.via[0])
		h1.WriteField(bw, "X-LB-Reason", f.why.String())
	}
	chunked := false
	switch {
	case body == nil:
	case r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
		bw.WriteString("\r\n")
	default:
		chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	if body != nil {
		if chunked {
			if _, err := io.Copy(h1.ChunkedWriter{BW: bw}, body); err != nil {
				return err
			}
			h1.WriteLastChunk(bw)
		} else if _, err := io.Copy(bw, body); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeRequestLine writes "METHOD uri HTTP/1.1\r\n", in one Write when
// it fits the buffer (as h1.WriteField does).
func writeRequestLine(bw *bufio.Writer, method, uri string) {
	if bw.Available() >= len(method)+len(uri)+len("  HTTP/1.1\r\n") {
		b := bw.AvailableBuffer()
		b = append(b, method...)
		b = append(b, ' ')
		b = append(b, uri...)
		b = append(b, " HTTP/1.1\r\n"...)
		bw.Write(b)
		return
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\n")
}

// idempotent reports whether sending r twice has the same effect as once
// (RFC 9110 9.2.2), or the client said so with an Idempotency-Key.
func idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}
