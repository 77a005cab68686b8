package balancer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hits/h1/front"
)

// rawBackend is a backend written on raw TCP, so a test can make it
// misbehave in ways net/http would not: each request's answer is the
// bytes answer returns for it, written as they are.
type rawBackend struct {
	ln       net.Listener
	requests atomic.Int64
	conns    atomic.Int64

	mu   sync.Mutex // guards seen
	seen []string   // "METHOD /path body"
}

func startRaw(t *testing.T, answer func(r *http.Request, body string) string) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, err := io.ReadAll(r.Body)
					if err != nil {
						return
					}
					b.requests.Add(1)
					b.mu.Lock()
					b.seen = append(b.seen, r.Method+" "+r.URL.Path+" "+string(body))
					b.mu.Unlock()
					if _, err := io.WriteString(c, answer(r, string(body))); err != nil {
						return
					}
				}
			}()
		}
	}()
	return b
}

func (b *rawBackend) addr() string { return b.ln.Addr().String() }

// ok is a well-framed answer naming the path.
func ok(r *http.Request) string {
	body := "ok " + r.URL.Path
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// exchange sends raw bytes to addr and reads one response.
func exchange(t *testing.T, addr, send string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, send)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to %q: %v", send, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func hostOf(url string) string { return strings.TrimPrefix(url, "http://") }

// Issue 8, 1: a client's malformed chunked body is its own fault: a 400,
// no retry, no failure counted, nobody ejected.
func TestMalformedClientBodyIsNotABackendFailure(t *testing.T) {
	a := startRaw(t, func(r *http.Request, _ string) string { return ok(r) })
	b := startRaw(t, func(r *http.Request, _ string) string { return ok(r) })
	lb := newTestLBAt(t, PoolOptions{PassiveFailures: 1}, ProxyOptions{}, nil, a.addr(), b.addr())
	for _, size := range []string{"zz", "-5", "10000000000000000", "2\n"} {
		for range 3 {
			resp, _ := exchange(t, hostOf(lb.url), "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+size+"\r\nab\r\n0\r\n\r\n")
			if resp.StatusCode != 400 || !resp.Close {
				t.Errorf("chunk size %q: got %d close=%v, want 400 and close", size, resp.StatusCode, resp.Close)
			}
		}
	}
	for _, be := range []*rawBackend{a, b} {
		st := statusOf(lb.pool, be.addr())
		if !st.Healthy || st.Failures != 0 {
			t.Errorf("backend %s: healthy=%v failures=%d, want healthy with 0 failures", be.addr(), st.Healthy, st.Failures)
		}
		if n := be.requests.Load(); n != 0 {
			t.Errorf("backend %s received %d complete requests from bad bodies", be.addr(), n)
		}
	}
	if status, body, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/after", nil)); status != 200 || body != "ok /after" {
		t.Errorf("a normal request afterwards: %d %q", status, body)
	}
}

// Issue 8, 2: uploads the client aborts or lets stall eject nobody; a
// stalled one is cut with a 408 after the body timeout.
func TestAbortedAndStalledUploadsBlameNobody(t *testing.T) {
	a := startRaw(t, func(r *http.Request, _ string) string { return ok(r) })
	lb := newTestLBAt(t, PoolOptions{PassiveFailures: 1}, ProxyOptions{ResponseTimeout: 5 * time.Second},
		func(s *front.Server) { s.BodyTimeout = 300 * time.Millisecond }, a.addr())
	for i := range 5 {
		c, err := net.Dial("tcp", hostOf(lb.url))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 5000))
		c.(*net.TCPConn).CloseWrite() // the client gives up mid-body
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		io.ReadAll(c)
		c.Close()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("abort %d: conn held %v", i, d)
		}
	}
	start := time.Now()
	resp, _ := exchange(t, hostOf(lb.url), "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
	if resp.StatusCode != 408 {
		t.Errorf("stalled body: status %d, want 408", resp.StatusCode)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("stalled body cut after %v, want about 300ms", d)
	}
	st := statusOf(lb.pool, a.addr())
	if !st.Healthy || st.Failures != 0 {
		t.Errorf("backend: healthy=%v failures=%d after client faults, want healthy, 0", st.Healthy, st.Failures)
	}
	if status, body, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/after", nil)); status != 200 || body != "ok /after" {
		t.Errorf("a normal request afterwards: %d %q", status, body)
	}
}

