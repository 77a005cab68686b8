package balancer

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"hits/h1/front"
)

// testBackend is a real HTTP server that answers with its name and
// remembers what it was sent.
type testBackend struct {
	name string
	srv  *httptest.Server

	mu   sync.Mutex // guards seen
	seen []*http.Request
}

func (b *testBackend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func (b *testBackend) requests() []*http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*http.Request(nil), b.seen...)
}

func startBackend(t *testing.T, name string, h http.HandlerFunc) *testBackend {
	t.Helper()
	b := &testBackend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(strings.NewReader(string(body)))
		b.mu.Lock()
		b.seen = append(b.seen, r2)
		b.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// testLB is a pool and proxy behind the real front server.
type testLB struct {
	pool  *Pool
	proxy *Proxy
	url   string
}

func newTestLB(t *testing.T, popts PoolOptions, opts ProxyOptions, backends ...*testBackend) *testLB {
	t.Helper()
	var addrs []string
	for _, b := range backends {
		addrs = append(addrs, b.addr())
	}
	return newTestLBAt(t, popts, opts, nil, addrs...)
}

// newTestLBAt is newTestLB over backend addresses, with the front
// server's settings adjusted by tweak (if not nil).
func newTestLBAt(t *testing.T, popts PoolOptions, opts ProxyOptions, tweak func(*front.Server), addrs ...string) *testLB {
	t.Helper()
	if opts.Selector == nil {
		opts.Selector = &RoundRobin{}
	}
	// Production gets these from package config.
	popts = testPoolOptions(popts)
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 3
	}
	if opts.ResponseTimeout == 0 {
		opts.ResponseTimeout = time.Minute
	}
	pool := NewPool(popts)
	pool.SetMembers(addrs)
	for _, a := range addrs {
		pool.SetHealthy(a, true)
	}
	proxy, err := NewProxy(pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proxy.CloseUpgrades()
		pool.Close()
	})
	return &testLB{pool: pool, proxy: proxy, url: newFront(t, proxy, tweak)}
}

// testPoolOptions fills in what package config would.
func testPoolOptions(o PoolOptions) PoolOptions {
	if o.MaxIdle == 0 {
		o.MaxIdle = 64
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 30 * time.Second
	}
	return o
}

// newFront serves h with the production front server on a loopback port.
func newFront(t *testing.T, h http.Handler, tweak func(*front.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &front.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	if tweak != nil {
		tweak(srv)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("front shutdown: %v", err)
		}
		<-done
	})
	return "http://" + ln.Addr().String()
}

// get sends one request and returns status and body.
func get(t *testing.T, c *http.Client, req *http.Request) (int, string, *http.Response) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(body), resp
}

func newReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// fakeClock is a settable clock for sticky-cookie expiry.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
