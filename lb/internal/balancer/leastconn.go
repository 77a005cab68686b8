package balancer

import "sync/atomic"

// LeastConnections picks the candidate with the fewest in-flight requests.
// Ties are broken fairly by starting the scan at a rotating position, so
// idle backends share the load evenly instead of the first one taking all.
type LeastConnections struct {
	start atomic.Uint64
}

// Select returns a candidate with the fewest in-flight requests.
func (lc *LeastConnections) Select(candidates []*Backend) *Backend {
	n := len(candidates)
	if n == 0 {
		return nil
	}
	i0 := int((lc.start.Add(1) - 1) % uint64(n))
	best := candidates[i0]
	bestLoad := best.inFlight.Load()
	for k := 1; k < n && bestLoad > 0; k++ {
		b := candidates[(i0+k)%n]
		if l := b.inFlight.Load(); l < bestLoad {
			best, bestLoad = b, l
		}
	}
	return best
}