// Issue 8, 3: a backend conn is reused only when the answer ended where
// its framing said; leftovers never reach the next client.
func TestBackendLeftoversNeverReachTheNextClient(t *testing.T) {
	a := startRaw(t, func(r *http.Request, _ string) string {
		switch r.URL.Path {
		case "/extra":
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSTRAYBYTES"
		case "/extra-chunked":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen"
		case "/204-body":
			return "HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nstolen"
		case "/304-body":
			return "HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen"
		case "/head-body":
			return "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen"
		case "/101":
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen"
		case "/nul":
			return "HTTP/1.1 200 OK\r\nX-Evil: a\x00b\r\nContent-Length: 2\r\n\r\nok"
		}
		return ok(r)
	})
	lb := newTestLBAt(t, PoolOptions{}, ProxyOptions{}, nil, a.addr())
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/extra", 200, "ok"},
		{"GET", "/extra-chunked", 200, "ok"},
		{"GET", "/204-body", 204, ""},
		{"GET", "/304-body", 304, ""},
		{"HEAD", "/head-body", 200, ""},
		{"GET", "/101", 502, ""},
		{"GET", "/nul", 502, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			status, body, resp := get(t, client, newReq(t, tc.method, lb.url+tc.path, nil))
			if status != tc.status || (tc.status != 502 && body != tc.body) {
				t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, status, body, tc.status, tc.body)
			}
			if v := resp.Header.Get("X-Evil"); v != "" {
				t.Errorf("a header value with a NUL reached the client: %q", v)
			}
			// The next requests, on whatever conn lb picks, get their own answers.
			for i := range 3 {
				p := fmt.Sprintf("/next%d", i)
				if status, body, _ := get(t, client, newReq(t, "GET", lb.url+p, nil)); status != 200 || body != "ok "+p {
					t.Fatalf("request after %s: %d %q, want 200 %q", tc.path, status, body, "ok "+p)
				}
			}
		})
	}
}

// The refused-upgrade path drops the fields the backend's Connection names.
func TestRefusedUpgradeStripsConnectionListedFields(t *testing.T) {
	a := startRaw(t, func(r *http.Request, _ string) string {
		return "HTTP/1.1 426 Upgrade Required\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\nX-Kept: 1\r\nContent-Length: 4\r\n\r\nnope"
	})
	lb := newTestLBAt(t, PoolOptions{}, ProxyOptions{}, nil, a.addr())
	resp, body := exchange(t, hostOf(lb.url), "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp.StatusCode != 426 || body != "nope" || resp.Header.Get("X-Kept") != "1" {
		t.Errorf("got %d %q X-Kept=%q, want 426 nope 1", resp.StatusCode, body, resp.Header.Get("X-Kept"))
	}
	if v := resp.Header.Get("X-Hop"); v != "" {
		t.Errorf("X-Hop named in Connection reached the client: %q", v)
	}
}

// An upgraded tunnel that carries nothing is closed after the idle
// timeout; one that carries bytes is not.
func TestIdleTunnelIsClosed(t *testing.T) {
	ws := upgradeEcho(t)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{TunnelIdleTimeout: 400 * time.Millisecond}, ws)
	c, err := net.Dial("tcp", hostOf(lb.url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	// Busy for longer than the idle timeout, a message every 100ms: the
	// tunnel stays.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := range 6 {
		<-tick.C
		msg := fmt.Sprintf("ping %d\n", i)
		io.WriteString(c, msg)
		if line, err := br.ReadString('\n'); err != nil || line != msg {
			t.Fatalf("echo %d: %q %v", i, line, err)
		}
	}
	start := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("read a byte from an idle tunnel")
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("idle tunnel closed after %v, want about 400ms", d)
	}
}
