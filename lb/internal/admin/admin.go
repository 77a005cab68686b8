// Package admin serves the balancer's admin listener: /status (JSON), a
// live dashboard at / fed by /stats, Prometheus text at /metrics and
// /healthz.
package admin

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"sync"
	"time"

	"hits/lb/internal/balancer"
	"hits/lb/internal/stats"
)

//go:embed dashboard.html
var dashboard []byte

// Source is where the admin listener reads the balancer's state.
type Source interface {
	Status() balancer.Status
}

// Options says what the admin listener reports and exposes. Zero values
// are documented per field.
type Options struct {
	Algorithm string
	Sticky    string
	// DebugHeaders says whether responses carry X-LB-Backend and
	// X-LB-Reason; /status and the dashboard show it.
	DebugHeaders bool
	// Pprof mounts /debug/pprof/ (for profiling; off by default).
	Pprof bool
	// Counters are the balancer's cumulative counters, exported in
	// /metrics; if nil, /metrics has no latency, error or retry figures.
	Counters stats.Source
	// Stats is the per-second history; if nil, /status's per-minute
	// figures are zero and /stats has no history.
	Stats *stats.Recorder
	// Decisions returns the latest n routing decisions, newest first; if
	// nil, the dashboard's feed stays empty.
	Decisions func(n int) []balancer.Decision
	// Extra adds top-level fields to /status: each key's value is what its
	// function returns when /status is asked (listeners, certificates).
	// The keys of the fields above are taken.
	Extra map[string]func() any
}

// feedLength is how many routing decisions the dashboard shows.
const feedLength = 20

// NewServer returns the admin handler. Every route is listed here.
func NewServer(src Source, opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /status", handleStatus(src, opts))
	mux.Handle("GET /stats", handleStats(src, opts))
	mux.Handle("GET /metrics", handleMetrics(src, opts.Counters))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		// The page is self-contained: nothing else may load or run.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
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

// Status is the /status document.
type Status struct {
	Algorithm    string                `json:"algorithm"`
	Sticky       string                `json:"sticky_sessions"`
	DebugHeaders bool                  `json:"debug_headers"`
	Backends     []BackendStatus       `json:"backends"`
	Transitions  []balancer.Transition `json:"transitions"`
}

// BackendStatus is one backend in /status: the balancer's view of it and
// its last minute.
type BackendStatus struct {
	balancer.BackendStatus
	RPS1m     float64 `json:"rps_1m"`
	LatencyMS Latency `json:"latency_ms"`
	Errors1m  uint64  `json:"errors_1m"`
	Retries1m uint64  `json:"retries_1m"`
}

// Latency is a backend's latency percentiles over the last minute, in
// milliseconds (0 when it answered nothing).
type Latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)/10) / 100
}

// status assembles the document shared by /status and /stats.
func status(src Source, opts Options) (Status, []balancer.Transition) {
	s := src.Status()
	doc := Status{Algorithm: opts.Algorithm, Sticky: opts.Sticky, DebugHeaders: opts.DebugHeaders,
		Backends: make([]BackendStatus, len(s.Backends)), Transitions: s.Transitions}
	for i, b := range s.Backends {
		doc.Backends[i].BackendStatus = b
		if opts.Stats != nil {
			m := opts.Stats.Minute(b.Address)
			doc.Backends[i].RPS1m = m.RPS
			doc.Backends[i].LatencyMS = Latency{P50: millis(m.P50), P99: millis(m.P99)}
			doc.Backends[i].Errors1m = m.Errors
			doc.Backends[i].Retries1m = m.Retries
		}
	}
	if doc.Transitions == nil {
		doc.Transitions = []balancer.Transition{}
	}
	return doc, doc.Transitions
}

func handleStatus(src Source, opts Options) http.Handler {
	keys := make([]string, 0, len(opts.Extra))
	for k := range opts.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		doc, _ := status(src, opts)
		body, err := json.Marshal(doc)
		if err != nil {
			http.Error(w, "encode status", http.StatusInternalServerError)
			return
		}
		// Extra fields are spliced in before the closing brace, after the
		// fixed ones, in key order.
		var b bytes.Buffer
		b.Write(body[:len(body)-1])
		for _, k := range keys {
			v, err := json.Marshal(opts.Extra[k]())
			if err != nil {
				v = []byte(strconv.Quote("error: " + err.Error()))
			}
			fmt.Fprintf(&b, ",%q:%s", k, v)
		}
		b.WriteByte('}')
		var out bytes.Buffer
		json.Indent(&out, b.Bytes(), "", "  ")
		out.WriteByte('\n')
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(out.Bytes())
	})
}

// Live is the /stats document the dashboard polls every second: what
// /status says, the per-second history after ?since= (a unix second; the
// previous answer's history.to), the latest routing decisions.
type Live struct {
	Now          int64                 `json:"now"` // unix milliseconds
	Algorithm    string                `json:"algorithm"`
	Sticky       string                `json:"sticky_sessions"`
	DebugHeaders bool                  `json:"debug_headers"`
	Backends     []BackendStatus       `json:"backends"`
	Transitions  []balancer.Transition `json:"transitions"` // the latest 10
	History      stats.Window          `json:"history"`
	Decisions    []balancer.Decision   `json:"decisions"`
}

func handleStats(src Source, opts Options) http.Handler {
	c := &liveCache{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var since int64
		if v := r.URL.Query().Get("since"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				http.Error(w, "since: want a unix second", http.StatusBadRequest)
				return
			}
			since = n
		}
		body := c.get(since, opts.Stats, func() []byte {
			doc, transitions := status(src, opts)
			live := Live{Now: time.Now().UnixMilli(), Algorithm: doc.Algorithm, Sticky: doc.Sticky, DebugHeaders: doc.DebugHeaders,
				Backends: doc.Backends, Transitions: transitions[:min(10, len(transitions))], Decisions: []balancer.Decision{}}
			if opts.Stats != nil {
				live.History = opts.Stats.Since(since)
			} else {
				live.History.Backends = []stats.SeriesWindow{}
			}
			if opts.Decisions != nil {
				live.Decisions = opts.Decisions(feedLength)
			}
			b, _ := json.Marshal(live)
			return append(b, '\n')
		})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	})
}

// liveCache keeps the /stats answers of the current second. The history
// only changes when the recorder samples, once a second, and every open
// dashboard asks for the same new second: the first asker builds the
// answer, the others get its bytes, so five dashboards cost about what
// one does. The backends' figures and the decision feed in it are those
// of the moment it was built, at most a second old.
type liveCache struct {
	mu      sync.Mutex // guards the fields below, and serialises builds
	second  int64      // the recorder's latest sample the answers are for
	answers map[int64][]byte
}

// maxCached bounds the answers kept for one second (one per distinct
// since): dashboards in step ask for one or two.
const maxCached = 8

func (c *liveCache) get(since int64, rec *stats.Recorder, build func() []byte) []byte {
	if rec == nil {
		return build()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if last := rec.Last(); last != c.second || c.answers == nil {
		c.second, c.answers = last, make(map[int64][]byte, 2)
	}
	if b, ok := c.answers[since]; ok {
		return b
	}
	b := build()
	if len(c.answers) < maxCached {
		c.answers[since] = b
	}
	return b
}
