package admin

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hits/lb/internal/stats"
)

// handleMetrics serves the Prometheus exposition through client_golang:
// the Go runtime's and the process's collectors, and the balancer's own
// figures, read from the pool and the counters at each scrape (nothing
// is kept twice).
func handleMetrics(src Source, counters stats.Source) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(src, counters),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// collector turns the balancer's state into metrics when scraped. The
// names and meanings of the hand-written exposition it replaced are kept.
type collector struct {
	src      Source
	counters stats.Source // nil: no latency, error or retry metrics

	backends, healthy                   *prometheus.Desc
	up, inFlight, idle, info, state     *prometheus.Desc
	requests, failures, errors, retries *prometheus.Desc
	duration                            *prometheus.Desc
	clientRequests, client5xx           *prometheus.Desc
}

func newCollector(src Source, counters stats.Source) *collector {
	backend := []string{"backend"}
	c := &collector{
		src: src, counters: counters,
		backends: prometheus.NewDesc("lb_backends", "Backends known from discovery.", nil, nil),
		healthy:  prometheus.NewDesc("lb_backends_healthy", "Backends in rotation.", nil, nil),
		up:       prometheus.NewDesc("lb_backend_up", "1 when the backend is in rotation.", backend, nil),
		inFlight: prometheus.NewDesc("lb_backend_in_flight", "Requests being proxied to the backend.", backend, nil),
		idle:     prometheus.NewDesc("lb_backend_idle_conns", "Idle keep-alive connections to the backend.", backend, nil),
		info: prometheus.NewDesc("lb_backend_info", "1 per backend, labelled with the replica's name and version from its X-App-Instance and X-App-Version headers (the address when it sends none).",
			[]string{"backend", "name", "version"}, nil),
		state:          prometheus.NewDesc("lb_backend_state", "1 for the state the backend is in (up, slow_start, draining, down), 0 for the others.", []string{"backend", "state"}, nil),
		requests:       prometheus.NewDesc("lb_backend_requests_total", "Requests sent to the backend (attempts, retries included).", backend, nil),
		failures:       prometheus.NewDesc("lb_backend_failures_total", "Connection failures and timeouts talking to the backend.", backend, nil),
		errors:         prometheus.NewDesc("lb_backend_errors_total", "Attempts on the backend that failed or were answered with a 5xx status.", backend, nil),
		retries:        prometheus.NewDesc("lb_backend_retries_total", "Attempts on the backend after which the request was tried again.", backend, nil),
		duration:       prometheus.NewDesc("lb_backend_request_duration_seconds", "Time from sending a request to the backend to the end of its answer, for attempts that got one.", backend, nil),
		clientRequests: prometheus.NewDesc("lb_requests_total", "Client requests answered, with or without a backend.", nil, nil),
		client5xx:      prometheus.NewDesc("lb_requests_5xx_total", "Client requests answered with a 5xx status (503 with no backend, 502, 504, or a backend's own).", nil, nil),
	}
	return c
}

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.backends, c.healthy, c.up, c.inFlight, c.idle, c.info, c.state,
		c.requests, c.failures, c.errors, c.retries, c.duration, c.clientRequests, c.client5xx} {
		ch <- d
	}
}

var states = []string{"up", "slow_start", "draining", "down"}

// Collect reads the balancer once and sends its metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Status()
	healthy := 0
	for _, b := range s.Backends {
		up := b.Healthy && !b.Removed
		if up {
			healthy++
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, boolNum(up), b.Address)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(b.InFlight), b.Address)
		ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(b.IdleConns), b.Address)
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(b.Requests), b.Address)
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(b.Failures), b.Address)
		ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, b.Address, b.Name, b.Version)
		for _, st := range states {
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, boolNum(b.State == st), b.Address, st)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.backends, prometheus.GaugeValue, float64(len(s.Backends)))
	ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, float64(healthy))
	if c.counters == nil {
		return
	}
	snap := c.counters()
	ch <- prometheus.MustNewConstMetric(c.clientRequests, prometheus.CounterValue, float64(snap.Requests))
	ch <- prometheus.MustNewConstMetric(c.client5xx, prometheus.CounterValue, float64(snap.Errors))
	upper := stats.OctaveBounds()
	le := make([]float64, len(upper))
	for i, u := range upper {
		le[i] = u.Seconds()
	}
	for i := range snap.Backends {
		b := &snap.Backends[i]
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(b.Errors), b.Key)
		ch <- prometheus.MustNewConstMetric(c.retries, prometheus.CounterValue, float64(b.Retries), b.Key)
		cum := b.Latency.Cumulative(upper)
		buckets := make(map[float64]uint64, len(le))
		for j, v := range cum {
			buckets[le[j]] = v
		}
		ch <- prometheus.MustNewConstHistogram(c.duration, b.Latency.Total(), b.LatencySum.Seconds(), buckets, b.Key)
	}
}

func boolNum(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
