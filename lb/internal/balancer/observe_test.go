package balancer

import (
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"testing"
	"time"

	"hits/lb/internal/stats"
)

// named answers with its name and says who it is the way the hits app
// does, in X-App-Instance.
func named(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderInstance, name)
		w.Header().Set(HeaderVersion, "v-"+name)
		w.Write([]byte(name))
	}
}

// probe stands in for one health answer from each backend.
func probe(lb *testLB, backends ...*testBackend) {
	for _, b := range backends {
		h := http.Header{}
		h.Set(HeaderInstance, "app-"+b.name)
		h.Set(HeaderVersion, "v-"+b.name)
		lb.pool.ObserveAnswer(b.addr(), h)
	}
}

func TestDebugHeadersNameBackendAndReason(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{DebugHeaders: true}, a, b)
	probe(lb, a, b)
	var got []string
	for range 4 {
		req := newReq(t, "GET", lb.url+"/", nil)
		// A client cannot claim where its request went.
		req.Header.Set("X-LB-Backend", "forged")
		req.Header.Set("X-LB-Reason", "forged")
		_, body, resp := get(t, http.DefaultClient, req)
		if want := "app-" + body; resp.Header.Get("X-LB-Backend") != want {
			t.Errorf("X-LB-Backend %q for an answer from %s, want %q", resp.Header.Get("X-LB-Backend"), body, want)
		}
		if r := resp.Header.Get("X-LB-Reason"); r != "round_robin" {
			t.Errorf("X-LB-Reason %q, want round_robin", r)
		}
		got = append(got, resp.Header.Get("X-LB-Backend"))
	}
	if want := []string{got[0], got[1], got[0], got[1]}; got[0] == got[1] || !slices.Equal(got, want) {
		t.Errorf("backends %v, want the two names alternating", got)
	}
	// The backend is told too, once, with the balancer's values only.
	for _, be := range []*testBackend{a, b} {
		for _, r := range be.requests() {
			if v := r.Header.Values("X-LB-Backend"); len(v) != 1 || v[0] != "app-"+be.name {
				t.Errorf("%s got X-LB-Backend %q, want [app-%s]", be.name, v, be.name)
			}
			if v := r.Header.Values("X-LB-Reason"); len(v) != 1 || v[0] != "round_robin" {
				t.Errorf("%s got X-LB-Reason %q, want [round_robin]", be.name, v)
			}
		}
	}
}

func TestDebugHeadersOffAndForgedOnesDropped(t *testing.T) {
	a := startBackend(t, "a", nil)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, a)
	req := newReq(t, "GET", lb.url+"/", nil)
	req.Header.Set("X-LB-Reason", "sticky")
	_, _, resp := get(t, http.DefaultClient, req)
	if v := resp.Header.Get("X-LB-Backend") + resp.Header.Get("X-LB-Reason"); v != "" {
		t.Errorf("debug headers off, response carries %q", v)
	}
	if r := a.requests()[0]; r.Header.Get("X-LB-Reason") != "" {
		t.Errorf("backend got a client's X-LB-Reason %q", r.Header.Get("X-LB-Reason"))
	}
}

func TestBackendWithoutANameIsShownByAddress(t *testing.T) {
	a := startBackend(t, "a", nil)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{DebugHeaders: true}, a)
	_, _, resp := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil))
	if got := resp.Header.Get("X-LB-Backend"); got != a.addr() {
		t.Errorf("never probed: X-LB-Backend %q, want the address %q", got, a.addr())
	}
	lb.pool.ObserveAnswer(a.addr(), http.Header{}) // answers, says nothing about itself
	if st := statusOf(lb.pool, a.addr()); st.Name != a.addr() || st.Version != "" {
		t.Errorf("nameless backend: name %q version %q, want the address and none", st.Name, st.Version)
	}
	h := http.Header{}
	h.Set(HeaderInstance, " bad\x01name\n"+strings.Repeat("x", 300))
	lb.pool.ObserveAnswer(a.addr(), h)
	if st := statusOf(lb.pool, a.addr()); strings.ContainsAny(st.Name, "\x01\n ") || len(st.Name) > maxLabel {
		t.Errorf("name %q: want control characters and spaces trimmed, at most %d bytes", st.Name, maxLabel)
	}
	lb.pool.ObserveAnswer("10.9.9.9:1", h) // not a member: ignored
}

