// Package metrics is a small Prometheus text-format registry: counters,
// labelled counters and histograms, safe for concurrent use, with no
// package-level state. It is enough for a handful of series; the full client
// library would be the choice for more.
package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds the metrics one process exposes, in registration order.
type Registry struct {
	mu      sync.Mutex // guards metrics
	metrics []writer
}

type writer interface {
	write(w io.Writer)
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{} }

func (r *Registry) add(m writer) {
	r.mu.Lock()
	r.metrics = append(r.metrics, m)
	r.mu.Unlock()
}

// Write writes every metric in the Prometheus text exposition format.
func (r *Registry) Write(w io.Writer) {
	r.mu.Lock()
	ms := append([]writer(nil), r.metrics...)
	r.mu.Unlock()
	for _, m := range ms {
		m.write(w)
	}
}

// Counter is a monotonically increasing count. A nil *Counter ignores Add,
// so optional instrumentation needs no checks at the call site.
type Counter struct {
	name, help string
	v          atomic.Uint64
}

// NewCounter registers a counter.
func (r *Registry) NewCounter(name, help string) *Counter {
	c := &Counter{name: name, help: help}
	r.add(c)
	return c
}

// Add adds n.
func (c *Counter) Add(n uint64) {
	if c != nil {
		c.v.Add(n)
	}
}

// Inc adds one.
func (c *Counter) Inc() { c.Add(1) }

// Value returns the current count.
func (c *Counter) Value() uint64 {
	if c == nil {
		return 0
	}
	return c.v.Load()
}

func (c *Counter) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", c.name, c.help, c.name, c.name, c.v.Load())
}

// CounterVec is a counter family keyed by label values.
type CounterVec struct {
	name, help string
	labels     []string
	values     sync.Map // label values joined by \xff -> *atomic.Uint64; read without a lock once a series exists
}

// NewCounterVec registers a labelled counter family.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{name: name, help: help, labels: labels}
	r.add(c)
	return c
}

// Inc adds one to the series with these label values (in label order).
func (c *CounterVec) Inc(values ...string) {
	if c == nil {
		return
	}
	// A cheap key on the hot path; the exposition format is built in write.
	key := strings.Join(values, "\xff")
	v, ok := c.values.Load(key)
	if !ok {
		v, _ = c.values.LoadOrStore(key, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

func (c *CounterVec) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name)
	var lines []string
	c.values.Range(func(k, v any) bool {
		lines = append(lines, fmt.Sprintf("%s{%s} %d\n", c.name, labelString(c.labels, strings.Split(k.(string), "\xff")), v.(*atomic.Uint64).Load()))
		return true
	})
	sort.Strings(lines)
	for _, l := range lines {
		io.WriteString(w, l)
	}
}

// Histogram counts observations into fixed cumulative buckets.
type Histogram struct {
	name, help string
	bounds     []float64
	counts     []atomic.Uint64 // one per bound, plus +Inf
	sumBits    atomic.Uint64   // float64 bits of the sum, updated by CAS
}

// NewHistogram registers a histogram with the given ascending upper bounds.
func (r *Registry) NewHistogram(name, help string, bounds ...float64) *Histogram {
	h := &Histogram{name: name, help: help, bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
	r.add(h)
	return h
}

// Observe records one value. A nil *Histogram ignores it.
func (h *Histogram) Observe(v float64) {
	if h == nil {
		return
	}
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v: "le" semantics
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Count returns how many values were observed.
func (h *Histogram) Count() uint64 {
	if h == nil {
		return 0
	}
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

func (h *Histogram) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.name, h.help, h.name)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", h.name, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", h.name, cum)
	fmt.Fprintf(w, "%s_sum %s\n%s_count %d\n", h.name,
		strconv.FormatFloat(math.Float64frombits(h.sumBits.Load()), 'g', -1, 64), h.name, cum)
}

func labelString(names, values []string) string {
	var b strings.Builder
	for i, n := range names {
		v := ""
		if i < len(values) {
			v = values[i]
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", n, v)
	}
	return b.String()
}
