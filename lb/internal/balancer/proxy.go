package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errNoAvailableServer means no backend is healthy; it becomes a 503.
var errNoAvailableServer = errors.New("no available server")

// errBackendTimeout means the backend did not answer in time; a 504.
var errBackendTimeout = errors.New("backend timed out")

// aLongTimeAgo is a deadline that makes blocked conn I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// Selector picks one backend out of the candidates, which are healthy and
// sorted by address. It returns nil only for an empty slice.
type Selector interface {
	Select(candidates []*Backend) *Backend
}

// forcedCloser is what the front server's ResponseWriter offers: f runs
// if the client conn is force-closed before OnForcedClose(nil) removes
// it, which reports whether f ran.
type forcedCloser interface {
	OnForcedClose(f func()) bool
}

// ProxyOptions configures a Proxy. Zero values are documented per field.
type ProxyOptions struct {
	// Selector is the balancing policy; required.
	Selector Selector
	// Sticky pins clients to backends with a signed cookie; if nil,
	// requests are not pinned.
	Sticky *Sticky
	// MaxAttempts is how many distinct backends one request may try; if
	// zero, 3.
	MaxAttempts int
	// NoRetryAfterSend, if true, never resends a request that may have
	// reached a backend, whatever its method: only dial errors, a reused
	// conn seen closed before use and a write that sent nothing are
	// retried. For backends whose GET has side effects (the hits app
	// counts a hit). If false, idempotent requests without a body are
	// also resent after a failure with no response byte.
	NoRetryAfterSend bool
	// TrustedProxies are the peers whose X-Forwarded-* headers are kept;
	// if empty, every client-sent one is dropped.
	TrustedProxies []netip.Prefix
	// ResponseTimeout bounds the time from sending a request to the
	// backend's response headers; if zero, 60s.
	ResponseTimeout time.Duration
	// AccessLog receives one line per request; if nil, there is none.
	AccessLog *slog.Logger
	// Now is the clock for access-log durations; if nil, time.Now.
	Now func() time.Time
}

// Proxy is the balancer's http.Handler: it picks a backend per request and
// forwards over its own lean HTTP/1.1 client with pooled keep-alive conns.
type Proxy struct {
	pool *Pool
	opts ProxyOptions
	bufs sync.Pool // *[]byte of bufSize, for copying bodies

	upgrades       sync.WaitGroup  // spliced WebSocket sessions
	stopUpgrades   context.Context // cancelled by CloseUpgrades
	cancelUpgrades context.CancelFunc
}

const bufSize = 32 << 10

// NewProxy returns a handler that balances over pool.
func NewProxy(pool *Pool, opts ProxyOptions) (*Proxy, error) {
	if opts.Selector == nil {
		return nil, errors.New("new proxy: a selector is required")
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 3
	}
	if opts.ResponseTimeout <= 0 {
		opts.ResponseTimeout = 60 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Proxy{pool: pool, opts: opts}
	p.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	p.stopUpgrades, p.cancelUpgrades = context.WithCancel(context.Background())
	return p, nil
}

// CloseUpgrades ends spliced WebSocket sessions (which http.Server.Shutdown
// does not track) and waits for their goroutines.
func (p *Proxy) CloseUpgrades() {
	p.cancelUpgrades()
	p.upgrades.Wait()
}

// outcome is what one request ended as, for the access log.
type outcome struct {
	status   int
	backend  string
	attempts int
	err      error
}

// ServeHTTP balances one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var start time.Time
	if p.opts.AccessLog != nil {
		start = p.opts.Now()
	}
	var o outcome
	if isUpgrade(r) {
		o = p.serveUpgrade(w, r)
	} else {
		o = p.serve(w, r)
	}
	if o.err != nil && o.status == 0 {
		o.status = writeError(w, r, o.err)
	}
	if p.opts.AccessLog != nil {
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("uri", r.RequestURI),
			slog.Int("status", o.status), slog.String("backend", o.backend),
			slog.Int("attempts", o.attempts), slog.String("client", r.RemoteAddr),
			slog.Duration("duration", p.opts.Now().Sub(start)),
		}
		if o.err != nil {
			attrs = append(attrs, slog.String("error", o.err.Error()))
		}
		p.opts.AccessLog.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	}
}

