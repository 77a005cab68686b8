// Package postgres is the durable store of hits on PostgreSQL (pgx pool):
// group-committed batches, the rolling-window sum and the per-instance
// breakdown, plus the embedded, versioned schema migrations.
package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"hits/app/internal/hits"
)

// Store records and reads hits. It implements hits.Store.
type Store struct {
	pool *pgxpool.Pool
}

// Open creates a pool for url (it does not connect yet: PostgreSQL may come
// up after the app). maxConns caps the pool; connectTimeout bounds each dial.
func Open(ctx context.Context, url string, maxConns int, connectTimeout time.Duration) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	cfg.MaxConns = int32(maxConns)
	cfg.ConnConfig.ConnectTimeout = connectTimeout
	// A dead server leaves pooled connections that fail on first use; checking
	// idle ones after a short while keeps recovery quick once it is back.
	cfg.HealthCheckPeriod = 5 * time.Second
	cfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: pool: %w", err)
	}
	return pool, nil
}

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// The batch's statements, sent as one pipeline ending in one Sync: with no
// explicit BEGIN, PostgreSQL runs them as one implicit transaction and
// commits at the Sync, so the whole batch is one round trip and all or
// nothing.
const (
	// Takes the one row's lock: batches from every replica queue here.
	bumpTotal = `UPDATE hit_totals SET total = total + $1 WHERE id = 1 RETURNING total`

	// Runs after the lock is granted, so its snapshot holds every earlier
	// batch, and clock_timestamp() is read after them: the minute never goes
	// back. The sum over other instances comes from the statement's snapshot;
	// this instance's row comes from the upsert's RETURNING.
	recordMinute = `
WITH m AS (SELECT date_trunc('minute', clock_timestamp()) AS minute),
up AS (
    INSERT INTO hits_by_minute AS h (minute, instance, hits)
    SELECT m.minute, $1, $2 FROM m
    ON CONFLICT (minute, instance) DO UPDATE SET hits = h.hits + EXCLUDED.hits
    RETURNING h.minute, h.hits
)
SELECT up.minute,
       up.hits + COALESCE((SELECT sum(o.hits) FROM hits_by_minute o
                           WHERE o.minute = up.minute AND o.instance <> $1), 0)::bigint
FROM up`

	recordInstance = `
INSERT INTO instance_hits AS i (instance, hits, first_seen, last_seen)
VALUES ($1, $2, now(), now())
ON CONFLICT (instance) DO UPDATE SET hits = i.hits + EXCLUDED.hits, last_seen = now()`
)

// CommitHits records n hits for instance in one transaction and reports the
// totals right after it. A nil error means the transaction committed.
func (s *Store) CommitHits(ctx context.Context, instance string, n int) (hits.Commit, error) {
	var c hits.Commit
	b := &pgx.Batch{}
	b.Queue(bumpTotal, n).QueryRow(func(r pgx.Row) error { return r.Scan(&c.Total) })
	b.Queue(recordMinute, instance, n).QueryRow(func(r pgx.Row) error { return r.Scan(&c.Minute, &c.MinuteSum) })
	b.Queue(recordInstance, instance, n)
	// Close reads through the Sync's ReadyForQuery, i.e. past the commit.
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return hits.Commit{}, fmt.Errorf("commit %d hits: %w", n, err)
	}
	return c, nil
}

// ClosedSum sums hits over the minutes-1 minutes before minute, that is the
// rolling window without its current minute.
func (s *Store) ClosedSum(ctx context.Context, minute time.Time, minutes int) (int64, error) {
	var sum int64
	err := s.pool.QueryRow(ctx, `
SELECT COALESCE(sum(hits), 0)::bigint FROM hits_by_minute
WHERE minute >= $1::timestamptz - make_interval(mins => $2) AND minute < $1`,
		minute, minutes-1).Scan(&sum)
	if err != nil {
		return 0, fmt.Errorf("closed sum: %w", err)
	}
	return sum, nil
}

// Breakdown returns up to limit instances with the most hits, most first.
func (s *Store) Breakdown(ctx context.Context, limit int) ([]hits.InstanceCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT instance, hits FROM instance_hits ORDER BY hits DESC, instance LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("breakdown: %w", err)
	}
	b, err := pgx.CollectRows(rows, pgx.RowToStructByPos[hits.InstanceCount])
	if err != nil {
		return nil, fmt.Errorf("breakdown: %w", err)
	}
	return b, nil
}

// Totals reads the all-time total and the last-day sum without counting
// anything: for tests and tools, not for the page (it scans the window).
func (s *Store) Totals(ctx context.Context) (total, lastDay int64, err error) {
	err = s.pool.QueryRow(ctx, `
SELECT (SELECT total FROM hit_totals WHERE id = 1),
       (SELECT COALESCE(sum(hits), 0)::bigint FROM hits_by_minute
        WHERE minute > date_trunc('minute', clock_timestamp()) - interval '1 day')`).Scan(&total, &lastDay)
	if err != nil {
		return 0, 0, fmt.Errorf("totals: %w", err)
	}
	return total, lastDay, nil
}

// Generation returns the random identity of this database's counters, for
// cache keys.
func (s *Store) Generation(ctx context.Context) (string, error) {
	var g string
	if err := s.pool.QueryRow(ctx, `SELECT generation FROM hits_meta WHERE id = 1`).Scan(&g); err != nil {
		return "", fmt.Errorf("generation: %w", err)
	}
	return g, nil
}

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }
