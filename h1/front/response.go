package front

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"hits/h1"
)

// response is the http.ResponseWriter for one request. It writes the
// status line and headers straight into the conn's buffer and frames the
// body by Content-Length. A body of unknown length is held back, up to
// bufferBeforeChunking bytes, as net/http's server does: if the handler
// ends within it, the answer goes out with its measured length; otherwise
// with chunked encoding (HTTP/1.1) or ended by closing the connection
// (HTTP/1.0). A flush ends the holding at once, so a stream is never held.
// It never sniffs a Content-Type: a proxy passes on what the backend said.
type response struct {
	c      *conn
	req    *http.Request
	header http.Header

	wroteHeader bool
	held        bool // head decided but not written: the length is still unknown
	measured    bool // length was measured by finish, not declared
	bodyAllowed bool
	chunked     bool
	closeAfter  bool
	hijacked    bool
	code        int
	length      int64 // Content-Length, -1 if none
	written     int64
	pend        []byte // the body held back; its array is kept for the conn's next answer
}

// bufferBeforeChunking is net/http's figure: a page or an error text fits,
// and a conn holds at most this much between answers.
const bufferBeforeChunking = 2048

func (w *response) reset(req *http.Request) {
	clear(w.header)
	*w = response{c: w.c, req: req, header: w.header, length: -1, pend: w.pend[:0]}
}

// Header is the response header map, written at WriteHeader.
func (w *response) Header() http.Header { return w.header }

// WriteHeader sends the status line and headers. Later calls are ignored.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader || w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	bw := w.c.bw
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Interim response: send it, the final one follows.
		writeStatus(bw, code)
		w.writeFields(bw)
		bw.WriteString("\r\n")
		return
	}
	w.wroteHeader = true
	w.code = code
	req := w.req
	h := w.header
	// 101 is the one 1xx that gets here: no body follows it either.
	w.bodyAllowed = code >= 200 && req.Method != http.MethodHead && code != http.StatusNoContent && code != http.StatusNotModified
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			delete(h, "Content-Length")
		}
	} else if len(cl) > 1 {
		delete(h, "Content-Length")
	}
	delete(h, "Transfer-Encoding")
	if h1.HasToken(h["Connection"], "close") || req.Close || w.c.srv.shuttingDown() {
		w.closeAfter = true
	}
	// A body not read to its end by now is not read at all (the proxy reads
	// it before its answer; other handlers ignore it), so serve closes the
	// conn after this answer: say so, or the client reuses the conn and its
	// next request meets EOF.
	if b, ok := req.Body.(*h1.Body); ok && !b.Done() {
		w.closeAfter = true
	}
	delete(h, "Connection")
	if w.bodyAllowed && w.length < 0 {
		w.held = true // see release
		return
	}
	w.writeHead()
}

// release ends the holding of a body of unknown length: it writes the
// head, framed by the body's length when the handler is done (complete),
// else by chunks (HTTP/1.1) or by closing the conn (HTTP/1.0), then the
// bytes held so far.
func (w *response) release(complete bool) error {
	w.held = false
	p := w.pend
	w.pend = p[:0]
	switch {
	case complete:
		w.length = int64(len(p))
		w.measured = true
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0: the body ends when the conn does
	}
	w.writeHead()
	if len(p) == 0 {
		return nil
	}
	_, err := w.writeBody(p)
	return err
}

