package balancer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hits/h1/front"
	"hits/testkit"
)

func TestRoundRobinIsExactPerRequest(t *testing.T) {
	a, b, c := startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, a, b, c)
	// One client, one keep-alive connection: balancing must still rotate.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	var got []string
	counts := map[string]int{}
	for range 30 {
		status, body, _ := get(t, client, newReq(t, "GET", lb.url+"/", nil))
		if status != 200 {
			t.Fatalf("status = %d, want 200", status)
		}
		if n := len(got); n > 0 && got[n-1] == body {
			t.Fatalf("backend %s twice in a row: %v", body, got)
		}
		got = append(got, body)
		counts[body]++
	}
	for _, name := range []string{"a", "b", "c"} {
		if counts[name] != 10 {
			t.Errorf("backend %s got %d requests, want 10 (sequence %v)", name, counts[name], got)
		}
	}
	if got[0] != got[3] || got[1] != got[4] || got[2] != got[5] {
		t.Errorf("sequence does not repeat with period 3: %v", got[:6])
	}
}

func TestLeastConnectionsPicksFewestInFlightAndRotatesTies(t *testing.T) {
	mk := func(addr string, inFlight int64) *Backend {
		b := &Backend{addr: addr}
		b.inFlight.Store(inFlight)
		return b
	}
	x, y, z := mk("x", 2), mk("y", 0), mk("z", 1)
	lc := &LeastConnections{}
	for i := range 6 {
		if got := lc.Select([]*Backend{x, y, z}); got != y {
			t.Fatalf("pick %d = %s, want y (fewest in flight)", i, got.addr)
		}
	}
	p, q, r := mk("p", 0), mk("q", 0), mk("r", 0)
	var seq []string
	for range 6 {
		seq = append(seq, lc.Select([]*Backend{p, q, r}).addr)
	}
	counts := map[string]int{}
	for _, s := range seq {
		counts[s]++
	}
	if counts["p"] != 2 || counts["q"] != 2 || counts["r"] != 2 {
		t.Errorf("ties over 6 picks = %v, want 2 each (sequence %v)", counts, seq)
	}
	if lc.Select(nil) != nil {
		t.Error("Select(nil) != nil")
	}
}

func TestLeastConnectionsAvoidsSlowBackend(t *testing.T) {
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select { // a slow backend: its work takes 100ms, unless the client leaves
		case <-time.After(100 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "slow")
	})
	f1, f2 := startBackend(t, "f1", nil), startBackend(t, "f2", nil)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{Selector: &LeastConnections{}}, slow, f1, f2)
	counts := sendConcurrently(t, lb.url+"/", 60, 6)
	if counts["slow"] > 10 {
		t.Errorf("slow backend got %d of 60 requests, want at most 10 (%v)", counts["slow"], counts)
	}
	if counts["f1"]+counts["f2"]+counts["slow"] != 60 {
		t.Errorf("counts %v do not add up to 60", counts)
	}
}

// sendConcurrently sends total GETs, par at a time, and counts the bodies.
func sendConcurrently(t *testing.T, url string, total, par int) map[string]int {
	t.Helper()
	type res struct {
		body string
		err  error
	}
	results := make(chan res, total)
	jobs := make(chan struct{}, total)
	for range total {
		jobs <- struct{}{}
	}
	close(jobs)
	client := &http.Client{Timeout: 10 * time.Second}
	for range par {
		go func() {
			for range jobs {
				resp, err := client.Get(url)
				if err != nil {
					results <- res{err: err}
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				results <- res{body: string(b), err: err}
			}
		}()
	}
	counts := map[string]int{}
	for range total {
		r := <-results
		if r.err != nil {
			t.Errorf("request failed: %v", r.err)
			continue
		}
		counts[r.body]++
	}
	return counts
}

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestDialErrorIsRetriedAndEjectsBackend(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	lb := newTestLB(t, PoolOptions{PassiveFailures: 3}, ProxyOptions{}, a, b)
	dead := deadAddr(t)
	lb.pool.SetMembers([]string{a.addr(), b.addr(), dead})
	lb.pool.SetHealthy(dead, true)
	for i := range 30 {
		// POST: a dial error means nothing was sent, so even a POST is retried.
		status, body, _ := get(t, http.DefaultClient, newReq(t, "POST", lb.url+"/", strings.NewReader("x")))
		if status != 200 || (body != "a" && body != "b") {
			t.Fatalf("request %d: status %d body %q, want 200 from a or b", i, status, body)
		}
	}
	st := statusOf(lb.pool, dead)
	if st.Healthy {
		t.Error("dead backend still healthy after repeated dial errors")
	}
	if st.Failures != 3 {
		t.Errorf("dead backend failures = %d, want 3 (ejected after the third)", st.Failures)
	}
	if n := len(a.requests()) + len(b.requests()); n != 30 {
		t.Errorf("live backends saw %d requests, want 30 (no duplicates)", n)
	}
}

func statusOf(p *Pool, addr string) BackendStatus {
	for _, s := range p.Status().Backends {
		if s.Address == addr {
			return s
		}
	}
	return BackendStatus{}
}

// dropper accepts connections, reads one request and closes without
// answering: the request may have been processed, so only idempotent
// requests may be retried.
func dropper(t *testing.T) (addr string, got *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err == nil {
					io.Copy(io.Discard, req.Body)
					got.Add(1)
				}
			}()
		}
	}()
	return ln.Addr().String(), got
}

