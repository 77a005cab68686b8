package main

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newRegistry returns the registry the operations listener serves: Go
// runtime and process metrics (go_goroutines, process_cpu_seconds_total, ...)
// and hits_instance_info, which names this replica. The app's own metrics
// are registered on it by the packages that own them.
func newRegistry(instance string) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hits_instance_info",
		Help: "Always 1; the instance label is the name this replica shows on the page.",
		// Label values must be UTF-8; the library escapes \, " and newline.
		ConstLabels: prometheus.Labels{"instance": strings.ToValidUTF8(instance, "\uFFFD")},
	})
	info.Set(1)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return reg, nil
}

// newOpsServer serves /metrics and, when withPprof, /debug/pprof/ on the
// operations listener: a port of its own that compose never publishes and
// the balancer never forwards to.
func newOpsServer(reg *prometheus.Registry, withPprof bool) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg, // counts its own errors as promhttp_metric_handler_errors_total
		Timeout:  10 * time.Second,
	})))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	// No WriteTimeout: a CPU profile streams for as long as it was asked to.
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second}
}
