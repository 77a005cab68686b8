// Package balancer holds the backends, picks one per request and proxies the
// request to it. The request path is lock-free: selection reads an
// immutable snapshot of the healthy backends through an atomic pointer, and
// per-backend counters are atomics.
package balancer

import (
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxTransitions is how many recent health and membership changes the pool
// keeps for the dashboard.
const maxTransitions = 50

// Transition is one change of a backend's state, kept for the dashboard.
type Transition struct {
	Time    time.Time `json:"time"`
	Address string    `json:"address"`
	Event   string    `json:"event"` // added, up, down, removed, dropped
	Reason  string    `json:"reason,omitempty"`
}

// PoolOptions configures a Pool. Zero values are documented per field.
type PoolOptions struct {
	// Now is the clock; if nil, time.Now is used.
	Now func() time.Time
	// Logger receives transitions; if nil, nothing is logged.
	Logger *slog.Logger
	// StickyID derives a backend's opaque sticky id from its address; if
	// nil, sticky ids are empty and cookies never match.
	StickyID func(addr string) string
	// PassiveFailures consecutive connection failures mark a backend down
	// until active checks pass again (HealthyThreshold of them); 0
	// disables passive ejection.
	PassiveFailures int
	// HealthyThreshold consecutive passing probes bring a backend that was
	// marked down back (0 or 1: one). A newly discovered backend joins on
	// its first pass, so scaling up is quick.
	HealthyThreshold int
	// UnhealthyThreshold consecutive failing probes take a backend out (0
	// or 1: one).
	UnhealthyThreshold int
	// DialTimeout bounds connecting to a backend; zero leaves it to the
	// OS. (Package config holds the defaults of every tunable here.)
	DialTimeout time.Duration
	// IdleTimeout closes keep-alive conns idle this long; it must be
	// shorter than the backends' own idle timeout. Zero: an idle
	// conn is never reused.
	IdleTimeout time.Duration
	// MaxIdle is the idle keep-alive conns kept per backend; zero keeps
	// none, so every request dials.
	MaxIdle int
	// SlowStart is how long a backend that enters rotation takes to reach
	// its full share of new requests, growing linearly from none; if zero,
	// it takes its full share at once. Backends found by the first
	// SetMembers (the balancer starting) take their full share at once.
	SlowStart time.Duration
	// Dial opens a connection; if nil, a net.Dialer is used. Tests use it
	// to count dials.
	Dial func(network, addr string, timeout time.Duration) (net.Conn, error)
}

// Pool is the set of backends. Discovery changes its membership, health
// checks change their state, and the proxy reads a snapshot.
type Pool struct {
	opts PoolOptions

	mu          sync.Mutex // guards members, transitions and servingSince; never held across I/O
	members     map[string]*Backend
	transitions []Transition
	// servingSince is when the rotation last went from empty to not empty;
	// zero while it is empty. Slow start applies only to backends joining a
	// rotation that has served for at least SlowStart: the backends found
	// when lb starts, or coming back together after an outage, are not
	// new replicas joining warm ones.
	servingSince time.Time

	snap atomic.Pointer[snapshot]
}

// snapshot is an immutable view of the backends in rotation, rebuilt
// whenever health or membership changes.
type snapshot struct {
	healthy []*Backend          // sorted by address, so rotation order is stable
	byID    map[string]*Backend // sticky id -> healthy backend
}

// NewPool returns an empty pool; SetMembers fills it.
func NewPool(opts PoolOptions) *Pool {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StickyID == nil {
		opts.StickyID = func(string) string { return "" }
	}
	if opts.Dial == nil {
		opts.Dial = func(network, addr string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout(network, addr, timeout)
		}
	}
	p := &Pool{opts: opts, members: map[string]*Backend{}}
	p.snap.Store(&snapshot{byID: map[string]*Backend{}})
	return p
}

// SetMembers makes addrs (ip:port) the pool's backends. New ones start out
// of rotation until a health check passes; missing ones take no new
// requests and are dropped once their in-flight requests finish.
func (p *Pool) SetMembers(addrs []string) {
	want := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for a := range want {
		b, ok := p.members[a]
		switch {
		case !ok:
			b = &Backend{addr: a, id: p.opts.StickyID(a), slowStart: p.opts.SlowStart, now: p.opts.Now}
			b.conns = newConnPool(a, p.opts.Dial, p.opts.DialTimeout, p.opts.IdleTimeout, p.opts.MaxIdle)
			b.since.Store(p.opts.Now().UnixNano())
			p.members[a] = b
			p.recordLocked(a, "added", "discovered")
		case b.removed.Load():
			// Back in DNS before it was dropped: it may be a new container
			// on a reused IP, so it must pass a check before taking traffic.
			b.removed.Store(false)
			b.healthy.Store(false)
			b.checked, b.passes, b.fails = false, 0, 0
			b.stopRamp()
			p.recordLocked(a, "added", "discovered again")
			changed = true
		}
	}
	for a, b := range p.members {
		if want[a] {
			continue
		}
		if !b.removed.Load() {
			b.removed.Store(true)
			p.recordLocked(a, "removed", "gone from discovery")
			changed = true
		}
		if b.inFlight.Load() == 0 {
			delete(p.members, a)
			b.conns.close()
			p.recordLocked(a, "dropped", "idle after removal")
		}
	}
	if changed {
		p.rebuildLocked()
	}
}

// Probed takes one health probe's result and decides the backend's state:
// the pool is the one owner of health, so the thresholds apply to active
// and passive verdicts alike (a backend ejected for connection failures
// needs HealthyThreshold passing probes to come back, like one the probes
// took out).
func (p *Pool) Probed(addr string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.members[addr]
	if b == nil {
		return
	}
	if ok {
		b.passes++
		b.fails = 0
	} else {
		b.fails++
		b.passes = 0
	}
	up := b.healthy.Load()
	switch {
	case !b.checked:
		p.setHealthyLocked(b, ok)
	case ok && !up && b.passes >= p.opts.HealthyThreshold:
		p.setHealthyLocked(b, true)
	case !ok && up && b.fails >= p.opts.UnhealthyThreshold:
		p.setHealthyLocked(b, false)
	}
}

// SetHealthy puts a backend in or out of rotation at once, whatever its
// probes said; repeating the current state is a no-op.
func (p *Pool) SetHealthy(addr string, up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.members[addr]; b != nil {
		p.setHealthyLocked(b, up)
	}
}

func (p *Pool) setHealthyLocked(b *Backend, up bool) {
	addr := b.addr
	b.checked = true
	if b.healthy.Load() == up {
		return
	}
	b.healthy.Store(up)
	if up {
		b.streak.Store(0)
		if now := p.opts.Now(); !p.servingSince.IsZero() && now.Sub(p.servingSince) >= p.opts.SlowStart {
			b.startRamp(now)
		}
		p.recordLocked(addr, "up", "health check passed")
	} else {
		b.stopRamp()
		reason := "health check failed"
		if b.obs.draining.Load() {
			reason = "draining: its health answer says it is shutting down"
		}
		p.recordLocked(addr, "down", reason)
		// Idle conns to a failing backend are likely dead; in-flight ones finish.
		b.conns.closeIdle()
	}
	p.rebuildLocked()
}

// Addresses lists the backends that should be health checked: every
// member not removed by discovery.
func (p *Pool) Addresses() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.members))
	for a, b := range p.members {
		if !b.removed.Load() {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Status is the pool's state for the admin listener.
type Status struct {
	Backends    []BackendStatus `json:"backends"`
	Transitions []Transition    `json:"transitions"`
}

// Status copies the current state, backends sorted by address and
// transitions newest first.
func (p *Pool) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Backends: make([]BackendStatus, 0, len(p.members))}
	for _, b := range p.members {
		s.Backends = append(s.Backends, b.status())
	}
	slices.SortFunc(s.Backends, func(a, b BackendStatus) int {
		return strings.Compare(a.Address, b.Address)
	})
	s.Transitions = make([]Transition, len(p.transitions))
	for i, t := range p.transitions {
		s.Transitions[len(p.transitions)-1-i] = t
	}
	return s
}

