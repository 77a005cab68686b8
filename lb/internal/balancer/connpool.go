package balancer

import (
	"bufio"
	"net"
	"sync"
	"time"

	"hits/h1"
)

// connPool keeps idle keep-alive connections to one backend. It is a LIFO
// stack: the most recently used conn is the least likely to have been
// closed by the backend's idle timeout.
type connPool struct {
	addr        string
	dial        func(network, addr string, timeout time.Duration) (net.Conn, error)
	dialTimeout time.Duration
	idleTimeout time.Duration
	maxIdle     int

	mu     sync.Mutex // guards idle and closed
	idle   []*backendConn
	closed bool
}

// backendConn is one HTTP/1.1 connection to a backend with its buffers.
type backendConn struct {
	net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	written   int64         // bytes the kernel accepted since the last reset; 0 means nothing reached the backend
	deadline  h1.Deadline   // deadline last set through setDeadline
	cut       func()        // makes blocked I/O return at once; made once per conn, not per request
	fixed     h1.LengthBody // body reader for Content-Length responses, reused
}

// Write counts what the kernel accepted, so a failed request can tell
// whether any of it may have reached the backend (see written). The
// buffered writer flushes through it.
func (c *backendConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written += int64(n)
	return n, err
}

// setDeadline moves the conn's deadline to timeout from now (zero: none)
// only when it must: each move is a runtime timer update paid per request
// on a reused conn (see h1.Deadline). now is the caller's latest clock
// reading, so that a request reads the clock twice in all, not once per
// use (a read costs 60-200 ns on the benchmark VM); zero: read it here.
func (c *backendConn) setDeadline(now time.Time, timeout time.Duration) error {
	var d time.Time
	if timeout > 0 {
		if now.IsZero() {
			now = time.Now()
		}
		d = now.Add(timeout)
	}
	if !c.deadline.Move(d, timeout) {
		return nil
	}
	return c.Conn.SetDeadline(d)
}

func newConnPool(addr string, dial func(string, string, time.Duration) (net.Conn, error), dialTimeout, idleTimeout time.Duration, maxIdle int) *connPool {
	return &connPool{addr: addr, dial: dial, dialTimeout: dialTimeout, idleTimeout: idleTimeout, maxIdle: maxIdle}
}

// get returns an idle conn (reused=true) or a new one; fresh always
// dials. With checkAlive it peeks each idle conn first and skips those the
// backend already closed, which keeps the keep-alive race away from
// requests that cannot be retried. now is the time of the request: idle
// conns are expired against it (the pool reads no clock of its own).
func (p *connPool) get(checkAlive, fresh bool, now time.Time) (c *backendConn, reused bool, err error) {
	for !fresh {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		var stale []*backendConn
		if now.Sub(c.idleSince) >= p.idleTimeout {
			// LIFO: everything below is older, so expired too.
			stale = append(p.idle, c)
			p.idle = nil
		}
		p.mu.Unlock()
		if stale != nil {
			for _, s := range stale {
				s.Close()
			}
			break
		}
		if checkAlive && !alive(c.Conn) {
			c.Close()
			continue
		}
		c.written = 0
		return c, true, nil
	}
	nc, err := p.dial("tcp", p.addr, p.dialTimeout)
	if err != nil {
		return nil, false, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return newBackendConn(nc), false, nil
}

// newBackendConn wraps a new conn. (In get, a closure over the named
// result would move that variable to the heap on every call.)
func newBackendConn(nc net.Conn) *backendConn {
	c := &backendConn{Conn: nc}
	c.cut = func() { c.Conn.SetDeadline(aLongTimeAgo) }
	c.br = bufio.NewReaderSize(c, 4096)
	c.bw = bufio.NewWriterSize(c, 4096)
	return c
}

// put returns a conn whose last response was read completely and allowed
// keep-alive, at now.
func (p *connPool) put(c *backendConn, now time.Time) {
	c.idleSince = now
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	// Expire from the bottom (oldest) so conns left over after a burst do
	// not outlive the backend's idle timeout.
	var old *backendConn
	if first := p.idle[0]; first != c && now.Sub(first.idleSince) >= p.idleTimeout {
		old = first
		p.idle = append(p.idle[:0], p.idle[1:]...)
	}
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// idleCount is the number of idle conns, for status.
func (p *connPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// closeIdle closes the idle conns but keeps the pool usable.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// close closes the idle conns and makes put close conns from now on.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeIdle()
}
