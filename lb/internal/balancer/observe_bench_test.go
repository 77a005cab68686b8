package balancer

import (
	"testing"
	"time"
)

// The request path's share of the dashboard: counting an attempt and
// recording a decision (run with -cpu 1,2 to see contention).

func BenchmarkObserveAttempt(b *testing.B) {
	be := &Backend{addr: "10.0.0.1:80"}
	r := result{stage: stageRelay, status: 200}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			observe(be, time.Millisecond, r)
		}
	})
}

func BenchmarkRecordDecision(b *testing.B) {
	be := &Backend{addr: "10.0.0.1:80"}
	var d decisions
	at := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.record(at, time.Millisecond, be, ReasonRoundRobin, 200)
		}
	})
}
