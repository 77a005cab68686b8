package balancer

import "sync/atomic"

// RoundRobin hands requests to the candidates in turn. One atomic counter
// makes it exact: k*n sequential requests over n stable backends give each
// exactly k, never the same one twice in a row.
type RoundRobin struct {
	next atomic.Uint64
}

// Select returns the next candidate in rotation.
func (rr *RoundRobin) Select(candidates []*Backend) *Backend {
	if len(candidates) == 0 {
		return nil
	}
	n := rr.next.Add(1) - 1
	return candidates[n%uint64(len(candidates))]
}