func TestRequestThatMayHaveReachedBackendIsRetriedOnlyWhenSafe(t *testing.T) {
	good := startBackend(t, "good", nil)
	drop, dropped := dropper(t)
	// Round robin over [drop, good] sorted by address; force drop first by
	// making it the only healthy one for the first attempt is not possible,
	// so send enough requests that drop is picked first for half of them.
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, good)
	lb.pool.SetMembers([]string{good.addr(), drop})
	lb.pool.SetHealthy(drop, true)

	for i := range 4 {
		status, body, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil))
		if status != 200 || body != "good" {
			t.Fatalf("GET %d: status %d body %q, want 200 from good (retried)", i, status, body)
		}
	}
	if dropped.Load() == 0 {
		t.Fatal("the dropping backend never got a GET; test did not exercise the retry")
	}

	dropped.Store(0)
	goodBefore := len(good.requests())
	var bad int
	for range 4 {
		status, _, _ := get(t, http.DefaultClient, newReq(t, "POST", lb.url+"/", strings.NewReader("pay=1")))
		if status == http.StatusBadGateway {
			bad++
		}
	}
	posted := int(dropped.Load()) + len(good.requests()) - goodBefore
	if posted != 4 {
		t.Errorf("4 POSTs reached backends %d times, want exactly 4 (never twice)", posted)
	}
	if bad != int(dropped.Load()) || bad == 0 {
		t.Errorf("got %d 502s and %d POSTs swallowed by the dropper; want equal and > 0", bad, dropped.Load())
	}
}

func TestNoRetryAfterSendNeverResendsAGet(t *testing.T) {
	good := startBackend(t, "good", nil)
	drop, dropped := dropper(t)
	dead := deadAddr(t)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{NoRetryAfterSend: true}, good)
	lb.pool.SetMembers([]string{good.addr(), drop})
	lb.pool.SetHealthy(drop, true)

	// Round robin over two backends: of 4 sequential GETs, 2 go to the
	// dropper first. It read them whole, so they may have been counted:
	// each must end as a 502, never as a second delivery to good.
	var ok, bad int
	for i := range 4 {
		status, body, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil))
		switch {
		case status == 200 && body == "good":
			ok++
		case status == http.StatusBadGateway:
			bad++
		default:
			t.Fatalf("GET %d: status %d body %q, want 200 from good or 502", i, status, body)
		}
	}
	if ok != 2 || bad != 2 {
		t.Errorf("got %d 200s and %d 502s, want 2 and 2", ok, bad)
	}
	if got := dropped.Load(); got != 2 {
		t.Errorf("dropper saw %d GETs, want 2", got)
	}
	if got := len(good.requests()); got != 2 {
		t.Errorf("good saw %d GETs, want 2 (a GET that reached the dropper was resent)", got)
	}

	// A dial error proves nothing was delivered: still retried.
	lb.pool.SetMembers([]string{good.addr(), dead})
	lb.pool.SetHealthy(dead, true)
	for i := range 4 {
		status, body, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil))
		if status != 200 || body != "good" {
			t.Fatalf("GET %d with a dead backend: status %d body %q, want 200 from good (dial errors are retried)", i, status, body)
		}
	}
	if got := len(good.requests()); got != 6 {
		t.Errorf("good saw %d GETs in total, want 6", got)
	}
}

