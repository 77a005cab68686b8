package balancer

import "sync/atomic"

// RoundRobin hands requests to the candidates in turn. One atomic counter
// makes it exact: k*n sequential requests over n stable backends give each
// exactly k, never the same one twice in a row. A backend in slow start
// declines part of its turns (see admit); a declined turn goes to the next
// candidate in rotation.
type RoundRobin struct {
	next atomic.Uint64
}

// Select returns the next candidate in rotation that takes the request.
func (rr *RoundRobin) Select(candidates []*Backend) *Backend {
	n := uint64(len(candidates))
	if n == 0 {
		return nil
	}
	var b *Backend
	// Every candidate ramping and declining is possible (two fresh replicas
	// and no other); then the last one offered takes it.
	for range n {
		b = candidates[(rr.next.Add(1)-1)%n]
		if b.admit() {
			return b
		}
	}
	return b
}
