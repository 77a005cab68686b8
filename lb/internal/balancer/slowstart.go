package balancer

import "time"

// Slow start: a backend that enters rotation while others already serve
// takes a share of new requests that grows linearly from nothing to its
// full share over PoolOptions.SlowStart, so a cold replica (empty caches,
// a fresh connection pool, a JIT-less but still cold Go heap) is not handed
// a full share in its first second.
//
// Both policies use the same gate, admit: while a backend ramps, each time
// a policy offers it a request it accepts only a fraction w of the offers,
// w = elapsed/SlowStart. The fraction is counted, not drawn at random
// (Bresenham: accept offer s when floor(s*w) > floor((s-1)*w)), so a test
// with a fake clock sees an exact sequence. Everything is atomics on the
// Backend: the request path still takes no lock, and a backend that is not
// ramping costs one atomic load.

// admit reports whether b takes the request it is being offered.
func (b *Backend) admit() bool {
	start := b.rampStart.Load()
	if start == 0 {
		return true
	}
	w := b.weightAt(start, b.now().UnixNano())
	if w >= 1 {
		// Ramp over: later offers skip the clock read.
		b.rampStart.CompareAndSwap(start, 0)
		return true
	}
	s := b.rampOffers.Add(1)
	return uint64(float64(s)*w) > uint64(float64(s-1)*w)
}

// weightAt is the share of its full traffic a backend whose ramp started
// at start (unix nanos) gets at now.
func (b *Backend) weightAt(start, now int64) float64 {
	if start == 0 || b.slowStart <= 0 {
		return 1
	}
	elapsed := now - start
	if elapsed <= 0 {
		return 0
	}
	if elapsed >= int64(b.slowStart) {
		return 1
	}
	return float64(elapsed) / float64(b.slowStart)
}

// SlowStart reports the share of its full traffic the backend is given
// now, from 0 just after it entered rotation to 1, and whether it is still
// ramping. A backend that is not ramping (slow start off, ramp over, out
// of rotation, or in rotation since the balancer started) reports 1, false.
func (b *Backend) SlowStart() (share float64, ramping bool) {
	start := b.rampStart.Load()
	if start == 0 {
		return 1, false
	}
	w := b.weightAt(start, b.now().UnixNano())
	return w, w < 1
}

// startRamp begins b's slow start; the pool calls it, holding its lock,
// when b enters rotation.
func (b *Backend) startRamp(now time.Time) {
	if b.slowStart <= 0 {
		return
	}
	b.rampOffers.Store(0)
	b.rampStart.Store(now.UnixNano())
}

// stopRamp ends b's slow start at once (it left rotation).
func (b *Backend) stopRamp() { b.rampStart.Store(0) }
