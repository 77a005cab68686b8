package balancer

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
)

// hopByHop reports whether a field describes one connection, not the
// message (RFC 9110 7.6.1), so a proxy must not pass it on. A switch, not
// a map: it runs for every field of every request and response, and the
// compiler turns it into a few length and byte comparisons.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

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

// hasToken reports whether a comma-separated header such as Connection
// lists tok, case-insensitively, without allocating.
func hasToken(vv []string, tok string) bool {
	for _, v := range vv {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// requestURI is what goes on the request line: the client's own bytes for
// origin-form, or the path of an absolute-form URI.
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
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(requestURI(r))
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"] // nil in the usual HTTP/1.1 keep-alive request
	for k, vv := range r.Header {
		if hopByHop(k) || setByWriter(k) || (conn != nil && hasToken(conn, k)) {
			continue
		}
		switch k {
		case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host":
			continue // rewritten below from f
		case "X-Real-Ip", "Forwarded":
			if !f.trusted {
				continue // only a trusted proxy's claims about the client mean anything
			}
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if upgrade {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(r.Header.Get("Upgrade"))
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-For: ")
	bw.WriteString(f.xff)
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	bw.WriteString(f.proto)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(f.host)
	bw.WriteString("\r\n")
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
			cw := httputil.NewChunkedWriter(bw)
			if _, err := io.Copy(cw, body); err != nil {
				return err
			}
			if err := cw.Close(); err != nil {
				return err
			}
			bw.WriteString("\r\n")
		} else if _, err := io.Copy(bw, body); err != nil {
			return err
		}
	}
	return bw.Flush()
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

// trackedBody records whether any of the request body was read, i.e.
// whether a retry would send a different (truncated) body.
type trackedBody struct {
	r    io.Reader
	read bool
}

func (t *trackedBody) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.read = true
	}
	return n, err
}
