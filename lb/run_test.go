package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hits/testkit"
)

// syncBuffer is an io.Writer the test can read while run writes to it.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// backend is a real HTTP server on loopback that can be killed and
// restarted on the same address.
type backend struct {
	name   string
	addr   string
	health atomic.Int64  // status /healthz answers
	delay  time.Duration // work time of GET /
	served atomic.Int64
	xff    atomic.Value // last X-Forwarded-For seen
	proto  atomic.Value // last X-Forwarded-Proto seen

	mu  sync.Mutex // guards srv
	srv *http.Server
}

func startBackend(t *testing.T, name string, delay time.Duration) *backend {
	t.Helper()
	b := &backend{name: name, delay: delay}
	b.health.Store(200)
	b.xff.Store("")
	b.proto.Store("")
	b.start(t, "127.0.0.1:0")
	t.Cleanup(b.kill)
	return b
}

func (b *backend) start(t *testing.T, addr string) {
	t.Helper()
	var ln net.Listener
	var err error
	// The port was just freed by kill; the kernel may take a moment.
	testkit.Eventually(t, "listen on "+addr, 5*time.Second, func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	b.addr = ln.Addr().String()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App-Instance", "replica-"+b.name) // as the hits app says who it is
		if r.URL.Path == "/healthz" {
			w.WriteHeader(int(b.health.Load()))
			return
		}
		if b.delay > 0 { // a slow backend: its work takes delay, unless the client leaves
			select {
			case <-time.After(b.delay):
			case <-r.Context().Done():
				return
			}
		}
		b.xff.Store(r.Header.Get("X-Forwarded-For"))
		b.proto.Store(r.Header.Get("X-Forwarded-Proto"))
		b.served.Add(1)
		io.WriteString(w, b.name)
	})}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go srv.Serve(ln)
}

// kill stops the backend abruptly, like a crashed replica.
func (b *backend) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		b.srv.Close()
		b.srv = nil
	}
}

// lbRun is one run() of the balancer with real listeners.
type lbRun struct {
	url, admin string
	tlsAddr    string // "" without LB_TLS_ADDR
	cancel     context.CancelFunc
	done       chan error
	out        *syncBuffer
}