// Close closes every idle backend connection. In-flight requests keep
// theirs and close them when done.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.members {
		b.conns.close()
	}
}

// connFailed counts a connection failure against b; enough in a row take
// it out of rotation until the active health check passes again.
func (p *Pool) connFailed(b *Backend) {
	b.failures.Add(1)
	n := b.streak.Add(1)
	if p.opts.PassiveFailures > 0 && n >= int64(p.opts.PassiveFailures) && b.healthy.Load() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if b.healthy.Load() {
			b.healthy.Store(false)
			b.passes = 0 // back only after HealthyThreshold passes from now
			b.stopRamp()
			b.conns.closeIdle()
			p.recordLocked(b.addr, "down", "connection failures")
			p.rebuildLocked()
		}
	}
}

// connOK resets b's passive failure streak.
func (p *Pool) connOK(b *Backend) {
	if b.streak.Load() != 0 {
		b.streak.Store(0)
	}
}

func (p *Pool) snapshot() *snapshot { return p.snap.Load() }

func (p *Pool) rebuildLocked() {
	s := &snapshot{byID: map[string]*Backend{}}
	for _, b := range p.members {
		if b.healthy.Load() && !b.removed.Load() {
			s.healthy = append(s.healthy, b)
			if b.id != "" {
				s.byID[b.id] = b
			}
		}
	}
	slices.SortFunc(s.healthy, func(a, b *Backend) int {
		return strings.Compare(a.addr, b.addr)
	})
	switch {
	case len(s.healthy) == 0:
		p.servingSince = time.Time{}
	case p.servingSince.IsZero():
		p.servingSince = p.opts.Now()
	}
	p.snap.Store(s)
}

func (p *Pool) recordLocked(addr, event, reason string) {
	now := p.opts.Now()
	if b, ok := p.members[addr]; ok && (event == "up" || event == "down") {
		b.since.Store(now.UnixNano())
	}
	p.transitions = append(p.transitions, Transition{Time: now.UTC(), Address: addr, Event: event, Reason: reason})
	if len(p.transitions) > maxTransitions {
		p.transitions = slices.Delete(p.transitions, 0, len(p.transitions)-maxTransitions)
	}
	p.opts.Logger.Info("backend "+event, "backend", addr, "reason", reason)
}