// writeHead writes the status line and the header fields.
func (w *response) writeHead() {
	bw := w.c.bw
	writeStatus(bw, w.code)
	w.writeFields(bw)
	if _, ok := w.header["Date"]; !ok {
		h1.WriteField(bw, "Date", w.c.srv.httpDate())
	}
	if w.measured {
		b := append(bw.AvailableBuffer(), "Content-Length: "...)
		b = strconv.AppendInt(b, w.length, 10)
		bw.Write(append(b, "\r\n"...))
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case !w.req.ProtoAtLeast(1, 1):
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
}

func writeStatus(bw *bufio.Writer, code int) { h1.WriteStatusLine(bw, code) }

// writeFields writes the header map; a field that could split the
// response (a control byte in its value) is dropped.
func (w *response) writeFields(bw *bufio.Writer) { h1.WriteFields(bw, w.header) }

// Write sends body bytes, framing them as announced in the header.
func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed {
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.held {
		if len(w.pend)+len(p) <= bufferBeforeChunking {
			w.pend = append(w.pend, p...)
			return len(p), nil
		}
		if err := w.release(false); err != nil {
			return 0, err
		}
	}
	var err error
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		p = p[:w.length-w.written]
		err = http.ErrContentLength
	}
	if n, werr := w.writeBody(p); werr != nil {
		return n, werr
	}
	return len(p), err
}

// writeBody writes p framed as the head announced.
func (w *response) writeBody(p []byte) (int, error) {
	bw := w.c.bw
	var n int
	var err error
	if w.chunked {
		n, err = h1.WriteChunk(bw, p)
	} else {
		n, err = bw.Write(p)
	}
	w.written += int64(n)
	if err != nil {
		w.closeAfter = true
	}
	return n, err
}

// FlushError sends what is buffered to the client now.
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		if err := w.release(false); err != nil {
			return err
		}
	}
	return w.c.bw.Flush()
}

// Flush is FlushError for http.Flusher.
func (w *response) Flush() { w.FlushError() }

// Hijack hands the connection to the handler (WebSocket). The server
// forgets it: Shutdown no longer waits for it and it is not reused.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.held {
		// What the handler wrote goes out as it would have before the
		// conn changed hands.
		if err := w.release(false); err != nil {
			return nil, nil, err
		}
	}
	if err := w.c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	c := w.c
	c.nc.SetDeadline(time.Time{})
	c.rdl.Assume(time.Time{})
	c.wdl.Assume(time.Time{})
	c.bw.Reset(c.nc) // the new owner's writes are not the server's to time
	c.srv.untrack(c)
	return c.nc, bufio.NewReadWriter(c.br, c.bw), nil
}

// OnForcedClose arranges for f to run if Shutdown force-closes the conn
// (its context ends) while the handler is still working: the balancer
// uses it to cut a backend wait at once. It costs a mutex, not the
// allocations and parent-context lock of context.AfterFunc, per request.
// OnForcedClose(nil) removes the hook. It reports false when the conn
// was already force-closed: then a new f has run at once, and a removed
// one has run (or is running) and must be assumed to have had its effect.
func (w *response) OnForcedClose(f func()) bool {
	c := w.c
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if c.aborted {
		if f != nil {
			f()
		}
		return false
	}
	c.onAbort = f
	c.hooked = c.hooked || f != nil
	return true
}

// finish completes the response after the handler returned.
func (w *response) finish() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		if err := w.release(true); err != nil {
			return err
		}
	}
	if w.chunked {
		h1.WriteLastChunk(w.c.bw)
	}
	if w.bodyAllowed && w.length >= 0 && w.written < w.length {
		// The client expects more bytes than it will get: only closing
		// the conn tells it the response was cut short.
		w.closeAfter = true
	}
	return w.c.bw.Flush()
}

// cachedDate is the formatted Date header. A timer marks it stale at the
// next second boundary, so a response costs an atomic load, not a clock
// read (60-200 ns on the benchmark VM), and an idle server no wakeup.
type cachedDate struct {
	text  string
	stale atomic.Bool
}

func (s *Server) httpDate() string {
	d := s.date.Load()
	if d != nil && !d.stale.Load() {
		return d.text
	}
	now := time.Now()
	fresh := &cachedDate{text: now.UTC().Format(http.TimeFormat)}
	if s.date.CompareAndSwap(d, fresh) {
		time.AfterFunc(time.Second-time.Duration(now.Nanosecond()), func() { fresh.stale.Store(true) })
	}
	return fresh.text
}
