package balancer

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
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

// testLB is a pool and proxy behind a real front server.
type testLB struct {
	pool  *Pool
	proxy *Proxy
	front *httptest.Server
}

func newTestLB(t *testing.T, popts PoolOptions, opts ProxyOptions, backends ...*testBackend) *testLB {
	t.Helper()
	if opts.Selector == nil {
		opts.Selector = &RoundRobin{}
	}
	pool := NewPool(popts)
	var addrs []string
	for _, b := range backends {
		addrs = append(addrs, b.addr())
	}
	pool.SetMembers(addrs)
	for _, a := range addrs {
		pool.SetHealthy(a, true)
	}
	proxy, err := NewProxy(pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(func() {
		front.Close()
		proxy.CloseUpgrades()
		pool.Close()
	})
	return &testLB{pool: pool, proxy: proxy, front: front}
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

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