// dyingBackend answers the first request on each conn and drops the conn on
// the second after reading it whole, as a replica killed under keep-alive
// does to every conn at once. The first two conns are answered together, so
// the balancer ends up holding two idle conns to it.
func dyingBackend(t *testing.T) (addr string, seen *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen = &atomic.Int64{}
	var both sync.WaitGroup
	both.Add(2)
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(first bool) {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					seen.Add(1)
					if i > 0 {
						return // read it whole, then die without answering
					}
					if first {
						both.Done()
						both.Wait()
					}
					fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}(n < 2)
		}
	}()
	return ln.Addr().String(), seen
}

func TestDeadBackendsIdleConnsAreDroppedAfterOneFails(t *testing.T) {
	addr, seen := dyingBackend(t)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{NoRetryAfterSend: true})
	lb.pool.SetMembers([]string{addr})
	lb.pool.SetHealthy(addr, true)

	// Two requests at once leave two idle keep-alive conns in the pool.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil))
			if status != 200 || body != "ok" {
				t.Errorf("warm-up: status %d body %q, want 200 ok", status, body)
			}
		}()
	}
	wg.Wait()
	b := lb.pool.snapshot().healthy[0] // the only backend
	if got := b.conns.idleCount(); got != 2 {
		t.Fatalf("idle conns after warm-up = %d, want 2", got)
	}

	// The backend drops a reused conn after reading the request: it may have
	// been counted, so the client gets a 502, not a second delivery.
	if status, _, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil)); status != http.StatusBadGateway {
		t.Fatalf("request on a conn the backend dropped: status %d, want 502", status)
	}
	// Its sibling idle conn belongs to the same dying process: it must not be
	// handed out next. The next request dials a fresh conn instead.
	if got := b.conns.idleCount(); got != 0 {
		t.Errorf("idle conns after one died under a request = %d, want 0", got)
	}
	if status, body, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil)); status != 200 || body != "ok" {
		t.Errorf("next request: status %d body %q, want 200 ok on a fresh conn", status, body)
	}
	if got := seen.Load(); got != 4 {
		t.Errorf("backend saw %d requests, want 4", got)
	}
}

// closingBackend answers each request with a full response and then closes
// the connection without saying so, like a backend whose idle timeout fires
// right after a response: the next request on that conn races its close.
// The returned counter is how many of its conns are open.
func closingBackend(t *testing.T, name string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	open := &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			open.Add(1)
			go func() {
				defer func() { c.Close(); open.Add(-1) }()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(name), name)
			}()
		}
	}()
	return ln.Addr().String(), open
}

