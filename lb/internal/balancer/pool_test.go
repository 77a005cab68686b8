package balancer

import (
	"io"
	"net/http"
	"testing"
	"time"
)

func TestRemovedBackendDrainsThenIsDropped(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "slow")
	})
	other := startBackend(t, "other", nil)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, slow)

	held := make(chan string, 1)
	go func() {
		resp, err := http.Get(lb.url + "/hold")
		if err != nil {
			held <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		held <- string(b)
	}()
	<-entered

	// Discovery now answers only "other": slow leaves rotation but its
	// in-flight request must finish.
	lb.pool.SetMembers([]string{other.addr()})
	lb.pool.SetHealthy(other.addr(), true)
	st := statusOf(lb.pool, slow.addr())
	if !st.Removed || st.InFlight != 1 {
		t.Fatalf("slow status %+v, want removed with 1 in flight", st)
	}
	for i := range 5 {
		if _, got, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil)); got != "other" {
			t.Fatalf("request %d went to %s, want other (removed backends take no new requests)", i, got)
		}
	}
	close(release)
	select {
	case got := <-held:
		if got != "slow" {
			t.Fatalf("in-flight request ended with %q, want slow's answer", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request to the removed backend never finished")
	}
	lb.pool.SetMembers([]string{other.addr()})
	for _, s := range lb.pool.Status().Backends {
		if s.Address == slow.addr() {
			t.Fatalf("idle removed backend still in the pool: %+v", s)
		}
	}
	var events []string
	for _, tr := range lb.pool.Status().Transitions {
		if tr.Address == slow.addr() {
			events = append(events, tr.Event)
		}
	}
	if len(events) < 2 || events[0] != "dropped" || events[1] != "removed" {
		t.Errorf("slow's transitions newest first = %v, want dropped then removed", events)
	}
}

func TestNewBackendIsOutOfRotationUntilHealthy(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	lb := newTestLB(t, PoolOptions{}, ProxyOptions{}, a)
	lb.pool.SetMembers([]string{a.addr(), b.addr()})
	for i := range 4 {
		if _, got, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil)); got != "a" {
			t.Fatalf("request %d went to %s before it passed a check", i, got)
		}
	}
	lb.pool.SetHealthy(b.addr(), true)
	seen := map[string]bool{}
	for range 4 {
		_, got, _ := get(t, http.DefaultClient, newReq(t, "GET", lb.url+"/", nil))
		seen[got] = true
	}
	if !seen["b"] {
		t.Error("b never got traffic after passing its check")
	}
}

// The pool alone decides health: the thresholds apply to probes, and a
// backend ejected for connection failures needs as many passes to come
// back as one the probes took out.
func TestPoolOwnsHealthVerdicts(t *testing.T) {
	const addr = "10.0.0.9:80"
	steps := []struct {
		ok   bool
		want bool
		why  string
	}{
		{true, true, "a new backend joins on its first pass"},
		{false, true, "one failure is below the unhealthy threshold of 2"},
		{true, true, "a pass resets the failure count"},
		{false, true, "first failure again"},
		{false, false, "second failure in a row: down"},
		{true, false, "one pass is below the healthy threshold of 3"},
		{true, false, "pass 2"},
		{false, false, "a failure resets the pass count"},
		{true, false, "pass 1"},
		{true, false, "pass 2"},
		{true, true, "pass 3: back up"},
	}
	p := NewPool(PoolOptions{HealthyThreshold: 3, UnhealthyThreshold: 2, PassiveFailures: 2})
	p.SetMembers([]string{addr})
	for i, st := range steps {
		p.Probed(addr, st.ok)
		if got := statusOf(p, addr).Healthy; got != st.want {
			t.Fatalf("step %d (%s): healthy=%v, want %v", i, st.why, got, st.want)
		}
	}
	b := p.members[addr]
	p.connFailed(b)
	p.connFailed(b)
	if statusOf(p, addr).Healthy {
		t.Fatal("not ejected after 2 connection failures")
	}
	for i := range 2 {
		p.Probed(addr, true)
		if statusOf(p, addr).Healthy {
			t.Fatalf("ejected backend back after %d passing probes, want 3 (the checker's view must not override the pool's)", i+1)
		}
	}
	p.Probed(addr, true)
	if !statusOf(p, addr).Healthy {
		t.Fatal("not back after 3 passing probes")
	}

	// A new backend whose first probe fails needs the threshold too.
	p.SetMembers([]string{addr, "10.0.0.10:80"})
	p.Probed("10.0.0.10:80", false)
	p.Probed("10.0.0.10:80", true)
	p.Probed("10.0.0.10:80", true)
	if statusOf(p, "10.0.0.10:80").Healthy {
		t.Fatal("a backend whose first probe failed came up after two passes, want three")
	}
	p.Probed("10.0.0.10:80", true)
	if !statusOf(p, "10.0.0.10:80").Healthy {
		t.Fatal("not up after three passes")
	}
}
