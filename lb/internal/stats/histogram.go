// Package stats keeps the balancer's recent history for the dashboard and
// /status: a cumulative latency histogram per backend that the request
// path updates with one atomic add, and a Recorder that turns cumulative
// counters into a fixed-size ring of per-second samples once a second.
// Memory is bounded: it grows with neither uptime nor traffic.
package stats

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Latency buckets are log-linear in microseconds: below 8µs one bucket per
// microsecond, above it every power of two is split into four, so a bucket
// is at most a quarter of its lower bound wide (a percentile read from it,
// interpolated, is within about 12%). The last bucket holds everything from
// 2^26µs (67s) up. Finding a bucket is a few bit operations: no search.
const (
	subBits    = 2
	subBuckets = 1 << subBits
	linear     = 2 * subBuckets // 8: the buckets below 8µs are one µs each
	maxExp     = 26             // 2^26µs ≈ 67s
	// NumBuckets is the number of latency buckets.
	NumBuckets = linear + (maxExp-subBits-1)*subBuckets + 1
)

// bucketOf returns the bucket of a latency of us microseconds.
func bucketOf(us uint64) int {
	if us < linear {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us in [2^e, 2^(e+1)), e >= 3
	if e > maxExp-1 {
		return NumBuckets - 1
	}
	sub := int(us>>(e-subBits)) & (subBuckets - 1)
	return linear + (e-subBits-1)*subBuckets + sub
}

// bounds returns bucket i's range [lo, hi) in microseconds; the last
// bucket's hi is its lo doubled (only for interpolation).
func bounds(i int) (lo, hi float64) {
	if i < linear {
		return float64(i), float64(i + 1)
	}
	if i >= NumBuckets-1 {
		lo = math.Ldexp(1, maxExp)
		return lo, 2 * lo
	}
	e := (i-linear)/subBuckets + subBits + 1
	sub := (i - linear) % subBuckets
	width := math.Ldexp(1, e-subBits)
	lo = math.Ldexp(1, e) + float64(sub)*width
	return lo, lo + width
}

// UpperBound is bucket i's exclusive upper bound, for exporting the
// histogram with Prometheus "le" bounds.
func UpperBound(i int) time.Duration {
	_, hi := bounds(i)
	return time.Duration(hi) * time.Microsecond
}

// Histogram counts latencies since the process started. Observe is safe
// for concurrent use and costs one atomic add; it must not be copied.
type Histogram struct {
	b   [NumBuckets]atomic.Uint64
	sum atomic.Int64 // nanoseconds
}

// Observe counts one latency.
func (h *Histogram) Observe(d time.Duration) {
	d = max(d, 0)
	h.b[bucketOf(uint64(d.Microseconds()))].Add(1)
	h.sum.Add(int64(d))
}

// Load copies the current counts into c and returns the sum of the
// latencies counted.
func (h *Histogram) Load(c *Counts) time.Duration {
	for i := range h.b {
		c[i] = h.b[i].Load()
	}
	return time.Duration(h.sum.Load())
}

// Counts is a histogram's bucket counts at one instant, or the difference
// between two instants.
type Counts [NumBuckets]uint64

// Total is the number of latencies counted.
func (c *Counts) Total() uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

// Add adds o to c.
func (c *Counts) Add(o *Counts) {
	for i, v := range o {
		c[i] += v
	}
}

// Quantile estimates the q-quantile (0 < q <= 1), interpolating linearly
// inside the bucket that holds it; 0 when nothing was counted.
func (c *Counts) Quantile(q float64) time.Duration {
	total := c.Total()
	if total == 0 {
		return 0
	}
	rank := q * float64(total) // the rank-th smallest value, 1-based
	rank = max(rank, 1)
	var seen float64
	for i, v := range c {
		if v == 0 {
			continue
		}
		if seen+float64(v) >= rank {
			lo, hi := bounds(i)
			us := lo + (hi-lo)*(rank-seen)/float64(v)
			return time.Duration(us * float64(time.Microsecond))
		}
		seen += float64(v)
	}
	lo, _ := bounds(NumBuckets - 1)
	return time.Duration(lo) * time.Microsecond
}

// OctaveBounds are the upper bounds a Prometheus histogram of these
// latencies uses: every power of two microseconds from 256µs to 2^25µs
// (33.5s). Each falls on a bucket edge, so the cumulative counts are
// exact.
func OctaveBounds() []time.Duration {
	var out []time.Duration
	for e := 8; e <= maxExp-1; e++ {
		out = append(out, time.Duration(1<<e)*time.Microsecond)
	}
	return out
}

// Cumulative returns, for each of the ascending upper bounds, how many
// latencies counted fall below it (in buckets that end at or before it).
func (c *Counts) Cumulative(upper []time.Duration) []uint64 {
	out := make([]uint64, len(upper))
	for i, v := range c {
		if v == 0 {
			continue
		}
		_, hi := bounds(i)
		for j, u := range upper {
			if hi <= float64(u.Microseconds()) {
				out[j] += v
			}
		}
	}
	return out
}
