package balancer

import "sync/atomic"

// LeastConnections picks the candidate with the fewest in-flight requests.
// Ties are broken fairly by starting the scan at a rotating position, so
// idle backends share the load evenly instead of the first one taking all.
// A backend in slow start that declines the request (see admit) is passed
// over.
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
	var best, declined *Backend
	var bestLoad int64
	for k := 0; k < n; k++ {
		b := candidates[(i0+k)%n]
		if !b.admit() {
			if declined == nil {
				declined = b
			}
			continue
		}
		if l := b.inFlight.Load(); best == nil || l < bestLoad {
			best, bestLoad = b, l
			if l == 0 {
				break // nothing beats idle
			}
		}
	}
	if best == nil {
		return declined // every candidate ramping and declining
	}
	return best
}
