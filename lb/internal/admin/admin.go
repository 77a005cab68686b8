// Package admin serves the balancer's admin listener: /status (JSON), a
// live dashboard at /, Prometheus text at /metrics and /healthz.
package admin

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"hits/lb/internal/balancer"
)

//go:embed dashboard.html
var dashboard []byte

// Source is where the admin listener reads the balancer's state.
type Source interface {
	Status() balancer.Status
}

// Status is the /status document.
type Status struct {
	Algorithm   string                   `json:"algorithm"`
	Sticky      string                   `json:"sticky_sessions"`
	Backends    []balancer.BackendStatus `json:"backends"`
	Transitions []balancer.Transition    `json:"transitions"`
}

// Options says what the admin listener reports and exposes.
type Options struct {
	Algorithm string
	Sticky    string
	// Pprof mounts /debug/pprof/ (for profiling; off by default).
	Pprof bool
}

// NewServer returns the admin handler. Every route is listed here.
func NewServer(src Source, opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /status", handleStatus(src, opts))
	mux.Handle("GET /metrics", handleMetrics(src))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(dashboard)
	})
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func handleStatus(src Source, opts Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s := src.Status()
		doc := Status{Algorithm: opts.Algorithm, Sticky: opts.Sticky, Backends: s.Backends, Transitions: s.Transitions}
		if doc.Backends == nil {
			doc.Backends = []balancer.BackendStatus{}
		}
		if doc.Transitions == nil {
			doc.Transitions = []balancer.Transition{}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(doc)
	})
}

// handleMetrics writes the Prometheus text exposition format by hand: a
// few gauges and counters do not justify a client library.
func handleMetrics(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s := src.Status()
		var b strings.Builder
		metric := func(name, typ, help string, value func(balancer.BackendStatus) string) {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
			for _, st := range s.Backends {
				fmt.Fprintf(&b, "%s{backend=%q} %s\n", name, st.Address, value(st))
			}
		}
		healthy := 0
		for _, st := range s.Backends {
			if st.Healthy && !st.Removed {
				healthy++
			}
		}
		fmt.Fprintf(&b, "# HELP lb_backends Backends known from discovery.\n# TYPE lb_backends gauge\nlb_backends %d\n", len(s.Backends))
		fmt.Fprintf(&b, "# HELP lb_backends_healthy Backends in rotation.\n# TYPE lb_backends_healthy gauge\nlb_backends_healthy %d\n", healthy)
		metric("lb_backend_up", "gauge", "1 when the backend is in rotation.", func(st balancer.BackendStatus) string { return boolNum(st.Healthy && !st.Removed) })
		metric("lb_backend_in_flight", "gauge", "Requests being proxied to the backend.", func(st balancer.BackendStatus) string { return fmt.Sprint(st.InFlight) })
		metric("lb_backend_idle_conns", "gauge", "Idle keep-alive connections to the backend.", func(st balancer.BackendStatus) string { return fmt.Sprint(st.IdleConns) })
		metric("lb_backend_requests_total", "counter", "Requests sent to the backend (attempts, retries included).", func(st balancer.BackendStatus) string { return fmt.Sprint(st.Requests) })
		metric("lb_backend_failures_total", "counter", "Connection failures and timeouts talking to the backend.", func(st balancer.BackendStatus) string { return fmt.Sprint(st.Failures) })
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write([]byte(b.String()))
	})
}

func boolNum(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
