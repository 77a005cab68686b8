package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"hits/h1"
)

// stage is how far one attempt got before it ended.
type stage int

const (
	stageDial  stage = iota // getting a conn
	stageSend               // writing the request (and the client's body)
	stageAwait              // waiting for the first byte of the answer
	stageHead               // reading the answer's head
	stageRelay              // copying the answer to the client: the status is sent
)

func (s stage) String() string {
	return [...]string{"dial", "send", "await", "head", "relay"}[s]
}

// result is what one attempt found out. next decides from it alone.
type result struct {
	stage  stage
	err    error // nil: answered
	status int   // status passed to the client, or 499 when it went away
	reused bool  // the conn was a kept-alive one
	sent   bool  // some of the request may have reached the backend
	// client: the client caused the failure (its body was malformed, too
	// large, stalled or cut; it went away; it stopped reading).
	client  bool
	timeout bool      // the backend did not answer in time
	end     time.Time // when the attempt ended; zero if it ended before it had a conn
}

// retry is where a failed request goes next.
type retry int

const (
	retryNone  retry = iota // answered, or failed in a way that must not be retried
	retryFresh              // the same backend once more on a new conn: a reused conn was stale
	retryOther              // another backend
)

// verdict is what the proxy does after an attempt.
type verdict struct {
	retry    retry
	blame    bool // count a failure against the backend (passive ejection)
	dropIdle bool // the backend's other idle conns are suspect: close them
}

// next decides what follows an attempt: whether the backend is blamed,
// whether the request is tried again and where. replayable says the
// request may be resent after it may have reached a backend. Only what
// the backend did counts against it; a failure the client caused is never
// retried and never blamed.
func next(r result, replayable bool) verdict {
	switch {
	case r.err == nil || r.client:
		return verdict{}
	case r.stage == stageDial:
		return verdict{retry: retryOther, blame: true} // nothing sent: always safe
	case r.stage == stageSend && !r.sent:
		if r.reused {
			// The backend closed an idle conn as we reused it: not its
			// fault, so try it once more on a new conn.
			return verdict{retry: retryFresh}
		}
		return verdict{retry: retryOther, blame: true}
	case r.timeout:
		return verdict{blame: true} // a slow backend gets its 504, not a second request
	case r.stage <= stageAwait:
		// No byte of an answer came. On a reused conn that is the
		// keep-alive race: its process is closing idle conns or died,
		// and its other idle conns were opened to the same process.
		switch {
		case !replayable:
			return verdict{blame: !r.reused, dropIdle: r.reused}
		case r.reused:
			return verdict{retry: retryFresh, dropIdle: true}
		default:
			return verdict{retry: retryOther, blame: true}
		}
	default:
		// A malformed answer, or one cut short after its status went out.
		return verdict{blame: true}
	}
}

// attempt is one request on its way through the proxy, tried on one
// backend after another.
type attempt struct {
	p          *Proxy
	w          http.ResponseWriter
	r          *http.Request
	f          forwarded
	body       *clientBody // nil without a body
	upgrade    bool        // a protocol switch: fresh conn, spliced on 101
	replayable bool
	pinned     string
}

