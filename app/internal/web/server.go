// Package web is the HTTP face of the app: the counted page (HTML or JSON),
// health, readiness and the favicon. Every route is listed in routes.go;
// errors become statuses in one place (status in errors.go). Metrics are
// not served here: they are on the operations listener, off the public path.
package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"hits/app/internal/hits"
)

// Counter counts a page load and describes the spread over instances.
type Counter interface {
	Hit(ctx context.Context) (hits.Hit, error)
	Breakdown(ctx context.Context) ([]hits.InstanceCount, error)
}

// Deps are what the server needs; all are required unless noted.
type Deps struct {
	Counter Counter
	// Ready reports whether PostgreSQL answers; called by /readyz with a deadline.
	Ready func(ctx context.Context) error
	// Draining reports whether shutdown has begun (then /readyz is 503).
	Draining func() bool
	// Metrics receives the server's request metrics.
	Metrics prometheus.Registerer
	Log     *slog.Logger
	// Version is the build's version, shown on the page, in the JSON and in
	// every response's X-App-Version header (so a balancer's probe of
	// /readyz learns it too); if empty, "dev".
	Version string
	// Instance is this replica's name, sent in every response's
	// X-App-Instance header so a balancer's probe learns who answered;
	// if empty, no header.
	Instance string
}

type server struct {
	Deps
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	counted  prometheus.Counter
	failed   prometheus.Counter

	// The identity headers' values, built once (see identityHeaders).
	versionHeader, instanceHeader []string
}

// NewServer returns the app's HTTP handler and registers its metrics.
func NewServer(d Deps) http.Handler {
	if d.Version == "" {
		d.Version = "dev"
	}
	f := promauto.With(d.Metrics)
	s := &server{
		Deps:          d,
		versionHeader: []string{d.Version},
		requests: f.NewCounterVec(prometheus.CounterOpts{Name: "hits_http_requests_total",
			Help: "HTTP requests on the public port by route and status code."}, []string{"route", "code"}),
		duration: f.NewHistogram(prometheus.HistogramOpts{Name: "hits_http_request_duration_seconds",
			Help:    "Duration of counted page loads (GET /).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}}),
		counted: f.NewCounter(prometheus.CounterOpts{Name: "hits_page_hits_total",
			Help: "Page loads counted and answered by this instance."}),
		failed: f.NewCounter(prometheus.CounterOpts{Name: "hits_page_failures_total",
			Help: "Page loads answered 503 because the hit could not be counted."}),
	}
	if d.Instance != "" {
		s.instanceHeader = []string{d.Instance}
	}
	return s.routes()
}

// statusRecorder remembers the status for the request metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// instrument counts requests under a fixed route label (never the raw path,
// which a client controls).
func (s *server) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	ok := s.requests.WithLabelValues(route, "200") // looked up once: most answers are 200s
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h(rec, r)
		if rec.code == 0 || rec.code == http.StatusOK {
			ok.Inc()
			return
		}
		s.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
	}
}

// identityHeaders sets X-App-Version and X-App-Instance on every
// response: lb's health probe learns the replica's name and version from
// its /readyz answer, with no Docker socket.
func (s *server) identityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-App-Version"] = s.versionHeader
		if s.instanceHeader != nil {
			h["X-App-Instance"] = s.instanceHeader
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panicking handler into a logged 500 that shows the
// client nothing internal; the process keeps serving.
func (s *server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { // net/http's own way to abort a response
				panic(v)
			}
			s.Log.Error("handler panic", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			s.writeError(w, r, http.StatusInternalServerError)
		}()
		next.ServeHTTP(w, r)
	})
}
