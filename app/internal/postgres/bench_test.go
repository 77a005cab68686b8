package postgres

import (
	"context"
	"syscall"
	"testing"
	"time"

	"hits/testkit/procstat"
)

// cpuTime is this process's user and system CPU so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCommitHits is one batch of 8 hits at a time: the client's CPU
// and allocations per batch, and PostgreSQL's CPU (all of its processes)
// when the test started it.
func BenchmarkCommitHits(b *testing.B) {
	ctx := context.Background()
	pool, err := Open(ctx, pg.NewDatabase(b), 4, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	s := NewStore(pool)
	if _, err := s.CommitHits(ctx, "a", 8, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start, server := cpuTime(b), procstat.WithChildren(pg.PID())
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.CommitHits(ctx, "a", 8, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "client-cpu-µs/op")
	if pg.PID() != 0 {
		b.ReportMetric(float64((procstat.WithChildren(pg.PID())-server).Microseconds())/float64(b.N), "server-cpu-µs/op")
	}
}
