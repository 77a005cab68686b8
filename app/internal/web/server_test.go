package web

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"hits/app/internal/hits"
)

// panickyCounter stands in for the counter to make a handler panic, which
// no real part does on demand.
type panickyCounter struct{}

func (panickyCounter) Hit(context.Context) (hits.Hit, error) { panic("secret internal state") }
func (panickyCounter) Breakdown(context.Context) ([]hits.InstanceCount, error) {
	return nil, nil
}

func TestPanicBecomesA500WithoutInternals(t *testing.T) {
	var logs bytes.Buffer
	srv := httptest.NewServer(NewServer(Deps{
		Counter:  panickyCounter{},
		Ready:    func(context.Context) error { return nil },
		Draining: func() bool { return false },
		Metrics:  prometheus.NewRegistry(),
		Log:      slog.New(slog.NewJSONHandler(&logs, nil)),
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(string(body), "secret") {
		t.Errorf("GET / = %d %q; want 500 without the panic's text", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "handler panic") || !strings.Contains(logs.String(), "secret internal state") {
		t.Errorf("panic not logged: %s", logs.String())
	}
	if resp, err := http.Get(srv.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz after a panic = %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
}

// fixedCounter answers every hit with the same numbers.
type fixedCounter struct{ h hits.Hit }

func (c fixedCounter) Hit(context.Context) (hits.Hit, error) { return c.h, nil }
func (c fixedCounter) Breakdown(context.Context) ([]hits.InstanceCount, error) {
	return nil, nil
}

func TestVersionOnPageInJSONAndInEveryResponseHeader(t *testing.T) {
	for _, tc := range []struct{ version, want string }{{"v2.1.0-3-gabc123", "v2.1.0-3-gabc123"}, {"", "dev"}} {
		t.Run(tc.want, func(t *testing.T) {
			var draining atomic.Bool
			srv := httptest.NewServer(NewServer(Deps{
				Counter:  fixedCounter{hits.Hit{Instance: "a-1", Total: 7, LastDay: 7}},
				Ready:    func(context.Context) error { return nil },
				Draining: draining.Load,
				Metrics:  prometheus.NewRegistry(),
				Log:      slog.New(slog.DiscardHandler),
				Version:  tc.version,
			}))
			defer srv.Close()
			fetch := func(path, accept string) (*http.Response, string) {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
				req.Header.Set("Accept", accept)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, string(b)
			}
			resp, body := fetch("/", "application/json")
			if !strings.Contains(body, `"version":"`+tc.want+`"`) {
				t.Errorf("JSON %s lacks version %q", body, tc.want)
			}
			if got := resp.Header.Get("X-App-Version"); got != tc.want {
				t.Errorf("GET / X-App-Version = %q, want %q", got, tc.want)
			}
			if _, body := fetch("/", "text/html"); !strings.Contains(body, "version "+tc.want) {
				t.Errorf("page does not show version %q", tc.want)
			}
			for _, d := range []bool{false, true} {
				draining.Store(d)
				resp, _ := fetch("/readyz", "")
				if got := resp.Header.Get("X-App-Version"); got != tc.want {
					t.Errorf("readyz (draining %v, %d) X-App-Version = %q, want %q", d, resp.StatusCode, got, tc.want)
				}
			}
			if resp, _ := fetch("/nope", ""); resp.Header.Get("X-App-Version") != tc.want {
				t.Errorf("404 lacks X-App-Version %q", tc.want)
			}
		})
	}
}

func TestInstanceHeaderDrainingStateAndSentByLine(t *testing.T) {
	var draining atomic.Bool
	srv := httptest.NewServer(NewServer(Deps{
		Counter:  fixedCounter{hits.Hit{Instance: "hits-app-3", Total: 7, LastDay: 7}},
		Ready:    func(context.Context) error { return nil },
		Draining: draining.Load,
		Metrics:  prometheus.NewRegistry(),
		Log:      slog.New(slog.DiscardHandler),
		Instance: "hits-app-3",
	}))
	defer srv.Close()
	get := func(path, reason string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Accept", "text/html")
		if reason != "" {
			req.Header.Set("X-LB-Reason", reason)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, path := range []string{"/", "/readyz", "/healthz", "/nope"} {
		if resp, _ := get(path, ""); resp.Header.Get("X-App-Instance") != "hits-app-3" {
			t.Errorf("%s: X-App-Instance %q, want hits-app-3", path, resp.Header.Get("X-App-Instance"))
		}
	}
	if resp, _ := get("/readyz", ""); resp.Header.Get("X-App-State") != "" {
		t.Errorf("ready: X-App-State %q, want none", resp.Header.Get("X-App-State"))
	}
	draining.Store(true)
	if resp, _ := get("/readyz", ""); resp.StatusCode != 503 || resp.Header.Get("X-App-State") != "draining" || resp.Header.Get("X-App-Instance") != "hits-app-3" {
		t.Errorf("draining: %d X-App-State %q X-App-Instance %q, want 503 draining hits-app-3",
			resp.StatusCode, resp.Header.Get("X-App-State"), resp.Header.Get("X-App-Instance"))
	}
	for _, tc := range []struct{ reason, want string }{
		{"round_robin", "sent here by <b>round robin</b>"},
		{"least_connections", "sent here by <b>least connections</b>"},
		{"sticky", "sent here by <b>your sticky-session cookie</b>"},
		{"retry-after-dial-error", "sent here by <b>retry after dial error</b>"},
	} {
		if _, body := get("/", tc.reason); !strings.Contains(body, tc.want) {
			t.Errorf("X-LB-Reason %s: page lacks %q", tc.reason, tc.want)
		}
	}
	for _, bad := range []string{"", "<script>", "Round Robin", strings.Repeat("a", 65)} {
		if _, body := get("/", bad); strings.Contains(body, "sent here by") {
			t.Errorf("X-LB-Reason %q: page shows a sent-by line", bad)
		}
	}
}