func TestIdleConnClosedByBackendCostsNoError(t *testing.T) {
	addr, open := closingBackend(t, "closer")
	pool := NewPool(testPoolOptions(PoolOptions{}))
	pool.SetMembers([]string{addr})
	pool.SetHealthy(addr, true)
	proxy, err := NewProxy(pool, ProxyOptions{Selector: &RoundRobin{}, MaxAttempts: 3, ResponseTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	front := newFront(t, proxy, nil)
	for i := range 40 {
		// A GET races the close (sent while the backend is closing) and
		// must be resent on a new conn. A POST goes after the close, as
		// when a backend's idle timeout fired, and must not use the dead conn.
		method := "GET"
		var body io.Reader
		if i%2 == 1 {
			method, body = "POST", strings.NewReader("n=1")
			testkit.Eventually(t, "backend to close its conns", 5*time.Second, func() bool { return open.Load() == 0 })
		}
		status, got, _ := get(t, http.DefaultClient, newReq(t, method, front+"/", body))
		if status != 200 || got != "closer" {
			t.Fatalf("%s %d: status %d body %q, want 200 closer", method, i, status, got)
		}
	}
	if st := statusOf(pool, addr); !st.Healthy || st.Failures != 0 {
		t.Errorf("backend status %+v, want healthy with 0 failures (closed idle conns are not failures)", st)
	}
}

func TestNoHealthyBackendIsAQuick503(t *testing.T) {
	a := startBackend(t, "a", nil)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, a)
	lb.pool.SetHealthy(a.addr(), false)
	for _, accept := range []string{"text/html", "*/*"} {
		req := newReq(t, "GET", lb.url+"/", nil)
		req.Header.Set("Accept", accept)
		start := time.Now()
		status, body, resp := get(t, http.DefaultClient, req)
		if status != 503 {
			t.Fatalf("Accept %s: status %d, want 503", accept, status)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("503 took %v, want under 1s", d)
		}
		if !strings.Contains(body, "no healthy application server") {
			t.Errorf("body %q does not explain the 503", body)
		}
		if strings.Contains(body, a.addr()) {
			t.Errorf("error page leaks the backend address: %q", body)
		}
		if ct := resp.Header.Get("Content-Type"); accept == "text/html" && !strings.HasPrefix(ct, "text/html") {
			t.Errorf("Content-Type = %q, want text/html for a browser", ct)
		}
	}
	if len(a.requests()) != 0 {
		t.Errorf("unhealthy backend got %d requests, want 0", len(a.requests()))
	}
}

func TestForwardedHeaders(t *testing.T) {
	a := startBackend(t, "a", nil)
	cases := []struct {
		name    string
		trusted []netip.Prefix
		wantXFF string
		wantPro string
		wantHst string
	}{
		{"untrusted peer: client claims dropped", nil, "127.0.0.1", "http", "example.test"},
		{"trusted peer: claims kept, peer appended", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "6.6.6.6, 127.0.0.1", "https", "orig.test"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lb := newTestLB(t, PoolOptions{}, ProxyOptions{TrustedProxies: tc.trusted}, a)
			n := len(a.requests())
			req := newReq(t, "GET", lb.url+"/", nil)
			req.Host = "example.test"
			req.Header.Set("X-Forwarded-For", "6.6.6.6")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Forwarded-Host", "orig.test")
			req.Header.Set("Forwarded", "for=6.6.6.6")
			get(t, http.DefaultClient, req)
			seen := a.requests()[n]
			if got := strings.Join(seen.Header.Values("X-Forwarded-For"), ","); got != tc.wantXFF {
				t.Errorf("X-Forwarded-For = %q, want %q", got, tc.wantXFF)
			}
			if got := seen.Header.Get("X-Forwarded-Proto"); got != tc.wantPro {
				t.Errorf("X-Forwarded-Proto = %q, want %q", got, tc.wantPro)
			}
			if got := seen.Header.Get("X-Forwarded-Host"); got != tc.wantHst {
				t.Errorf("X-Forwarded-Host = %q, want %q", got, tc.wantHst)
			}
			if seen.Host != "example.test" {
				t.Errorf("Host = %q, want example.test passed through", seen.Host)
			}
			if got := seen.Header.Get("Forwarded"); (got != "") != (tc.trusted != nil) {
				t.Errorf("Forwarded = %q with trusted=%v", got, tc.trusted != nil)
			}
		})
	}
}

func TestHopByHopHeadersAreStripped(t *testing.T) {
	a := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Backend-Hop")
		w.Header().Set("X-Backend-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End-To-End", "yes")
		io.WriteString(w, "a")
	})
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, a)
	req := newReq(t, "GET", lb.url+"/path?q=1", nil)
	req.Header.Set("Connection", "X-Client-Hop")
	req.Header.Set("X-Client-Hop", "secret")
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	req.Header.Set("Te", "gzip")
	req.Header.Set("X-Kept", "kept")
	_, _, resp := get(t, http.DefaultClient, req)
	seen := a.requests()[0]
	for _, h := range []string{"X-Client-Hop", "Proxy-Authorization", "Te", "Keep-Alive"} {
		if v := seen.Header.Get(h); v != "" {
			t.Errorf("backend got hop-by-hop %s: %q", h, v)
		}
	}
	if seen.Header.Get("X-Kept") != "kept" || seen.URL.RequestURI() != "/path?q=1" {
		t.Errorf("end-to-end header or URI lost: X-Kept=%q uri=%q", seen.Header.Get("X-Kept"), seen.URL.RequestURI())
	}
	if resp.Header.Get("X-Backend-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("client got the backend's hop-by-hop headers: %v", resp.Header)
	}
	if resp.Header.Get("X-End-To-End") != "yes" {
		t.Errorf("end-to-end response header lost: %v", resp.Header)
	}
}

func TestRequestBodiesAreForwarded(t *testing.T) {
	echo := startBackend(t, "echo", func(w http.ResponseWriter, r *http.Request) {
		// startBackend already read the body; the recorded copy is echoed.
	})
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, echo)
	big := strings.Repeat("0123456789", 10_000)
	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"content-length", strings.NewReader(big)},
		{"chunked", io.MultiReader(strings.NewReader(big[:5000]), strings.NewReader(big[5000:]))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(echo.requests())
			status, _, _ := get(t, http.DefaultClient, newReq(t, "PUT", lb.url+"/up", tc.body))
			if status != 200 {
				t.Fatalf("status %d, want 200", status)
			}
			seen := echo.requests()[n]
			got, _ := io.ReadAll(seen.Body)
			if string(got) != big {
				t.Errorf("backend got %d bytes, want %d identical", len(got), len(big))
			}
		})
	}
}

