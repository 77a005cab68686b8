package balancer

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"hits/lb/internal/stats"
)

// What the balancer observes for the dashboard, /status and the debug
// headers. Everything here is written on the request path with atomics
// only: no lock, no allocation; the admin listener reads it.

// Reason says why a request went to the backend that served it.
type Reason uint8

// The reasons, as X-LB-Reason and the dashboard's decision feed name them.
const (
	ReasonNone             Reason = iota // no backend was tried
	ReasonRoundRobin                     // round_robin
	ReasonLeastConnections               // least_connections
	ReasonSticky                         // sticky: the client's cookie pinned it
	ReasonPolicy                         // policy: another Selector chose
	ReasonRetryDial                      // retry-after-dial-error
	ReasonRetrySend                      // retry-after-send-error
	ReasonRetryNoResponse                // retry-after-no-response
	ReasonRetryStaleConn                 // retry-after-stale-conn: a kept-alive conn was closed under it
)

var reasonNames = [...]string{
	ReasonNone:             "none",
	ReasonRoundRobin:       "round_robin",
	ReasonLeastConnections: "least_connections",
	ReasonSticky:           "sticky",
	ReasonPolicy:           "policy",
	ReasonRetryDial:        "retry-after-dial-error",
	ReasonRetrySend:        "retry-after-send-error",
	ReasonRetryNoResponse:  "retry-after-no-response",
	ReasonRetryStaleConn:   "retry-after-stale-conn",
}

// reasonValues are the header values, made once so that setting the
// header on a response allocates nothing. Never modified.
var reasonValues = func() (v [len(reasonNames)][]string) {
	for i, n := range reasonNames {
		v[i] = []string{n}
	}
	return v
}()

// String is the reason as X-LB-Reason shows it.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Debug header names: canonical, so the header map needs no rewriting.
const (
	headerBackend = "X-Lb-Backend"
	headerReason  = "X-Lb-Reason"
)

// policyReason is the reason a selector's own choice is reported under.
func policyReason(s Selector) Reason {
	switch s.(type) {
	case *RoundRobin:
		return ReasonRoundRobin
	case *LeastConnections:
		return ReasonLeastConnections
	}
	return ReasonPolicy
}

// retryReason names the failure that makes the request go out again.
func retryReason(r result, v verdict) Reason {
	switch {
	case v.retry == retryFresh:
		return ReasonRetryStaleConn
	case r.stage == stageDial:
		return ReasonRetryDial
	case r.stage == stageSend:
		return ReasonRetrySend
	}
	return ReasonRetryNoResponse
}

// observed is what a Backend counts for the dashboard beyond its basic
// counters. Part of Backend, so never copied.
type observed struct {
	latency stats.Histogram // attempts that got an answer, by duration
	errors  atomic.Uint64   // attempts that failed or answered 5xx
	retries atomic.Uint64   // attempts after which the request was tried again
	ident   atomic.Pointer[identity]
	// draining: the backend's last health answer said it is shutting down.
	draining atomic.Bool
}

// identity is what a backend says about itself in its answers' headers.
// Immutable once stored.
type identity struct {
	name    string
	version string
	header  []string // {name}, the X-LB-Backend value; never modified
}

// The header fields a backend's answers may carry about the backend
// itself; the hits app sets them on every response, /readyz included.
const (
	HeaderInstance = "X-App-Instance" // the replica's name
	HeaderVersion  = "X-App-Version"  // the version it runs
	// HeaderState is "draining" while the backend is shutting down: it
	// finishes what it has and wants no new requests.
	HeaderState = "X-App-State"
)

// maxLabel bounds a name or version taken from a backend's header.
const maxLabel = 128

// cleanLabel keeps a backend-supplied name printable and short: it goes
// into a response header, JSON and the dashboard.
func cleanLabel(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxLabel {
		s = s[:maxLabel]
	}
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
}

// ObserveAnswer records what a backend said about itself in the header
// fields of a health answer (h nil: no answer came, so it is not
// draining, it is gone). The health checker calls it after every probe;
// an unchanged name and version cost no allocation.
func (p *Pool) ObserveAnswer(addr string, h http.Header) {
	p.mu.Lock()
	b := p.members[addr]
	p.mu.Unlock()
	if b == nil {
		return
	}
	if h == nil {
		b.obs.draining.Store(false)
		return
	}
	b.obs.draining.Store(strings.EqualFold(h.Get(HeaderState), "draining"))
	name, version := cleanLabel(h.Get(HeaderInstance)), cleanLabel(h.Get(HeaderVersion))
	if name == "" {
		name = addr
	}
	if cur := b.obs.ident.Load(); cur != nil && cur.name == name && cur.version == version {
		return
	}
	b.obs.ident.Store(&identity{name: name, version: version, header: []string{name}})
}

// Name is the backend's replica name as its answers give it, else its
// address.
func (b *Backend) Name() string {
	if id := b.obs.ident.Load(); id != nil {
		return id.name
	}
	return b.addr
}

// nameHeader is the X-LB-Backend value for b.
func (b *Backend) nameHeader() []string {
	if id := b.obs.ident.Load(); id != nil {
		return id.header
	}
	return []string{b.addr} // not yet probed: rare, so the allocation is fine
}

func (b *Backend) version() string {
	if id := b.obs.ident.Load(); id != nil {
		return id.version
	}
	return ""
}

