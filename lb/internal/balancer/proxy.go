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
	"sync/atomic"
	"time"

	"hits/h1"
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
	// MaxAttempts is how many distinct backends one request may try;
	// required, as is ResponseTimeout (package config holds the defaults).
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
	// ResponseTimeout bounds the time from the end of sending a request to
	// the backend's response headers, and each write to the backend.
	ResponseTimeout time.Duration
	// TunnelIdleTimeout closes an upgraded (WebSocket) tunnel that carried
	// no byte either way for this long; zero: never.
	TunnelIdleTimeout time.Duration
	// AccessLog receives one line per request; if nil, there is none.
	AccessLog *slog.Logger
	// Now is the clock for durations, the idle pool's expiry and backend
	// deadlines; if nil, time.Now. Deadlines are set from it, so it must
	// follow the wall clock.
	Now func() time.Time
	// DebugHeaders adds X-LB-Backend (the replica's name) and X-LB-Reason
	// (why it was chosen) to every proxied response and to the request the
	// backend gets. Client-sent ones are dropped either way.
	DebugHeaders bool
}

// Proxy is the balancer's http.Handler: it picks a backend per request and
// forwards over its own lean HTTP/1.1 client with pooled keep-alive conns.
type Proxy struct {
	pool *Pool
	opts ProxyOptions
	bufs sync.Pool // *[]byte of bufSize, for copying bodies

	policy    Reason        // what the selector's choices are reported as
	decisions decisions     // the latest requests' routing; counts requests
	errors5xx atomic.Uint64 // client requests answered 5xx

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
	if opts.MaxAttempts <= 0 || opts.ResponseTimeout <= 0 {
		return nil, errors.New("new proxy: MaxAttempts and ResponseTimeout must be positive")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Proxy{pool: pool, opts: opts, policy: policyReason(opts.Selector)}
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
	be       *Backend // the last backend tried, for the decision feed
	why      Reason   // why the last attempt went to be
	// start and end bracket the attempts: two clock reads per request in
	// all, which serve both the access log and the latency figures.
	start, end time.Time
}

// ServeHTTP balances one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o := p.serve(w, r)
	if o.err != nil && o.status == 0 {
		o.status = writeError(w, r, o.err)
	}
	if o.start.IsZero() { // no attempt was made
		o.start = p.opts.Now()
		o.end = o.start
	}
	if o.status >= 500 {
		p.errors5xx.Add(1)
	}
	p.decisions.record(o.end, o.end.Sub(o.start), o.be, o.why, o.status)
	if p.opts.AccessLog != nil {
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("uri", r.RequestURI),
			slog.Int("status", o.status), slog.String("backend", o.backend),
			slog.Int("attempts", o.attempts), slog.String("client", r.RemoteAddr),
			slog.Duration("duration", o.end.Sub(o.start)),
		}
		if o.err != nil {
			attrs = append(attrs, slog.String("error", o.err.Error()))
		}
		p.opts.AccessLog.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	}
	if errors.Is(o.err, errResetStream) {
		// net/http resets an HTTP/2 stream on this panic, so the client
		// sees an error instead of a short body that looks complete.
		panic(http.ErrAbortHandler)
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

// reason says why the first attempt went to b: its cookie, or the policy.
func (p *Proxy) reason(pinned string, b *Backend) Reason {
	if pinned != "" && b.id == pinned {
		return ReasonSticky
	}
	return p.policy
}

func contains(bs []*Backend, b *Backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

// serve runs attempts until one answers or next says stop.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) outcome {
	a := attempt{p: p, w: w, r: r, f: forwardedFor(r, p.opts.TrustedProxies), upgrade: isUpgrade(r)}
	if r.Body != nil && r.Body != http.NoBody {
		a.body = &clientBody{r: r.Body}
	}
	a.pinned = p.opts.Sticky.pinned(r)
	// Only a request without a body can be replayed as is, and only when
	// the backends agree that idempotent methods are free of side effects.
	// A protocol switch is never replayed.
	a.replayable = a.body == nil && !a.upgrade && idempotent(r) && !p.opts.NoRetryAfterSend
	var triedBuf [4]*Backend
	tried := triedBuf[:0]
	var o outcome
	for len(tried) < p.opts.MaxAttempts {
		b := p.pick(a.pinned, tried)
		if b == nil {
			if o.err == nil {
				o.err = errNoAvailableServer
			}
			return o
		}
		tried = append(tried, b)
		if len(tried) == 1 {
			o.why = p.reason(a.pinned, b)
		}
		fresh := false
		for {
			o.attempts++
			if o.be != nil {
				o.be.obs.retries.Add(1) // the attempt before this one
			}
			o.backend, o.be = b.addr, b
			a.f.route(p.opts.DebugHeaders, b, o.why)
			if o.start.IsZero() {
				o.start = p.opts.Now()
				o.end = o.start
			}
			res := a.try(b, fresh, o.end)
			o.lap(p, b, res)
			o.status, o.err = res.status, res.err
			v := next(res, a.replayable)
			if v.retry != retryNone {
				o.why = retryReason(res, v)
			}
			if v.blame {
				p.pool.connFailed(b)
			} else if res.err == nil {
				p.pool.connOK(b)
			}
			if v.dropIdle {
				b.conns.closeIdle()
			}
			if v.retry == retryFresh && !fresh {
				fresh = true
				continue
			}
			if v.retry == retryNone {
				return o
			}
			break // retryOther: the next backend
		}
	}
	return o
}

// errResetStream marks a response cut off mid-body on a connection that
// cannot be hijacked (an HTTP/2 stream): ServeHTTP resets the stream.
var errResetStream = errors.New("response truncated")

// abort closes the client connection mid-response, and reports whether it
// could: an HTTP/2 stream cannot be hijacked.
func abort(w http.ResponseWriter) bool {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeError is the one place an error becomes a status and a short page.
// Internals (addresses, causes) go to the log, never to the client.
func writeError(w http.ResponseWriter, r *http.Request, err error) int {
	status, title := http.StatusBadGateway, "Bad gateway: the application did not answer."
	var be *h1.BodyError
	switch {
	case errors.As(err, &be):
		// The client's body failed: the conn cannot be trusted to be at
		// the next request, so it closes after this answer.
		status = be.Status
		title = map[int]string{
			http.StatusRequestTimeout:        "Request timeout: the request body stopped before its end.",
			http.StatusRequestEntityTooLarge: "Request entity too large: the request body is over the limit.",
		}[status]
		if title == "" {
			title = "Bad request: the request body was malformed or incomplete."
		}
		w.Header().Set("Connection", "close")
	case errors.Is(err, errNoAvailableServer):
		status, title = http.StatusServiceUnavailable, "Service unavailable: no healthy application server right now. Try again in a few seconds."
	case errors.Is(err, errBackendTimeout):
		status, title = http.StatusGatewayTimeout, "Gateway timeout: the application took too long to answer."
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if be == nil {
		h.Set("Retry-After", "2")
	}
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
