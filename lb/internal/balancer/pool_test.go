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
