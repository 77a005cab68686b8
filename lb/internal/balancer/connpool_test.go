package balancer

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestConnPoolReusesAndExpiresIdleConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	var dials atomic.Int64
	dial := func(network, addr string, timeout time.Duration) (net.Conn, error) {
		dials.Add(1)
		return net.DialTimeout(network, addr, timeout)
	}
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p := newConnPool(ln.Addr().String(), dial, time.Second, 30*time.Second, 2)
	defer p.close()

	a, reused, err := p.get(false, false, clock.Now())
	if err != nil || reused {
		t.Fatalf("first get: reused=%v err=%v", reused, err)
	}
	b, _, _ := p.get(false, false, clock.Now())
	c, _, _ := p.get(false, false, clock.Now())
	p.put(a, clock.Now())
	p.put(b, clock.Now())
	p.put(c, clock.Now()) // over MaxIdle: closed
	if n := p.idleCount(); n != 2 {
		t.Fatalf("idle = %d, want 2 (MaxIdle)", n)
	}
	got, reused, _ := p.get(false, false, clock.Now())
	if !reused || got != b {
		t.Errorf("get returned reused=%v, want the most recently put conn (LIFO)", reused)
	}
	p.put(got, clock.Now())
	clock.Add(31 * time.Second)
	_, reused, err = p.get(false, false, clock.Now())
	if err != nil || reused {
		t.Errorf("after the idle timeout: reused=%v err=%v, want a new dial", reused, err)
	}
	if n := p.idleCount(); n != 0 {
		t.Errorf("expired conns kept: idle = %d", n)
	}
	if n := dials.Load(); n != 4 {
		t.Errorf("dials = %d, want 4", n)
	}
	if _, reused, _ := p.get(false, true, clock.Now()); reused {
		t.Error("fresh get reused an idle conn")
	}
}

func TestConnPoolMaxIdleZeroKeepsNone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p := newConnPool(ln.Addr().String(), func(n, a string, d time.Duration) (net.Conn, error) { return net.DialTimeout(n, a, d) },
		time.Second, 30*time.Second, 0)
	defer p.close()
	for i := range 3 {
		c, reused, err := p.get(false, false, time.Now())
		if err != nil || reused {
			t.Fatalf("get %d: reused=%v err=%v, want a new conn every time", i, reused, err)
		}
		p.put(c, time.Now())
		if n := p.idleCount(); n != 0 {
			t.Fatalf("idle = %d with MaxIdle 0, want 0", n)
		}
	}
}

// countingConn counts SetDeadline calls.
type countingConn struct {
	net.Conn
	n int
}

func (c *countingConn) SetDeadline(time.Time) error { c.n++; return nil }

func TestSetDeadlineSkipsNegligibleMoves(t *testing.T) {
	cc := &countingConn{}
	c := &backendConn{Conn: cc}
	for _, st := range []struct {
		timeout time.Duration
		calls   int
		why     string
	}{
		{time.Minute, 1, "first deadline is set"},
		{time.Minute, 1, "a moment later: kept"},
		{0, 2, "cleared"},
		{0, 2, "already clear"},
		{time.Minute, 3, "set again"},
		{time.Second, 4, "earlier: always moved"},
	} {
		c.setDeadline(time.Time{}, st.timeout)
		if cc.n != st.calls {
			t.Fatalf("%s: %d SetDeadline calls, want %d", st.why, cc.n, st.calls)
		}
	}
}

// The retry rules trust written: 0 must mean no byte of the request reached
// the kernel, and any flushed byte must count.
func TestBackendConnCountsWhatItSends(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := server.Read(buf); err != nil {
				return
			}
		}
	}()
	c := newBackendConn(client)
	if c.written != 0 {
		t.Fatalf("written = %d on a new conn, want 0", c.written)
	}
	c.bw.WriteString("GET / HTTP/1.1\r\n")
	if c.written != 0 {
		t.Errorf("written = %d before a flush, want 0 (still buffered)", c.written)
	}
	if err := c.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if c.written != 16 {
		t.Errorf("written = %d after flushing 16 bytes, want 16", c.written)
	}
	server.Close()
	c.bw.WriteString("Host: a\r\n\r\n")
	if err := c.bw.Flush(); err == nil {
		t.Fatal("flush to a closed peer succeeded")
	}
	if c.written != 16 {
		t.Errorf("written = %d after a failed flush, want still 16", c.written)
	}
}
