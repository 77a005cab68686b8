package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// isUpgrade reports a protocol switch request (WebSocket): Connection
// names "upgrade" and an Upgrade header says to what.
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && hasToken(r.Header["Connection"], "upgrade")
}

// serveUpgrade forwards a protocol switch on a fresh backend conn and, on
// 101, splices the client and backend conns until either side closes. A
// non-101 answer is passed on like any response.
func (p *Proxy) serveUpgrade(w http.ResponseWriter, r *http.Request) outcome {
	f := forwardedFor(r, p.opts.TrustedProxies)
	pinned := p.opts.Sticky.pinned(r)
	var o outcome
	var tried []*Backend
	var c *backendConn
	var b *Backend
	for len(tried) < p.opts.MaxAttempts {
		b = p.pick(pinned, tried)
		if b == nil {
			if o.err == nil {
				o.err = errNoAvailableServer
			}
			return o
		}
		tried = append(tried, b)
		o.attempts++
		o.backend = b.addr
		nc, _, err := b.conns.get(false, true) // fresh: an upgraded conn is never returned to the pool
		if err != nil {
			p.pool.connFailed(b)
			o.err = fmt.Errorf("dial %s: %w", b.addr, err)
			continue
		}
		c = nc
		break
	}
	if c == nil {
		return o
	}
	defer c.Close() // an upgraded conn is never pooled
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	b.requests.Add(1)

	stop := context.AfterFunc(r.Context(), func() { c.SetDeadline(aLongTimeAgo) })
	c.SetDeadline(time.Now().Add(p.opts.ResponseTimeout))
	var body io.Reader
	if r.Body != nil && r.Body != http.NoBody {
		body = r.Body
	}
	if err := writeRequest(c.bw, r, &f, body, true); err != nil {
		stop()
		p.pool.connFailed(b)
		o.err = fmt.Errorf("send upgrade to %s: %w", b.addr, err)
		return o
	}
	resp, err := http.ReadResponse(c.br, r)
	if err != nil {
		stop()
		p.pool.connFailed(b)
		o.err = fmt.Errorf("read upgrade response from %s: %w", b.addr, err)
		if isTimeout(err) {
			o.err = fmt.Errorf("%w: %v", errBackendTimeout, o.err)
		}
		return o
	}
	if !stop() {
		return outcome{status: 499, backend: b.addr, attempts: o.attempts, err: errors.New("client went away")}
	}
	c.SetDeadline(time.Time{})
	p.pool.connOK(b)
	o.status = resp.StatusCode
	if p.opts.Sticky != nil && b.id != pinned {
		http.SetCookie(w, p.opts.Sticky.cookie(b.id))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		h := w.Header()
		for k, vv := range resp.Header {
			if hopByHop(k) {
				continue
			}
			h[k] = vv
		}
		w.WriteHeader(resp.StatusCode)
		stream := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
		if err := p.copyBody(w, resp.Body, resp.ContentLength, stream, c); err != nil {
			abort(w)
			o.err = err
		}
		return o
	}
	cc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		o.status, o.err = 0, fmt.Errorf("hijack client for upgrade: %w", err)
		return o
	}
	defer cc.Close()
	// Write the 101 ourselves: the ResponseWriter is gone after Hijack.
	for k, vv := range w.Header() {
		resp.Header[k] = append(resp.Header[k], vv...)
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\n")
	if err := resp.Header.Write(brw); err != nil {
		o.err = err
		return o
	}
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		o.err = err
		return o
	}
	o.err = p.splice(cc, brw.Reader, c)
	return o
}

// splice copies both ways until one side ends, then closes both so the
// other copy ends too. It returns when both copies are done, or when the
// proxy shuts down.
func (p *Proxy) splice(client net.Conn, clientBuf io.Reader, backend *backendConn) error {
	p.upgrades.Add(1)
	defer p.upgrades.Done()
	stop := context.AfterFunc(p.stopUpgrades, func() {
		client.Close()
		backend.Close()
	})
	defer stop()
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(backend.Conn, clientBuf) // clientBuf holds bytes read ahead by the server
		errc <- err
	}()
	go func() {
		_, err := io.Copy(client, backend.br) // br holds bytes the backend sent after the 101
		errc <- err
	}()
	err := <-errc
	client.Close()
	backend.Close()
	<-errc
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