func startLB(t *testing.T, env map[string]string) *lbRun {
	t.Helper()
	full := map[string]string{
		"LB_ADDR":                "127.0.0.1:0",
		"LB_ADMIN_ADDR":          "127.0.0.1:0",
		"LB_HEALTH_PATH":         "/healthz",
		"LB_HEALTH_INTERVAL":     "500ms",
		"LB_HEALTH_TIMEOUT":      "400ms",
		"LB_HEALTHY_THRESHOLD":   "2",
		"LB_UNHEALTHY_THRESHOLD": "2",
		"LB_RESOLVE_INTERVAL":    "500ms",
		"LB_ACCESS_LOG":          "false",
	}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &lbRun{cancel: cancel, done: make(chan error, 1), out: &syncBuffer{}}
	serving := make(chan Addrs, 1)
	go func() {
		l.done <- run(ctx, []string{"lb"}, func(k string) string { return full[k] }, l.out, l.out, func(a Addrs) { serving <- a })
	}()
	select {
	case a := <-serving:
		l.url, l.admin, l.tlsAddr = "http://"+a.HTTP, "http://"+a.Admin, a.TLS
	case err := <-l.done:
		t.Fatalf("run returned before serving: %v\n%s", err, l.out.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("lb not serving after 10s:\n%s", l.out.String())
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-l.done:
		case <-time.After(20 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
	return l
}

type status struct {
	Algorithm string `json:"algorithm"`
	Backends  []struct {
		Address  string `json:"address"`
		Healthy  bool   `json:"healthy"`
		InFlight int64  `json:"in_flight"`
		Requests uint64 `json:"requests"`
		Failures uint64 `json:"failures"`
	} `json:"backends"`
}

func (l *lbRun) status(t *testing.T) status {
	t.Helper()
	resp, err := http.Get(l.admin + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	var s status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("decode /status: %v", err)
	}
	return s
}

func (l *lbRun) healthy(t *testing.T, addr string) bool {
	for _, b := range l.status(t).Backends {
		if b.Address == addr {
			return b.Healthy
		}
	}
	return false
}

func (l *lbRun) allHealthy(t *testing.T, bs ...*backend) func() bool {
	return func() bool {
		for _, b := range bs {
			if !l.healthy(t, b.addr) {
				return false
			}
		}
		return true
	}
}

func fetch(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fetch(t, c, req)
}

func addrs(bs ...*backend) string {
	var out []string
	for _, b := range bs {
		out = append(out, b.addr)
	}
	return strings.Join(out, ",")
}

// TestDoneWhen mirrors the acceptance checks, from outside, with
// real listeners and real backends.
func TestDoneWhen(t *testing.T) {
	b1, b2, b3 := startBackend(t, "b1", 0), startBackend(t, "b2", 0), startBackend(t, "b3", 0)
	lb := startLB(t, map[string]string{"LB_BACKENDS": addrs(b1, b2, b3)})
	testkit.Eventually(t, "all three backends healthy", 5*time.Second, lb.allHealthy(t, b1, b2, b3))
	client := &http.Client{Timeout: 5 * time.Second}

	t.Run("30 sequential requests give exactly 10 per backend", func(t *testing.T) {
		counts := map[string]int{}
		for range 30 {
			status, body := get(t, client, lb.url+"/")
			if status != 200 {
				t.Fatalf("status %d", status)
			}
			counts[body]++
		}
		for _, n := range []string{"b1", "b2", "b3"} {
			if counts[n] != 10 {
				t.Errorf("%s got %d, want 10 (%v)", n, counts[n], counts)
			}
		}
	})

	t.Run("client-sent X-Forwarded-For is not passed on", func(t *testing.T) {
		for range 3 {
			req, _ := http.NewRequest("GET", lb.url+"/", nil)
			req.Header.Set("X-Forwarded-For", "6.6.6.6")
			_, body := fetch(t, client, req)
			be := map[string]*backend{"b1": b1, "b2": b2, "b3": b3}[body]
			if got := be.xff.Load().(string); got != "127.0.0.1" {
				t.Fatalf("%s saw X-Forwarded-For %q, want 127.0.0.1", body, got)
			}
		}
	})

	t.Run("killed backend costs no request and shows unhealthy", func(t *testing.T) {
		addr := b2.addr
		b2.kill()
		killed := time.Now()
		for i := range 30 {
			if status, body := get(t, client, lb.url+"/"); status != 200 || body == "b2" {
				t.Fatalf("request %d after kill: %d %q", i, status, body)
			}
		}
		testkit.Eventually(t, "b2 unhealthy in /status", 5*time.Second-time.Since(killed), func() bool { return !lb.healthy(t, addr) })
		b2.start(t, addr)
		restarted := time.Now()
		testkit.Eventually(t, "b2 back in rotation", 8*time.Second, func() bool { return lb.healthy(t, addr) })
		before := b2.served.Load()
		for range 6 {
			get(t, client, lb.url+"/")
		}
		if b2.served.Load() == before {
			t.Error("b2 healthy again but got no requests")
		}
		t.Logf("b2 back after %v", time.Since(restarted).Round(time.Millisecond))
	})

	t.Run("backend whose health answers 503 gets no new requests", func(t *testing.T) {
		b3.health.Store(503)
		testkit.Eventually(t, "b3 unhealthy", 5*time.Second, func() bool { return !lb.healthy(t, b3.addr) })
		before := b3.served.Load()
		for range 30 {
			if status, _ := get(t, client, lb.url+"/"); status != 200 {
				t.Fatalf("status %d", status)
			}
		}
		if n := b3.served.Load() - before; n != 0 {
			t.Errorf("b3 got %d requests while failing its health check", n)
		}
		b3.health.Store(200)
	})

	t.Run("admin endpoints", func(t *testing.T) {
		for path, want := range map[string]string{"/healthz": "ok", "/metrics": "lb_backend_requests_total{backend=", "/": "<title>lb dashboard</title>"} {
			status, body := get(t, client, lb.admin+path)
			if status != 200 || !strings.Contains(body, want) {
				t.Errorf("GET %s: %d, body lacks %q", path, status, want)
			}
		}
		if s := lb.status(t); s.Algorithm != "least_connections" || len(s.Backends) != 3 {
			t.Errorf("/status = %+v", s)
		}
		// A DNS-rebinding page sends its own name as Host.
		req, _ := http.NewRequest(http.MethodGet, lb.admin+"/status", nil)
		req.Host = "evil.example"
		if status, body := fetch(t, client, req); status != http.StatusMisdirectedRequest || strings.Contains(body, "backends") {
			t.Errorf("/status with Host evil.example: %d %q, want 421 without the status", status, body)
		}
	})
}

func TestDoneWhenLeastConnections(t *testing.T) {
	slow, f1, f2 := startBackend(t, "slow", 300*time.Millisecond), startBackend(t, "f1", 0), startBackend(t, "f2", 0)
	lb := startLB(t, map[string]string{"LB_BACKENDS": addrs(slow, f1, f2), "LB_ALGORITHM": "least_connections"})
	testkit.Eventually(t, "all healthy", 5*time.Second, lb.allHealthy(t, slow, f1, f2))
	jobs := make(chan struct{}, 90)
	for range 90 {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for range jobs {
				resp, err := c.Get(lb.url + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := slow.served.Load(); n > 15 {
		t.Errorf("slow backend got %d of 90, want at most 15", n)
	}
	if failed.Load() != 0 {
		t.Errorf("%d requests failed", failed.Load())
	}
}

func TestDoneWhenStickySessions(t *testing.T) {
	b1, b2, b3 := startBackend(t, "b1", 0), startBackend(t, "b2", 0), startBackend(t, "b3", 0)
	lb := startLB(t, map[string]string{"LB_BACKENDS": addrs(b1, b2, b3), "LB_STICKY_SESSIONS": "cookies", "LB_STICKY_SECRET": "a-shared-secret-of-some-length"})
	testkit.Eventually(t, "all healthy", 5*time.Second, lb.allHealthy(t, b1, b2, b3))
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	_, first := get(t, client, lb.url+"/")
	for i := range 10 {
		if _, got := get(t, client, lb.url+"/"); got != first {
			t.Fatalf("request %d went to %s, want %s", i, got, first)
		}
	}
	pinned := map[string]*backend{"b1": b1, "b2": b2, "b3": b3}[first]
	pinned.kill()
	status, second := get(t, client, lb.url+"/")
	if status != 200 || second == first {
		t.Fatalf("after %s died: %d from %s, want 200 from another", first, status, second)
	}
	for i := range 5 {
		if _, got := get(t, client, lb.url+"/"); got != second {
			t.Fatalf("request %d after fail-over went to %s, want %s", i, got, second)
		}
	}
	req, _ := http.NewRequest("GET", lb.url+"/", nil)
	req.AddCookie(&http.Cookie{Name: "lb_sticky", Value: "deadbeefdeadbeef.9999999999.forged"})
	if status, _ := fetch(t, http.DefaultClient, req); status != 200 {
		t.Errorf("forged cookie: status %d, want 200", status)
	}
}

func TestBadConfigStopsStartUp(t *testing.T) {
	var out bytes.Buffer
	env := map[string]string{"LB_BACKENDS": "127.0.0.1:9", "LB_ALGORITHM": "fastest"}
	err := run(context.Background(), []string{"lb"}, func(k string) string { return env[k] }, &out, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "LB_ALGORITHM") || !strings.Contains(err.Error(), "fastest") {
		t.Fatalf("run error = %v, want one naming LB_ALGORITHM and the value", err)
	}
	env = map[string]string{"LB_BACKENDS": "127.0.0.1:9", "LB_HEALTH_INTERVAL": "1ns"}
	err = run(context.Background(), []string{"lb"}, func(k string) string { return env[k] }, &out, &out, nil)
	if err == nil || !strings.Contains(err.Error(), `LB_HEALTH_INTERVAL="1ns"`) || !strings.Contains(err.Error(), "at least 10ms") {
		t.Fatalf("run error = %v, want one naming LB_HEALTH_INTERVAL, 1ns and the floor", err)
	}
	if err := run(context.Background(), []string{"lb", "bogus"}, func(string) string { return "" }, &out, &out, nil); err == nil {
		t.Error("unknown subcommand accepted")
	}
}

func TestStartsWithUnresolvableBackendAnd503s(t *testing.T) {
	lb := startLB(t, map[string]string{"LB_BACKENDS": "no-such-host.invalid:8080"})
	start := time.Now()
	status, body := get(t, &http.Client{Timeout: 5 * time.Second}, lb.url+"/")
	if status != 503 || !strings.Contains(body, "no healthy") {
		t.Errorf("got %d %q, want a 503 page", status, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("503 took %v", d)
	}
}

func TestHealthcheckSubcommand(t *testing.T) {
	b := startBackend(t, "b", 0)
	lb := startLB(t, map[string]string{"LB_BACKENDS": b.addr})
	adminAddr := strings.TrimPrefix(lb.admin, "http://")
	env := func(k string) string {
		if k == "LB_ADMIN_ADDR" {
			return adminAddr
		}
		return ""
	}
	if err := run(context.Background(), []string{"lb", "healthcheck"}, env, io.Discard, io.Discard, nil); err != nil {
		t.Errorf("healthcheck against a running lb: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if err := run(context.Background(), []string{"lb", "healthcheck"}, func(k string) string {
		if k == "LB_ADMIN_ADDR" {
			return dead
		}
		return ""
	}, io.Discard, io.Discard, nil); err == nil {
		t.Error("healthcheck succeeded with nothing listening")
	}
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	lb := startLB(t, map[string]string{"LB_BACKENDS": ln.Addr().String()})
	testkit.Eventually(t, "backend healthy", 5*time.Second, func() bool { return lb.healthy(t, ln.Addr().String()) })

	result := make(chan string, 1)
	go func() {
		resp, err := http.Get(lb.url + "/slow")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	<-entered
	lb.cancel() // what SIGTERM does through signal.NotifyContext in main
	testkit.Eventually(t, "listener closed", 5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(lb.url, "http://"), time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-lb.done:
		t.Fatalf("run returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if got := <-result; got != "200 done" {
		t.Errorf("in-flight request ended with %q, want 200 done", got)
	}
	select {
	case err := <-lb.done:
		if err != nil {
			t.Errorf("run returned %v, want nil", err)
		}
		lb.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the in-flight request finished")
	}
}

// TestDashboardFigures is the "Done when" for /status and the
// debug headers: names learned from the backends' answers, per-minute
// figures, X-LB-Backend naming the replica that answered.
func TestDashboardFigures(t *testing.T) {
	a, b := startBackend(t, "a", 0), startBackend(t, "b", 0)
	l := startLB(t, map[string]string{"LB_BACKENDS": a.addr + "," + b.addr, "LB_DEBUG_HEADERS": "true"})
	testkit.Eventually(t, "both backends healthy", 10*time.Second, l.allHealthy(t, a, b))
	for range 20 {
		resp, err := http.Get(l.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := resp.Header.Get("X-LB-Backend"), "replica-"+string(body); got != want {
			t.Errorf("X-LB-Backend %q for an answer from %s, want %q", got, body, want)
		}
		if got := resp.Header.Get("X-LB-Reason"); got != "least_connections" {
			t.Errorf("X-LB-Reason %q, want least_connections", got)
		}
	}
	type figures struct {
		Backends []struct {
			Address   string  `json:"address"`
			Name      string  `json:"name"`
			State     string  `json:"state"`
			RPS1m     float64 `json:"rps_1m"`
			LatencyMS struct {
				P99 float64 `json:"p99"`
			} `json:"latency_ms"`
		} `json:"backends"`
	}
	var last figures
	// The recorder samples once a second: within two, the traffic shows.
	testkit.Eventually(t, "rps_1m and p99 above zero for both", 5*time.Second, func() bool {
		resp, err := http.Get(l.admin + "/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		last = figures{}
		if json.NewDecoder(resp.Body).Decode(&last) != nil || len(last.Backends) != 2 {
			return false
		}
		for _, be := range last.Backends {
			if be.RPS1m <= 0 || be.LatencyMS.P99 <= 0 {
				return false
			}
		}
		return true
	})
	for _, be := range last.Backends {
		want := map[string]string{a.addr: "replica-a", b.addr: "replica-b"}[be.Address]
		if be.Name != want || be.State != "up" {
			t.Errorf("%s: name %q state %q, want %q up", be.Address, be.Name, be.State, want)
		}
	}
}

// TestAccessLogLinesArriveInBatchesAndAtShutdown: with LB_ACCESS_LOG on,
// each request's line reaches stdout within the batch interval, whole,
// and lines still pending when lb stops are written on the way out.
func TestAccessLogLinesArriveInBatchesAndAtShutdown(t *testing.T) {
	b := startBackend(t, "b", 0)
	client := &http.Client{Timeout: 5 * time.Second}
	lb := startLB(t, map[string]string{"LB_BACKENDS": addrs(b), "LB_ACCESS_LOG": "true"})
	testkit.Eventually(t, "b healthy", 10*time.Second, lb.allHealthy(t, b))
	requests := func() int { return strings.Count(lb.out.String(), `"msg":"request"`) }
	get(t, client, lb.url+"/first")
	testkit.Eventually(t, "the first request's line", 5*time.Second, func() bool { return requests() == 1 })
	if !strings.Contains(lb.out.String(), `"uri":"/first"`) {
		t.Errorf("access line without its uri:\n%s", lb.out.String())
	}
	for i := range 20 {
		get(t, client, fmt.Sprintf("%s/n%d", lb.url, i))
	}
	lb.cancel()
	select {
	case <-lb.done:
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if n := requests(); n != 21 {
		t.Errorf("%d access lines after shutdown; want 21:\n%s", n, lb.out.String())
	}
	lb.done <- nil // for the cleanup's wait
}