// pick chooses the backend for one attempt: the sticky one while it is
// healthy, else the selector's choice among those not yet tried.
func (p *Proxy) pick(pinned string, tried []*Backend) *Backend {
	s := p.pool.snapshot()
	if pinned != "" {
		if b := s.byID[pinned]; b != nil && !contains(tried, b) {
			return b
		}
	}
	if len(tried) == 0 {
		return p.opts.Selector.Select(s.healthy)
	}
	rest := make([]*Backend, 0, len(s.healthy))
	for _, b := range s.healthy {
		if !contains(tried, b) {
			rest = append(rest, b)
		}
	}
	return p.opts.Selector.Select(rest)
}

func contains(bs []*Backend, b *Backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) outcome {
	f := forwardedFor(r, p.opts.TrustedProxies)
	var body *trackedBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &trackedBody{r: r.Body}
	}
	pinned := p.opts.Sticky.pinned(r)
	// Only a request without a body can be replayed as is, and only when
	// the backends agree that idempotent methods are free of side effects.
	replayable := body == nil && idempotent(r) && !p.opts.NoRetryAfterSend
	var triedBuf [4]*Backend
	tried := triedBuf[:0]
	var o outcome
	for len(tried) < p.opts.MaxAttempts {
		b := p.pick(pinned, tried)
		if b == nil {
			if o.err == nil {
				o.err = errNoAvailableServer
			}
			return o
		}
		tried = append(tried, b)
		o.attempts++
		o.backend = b.addr
		next, status, err := p.roundTrip(w, r, b, &f, body, replayable, pinned, false)
		if next == retryFresh {
			// The backend closed an idle conn as we reused it: not its
			// fault, so try it once more on a new connection.
			o.attempts++
			next, status, err = p.roundTrip(w, r, b, &f, body, replayable, pinned, true)
		}
		o.status, o.err = status, err
		if err == nil || next == done {
			return o
		}
	}
	return o
}

// next says what serve does after one attempt.
type next int

const (
	done       next = iota // answered, or failed in a way that must not be retried
	retryOther             // safe to resend, on another backend
	retryFresh             // safe to resend; the reused conn was stale, the backend may be fine
)

