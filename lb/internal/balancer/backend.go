package balancer

import (
	"sync/atomic"
	"time"
)

// Backend is one ip:port the balancer forwards to. Its counters are atomics
// read and written on the request path without a lock, so a Backend must
// never be copied: pass *Backend.
type Backend struct {
	addr  string // ip:port, as dialled
	id    string // opaque sticky id derived from addr with the secret
	conns *connPool

	healthy  atomic.Bool  // in rotation (set by health checks and passive ejection)
	removed  atomic.Bool  // gone from discovery: no new requests, dropped once idle
	inFlight atomic.Int64 // requests being proxied right now
	requests atomic.Uint64
	failures atomic.Uint64 // connection failures and 5xx-free errors while proxying
	streak   atomic.Int64  // consecutive connection failures, for passive ejection
	since    atomic.Int64  // unix nanos of the last health transition

	// Probe history, guarded by Pool.mu: the pool alone decides health.
	checked bool // has had a verdict: a new backend joins on its first pass
	passes  int  // consecutive passing probes
	fails   int  // consecutive failing probes

	// Slow start (slowstart.go): set when the backend was made.
	slowStart  time.Duration    // ramp length; 0: full share at once
	now        func() time.Time // the pool's clock
	rampStart  atomic.Int64     // unix nanos the ramp began; 0: not ramping
	rampOffers atomic.Uint64    // requests offered to it during the ramp
	obs        observed         // latency, errors, retries, name: see observe.go
}

// Addr is the backend's ip:port.
func (b *Backend) Addr() string { return b.addr }

// Healthy reports whether the backend is in rotation.
func (b *Backend) Healthy() bool { return b.healthy.Load() }

// InFlight is the number of requests being proxied to the backend now.
func (b *Backend) InFlight() int64 { return b.inFlight.Load() }

// BackendStatus is a point-in-time copy of a backend's state for the admin
// listener.
type BackendStatus struct {
	Address string `json:"address"`
	// Name is the replica's name from its X-App-Instance header, else the
	// address; Version is its X-App-Version, if it sends one.
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// State is up, slow_start, draining or down.
	State     string    `json:"state"`
	Healthy   bool      `json:"healthy"`
	Removed   bool      `json:"removed"`
	InFlight  int64     `json:"in_flight"`
	Requests  uint64    `json:"requests"`
	Failures  uint64    `json:"failures"`
	IdleConns int       `json:"idle_conns"`
	Since     time.Time `json:"since"`
	// SlowStart is the share of its full traffic the backend gets while it
	// ramps up after entering rotation (0 to 1); absent when not ramping.
	SlowStart *float64 `json:"slow_start,omitempty"`
}

func (b *Backend) status() BackendStatus {
	var share *float64
	if w, ramping := b.SlowStart(); ramping {
		share = &w
	}
	return BackendStatus{
		Address:   b.addr,
		Name:      b.Name(),
		Version:   b.version(),
		State:     b.state().String(),
		Healthy:   b.healthy.Load(),
		Removed:   b.removed.Load(),
		InFlight:  b.inFlight.Load(),
		Requests:  b.requests.Load(),
		Failures:  b.failures.Load(),
		IdleConns: b.conns.idleCount(),
		Since:     time.Unix(0, b.since.Load()).UTC(),
		SlowStart: share,
	}
}
