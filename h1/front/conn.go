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

	"hits/h1"
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
	resp   response     // reused for every request on the conn
	req    *h1.Reusable // so is the request: see Server.Handler
	rdl    h1.Deadline  // read deadline last set; see setReadDeadline
	wdl    h1.Deadline  // write deadline last set; see Write
	expect bool         // a 100 Continue is owed before the body's first read
	idle   atomic.Bool  // waiting for a request; read by Shutdown

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
	c.bw = bufio.NewWriterSize(sendTimer{c}, 4096)
	c.resp.c = c
	c.resp.header = http.Header{}
	c.req = h1.NewReusable(c.ctx)
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
			c.readWithin(wait)
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
			c.readWithin(s.ReadHeaderTimeout)
		}
		// bufio may read up to a buffer beyond the headers; allow for it.
		if s.MaxHeaderBytes > 0 {
			c.lr.N = int64(s.MaxHeaderBytes) + 4096 - int64(c.br.Buffered())
		}
		req, err := h1.ReadRequest(c.ctx, c.br, h1.Options{MaxBodyBytes: s.MaxBodyBytes, Reuse: c.req})
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
		body, _ := req.Body.(*h1.Body)
		if body != nil {
			// Each read of the body waits at most BodyTimeout (set by the hook).
			c.expect = req.Header["Expect"] != nil
			body.SetHook(c)
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
		if w.closeAfter || (body != nil && !body.Done()) || s.shuttingDown() {
			// An unread body would be parsed as the next request.
			return
		}
	}
}

// readWithin moves the read deadline to timeout from now (zero: none)
// when it must.
func (c *conn) readWithin(timeout time.Duration) {
	var d time.Time
	if timeout > 0 {
		d = time.Now().Add(timeout)
	}
	if c.rdl.Move(d, timeout) {
		c.nc.SetReadDeadline(d)
	}
}

// BeforeBodyRead is the request body's hook: every read of it may wait
// at most BodyTimeout for the client, and the first one sends the 100
// Continue the client asked for.
func (c *conn) BeforeBodyRead(first bool) error {
	if first && c.expect {
		c.expect = false
		if !c.resp.wroteHeader {
			c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := c.bw.Flush(); err != nil {
				return err
			}
		}
	}
	c.readWithin(c.srv.BodyTimeout)
	return nil
}

// sendTimer is what the conn's buffered writer writes to: every write to
// the client may wait at most SendTimeout for it to read.
type sendTimer struct{ c *conn }

func (t sendTimer) Write(p []byte) (int, error) {
	c := t.c
	if c.srv.SendTimeout > 0 {
		if d := time.Now().Add(c.srv.SendTimeout); c.wdl.Move(d, c.srv.SendTimeout) {
			c.nc.SetWriteDeadline(d)
		}
	}
	return c.nc.Write(p)
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
	var he *h1.Error
	if errors.As(err, &he) {
		c.writeError(he.Status, he.Reason)
		return
	}
	c.writeError(http.StatusBadRequest, "malformed request")
}

// writeError answers with a short plain-text status and closes.
func (c *conn) writeError(status int, why string) {
	text := http.StatusText(status)
	body := text + ": " + why + "\n"
	d := time.Now().Add(time.Second)
	c.nc.SetWriteDeadline(d)
	c.wdl.Assume(d)
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

// validate refuses what the balancer does not serve, on top of what
// h1.ReadRequest already checked: CONNECT (this is not a forward proxy)
// and expectations other than 100-continue.
func validate(r *http.Request) (int, string) {
	if r.Method == http.MethodConnect {
		return http.StatusMethodNotAllowed, "CONNECT is not supported: this is a reverse proxy"
	}
	if e := r.Header["Expect"]; len(e) > 0 && !(len(e) == 1 && strings.EqualFold(e[0], "100-continue")) {
		return http.StatusExpectationFailed, "unsupported Expect"
	}
	return 0, ""
}
