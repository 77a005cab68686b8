package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hits/h1/front"
	"hits/lb/internal/balancer"
	"hits/lb/internal/discovery"
	"hits/lb/internal/health"
	"hits/testkit"
)

// fakeResolver answers LookupHost from a table the test changes.
type fakeResolver struct {
	mu      sync.Mutex // guards answers
	answers map[string][]string
	err     error
}

func (f *fakeResolver) set(host string, ips []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answers == nil {
		f.answers = map[string][]string{}
	}
	f.answers[host] = ips
	f.err = err
}

func (f *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if ips, ok := f.answers[host]; ok && len(ips) > 0 {
		return slices.Clone(ips), nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

type recorder struct {
	mu   sync.Mutex // guards sets
	sets [][]string
}

func (r *recorder) SetMembers(addrs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, addrs)
}

func (r *recorder) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sets[len(r.sets)-1]
}

func TestResolveNowFollowsTheAnswer(t *testing.T) {
	res := &fakeResolver{}
	rec := &recorder{}
	changes := 0
	d, err := discovery.New([]string{"app:8080", "10.0.0.9:9000"}, rec, discovery.Options{Resolver: res, Interval: time.Second, OnChange: func() { changes++ }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		name string
		ips  []string
		err  error
		want []string
	}{
		{"not resolvable yet", nil, nil, []string{"10.0.0.9:9000"}},
		{"two replicas", []string{"172.18.0.3", "172.18.0.2"}, nil, []string{"10.0.0.9:9000", "172.18.0.2:8080", "172.18.0.3:8080"}},
		{"dns server down keeps last answer", nil, errors.New("i/o timeout"), []string{"10.0.0.9:9000", "172.18.0.2:8080", "172.18.0.3:8080"}},
		{"scaled to one, recreated with a new IP", []string{"172.18.0.7"}, nil, []string{"10.0.0.9:9000", "172.18.0.7:8080"}},
		{"ipv6", []string{"fd00::5"}, nil, []string{"10.0.0.9:9000", "[fd00::5]:8080"}},
		{"scaled to zero (NXDOMAIN)", nil, nil, []string{"10.0.0.9:9000"}},
	}
	for _, st := range steps {
		res.set("app", st.ips, st.err)
		d.ResolveNow(ctx)
		if got := rec.last(); !slices.Equal(got, st.want) {
			t.Errorf("%s: members = %v, want %v", st.name, got, st.want)
		}
	}
	if changes != 5 {
		t.Errorf("OnChange called %d times, want 5 (only when the set changed)", changes)
	}
}

// TestScaleUpAndDownWhileTrafficFlows grows a name from 2 to 4 addresses
// and shrinks it to 1 with requests flowing the whole time: every request
// must succeed, new replicas must get traffic once checked, and removed
// ones must be dropped before they are stopped.
func TestScaleUpAndDownWhileTrafficFlows(t *testing.T) {
	// Four real backends on 127.0.0.1-4, all on the same port, as replicas
	// of one service appear to the balancer.
	var served [4]atomic.Int64
	port, servers := startReplicas(t, 4, func(i int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				served[i].Add(1)
			}
			io.WriteString(w, strconv.Itoa(i))
		})
	})
	ip := func(i int) string { return "127.0.0." + strconv.Itoa(i+1) }

	pool := balancer.NewPool(balancer.PoolOptions{MaxIdle: 64, DialTimeout: 2 * time.Second, IdleTimeout: 30 * time.Second})
	t.Cleanup(pool.Close)
	proxy, err := balancer.NewProxy(pool, balancer.ProxyOptions{Selector: &balancer.RoundRobin{}, MaxAttempts: 3, ResponseTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &front.Server{Handler: proxy}
	go fs.Serve(ln)
	t.Cleanup(func() { fs.Shutdown(context.Background()) })
	frontURL := "http://" + ln.Addr().String()
	checker, err := health.New(pool.Addresses, pool, health.Options{Path: "/healthz", Interval: time.Second, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res := &fakeResolver{}
	d, err := discovery.New([]string{"app:" + port}, pool, discovery.Options{Resolver: res, Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	round := func(ips ...string) {
		res.set("app", ips, nil)
		d.ResolveNow(ctx)
		checker.CheckNow(ctx)
	}

	round(ip(0), ip(1))
	var failed, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(frontURL + "/")
				total.Add(1)
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
	waitServed := func(what string, idx ...int) {
		t.Helper()
		base := make([]int64, len(idx))
		for k, i := range idx {
			base[k] = served[i].Load()
		}
		for k, i := range idx {
			testkit.Eventually(t, fmt.Sprintf("%s: replica %d to get traffic", what, i), 5*time.Second,
				func() bool { return served[i].Load() >= base[k]+20 })
		}
	}

	waitServed("two replicas", 0, 1)
	round(ip(0), ip(1), ip(2), ip(3))
	waitServed("four replicas", 0, 1, 2, 3)
	round(ip(2))
	// Removed replicas finish what they have; the next round drops them.
	deadline := time.Now().Add(5 * time.Second)
	for len(pool.Status().Backends) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("removed replicas not dropped: %+v", pool.Status().Backends)
		}
		round(ip(2))
	}
	// Only now stop them, as compose does after the drain.
	for _, i := range []int{0, 1, 3} {
		servers[i].Close()
	}
	before := served[2].Load()
	waitServed("one replica", 2)
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed while scaling", n, total.Load())
	}
	if served[2].Load() <= before {
		t.Error("the remaining replica served nothing at the end")
	}
	if got := pool.Status().Backends[0].Address; got != net.JoinHostPort(ip(2), port) {
		t.Errorf("remaining backend = %s, want replica 2", got)
	}
}

// startReplicas starts n servers on 127.0.0.1..n sharing one port.
func startReplicas(t *testing.T, n int, handler func(i int) http.Handler) (string, []*httptest.Server) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		first, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(first.Addr().String())
		lns := []net.Listener{first}
		for i := 2; i <= n; i++ {
			ln, err := net.Listen("tcp", "127.0.0."+strconv.Itoa(i)+":"+port)
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) < n {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		servers := make([]*httptest.Server, n)
		for i, ln := range lns {
			s := httptest.NewUnstartedServer(handler(i))
			s.Listener.Close()
			s.Listener = ln
			s.Start()
			t.Cleanup(s.Close)
			servers[i] = s
		}
		return port, servers
	}
	t.Fatal("no port free on 127.0.0.1-4")
	return "", nil
}
