package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"hits/lb/internal/admin"
	"hits/lb/internal/balancer"
	"hits/lb/internal/stats"
)

type fixed balancer.Status

func (f fixed) Status() balancer.Status { return balancer.Status(f) }

func serve(t *testing.T, src admin.Source) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(admin.NewServer(src, admin.Options{Algorithm: "least_connections", Sticky: "cookies"}))
	t.Cleanup(s.Close)
	return s
}

func fetch(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var sample = fixed{
	Backends: []balancer.BackendStatus{
		{Address: "10.0.0.2:8080", Healthy: true, InFlight: 3, Requests: 120, Failures: 1},
		{Address: "10.0.0.3:8080", Healthy: false, Requests: 7, Failures: 4},
	},
	Transitions: []balancer.Transition{{Time: time.Unix(1_700_000_000, 0).UTC(), Address: "10.0.0.3:8080", Event: "down", Reason: "health check failed"}},
}

func TestStatusJSON(t *testing.T) {
	s := serve(t, sample)
	status, body, h := fetch(t, s.URL+"/status")
	if status != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q", status, h.Get("Content-Type"))
	}
	var doc struct {
		Algorithm string `json:"algorithm"`
		Backends  []map[string]any
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, body)
	}
	if doc.Algorithm != "least_connections" || len(doc.Backends) != 2 {
		t.Fatalf("got %+v", doc)
	}
	b := doc.Backends[0]
	want := map[string]any{"address": "10.0.0.2:8080", "healthy": true, "in_flight": 3.0, "requests": 120.0, "failures": 1.0}
	for k, v := range want {
		if b[k] != v {
			t.Errorf("backends[0].%s = %v, want %v", k, b[k], v)
		}
	}
	if !strings.Contains(body, `"event": "down"`) {
		t.Errorf("transitions missing from /status: %s", body)
	}
}

func TestEmptyStatusHasArrays(t *testing.T) {
	s := serve(t, fixed{})
	_, body, _ := fetch(t, s.URL+"/status")
	if !strings.Contains(body, `"backends": []`) || !strings.Contains(body, `"transitions": []`) {
		t.Errorf("empty pool should give empty arrays, not null: %s", body)
	}
}

func TestMetricsKeepTheirNamesAndPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is needed to check the exposition: apt-get install prometheus (.ci/run does)")
	}
	src := sample
	src.Backends = append([]balancer.BackendStatus(nil), sample.Backends...)
	// A replica name is whatever the backend sends: the label must be
	// escaped the exposition format's way, not Go's.
	src.Backends[0].Name, src.Backends[0].Version, src.Backends[0].State = `we\ird "app" é-1`, "v1\n2", "up"
	src.Backends[1].Name, src.Backends[1].State = "10.0.0.3:8080", "down"
	var h stats.Histogram
	h.Observe(3 * time.Millisecond)
	h.Observe(700 * time.Millisecond)
	var c stats.Counters
	c.Key, c.Requests, c.Errors, c.Retries = "10.0.0.2:8080", 120, 2, 1
	c.LatencySum = h.Load(&c.Latency)
	s := httptest.NewServer(admin.NewServer(src, admin.Options{
		Counters: func() stats.Snapshot { return stats.Snapshot{Backends: []stats.Counters{c}, Requests: 130, Errors: 3} },
	}))
	t.Cleanup(s.Close)
	status, body, hdr := fetch(t, s.URL+"/metrics")
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("status %d, Content-Type %q", status, hdr.Get("Content-Type"))
	}
	for _, want := range []string{
		"lb_backends 2\n",
		"lb_backends_healthy 1\n",
		`lb_backend_up{backend="10.0.0.3:8080"} 0` + "\n",
		`lb_backend_in_flight{backend="10.0.0.2:8080"} 3` + "\n",
		`lb_backend_requests_total{backend="10.0.0.2:8080"} 120` + "\n",
		`lb_backend_failures_total{backend="10.0.0.3:8080"} 4` + "\n",
		"# TYPE lb_backend_requests_total counter\n",
		`lb_backend_info{backend="10.0.0.2:8080",name="we\\ird \"app\" é-1",version="v1\n2"} 1` + "\n",
		`lb_backend_state{backend="10.0.0.3:8080",state="down"} 1` + "\n",
		`lb_backend_errors_total{backend="10.0.0.2:8080"} 2` + "\n",
		`lb_backend_request_duration_seconds_bucket{backend="10.0.0.2:8080",le="0.004096"} 1` + "\n",
		`lb_backend_request_duration_seconds_count{backend="10.0.0.2:8080"} 2` + "\n",
		"lb_requests_total 130\n",
		"lb_requests_5xx_total 3\n",
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestDashboardIsSelfContained(t *testing.T) {
	s := serve(t, sample)
	status, body, h := fetch(t, s.URL+"/")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, Content-Type %q", status, h.Get("Content-Type"))
	}
	if !strings.Contains(body, `fetch("/stats?since="`) {
		t.Error("dashboard does not poll /stats")
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("Content-Security-Policy %q: want nothing but inline code and its own endpoints", csp)
	}
	if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(body) {
		t.Error("dashboard loads external assets")
	}
	if status, _, _ := fetch(t, s.URL+"/nope"); status != 404 {
		t.Errorf("unknown path: %d, want 404", status)
	}
	if status, body, _ := fetch(t, s.URL+"/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", status, body)
	}
}