func TestStreamedResponseIsFlushedIncrementally(t *testing.T) {
	release := make(chan struct{})
	a := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: second\n\n")
	})
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, a)
	resp, err := http.Get(lb.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event = %q, %v; want it before the backend finishes", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("rest = %q, want the second event", rest)
	}
}

// upgradeEcho answers a WebSocket-style upgrade with 101 and then echoes
// bytes back, with no WebSocket library.
func upgradeEcho(t *testing.T) *testBackend {
	return startBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw.Reader)
	})
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	ws := upgradeEcho(t)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, ws)
	c, err := net.Dial("tcp", strings.TrimPrefix(lb.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("got %d Upgrade=%q, want 101 websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	for _, msg := range []string{"hello\n", "again\n"} {
		io.WriteString(c, msg)
		line, err := br.ReadString('\n')
		if err != nil || line != msg {
			t.Fatalf("echo = %q, %v; want %q", line, err, msg)
		}
	}
	// A plain request to the same backend is refused by it and the refusal passed on.
	status, _, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/ws", nil))
	if status != http.StatusUpgradeRequired {
		t.Errorf("plain GET status %d, want 426 from the backend", status)
	}
}

func TestBodilessAndTruncatedResponses(t *testing.T) {
	a := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/cut":
			// Promise 100 bytes, send 5, then drop the connection.
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "short")
			w.(http.Flusher).Flush()
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	})
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, a)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		length       int64
	}{
		{"HEAD", "/", 200, "", 5},
		{"GET", "/204", 204, "", 0},
		{"GET", "/304", 304, "", 0},
		{"GET", "/", 200, "hello", 5},
	} {
		status, body, resp := get(t, client, newReq(t, tc.method, lb.url+tc.path, nil))
		if status != tc.status || body != tc.body || (tc.method == "HEAD" && resp.ContentLength != tc.length) {
			t.Errorf("%s %s: %d %q len %d, want %d %q len %d", tc.method, tc.path, status, body, resp.ContentLength, tc.status, tc.body, tc.length)
		}
	}
	resp, err := client.Get(lb.url + "/cut")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Error("a response the backend cut short reached the client as complete")
	}
	// The conn was closed, not left desynchronised: the next request works.
	if status, body, _ := get(t, client, newReq(t, "GET", lb.url+"/", nil)); status != 200 || body != "hello" {
		t.Errorf("after a cut response: %d %q", status, body)
	}
}

func TestForwardedForPeerForms(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		remote, xff string
		trusted     bool
	}{
		{"192.0.2.7:5000", "192.0.2.7", false},
		{"10.1.2.3:5000", "10.1.2.3", true},
		{"[2001:db8::1]:443", "2001:db8::1", false},
		{"[fd00::9]:443", "fd00::9", true},
		{"[::ffff:10.0.0.5]:80", "10.0.0.5", true},
		{"garbage", "garbage", false},
	} {
		r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
		f := forwardedFor(r, trusted)
		if f.xff != tc.xff || f.trusted != tc.trusted {
			t.Errorf("%s: xff %q trusted %v, want %q %v", tc.remote, f.xff, f.trusted, tc.xff, tc.trusted)
		}
	}
}

// A forced shutdown of the front server must cut a request still waiting
// for its backend at once, not after the response timeout.
func TestForcedShutdownCutsBackendWait(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan struct{}, 1)
	closed := make(chan struct{}, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			got <- struct{}{}
		}
		io.Copy(io.Discard, c) // never answers; returns when lb closes the conn
		closed <- struct{}{}
	}()
	pool := NewPool(testPoolOptions(PoolOptions{}))
	addr := ln.Addr().String()
	pool.SetMembers([]string{addr})
	pool.SetHealthy(addr, true)
	t.Cleanup(pool.Close)
	proxy, err := NewProxy(pool, ProxyOptions{Selector: &RoundRobin{}, MaxAttempts: 3, ResponseTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &front.Server{Handler: proxy}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(fln) }()
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		if resp, err := client.Get("http://" + fln.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("backend never got the request")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace: force at once
	if err := srv.Shutdown(ctx); err == nil {
		t.Error("Shutdown with an in-flight request and a done context = nil, want its error")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("lb still holds the backend conn 5s after a forced shutdown (response timeout is 1m)")
	}
	testkit.Eventually(t, "in-flight count back to 0", 5*time.Second, func() bool { return statusOf(pool, addr).InFlight == 0 })
	<-served
}
