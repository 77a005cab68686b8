// Package front is an HTTP/1.1 server: lb serves its proxy listener with
// it, and the app its public port.
//
// It drives an ordinary http.Handler like net/http's Server does, but per
// request it does only what those need: parse with h1.ReadRequest,
// validate, call the handler with a lean ResponseWriter, frame and flush.
// There is no per-request context, no background-read goroutine and no
// header cloning or sorting; pprof put those at about a fifth of the
// balancer's CPU (see docs/lb.md), and without them an app replica spends
// a fifth to a quarter less CPU per hit (docs/app.md). lb's admin listener
// and TLS listener, and the app's operations port, keep net/http.
package front

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves HTTP/1.1 with keep-alive. Zero values are documented per
// field. A Server must not be copied after first use.
type Server struct {
	// Handler answers every request; required. The *http.Request it is
	// given is reused for the conn's next request, so it must not be kept
	// (or read from another goroutine) after ServeHTTP returns; a hijacked
	// conn's last request is never reused.
	Handler http.Handler
	// The limits below come from the configuration (package config holds
	// the defaults); a zero value means no limit.

	// ReadHeaderTimeout bounds reading a request's headers from its first
	// byte.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no new request
	// for this long.
	IdleTimeout time.Duration
	// BodyTimeout bounds the wait for each read of a request body (nginx's
	// client_body_timeout); the handler's read then fails with an
	// *h1.BodyError with status 408.
	BodyTimeout time.Duration
	// SendTimeout bounds each write to the client (nginx's send_timeout).
	SendTimeout time.Duration
	// MaxHeaderBytes limits the request line and headers; larger gets 431.
	// Zero leaves only h1's own cap of 1 MiB per head.
	MaxHeaderBytes int
	// MaxBodyBytes limits a request body: a larger Content-Length gets 413
	// before the handler runs, a chunked body fails at the limit with an
	// *h1.BodyError with status 413.
	MaxBodyBytes int64
	// Logger receives malformed-request notes at debug level; if nil,
	// nothing is logged.
	Logger *slog.Logger

	mu      sync.Mutex // guards lns, conns, drained; taken once per conn, never per request
	lns     map[net.Listener]struct{}
	conns   map[*conn]struct{} // tracked until done or hijacked
	drained chan struct{}      // closed when closing and conns is empty

	// closing is set by Shutdown. It is an atomic, not under mu, because
	// every request checks it: a mutex shared by all conns made c=256
	// collapse in the benchmark.
	closing atomic.Bool

	date atomic.Pointer[cachedDate] // the Date header, refreshed once per second while in use

	initOnce sync.Once
	base     context.Context // requests' context; cancelled by a forced close
	cancel   context.CancelFunc
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = http.ErrServerClosed

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		s.lns = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.drained = make(chan struct{})
		s.base, s.cancel = context.WithCancel(context.Background())
	})
}

// Serve accepts connections on ln until Shutdown, which makes it return
// ErrServerClosed. Each connection is served on its own goroutine.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of file descriptors and the like: wait and retry, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Logger.Warn("accept", "error", err, "retry_in", backoff)
				t := time.NewTimer(backoff)
				<-t.C
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc)
		if !s.track(c) {
			nc.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// untrack forgets a finished or hijacked connection.
func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	if s.closing.Load() && len(s.conns) == 0 {
		close(s.drained)
	}
}

// setIdle marks c idle (waiting for a request) or active. It reports
// false when the server is shutting down and c should stop instead.
// Storing idle before loading closing, while Shutdown stores closing
// before loading idle, means one of the two always sees the other.
func (s *Server) setIdle(c *conn, idle bool) bool {
	c.idle.Store(idle)
	return !s.closing.Load()
}

// Shutdown stops accepting, closes idle connections and waits for active
// ones to finish their request. Hijacked connections are not waited for.
// When ctx ends first, every connection is closed, request contexts are
// cancelled and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	if !s.closing.Swap(true) {
		for ln := range s.lns {
			ln.Close()
		}
		if len(s.conns) == 0 {
			close(s.drained)
		}
	}
	for c := range s.conns {
		if c.idle.Load() {
			c.nc.Close()
		}
	}
	s.mu.Unlock()
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
		// Contexts end first, so a handler whose I/O the hooks below cut
		// sees why.
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
			c.forceClose()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

// shuttingDown reports whether Shutdown has begun.
func (s *Server) shuttingDown() bool { return s.closing.Load() }
