package health_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hits/lb/internal/health"
)

// verdicts records what the checker reports: the last probe's result per
// backend ("up" means it passed) and how many there were.
type verdicts struct {
	mu      sync.Mutex // guards last, n and changed
	last    map[string]bool
	n       map[string]int
	changed chan struct{} // closed at the next verdict; nil until someone waits
}

func (v *verdicts) Probed(addr string, up bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last == nil {
		v.last, v.n = map[string]bool{}, map[string]int{}
	}
	v.last[addr] = up
	v.n[addr]++
	if v.changed != nil {
		close(v.changed)
		v.changed = nil
	}
}

// wait returns once cond holds for addr's latest verdict and report count,
// checking at every verdict, and fails the test with what if d passes first.
func (v *verdicts) wait(t *testing.T, addr, what string, d time.Duration, cond func(up bool, reports int) bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		v.mu.Lock()
		if cond(v.last[addr], v.n[addr]) {
			v.mu.Unlock()
			return
		}
		if v.changed == nil {
			v.changed = make(chan struct{})
		}
		changed := v.changed
		v.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			up, n := v.get(addr)
			t.Fatalf("%s (after %v: up=%v, %d verdicts)", what, d, up, n)
		}
	}
}

func (v *verdicts) get(addr string) (up bool, reports int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.last[addr], v.n[addr]
}

// switchable is a backend whose health endpoint answers the status it is set to.
func switchable(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	status := &atomic.Int64{}
	status.Store(200)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(s.Close)
	return s, status
}

func addrOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func TestEveryProbeIsReported(t *testing.T) {
	srv, status := switchable(t)
	addr := addrOf(srv)
	v := &verdicts{}
	c := newChecker(t, func() []string { return []string{addr} }, v, health.Options{Path: "/readyz", Interval: time.Second, Timeout: time.Second})
	for i, st := range []struct {
		status int
		want   bool
	}{{200, true}, {503, false}, {204, true}, {302, true}, {500, false}, {404, false}} {
		status.Store(int64(st.status))
		c.CheckNow(context.Background())
		if got, n := v.get(addr); got != st.want || n != i+1 {
			t.Fatalf("probe %d (status %d): reported %v after %d reports, want %v after %d", i, st.status, got, n, st.want, i+1)
		}
	}
}

func TestNewNeedsPathAndInterval(t *testing.T) {
	for _, o := range []health.Options{{Interval: time.Second}, {Path: "/readyz"}} {
		if _, err := health.New(func() []string { return nil }, &verdicts{}, o); err == nil {
			t.Errorf("New accepted %+v", o)
		}
	}
}

// newChecker is health.New for a test: a bad option fails it.
func newChecker(t *testing.T, targets func() []string, r health.Reporter, opts health.Options) *health.Checker {
	t.Helper()
	if opts.Interval == 0 {
		opts.Interval = time.Second
	}
	if opts.Path == "" {
		opts.Path = "/healthz"
	}
	c, err := health.New(targets, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTimeoutAndRefusedAreFailures(t *testing.T) {
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); slow.Close() })
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedAddr := addrOf(refused)
	refused.Close()
	v := &verdicts{}
	c := newChecker(t, func() []string { return []string{addrOf(slow), refusedAddr} }, v, health.Options{Timeout: 100 * time.Millisecond, Interval: time.Second})
	start := time.Now()
	c.CheckNow(context.Background())
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("round took %v; the probe timeout (100ms) was not honoured", d)
	}
	for _, a := range []string{addrOf(slow), refusedAddr} {
		if up, n := v.get(a); up || n != 1 {
			t.Errorf("%s: healthy=%v reports=%d, want down after one report", a, up, n)
		}
	}
}

func TestSlowProbeNeverDelaysOthers(t *testing.T) {
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); slow.Close() })
	fast, _ := switchable(t)
	v := &verdicts{}
	// The probe timeout is far longer than the interval, so slow's first
	// probe is still stuck while fast must be probed round after round.
	c := newChecker(t, func() []string { return []string{addrOf(slow), addrOf(fast)} }, v, health.Options{
		Path: "/readyz", Interval: 20 * time.Millisecond, Timeout: 20 * time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	v.wait(t, addrOf(fast), "fast backend probed >= 5 times while slow hung", 5*time.Second,
		func(_ bool, n int) bool { return n >= 5 })
	if _, n := v.get(addrOf(slow)); n != 0 {
		t.Errorf("slow backend has %d verdicts, want 0 while its first probe hangs", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestKickProbesAtOnce(t *testing.T) {
	srv, _ := switchable(t)
	var targets atomic.Value
	targets.Store([]string{})
	v := &verdicts{}
	c := newChecker(t, func() []string { return targets.Load().([]string) }, v, health.Options{Path: "/readyz", Interval: time.Hour, Timeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	targets.Store([]string{addrOf(srv)})
	c.Kick()
	v.wait(t, addrOf(srv), "Kick did not probe the new target (interval is an hour)", 5*time.Second,
		func(up bool, _ int) bool { return up })
}

func TestObserveGetsEveryAnswersHeadersOrNil(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App-Instance", "hits-app-3")
		w.WriteHeader(http.StatusServiceUnavailable) // a failing answer still says who it is
	}))
	defer srv.Close()
	live := strings.TrimPrefix(srv.URL, "http://")
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()

	var mu sync.Mutex // guards seen
	seen := map[string]http.Header{}
	v := &verdicts{}
	c := newChecker(t, func() []string { return []string{live, deadAddr} }, v, health.Options{
		Timeout: time.Second,
		Observe: func(addr string, h http.Header) {
			mu.Lock()
			defer mu.Unlock()
			seen[addr] = h
		},
	})
	c.CheckNow(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if h, ok := seen[live]; !ok || h.Get("X-App-Instance") != "hits-app-3" {
		t.Errorf("live backend: observed %v (seen %v), want its X-App-Instance", h, ok)
	}
	if h, ok := seen[deadAddr]; !ok || h != nil {
		t.Errorf("dead backend: observed %v (seen %v), want nil", h, ok)
	}
}