func TestStickyAndRetryReasons(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s := NewSticky("lb_sticky", time.Hour, []byte("0123456789abcdef0123456789abcdef"), clock.Now)
	lb := newTestLB(t, PoolOptions{StickyID: s.ID}, ProxyOptions{Sticky: s, DebugHeaders: true, Selector: &LeastConnections{}}, a, b)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	_, _, resp := get(t, client, newReq(t, "GET", lb.url+"/", nil))
	if r := resp.Header.Get("X-LB-Reason"); r != "least_connections" {
		t.Errorf("first request: reason %q, want least_connections", r)
	}
	_, _, resp = get(t, client, newReq(t, "GET", lb.url+"/", nil))
	if r := resp.Header.Get("X-LB-Reason"); r != "sticky" {
		t.Errorf("with its cookie: reason %q, want sticky", r)
	}

	// A dead backend first in rotation: the request is retried elsewhere.
	c := startBackend(t, "c", nil)
	rr := newTestLB(t, PoolOptions{}, ProxyOptions{DebugHeaders: true}, c)
	dead := deadAddr(t)
	rr.pool.SetMembers([]string{c.addr(), dead})
	rr.pool.SetHealthy(dead, true)
	reasons := map[string]int{}
	for range 4 {
		_, _, resp := get(t, http.DefaultClient, newReq(t, "GET", rr.url+"/", nil))
		reasons[resp.Header.Get("X-LB-Reason")]++
	}
	if reasons["retry-after-dial-error"] == 0 || reasons["retry-after-dial-error"]+reasons["round_robin"] != 4 {
		t.Errorf("reasons %v, want retry-after-dial-error (and round_robin when the live one came first)", reasons)
	}
	st := rr.proxy.Snapshot()
	for _, bc := range st.Backends {
		if bc.Key == dead && (bc.Retries == 0 || bc.Errors != bc.Retries || bc.Latency.Total() != 0) {
			t.Errorf("dead backend: %d retries %d errors %d timed; want retries = errors > 0 and no latency", bc.Retries, bc.Errors, bc.Latency.Total())
		}
	}
}

func TestDecisionFeedAndCounters(t *testing.T) {
	a := startBackend(t, "a", named("app-a"))
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, a, b)
	probe(lb, a, b)
	for range 40 {
		get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil))
	}
	feed := lb.proxy.Decisions(20)
	if len(feed) != 20 {
		t.Fatalf("feed has %d decisions, want 20", len(feed))
	}
	for i, d := range feed {
		if d.Reason != "round_robin" || d.Time.IsZero() || d.Ms <= 0 {
			t.Errorf("decision %d: %+v, want round_robin with a time and a duration", i, d)
		}
		want := map[string]int{"app-a": 200, "app-b": 500}[d.Backend]
		if d.Status != want {
			t.Errorf("decision %d: %s answered %d, want %d", i, d.Backend, d.Status, want)
		}
		if i > 0 && d.Time.After(feed[i-1].Time) {
			t.Errorf("decision %d is newer than %d: want newest first", i, i-1)
		}
	}
	if n := len(lb.proxy.Decisions(100)); n != decisionSlots {
		t.Errorf("asked for 100: got %d, want the ring's %d", n, decisionSlots)
	}
	snap := lb.proxy.Snapshot()
	if snap.Requests != 40 || snap.Errors != 20 {
		t.Errorf("totals: %d requests %d errors, want 40 and 20", snap.Requests, snap.Errors)
	}
	for _, c := range snap.Backends {
		wantErr := map[string]uint64{"app-a": 0, "app-b": 20}[c.Name]
		if c.Requests != 20 || c.Errors != wantErr || c.Latency.Total() != 20 || c.LatencySum <= 0 || c.State != stats.Up {
			t.Errorf("%s: %d requests %d errors %d timed (sum %v) state %v; want 20, %d, 20, >0, up",
				c.Name, c.Requests, c.Errors, c.Latency.Total(), c.LatencySum, c.State, wantErr)
		}
	}
}

func TestNoBackendIsAnUnattributedDecision(t *testing.T) {
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{})
	get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil))
	feed := lb.proxy.Decisions(5)
	if len(feed) != 1 || feed[0].Backend != "" || feed[0].Reason != "none" || feed[0].Status != 503 {
		t.Errorf("feed %+v, want one 503 with no backend and reason none", feed)
	}
}

func TestStates(t *testing.T) {
	a := startBackend(t, "a", nil)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, a)
	state := func() string { return statusOf(lb.pool, a.addr()).State }
	if s := state(); s != "up" {
		t.Errorf("healthy: %q, want up", s)
	}
	h := http.Header{}
	h.Set(HeaderState, "draining")
	lb.pool.ObserveAnswer(a.addr(), h)
	if s := state(); s != "draining" {
		t.Errorf("answer says draining: %q, want draining", s)
	}
	lb.pool.SetHealthy(a.addr(), false)
	if s := state(); s != "draining" {
		t.Errorf("draining and out of rotation: %q, want draining", s)
	}
	if tr := lb.pool.Status().Transitions[0]; tr.Event != "down" || !strings.HasPrefix(tr.Reason, "draining") {
		t.Errorf("transition %+v, want down with a draining reason", tr)
	}
	lb.pool.ObserveAnswer(a.addr(), nil) // no answer: the process is gone
	if s := state(); s != "down" {
		t.Errorf("no answer: %q, want down", s)
	}
	lb.pool.SetHealthy(a.addr(), true)
	lb.pool.SetMembers(nil) // gone from DNS and idle: dropped
	if len(lb.pool.Status().Backends) != 0 {
		t.Fatal("idle removed backend was not dropped")
	}
}

func TestDecisionRecordingDoesNotAllocate(t *testing.T) {
	var d decisions
	b := &Backend{addr: "10.0.0.1:80"}
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() { d.record(now, time.Millisecond, b, ReasonRoundRobin, 200) }); n != 0 {
		t.Errorf("record allocates %v times, want 0", n)
	}
	h := http.Header{}
	f := forwarded{}
	b.obs.ident.Store(&identity{name: "x", header: []string{"x"}})
	f.route(true, b, ReasonSticky)
	if n := testing.AllocsPerRun(1000, func() { setDebugHeaders(h, &f) }); n != 0 {
		t.Errorf("setDebugHeaders allocates %v times, want 0", n)
	}
}