// recorded is a recorder that has seen 30 seconds of the sample's traffic:
// 10.0.0.2 answering 4 requests a second in 5ms, one of them an error.
func recorded(t *testing.T) *stats.Recorder {
	t.Helper()
	var c stats.Counters
	c.Key, c.Name, c.State = "10.0.0.2:8080", "hits-app-1", stats.Up
	var h stats.Histogram
	rec := stats.NewRecorder(func() stats.Snapshot {
		return stats.Snapshot{Backends: []stats.Counters{c}, Requests: c.Requests, Errors: c.Errors}
	}, stats.Options{})
	start := time.Unix(1_800_000_000, 0)
	for s := range 30 {
		for range 4 {
			h.Observe(5 * time.Millisecond)
		}
		c.Requests += 4
		c.Errors++
		c.LatencySum = h.Load(&c.Latency)
		rec.Sample(start.Add(time.Duration(s) * time.Second))
	}
	return rec
}

func TestStatusHasNamesStatesAndTheLastMinute(t *testing.T) {
	src := sample
	src.Backends = append([]balancer.BackendStatus(nil), sample.Backends...)
	src.Backends[0].Name, src.Backends[0].Version, src.Backends[0].State = "hits-app-1", "1.2.3", "up"
	src.Backends[1].Name, src.Backends[1].State = "10.0.0.3:8080", "down"
	s := httptest.NewServer(admin.NewServer(src, admin.Options{
		Algorithm: "round_robin", Sticky: "none", DebugHeaders: true, Stats: recorded(t),
		Extra: map[string]func() any{"listeners": func() any { return []string{":8443 https"} }},
	}))
	t.Cleanup(s.Close)
	_, body, _ := fetch(t, s.URL+"/status")
	var doc struct {
		DebugHeaders bool     `json:"debug_headers"`
		Listeners    []string `json:"listeners"`
		Transitions  []any    `json:"transitions"`
		Backends     []struct {
			Address   string  `json:"address"`
			Name      string  `json:"name"`
			Version   string  `json:"version"`
			State     string  `json:"state"`
			Healthy   bool    `json:"healthy"`
			Requests  uint64  `json:"requests"`
			IdleConns *int    `json:"idle_conns"`
			Since     *string `json:"since"`
			RPS1m     float64 `json:"rps_1m"`
			Errors1m  uint64  `json:"errors_1m"`
			LatencyMS struct {
				P50 float64 `json:"p50"`
				P99 float64 `json:"p99"`
			} `json:"latency_ms"`
		} `json:"backends"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, body)
	}
	if !doc.DebugHeaders || len(doc.Listeners) != 1 || len(doc.Transitions) != 1 || len(doc.Backends) != 2 {
		t.Fatalf("got %s", body)
	}
	b := doc.Backends[0]
	if b.Name != "hits-app-1" || b.Version != "1.2.3" || b.State != "up" || !b.Healthy || b.Requests != 120 || b.IdleConns == nil || b.Since == nil {
		t.Errorf("backend 0: %+v; want its name, version, state and every older field", b)
	}
	if b.RPS1m != 4 || b.Errors1m != 30 || b.LatencyMS.P50 < 4.5 || b.LatencyMS.P50 > 5.2 || b.LatencyMS.P99 < b.LatencyMS.P50 {
		t.Errorf("backend 0 last minute: rps %v errors %d latency %+v; want 4, 30, p50≈5ms ≤ p99", b.RPS1m, b.Errors1m, b.LatencyMS)
	}
	if c := doc.Backends[1]; c.State != "down" || c.RPS1m != 0 || c.LatencyMS.P99 != 0 {
		t.Errorf("backend 1 (no traffic): %+v, want down with zeros", c)
	}
}

func TestStatsServesHistorySinceAndTheFeed(t *testing.T) {
	feed := []balancer.Decision{{Backend: "hits-app-1", Reason: "round_robin", Status: 200, Ms: 1.5}}
	s := httptest.NewServer(admin.NewServer(sample, admin.Options{
		Stats: recorded(t), Decisions: func(n int) []balancer.Decision {
			if n != 20 {
				t.Errorf("feed asked for %d, want 20", n)
			}
			return feed
		},
	}))
	t.Cleanup(s.Close)
	var live admin.Live
	status, body, _ := fetch(t, s.URL+"/stats")
	if err := json.Unmarshal([]byte(body), &live); status != 200 || err != nil {
		t.Fatalf("GET /stats: %d %v\n%s", status, err, body)
	}
	h := live.History
	if h.To-h.From != 29 || len(h.Backends) != 1 || h.Backends[0].Name != "hits-app-1" || len(h.Backends[0].P99) != 30 {
		t.Errorf("history %d..%d %+v, want 30 seconds of hits-app-1", h.From, h.To, h.Backends)
	}
	if len(live.Decisions) != 1 || live.Decisions[0].Backend != "hits-app-1" || len(live.Backends) != 2 {
		t.Errorf("decisions %+v backends %d, want the feed and both backends", live.Decisions, len(live.Backends))
	}
	_, body, _ = fetch(t, s.URL+"/stats?since="+strconv.FormatInt(h.To-2, 10))
	json.Unmarshal([]byte(body), &live)
	if n := len(live.History.Total.Requests); n != 2 || live.History.From != h.To-1 {
		t.Errorf("since to-2: %d seconds from %d, want 2 from %d", n, live.History.From, h.To-1)
	}
	if status, _, _ := fetch(t, s.URL+"/stats?since=yesterday"); status != 400 {
		t.Errorf("since=yesterday: %d, want 400", status)
	}
}

func TestStatsWithoutHistoryHasEmptyArrays(t *testing.T) {
	s := serve(t, fixed{})
	_, body, _ := fetch(t, s.URL+"/stats")
	for _, want := range []string{`"backends":[]`, `"decisions":[]`, `"transitions":[]`} {
		if !strings.Contains(body, want) {
			t.Errorf("/stats lacks %s: %s", want, body)
		}
	}
}

func TestStatsIsBuiltOncePerSecondForAllDashboards(t *testing.T) {
	rec := recorded(t)
	builds := 0
	s := httptest.NewServer(admin.NewServer(sample, admin.Options{
		Stats: rec, Decisions: func(int) []balancer.Decision { builds++; return nil },
	}))
	t.Cleanup(s.Close)
	last := strconv.FormatInt(rec.Last(), 10)
	var bodies []string
	for range 5 { // five dashboards asking for what is new in the same second
		_, body, _ := fetch(t, s.URL+"/stats?since="+last)
		bodies = append(bodies, body)
	}
	if builds != 1 || bodies[4] != bodies[0] {
		t.Errorf("5 polls in one second: %d builds, want 1 and the same answer", builds)
	}
	fetch(t, s.URL+"/stats?since=0") // another question: built too
	rec.Sample(time.Unix(rec.Last()+1, 0))
	_, body, _ := fetch(t, s.URL+"/stats?since="+last)
	var live admin.Live
	if err := json.Unmarshal([]byte(body), &live); err != nil || builds != 3 || live.History.To != rec.Last() {
		t.Errorf("after a new sample: %d builds (want 3), history to %d (want %d)", builds, live.History.To, rec.Last())
	}
}
