package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"hits/lb/internal/admin"
	"hits/lb/internal/balancer"
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

func TestMetricsAreValidPrometheusText(t *testing.T) {
	s := serve(t, sample)
	status, body, h := fetch(t, s.URL+"/metrics")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("status %d, Content-Type %q", status, h.Get("Content-Type"))
	}
	for _, want := range []string{
		"lb_backends 2\n",
		"lb_backends_healthy 1\n",
		`lb_backend_up{backend="10.0.0.3:8080"} 0` + "\n",
		`lb_backend_in_flight{backend="10.0.0.2:8080"} 3` + "\n",
		`lb_backend_requests_total{backend="10.0.0.2:8080"} 120` + "\n",
		`lb_backend_failures_total{backend="10.0.0.3:8080"} 4` + "\n",
		"# TYPE lb_backend_requests_total counter\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	line := regexp.MustCompile(`^(# (HELP|TYPE) .+|[a-z_]+(\{backend="[^"]+"\})? \d+)$`)
	for _, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		if !line.MatchString(l) {
			t.Errorf("malformed exposition line %q", l)
		}
	}
}

func TestDashboardIsSelfContained(t *testing.T) {
	s := serve(t, sample)
	status, body, h := fetch(t, s.URL+"/")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, Content-Type %q", status, h.Get("Content-Type"))
	}
	if !strings.Contains(body, `fetch("/status"`) {
		t.Error("dashboard does not poll /status")
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
