package front

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one client connection. Only its own goroutine touches its
// fields, except idle, which Shutdown reads.
type conn struct {
	srv    *Server
	nc     net.Conn
	lr     *io.LimitedReader // caps header bytes; lifted for bodies
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string
	ctx    context.Context // requests' context: cancelled when the conn closes
	cancel context.CancelFunc
	resp   response    // reused for every request on the conn
	rdl    time.Time   // read deadline last set; see setReadDeadline
	idle   atomic.Bool // waiting for a request; read by Shutdown

	abortMu sync.Mutex // guards onAbort and aborted; only a forced Shutdown contends
	onAbort func()     // the handler's hook for a forced close; see response.OnForcedClose
	aborted bool       // force-closed by Shutdown
	hooked  bool       // onAbort may be set; touched only by the conn's goroutine
}

// forceClose runs the handler's hook, if any, after Shutdown closed the
// conn. The hook runs under abortMu so that a handler removing it learns
// for sure whether it ran.
func (c *conn) forceClose() {
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	c.aborted = true
	if f := c.onAbort; f != nil {
		c.onAbort = nil
		f()
	}
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, remote: nc.RemoteAddr().String()}
	// One context per conn, not per request: the proxy hangs a cancel
	// hook on it for every request, and a shared parent would make all
	// conns contend for its lock.
	c.ctx, c.cancel = context.WithCancel(s.base)
	c.lr = &io.LimitedReader{R: nc, N: math.MaxInt64}
	c.br = bufio.NewReaderSize(c.lr, 4096)
	c.bw = bufio.NewWriterSize(nc, 4096)
	c.resp.c = c
	c.resp.header = http.Header{}
	return c
}

// serve reads requests one after another (pipelined ones included) and
// answers each before reading the next.
func (c *conn) serve() {
	hijacked := false
	defer func() {
		if !hijacked {
			c.nc.Close()
			c.cancel()
			c.srv.untrack(c)
		}
	}()
	s := c.srv
	first := true
	for {
		if c.br.Buffered() == 0 {
			if !s.setIdle(c, true) {
				return
			}
			wait := s.IdleTimeout
			if first {
				wait = s.ReadHeaderTimeout
			}
			c.setReadDeadline(time.Now().Add(wait))
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		first = false
		if !s.setIdle(c, false) {
			return
		}
		if !headBuffered(c.br) {
			// Only a head still on its way can be slow-lorised; a whole
			// head in the buffer parses without touching the network.
			c.setReadDeadline(time.Now().Add(s.ReadHeaderTimeout))
		}
		// bufio may read up to a buffer beyond the headers; allow for it.
		c.lr.N = int64(s.MaxHeaderBytes) + 4096 - int64(c.br.Buffered())
		req, err := http.ReadRequest(c.br)
		if err != nil {
			c.reject(err)
			return
		}
		c.lr.N = math.MaxInt64
		if status, why := validate(req); status != 0 {
			s.Logger.Debug("bad request", "client", c.remote, "status", status, "reason", why)
			c.writeError(status, why)
			return
		}
		req.RemoteAddr = c.remote
		req = req.WithContext(c.ctx)
		var body *trackedBody
		if req.Body != http.NoBody && req.Body != nil {
			// Bodies are read by the handler at its pace; only headers are timed.
			c.setReadDeadline(time.Time{})
			body = &trackedBody{rc: req.Body}
			if hasToken(req.Header["Expect"], "100-continue") {
				body.c = c
			}
			req.Body = body
		}
		w := &c.resp
		w.reset(req)
		s.Handler.ServeHTTP(w, req)
		if c.hooked {
			w.OnForcedClose(nil) // a hook must not outlive its request
			c.hooked = false
		}
		if w.hijacked {
			hijacked = true
			return
		}
		if err := w.finish(); err != nil {
			return
		}
		if w.closeAfter || (body != nil && !body.eof) || s.shuttingDown() {
			// An unread body would be parsed as the next request.
			return
		}
	}
}

// setReadDeadline moves the read deadline to d (zero: none) only when it
// must: each move is a runtime timer update, and a keep-alive conn would
// otherwise pay two or three per request. A current deadline no later
// than d and only slightly earlier (a sixteenth of the timeout, at most a
// second) is kept.
func (c *conn) setReadDeadline(d time.Time) {
	if !d.IsZero() && !c.rdl.IsZero() && !c.rdl.After(d) && d.Sub(c.rdl) < min(time.Second, time.Until(d)/16) {
		return
	}
	if d.IsZero() && c.rdl.IsZero() {
		return
	}
	c.nc.SetReadDeadline(d)
	c.rdl = d
}

// headBuffered reports whether a whole request head is already buffered.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// reject answers a request that could not be parsed, when the conn is
// still writable, and logs why.
func (c *conn) reject(err error) {
	if errors.Is(err, io.EOF) && c.lr.N > 0 {
		return // client closed between requests
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return // slow or idle client: just close
	}
	if c.lr.N <= 0 {
		c.writeError(http.StatusRequestHeaderFieldsTooLarge, "request headers too large")
		return
	}
	c.srv.Logger.Debug("bad request", "client", c.remote, "error", err)
	c.writeError(http.StatusBadRequest, "malformed request")
}

// writeError answers with a short plain-text status and closes.
func (c *conn) writeError(status int, why string) {
	text := http.StatusText(status)
	body := text + ": " + why + "\n"
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.bw.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + text + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	if c.bw.Flush() != nil {
		return
	}
	// Closing with unread input makes the kernel send a reset, which can
	// destroy the answer before the client reads it: half-close, then
	// drain briefly, as net/http does.
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.CloseWrite()
		c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, c.nc, 256<<10)
	}
}

// validate applies the checks net/http's server makes beyond parsing:
// one valid Host for HTTP/1.1, header names that are tokens (they are
// copied byte for byte to the backend), HTTP/1.x only. Header values need
// no second look: http.ReadRequest already rejects control characters in
// them (the front tests send one).
func validate(r *http.Request) (int, string) {
	if r.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "only HTTP/1.x is served here"
	}
	// http.ReadRequest already moved Host into r.Host and rejects a
	// request with more than one.
	if r.ProtoAtLeast(1, 1) && r.Host == "" {
		return http.StatusBadRequest, "missing Host header"
	}
	if !validHost(r.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	for k := range r.Header {
		if !validName(k) { // ReadRequest lets a space inside a name through
			return http.StatusBadRequest, "invalid header name"
		}
	}
	if r.Method == http.MethodConnect {
		return http.StatusMethodNotAllowed, "CONNECT is not supported: this is a reverse proxy"
	}
	if e := r.Header["Expect"]; len(e) > 0 && !(len(e) == 1 && strings.EqualFold(e[0], "100-continue")) {
		return http.StatusExpectationFailed, "unsupported Expect"
	}
	return 0, ""
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		b := h[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte("\"<>\\^`{|}", b) >= 0 {
			return false
		}
	}
	return true
}

func hasToken(vv []string, token string) bool {
	for _, v := range vv {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// trackedBody records whether the request body was read to the end (so
// the conn can be reused) and sends 100 Continue before the first read
// when the client asked for it.
type trackedBody struct {
	rc  io.ReadCloser
	c   *conn // non-nil while a 100 Continue is owed
	eof bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	if b.c != nil {
		c := b.c
		b.c = nil
		if !c.resp.wroteHeader {
			c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := c.bw.Flush(); err != nil {
				return 0, err
			}
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *trackedBody) Close() error { return b.rc.Close() }
