package proxyheader

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// serve starts an HTTP server behind a Listener trusting 127.0.0.1 only;
// it answers every request with the client address it saw.
func serve(t *testing.T, timeout time.Duration) string {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := New(inner, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, HeaderTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RemoteAddr)
	})}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// dialFrom connects to addr from the loopback address src (127.0.0.1 is
// trusted, 127.0.0.2 is not).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func header(version byte) *proxyproto.Header {
	return &proxyproto.Header{
		Version:           version,
		Command:           proxyproto.PROXY,
		TransportProtocol: proxyproto.TCPv4,
		SourceAddr:        &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 51000},
		DestinationAddr:   &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 80},
	}
}

// roundTrip sends one GET and returns the body the server answered, or
// the error that ended the exchange.
func roundTrip(c net.Conn) (string, error) {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestPolicyPerSource(t *testing.T) {
	addr := serve(t, 2*time.Second)
	for _, tc := range []struct {
		name    string
		src     string
		version byte // 0: no header
		want    string
	}{
		{"trusted v1 header gives the client address", "127.0.0.1", 1, "203.0.113.7:51000"},
		{"trusted v2 header gives the client address", "127.0.0.1", 2, "203.0.113.7:51000"},
		{"trusted without a header is refused", "127.0.0.1", 0, ""},
		{"untrusted v1 header is refused", "127.0.0.2", 1, ""},
		{"untrusted v2 header is refused", "127.0.0.2", 2, ""},
		{"untrusted plain request is served", "127.0.0.2", 0, "127.0.0.2:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, tc.src, addr)
			if tc.version != 0 {
				if _, err := header(tc.version).WriteTo(c); err != nil {
					t.Fatal(err)
				}
			}
			got, err := roundTrip(c)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("served %q, want the connection refused", got)
				}
				return
			}
			if err != nil || !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q, %v; want %s...", got, err, tc.want)
			}
		})
	}
}

func TestLocalCommandKeepsThePeerAddress(t *testing.T) {
	// A cloud balancer's own health checks send PROXY LOCAL (v2): the
	// connection is the balancer's, not a client's.
	addr := serve(t, 2*time.Second)
	c := dialFrom(t, "127.0.0.1", addr)
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	got, err := roundTrip(c)
	if err != nil || !strings.HasPrefix(got, "127.0.0.1:") {
		t.Fatalf("got %q, %v; want 127.0.0.1:...", got, err)
	}
}

func TestASilentPeerDoesNotHoldUpOthers(t *testing.T) {
	addr := serve(t, 3*time.Second)
	silent := dialFrom(t, "127.0.0.1", addr) // trusted, never sends its header
	_ = silent
	c := dialFrom(t, "127.0.0.2", addr)
	start := time.Now()
	got, err := roundTrip(c)
	if err != nil || !strings.HasPrefix(got, "127.0.0.2:") {
		t.Fatalf("got %q, %v", got, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("plain request took %v behind a silent peer, want well under the 3s header timeout", d)
	}
	// The silent trusted peer is closed once the header timeout passes.
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatalf("silent trusted peer read %d bytes, want its connection closed", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("silent trusted peer was not closed within 5s")
	}
}

func TestCloseEndsPendingChecks(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := New(inner, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, HeaderTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c := dialFrom(t, "127.0.0.1", ln.Addr().String())
	closed := make(chan struct{})
	go func() { ln.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a header check pending")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("pending connection still open after Close")
	}
}

func TestNewNeedsTrustedSources(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	if _, err := New(inner, Options{}); err == nil {
		t.Fatal("New with no trusted sources succeeded")
	}
}