// roundTrip sends r to b and, once the backend answered, copies the
// response to w. It asks for a retry only while nothing has been written
// to w and resending is safe. fresh skips idle conns.
func (p *Proxy) roundTrip(w http.ResponseWriter, r *http.Request, b *Backend, f *forwarded, body *trackedBody, replayable bool, pinned string, fresh bool) (nx next, status int, err error) {
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	b.requests.Add(1)

	// A request that must not run twice only goes on a conn known to be open.
	c, reused, err := b.conns.get(!replayable, fresh)
	if err != nil {
		p.pool.connFailed(b)
		return retryOther, 0, fmt.Errorf("dial %s: %w", b.addr, err)
	}
	// When the client side is force-closed (front: at shutdown) or its
	// context ends (net/http: the client went away), the backend I/O is
	// cut at once. Front offers a hook that costs a mutex; elsewhere
	// context.AfterFunc does it for three allocations and a lock on the
	// parent context.
	fc, hooked := w.(forcedCloser)
	var stop func() bool
	if hooked {
		fc.OnForcedClose(c.cut)
	} else {
		stop = context.AfterFunc(r.Context(), c.cut)
	}
	keep := false
	defer func() {
		var intact bool // the hook did not run, so the deadline is ours
		if hooked {
			intact = fc.OnForcedClose(nil)
		} else {
			intact = stop()
		}
		// A conn whose deadline the hook may have moved is not reused.
		if intact && keep {
			b.conns.put(c)
		} else {
			c.Close()
		}
	}()
	c.setDeadline(time.Now().Add(p.opts.ResponseTimeout))

	var rb io.Reader
	if body != nil {
		rb = body
	}
	werr := writeRequest(c.bw, r, f, rb, false)
	if werr != nil && c.written == 0 && (body == nil || !body.read) {
		// Nothing reached the backend: safe to resend, whatever the method.
		if reused {
			return retryFresh, 0, fmt.Errorf("send to %s on a reused conn: %w", b.addr, werr)
		}
		p.pool.connFailed(b)
		return retryOther, 0, fmt.Errorf("send to %s: %w", b.addr, werr)
	}
	// Wait for the first byte; an error here means no response byte came.
	if _, perr := c.br.Peek(1); perr != nil || werr != nil {
		if r.Context().Err() != nil {
			return done, 499, fmt.Errorf("client went away: %w", r.Context().Err())
		}
		if werr == nil {
			werr = perr
		}
		if isTimeout(werr) {
			p.pool.connFailed(b)
			return done, 0, fmt.Errorf("%w: %s: %v", errBackendTimeout, b.addr, werr)
		}
		err := fmt.Errorf("read from %s: %w", b.addr, werr)
		if reused {
			// The backend closed a kept-alive conn under us: its process
			// is closing idle conns or has died. Its other idle conns were
			// opened to the same process, so drop them rather than lose
			// more requests to the same race; the next ones dial, and a
			// failed dial is always safe to retry elsewhere.
			b.conns.closeIdle()
		}
		switch {
		case !replayable:
			if !reused {
				p.pool.connFailed(b)
			}
			return done, 0, err
		case reused:
			// A reused conn that dies here is the keep-alive race, not a sick backend.
			return retryFresh, 0, err
		default:
			p.pool.connFailed(b)
			return retryOther, 0, err
		}
	}
	h := w.Header()
	resp, err := readResponse(c.br, h, r.Method, &c.fixed)
	if err != nil {
		clear(h) // partial fields must not leak into the error page
		p.pool.connFailed(b)
		return done, 0, fmt.Errorf("read response from %s: %w", b.addr, err)
	}
	p.pool.connOK(b)
	if p.opts.Sticky != nil && b.id != pinned {
		http.SetCookie(w, p.opts.Sticky.cookie(b.id))
	}
	w.WriteHeader(resp.status)
	if err := p.copyBody(w, resp.body, resp.length, resp.stream, c); err != nil {
		// The status line is gone; all that is left is to cut the client
		// off so it sees a truncated response rather than a complete one.
		abort(w)
		return done, resp.status, fmt.Errorf("copy response from %s: %w", b.addr, err)
	}
	keep = !resp.close
	return done, resp.status, nil
}

// copyBody streams a response body to w, flushing after every read when
// the response is a stream (unknown length or server-sent events).
func (p *Proxy) copyBody(w http.ResponseWriter, body io.Reader, length int64, stream bool, c *backendConn) error {
	if body == nil || body == http.NoBody || length == 0 {
		return nil
	}
	var rc *http.ResponseController
	if stream {
		rc = http.NewResponseController(w)
	}
	if stream || length > bufSize {
		// The response deadline covered the wait for the headers; a stream
		// or a large download may rightly take longer. A small body keeps
		// it: clearing would cost a timer update per request for nothing.
		if err := c.setDeadline(time.Time{}); err != nil {
			return err
		}
	}
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if stream {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// abort closes the client connection mid-response.
func abort(w http.ResponseWriter) {
	if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
		c.Close()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeError is the one place an error becomes a status and a short page.
// Internals (addresses, causes) go to the log, never to the client.
func writeError(w http.ResponseWriter, r *http.Request, err error) int {
	status, title := http.StatusBadGateway, "Bad gateway: the application did not answer."
	switch {
	case errors.Is(err, errNoAvailableServer):
		status, title = http.StatusServiceUnavailable, "Service unavailable: no healthy application server right now. Try again in a few seconds."
	case errors.Is(err, errBackendTimeout):
		status, title = http.StatusGatewayTimeout, "Gateway timeout: the application took too long to answer."
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", "2")
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<!doctype html><title>%d</title><h1>%d</h1><p>%s</p>\n", status, status, title)
		return status
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, strconv.Itoa(status)+" "+title+"\n")
	return status
}
