package postgres

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

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

// benchPool is a pool on a new, migrated database of the tests' PostgreSQL.
func benchPool(b *testing.B) *pgxpool.Pool {
	ctx := context.Background()
	pool, err := Open(ctx, pg.NewDatabase(b), 4, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	return pool
}

// measureCPU resets b's timer and returns a func, to call after b's loop,
// that reports the client's CPU per op and, when the test started
// PostgreSQL, the server's (all of its processes).
func measureCPU(b *testing.B) func() {
	start, server := cpuTime(b), procstat.WithChildren(pg.PID())
	b.ResetTimer()
	return func() {
		b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "client-cpu-µs/op")
		if pg.PID() != 0 {
			b.ReportMetric(float64((procstat.WithChildren(pg.PID())-server).Microseconds())/float64(b.N), "server-cpu-µs/op")
		}
	}
}

// BenchmarkCommitHits is one batch of 8 hits at a time: the client's CPU
// and allocations per batch, and PostgreSQL's CPU.
func BenchmarkCommitHits(b *testing.B) {
	ctx := context.Background()
	s := NewStore(benchPool(b))
	if _, err := s.CommitHits(ctx, "a", 8, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	report := measureCPU(b)
	for b.Loop() {
		if _, err := s.CommitHits(ctx, "a", 8, 0); err != nil {
			b.Fatal(err)
		}
	}
	report()
}

// BenchmarkBatchParts takes a batch of 8 hits apart: the whole pipeline as
// CommitHits sends it, then the same without the Flush that sends the
// transaction's id before COMMIT, and the pieces alone (BEGIN and COMMIT
// with nothing between, each upsert in a transaction of its own, the
// numbers). Client and server CPU per batch, as BenchmarkCommitHits.
// docs/app.md ("Where a batch's cost goes") reads it.
func BenchmarkBatchParts(b *testing.B) {
	ctx := context.Background()
	conn, err := benchPool(b).Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	prepare := func(name, sql string) *pgconn.StatementDescription {
		sd, err := conn.Conn().Prepare(ctx, name, sql)
		if err != nil {
			b.Fatal(err)
		}
		return sd
	}
	var sds [len(batchStatements)]*pgconn.StatementDescription
	for i, st := range batchStatements {
		sds[i] = prepare(st.name, st.sql)
	}
	begin, record, commit, numbers := sds[0], sds[1], sds[2], sds[3]
	minute := prepare("bench_minute", `INSERT INTO hits_by_minute AS h (minute, instance, hits)
    VALUES (date_trunc('minute', clock_timestamp()), $1, $2)
    ON CONFLICT (minute, instance) DO UPDATE SET hits = h.hits + EXCLUDED.hits`)
	instance := prepare("bench_instance", `INSERT INTO instance_hits AS i (instance, hits, first_seen, last_seen)
    VALUES ($1, $2, now(), now())
    ON CONFLICT (instance) DO UPDATE SET hits = i.hits + EXCLUDED.hits, last_seen = now()`)
	hits, eight := [][]byte{[]byte("a"), []byte("8")}, [][]byte{[]byte("8")}
	parts := []struct {
		name string
		send func(p *pgconn.Pipeline)
	}{
		{"batch", func(p *pgconn.Pipeline) {
			p.SendQueryStatement(begin, nil, nil, nil)
			p.SendQueryStatement(record, hits, nil, binaryResults)
			p.SendFlushRequest()
			p.SendQueryStatement(commit, nil, nil, nil)
			p.SendQueryStatement(numbers, eight, nil, binaryResults)
		}},
		{"batch_without_flush", func(p *pgconn.Pipeline) {
			p.SendQueryStatement(begin, nil, nil, nil)
			p.SendQueryStatement(record, hits, nil, binaryResults)
			p.SendQueryStatement(commit, nil, nil, nil)
			p.SendQueryStatement(numbers, eight, nil, binaryResults)
		}},
		{"begin_commit", func(p *pgconn.Pipeline) {
			p.SendQueryStatement(begin, nil, nil, nil)
			p.SendQueryStatement(commit, nil, nil, nil)
		}},
		{"minute_upsert", func(p *pgconn.Pipeline) { p.SendQueryStatement(minute, hits, nil, nil) }},
		{"instance_upsert", func(p *pgconn.Pipeline) { p.SendQueryStatement(instance, hits, nil, nil) }},
		{"numbers", func(p *pgconn.Pipeline) { p.SendQueryStatement(numbers, eight, nil, binaryResults) }},
	}
	for _, part := range parts {
		b.Run(part.name, func(b *testing.B) {
			one := func() {
				p := conn.Conn().PgConn().StartPipeline(ctx)
				part.send(p)
				if err := p.Sync(); err != nil {
					b.Fatal(err)
				}
				for {
					res, err := p.GetResults()
					if err != nil {
						b.Fatal(err)
					}
					if res == nil {
						break
					}
					if rr, ok := res.(*pgconn.ResultReader); ok {
						if _, err := rr.Close(); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := p.Close(); err != nil {
					b.Fatal(err)
				}
			}
			one()
			report := measureCPU(b)
			for b.Loop() {
				one()
			}
			report()
		})
	}
}
