// Package proxyheader reads PROXY protocol headers (v1 and v2) on accepted
// connections, with an explicit policy per source: peers in the trusted
// set must send one, and its source address becomes the connection's
// RemoteAddr; anyone else who sends one is refused, while their plain
// connections pass through unchanged. Parsing is github.com/pires/go-proxyproto.
package proxyheader

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// Options configures a Listener. Zero values are documented per field.
type Options struct {
	// Trusted are the peers whose connections must begin with a PROXY
	// header; required (a Listener with none would only refuse headers).
	Trusted []netip.Prefix
	// HeaderTimeout bounds the wait for a connection's first bytes; if
	// zero, 10s. A trusted peer that sends nothing in time is closed; an
	// untrusted one is passed on to the server, whose own timeouts apply.
	HeaderTimeout time.Duration
	// Logger receives one line per refused connection; if nil, none.
	Logger *slog.Logger
}

// Listener wraps a net.Listener. Reading the header waits for the peer, so
// it is done on a goroutine per connection before Accept returns it: a
// server that asks for RemoteAddr in its accept loop (net/http does) is
// never blocked by one slow client.
type Listener struct {
	inner net.Listener
	opts  Options

	ready  chan net.Conn // connections whose header has been read
	failed chan error    // the inner Accept's terminal error
	done   chan struct{} // closed by Close
	once   sync.Once     // guards closing done
	wg     sync.WaitGroup
}

// New starts accepting on inner. Close stops it and waits for the
// goroutines it started.
func New(inner net.Listener, opts Options) (*Listener, error) {
	if len(opts.Trusted) == 0 {
		return nil, errors.New("proxy header listener: no trusted sources")
	}
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = 10 * time.Second
	}
	l := &Listener{
		inner:  inner,
		opts:   opts,
		ready:  make(chan net.Conn),
		failed: make(chan error, 1),
		done:   make(chan struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Accept returns the next connection whose PROXY header (or its absence)
// has been checked.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.failed:
		l.failed <- err // every later Accept reports it too
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, closes connections still being checked and waits
// for the goroutines.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.wg.Wait()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as net/http does: EMFILE and the like pass
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-l.done:
					return
				}
			}
			l.failed <- err
			return
		}
		delay = 0
		l.wg.Add(1)
		go l.check(c)
	}
}

// check reads the header (or sees there is none) and hands the
// connection to Accept, or closes it.
func (l *Listener) check(c net.Conn) {
	defer l.wg.Done()
	policy, peer := proxyproto.REJECT, addrOf(c.RemoteAddr())
	for _, p := range l.opts.Trusted {
		if p.Contains(peer) {
			policy = proxyproto.REQUIRE
			break
		}
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(policy), proxyproto.SetReadHeaderTimeout(l.opts.HeaderTimeout))
	// Closing the conn at Close unblocks the header read.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-l.done:
			c.Close()
		case <-stop:
		}
	}()
	// A zero-length Read runs the header detection and returns its
	// verdict without consuming anything the server will read.
	if _, err := pc.Read(nil); err != nil {
		c.Close()
		if l.opts.Logger != nil {
			l.opts.Logger.Warn("connection refused: PROXY protocol", "peer", c.RemoteAddr().String(), "trusted", policy == proxyproto.REQUIRE, "error", err.Error())
		}
		return
	}
	select {
	case l.ready <- pc:
	case <-l.done:
		c.Close()
	}
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
