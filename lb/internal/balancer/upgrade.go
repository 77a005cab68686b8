package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"hits/h1"
)

// isUpgrade reports a protocol switch request (WebSocket): Connection
// names "upgrade" and an Upgrade header says to what.
func isUpgrade(r *http.Request) bool {
	// Connection first: absent in the usual keep-alive request, so this
	// costs one map lookup, not Header.Get's canonicalising as well.
	conn := r.Header["Connection"]
	if conn == nil || !h1.HasToken(conn, "upgrade") {
		return false
	}
	u := r.Header["Upgrade"]
	return len(u) > 0 && u[0] != ""
}

// tunnel answers the client's protocol switch with the backend's 101 and
// splices the two conns until either side closes or the tunnel is idle
// for TunnelIdleTimeout. proto is the backend's Upgrade field.
func (p *Proxy) tunnel(w http.ResponseWriter, c *backendConn, proto string) error {
	cc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fmt.Errorf("hijack client for upgrade: %w", err)
	}
	defer cc.Close()
	c.setDeadline(time.Time{}, 0)
	// Write the 101 ourselves: the ResponseWriter is gone after Hijack.
	h1.WriteStatusLine(brw.Writer, http.StatusSwitchingProtocols)
	h1.WriteFields(brw.Writer, w.Header())
	h1.WriteField(brw.Writer, "Connection", "Upgrade")
	h1.WriteField(brw.Writer, "Upgrade", proto)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return err
	}
	return p.splice(cc, brw.Reader, c)
}

// splice copies both ways until one side ends, then closes both so the
// other copy ends too. A tunnel with no byte either way for
// TunnelIdleTimeout is closed. It returns when both copies are done, or
// when the proxy shuts down.
func (p *Proxy) splice(client net.Conn, clientBuf io.Reader, backend *backendConn) error {
	p.upgrades.Add(1)
	defer p.upgrades.Done()
	stop := context.AfterFunc(p.stopUpgrades, func() {
		client.Close()
		backend.Close()
	})
	defer stop()
	var last atomic.Int64 // unix nanos of the last byte either way
	last.Store(time.Now().UnixNano())
	errc := make(chan error, 2)
	go func() {
		// clientBuf holds bytes read ahead by the server.
		errc <- p.pump(backend.Conn, clientBuf, client, &last)
	}()
	go func() {
		// br holds bytes the backend sent after the 101.
		errc <- p.pump(client, backend.br, backend.Conn, &last)
	}()
	err := <-errc
	client.Close()
	backend.Close()
	<-errc
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// pump copies src (reading through r, which may hold buffered bytes) to
// dst. Each read waits at most the idle timeout; when it expires while the
// other direction was busy, the wait starts again.
func (p *Proxy) pump(dst io.Writer, r io.Reader, src net.Conn, last *atomic.Int64) error {
	idle := p.opts.TunnelIdleTimeout
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
		}
		n, err := r.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			if isTimeout(err) && time.Since(time.Unix(0, last.Load())) < idle {
				continue // the other direction kept the tunnel alive
			}
			if isTimeout(err) {
				return errTunnelIdle
			}
			return err
		}
	}
}

// errTunnelIdle ends a tunnel that carried nothing for TunnelIdleTimeout.
var errTunnelIdle = errors.New("tunnel idle")