// try sends the request to b and, once b answered, relays the answer to
// the client. fresh skips idle conns. start is when the attempt began
// (the proxy's clock reading): the idle pool and the backend deadline use
// it, and the attempt reads the clock once more, at its end (res.end).
func (a *attempt) try(b *Backend, fresh bool, start time.Time) (res result) {
	p := a.p
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	b.requests.Add(1)

	// A request that must not run twice only goes on a conn known to be open.
	c, reused, err := b.conns.get(!a.replayable, fresh || a.upgrade, start)
	if err != nil {
		return result{stage: stageDial, err: fmt.Errorf("dial %s: %w", b.addr, err)}
	}
	res.reused = reused
	// When the client side is force-closed (front: at shutdown) or its
	// context ends (net/http: the client went away), the backend I/O is
	// cut at once. Front offers a hook that costs a mutex; elsewhere
	// context.AfterFunc does it for three allocations and a lock on the
	// parent context.
	fc, hooked := a.w.(forcedCloser)
	var stop func() bool
	if hooked {
		fc.OnForcedClose(c.cut)
	} else {
		stop = context.AfterFunc(a.r.Context(), c.cut)
	}
	keep := false
	defer func() {
		var intact bool // the hook did not run, so the deadline is ours
		if hooked {
			intact = fc.OnForcedClose(nil)
		} else {
			intact = stop()
		}
		res.end = p.opts.Now()
		// A conn whose deadline the hook may have moved is not reused.
		if intact && keep {
			b.conns.put(c, res.end)
		} else {
			c.Close()
		}
	}()
	c.setDeadline(start, p.opts.ResponseTimeout)

	res.stage = stageSend
	var rb io.Reader
	if a.body != nil {
		rb = a.body
	}
	werr := writeRequest(c.bw, a.r, &a.f, rb, a.upgrade)
	res.sent = c.written > 0 || (a.body != nil && a.body.n > 0)
	if a.body != nil && a.body.err != nil {
		// The client's body failed, not the backend: the conn carries
		// part of a request and is dropped.
		res.client = true
		res.err = a.body.err
		return res
	}
	if werr != nil && !res.sent {
		res.err = fmt.Errorf("send to %s: %w", b.addr, werr)
		return res
	}
	if a.body != nil && werr == nil {
		// The upload may have taken a while; the backend's time to answer
		// starts now.
		c.setDeadline(time.Time{}, p.opts.ResponseTimeout)
	}
	// Wait for the first byte; an error here means no response byte came.
	res.stage = stageAwait
	if _, perr := c.br.Peek(1); perr != nil || werr != nil {
		if ctxErr := a.r.Context().Err(); ctxErr != nil {
			res.client, res.status = true, 499
			res.err = fmt.Errorf("client went away: %w", ctxErr)
			return res
		}
		if werr == nil {
			werr = perr
		}
		res.timeout = isTimeout(werr)
		if res.timeout {
			res.err = fmt.Errorf("%w: %s: %v", errBackendTimeout, b.addr, werr)
		} else {
			res.err = fmt.Errorf("read from %s: %w", b.addr, werr)
		}
		return res
	}
	res.stage = stageHead
	h := a.w.Header()
	resp, err := h1.ReadResponse(c.br, h, a.r.Method, a.upgrade, &c.fixed)
	if err != nil {
		clear(h) // partial fields must not leak into the error page
		res.timeout = isTimeout(err)
		if res.timeout {
			err = fmt.Errorf("%w: %v", errBackendTimeout, err)
		}
		res.err = fmt.Errorf("read response from %s: %w", b.addr, err)
		return res
	}
	res.stage = stageRelay
	res.status = resp.Status
	if p.opts.Sticky != nil && b.id != a.pinned {
		http.SetCookie(a.w, p.opts.Sticky.cookie(b.id, a.r.TLS != nil))
	}
	setDebugHeaders(h, &a.f)
	if resp.Status == http.StatusSwitchingProtocols {
		// The conn now carries another protocol: it is the tunnel's, and
		// closed when the tunnel ends.
		res.err = p.tunnel(a.w, c, resp.Upgrade)
		res.client = res.err != nil
		return res
	}
	a.w.WriteHeader(resp.Status)
	if clientSide, cerr := p.copyBody(a.w, resp.Body, resp.Length, resp.Stream, c); cerr != nil {
		// The status line is gone; all that is left is to cut the client
		// off so it sees a truncated response rather than a complete one.
		if !abort(a.w) {
			cerr = errors.Join(errResetStream, cerr)
		}
		res.client = clientSide
		res.err = fmt.Errorf("copy response from %s: %w", b.addr, cerr)
		return res
	}
	// Reuse the conn only when the answer ended exactly where its framing
	// said: a byte already buffered past it (after a Content-Length body
	// or the last chunk, or a body on a 204/304/HEAD answer) would be read
	// as the next client's answer.
	keep = !resp.Close && c.br.Buffered() == 0
	return res
}

// copyBody streams a response body to w, flushing after every read when
// the response is a stream (unknown length or server-sent events). On
// failure it says whether writing to the client failed (its side) rather
// than reading from the backend.
func (p *Proxy) copyBody(w http.ResponseWriter, body io.Reader, length int64, stream bool, c *backendConn) (clientSide bool, err error) {
	if body == nil || length == 0 {
		return false, nil
	}
	var rc *http.ResponseController
	if stream {
		rc = http.NewResponseController(w)
	}
	if stream || length > bufSize {
		// The response deadline covered the wait for the headers; a stream
		// or a large download may rightly take longer. A small body keeps
		// it: clearing would cost a timer update per request for nothing.
		if err := c.setDeadline(time.Time{}, 0); err != nil {
			return false, err
		}
	}
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return true, werr
			}
			if stream {
				if err := rc.Flush(); err != nil {
					return true, err
				}
			}
		}
		if rerr == io.EOF {
			return false, nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}

// clientBody is the request body on its way to a backend. It records
// whether any of it was read (a retry would then send a different,
// truncated body) and keeps the client's error, so a body the client
// broke is never mistaken for a backend that failed.
type clientBody struct {
	r   io.Reader
	n   int64
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF {
		b.err = clientBodyError(err)
		err = b.err
	}
	return n, err
}

// clientBodyError gives a failed read of a request body the status the
// client gets: the front server says it with an h1.BodyError; under
// net/http (HTTP/2) a limit is a 413, a timeout or a body cut short a
// 408, the rest a 400.
func clientBodyError(err error) error {
	var be *h1.BodyError
	if errors.As(err, &be) {
		return err
	}
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		return &h1.BodyError{Status: http.StatusRequestEntityTooLarge, Err: err}
	case isTimeout(err), errors.Is(err, io.ErrUnexpectedEOF):
		return &h1.BodyError{Status: http.StatusRequestTimeout, Err: err}
	default:
		return &h1.BodyError{Status: http.StatusBadRequest, Err: err}
	}
}