// state is what b is doing now, for /status and the timeline.
func (b *Backend) state() stats.State {
	removed := b.removed.Load()
	switch {
	case b.obs.draining.Load() || removed && b.inFlight.Load() > 0:
		return stats.Draining
	case removed || !b.healthy.Load():
		return stats.Down
	case b.rampingUp():
		return stats.SlowStart
	}
	return stats.Up
}

// rampingUp reports whether b is in slow start.
func (b *Backend) rampingUp() bool {
	_, ramping := b.SlowStart()
	return ramping
}

// observe counts one attempt on b that took took: its latency when the
// backend answered, an error when the backend failed or answered 5xx
// (not when the client caused the failure).
func observe(b *Backend, took time.Duration, r result) {
	if r.stage == stageRelay && !r.client {
		b.obs.latency.Observe(took)
	}
	if r.status >= 500 || r.err != nil && !r.client {
		b.obs.errors.Add(1)
	}
}

// lap ends an attempt on b that began at o.end, at r.end (the attempt's
// own clock reading: clock reads are not free, 60-200 ns each on the
// benchmark VM), and counts the attempt.
func (o *outcome) lap(p *Proxy, b *Backend, r result) {
	began := o.end
	o.end = r.end
	if o.end.IsZero() { // it ended before it had a conn
		o.end = p.opts.Now()
	}
	observe(b, o.end.Sub(began), r)
}

// setDebugHeaders names the backend and the reason on the response, when
// the debug headers are on (f.via set).
func setDebugHeaders(h http.Header, f *forwarded) {
	if f.via != nil {
		h[headerBackend] = f.via
		h[headerReason] = reasonValues[f.why]
	}
}

// Decision is one request's routing, for the dashboard's live feed.
type Decision struct {
	Time     time.Time     `json:"time"`
	Backend  string        `json:"backend"` // name, or address when none is known; empty when none was available
	Address  string        `json:"address"`
	Reason   string        `json:"reason"`
	Status   int           `json:"status"`
	Duration time.Duration `json:"-"`
	Ms       float64       `json:"ms"`
}

// decisionSlots is the size of the feed's ring; Decisions returns at most
// this many.
const decisionSlots = 32

// decisions is a ring of the latest requests' routing. Writers claim a
// slot with one atomic add and fill it under a per-slot sequence number
// (a seqlock), so readers never see a half-written slot and writers never
// wait.
type decisions struct {
	next  atomic.Uint64 // requests recorded so far; also the balancer's request count
	slots [decisionSlots]decisionSlot
}

// decisionSlot is one decision. Every atomic store is a full barrier on
// amd64, so the small fields share one word: duration in microseconds
// (32 bits), status (16), reason (8). Padded to a cache line so that
// writers on different cores do not share one.
type decisionSlot struct {
	seq     atomic.Uint64 // odd while being written
	at      atomic.Int64  // unix nanos
	packed  atomic.Uint64
	backend atomic.Pointer[Backend]
	_       [32]byte
}

func (d *decisions) record(at time.Time, dur time.Duration, b *Backend, why Reason, status int) {
	n := d.next.Add(1)
	s := &d.slots[n%decisionSlots]
	us := uint64(min(max(dur.Microseconds(), 0), 1<<32-1))
	s.seq.Store(2*n - 1)
	s.at.Store(at.UnixNano())
	s.packed.Store(us<<32 | uint64(uint16(status))<<8 | uint64(why))
	s.backend.Store(b)
	s.seq.Store(2 * n)
}

// latest returns up to n recorded decisions, newest first; a slot being
// rewritten while it is read is skipped.
func (d *decisions) latest(n int) []Decision {
	n = min(n, decisionSlots)
	out := make([]Decision, 0, n)
	last := d.next.Load()
	for i := uint64(0); i < uint64(n) && i < last; i++ {
		k := last - i
		s := &d.slots[k%decisionSlots]
		seq := s.seq.Load()
		if seq != 2*k {
			continue // being written, or already overwritten by a newer request
		}
		packed := s.packed.Load()
		dec := Decision{
			Time:     time.Unix(0, s.at.Load()).UTC(),
			Duration: time.Duration(packed>>32) * time.Microsecond,
			Reason:   Reason(uint8(packed)).String(),
			Status:   int(uint16(packed >> 8)),
		}
		if b := s.backend.Load(); b != nil {
			dec.Backend, dec.Address = b.Name(), b.addr
		}
		if s.seq.Load() != seq {
			continue
		}
		dec.Ms = float64(dec.Duration.Round(10*time.Microsecond)) / float64(time.Millisecond)
		out = append(out, dec)
	}
	return out
}

// Decisions returns the latest n requests' routing, newest first (at most
// 32).
func (p *Proxy) Decisions(n int) []Decision { return p.decisions.latest(n) }

// Snapshot is the balancer's counters for the stats recorder: one entry
// per backend (sorted by address) and the totals of client requests.
func (p *Proxy) Snapshot() stats.Snapshot {
	p.pool.mu.Lock()
	bs := make([]*Backend, 0, len(p.pool.members))
	for _, b := range p.pool.members {
		bs = append(bs, b)
	}
	p.pool.mu.Unlock()
	s := stats.Snapshot{
		Backends: make([]stats.Counters, len(bs)),
		Requests: p.decisions.next.Load(),
		Errors:   p.errors5xx.Load(),
	}
	for i, b := range bs {
		c := &s.Backends[i]
		c.Key, c.Name, c.State = b.addr, b.Name(), b.state()
		c.Requests = b.requests.Load()
		c.Errors = b.obs.errors.Load()
		c.Retries = b.obs.retries.Load()
		c.LatencySum = b.obs.latency.Load(&c.Latency)
	}
	return s
}
