// Package postgres is the durable store of hits on PostgreSQL (pgx pool):
// group-committed batches numbered from a sequence, the rolling window's
// base and the per-instance breakdown, plus the embedded, versioned schema
// migrations.
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

// A batch is one pipeline, one round trip: BEGIN, the write, COMMIT, then
// the numbers. The write touches only this instance's rows, so batches of
// different replicas never wait for each other; the numbers come from a
// sequence after COMMIT returned, so a number is shown only for a durable
// hit, and N concurrent hits anywhere take exactly the next N numbers.
const (
	// One statement, two upserts of rows keyed by this instance. The minute
	// is the database's clock, so every replica files hits by one clock.
	recordHits = `
WITH m AS (
    INSERT INTO hits_by_minute AS h (minute, instance, hits)
    VALUES (date_trunc('minute', clock_timestamp()), $1, $2)
    ON CONFLICT (minute, instance) DO UPDATE SET hits = h.hits + EXCLUDED.hits
    RETURNING h.minute
), i AS (
    INSERT INTO instance_hits AS i (instance, hits, first_seen, last_seen)
    VALUES ($1, $2, now(), now())
    ON CONFLICT (instance) DO UPDATE SET hits = i.hits + EXCLUDED.hits, last_seen = now()
)
SELECT minute FROM m`

	// Runs in its own implicit transaction after COMMIT; nextval is never
	// rolled back, so a number is never handed out twice.
	takeNumbers = `SELECT nextval('hit_numbers') FROM generate_series(1, $1::int)`
)

// CommitHits records n hits for instance in one transaction, then takes
// n+owed numbers and returns them. A nil error means the hits committed and
// the numbers were taken. An error wrapping hits.ErrNotNumbered means the
// hits committed but no number was taken; any other error means the batch
// may or may not have committed.
func (s *Store) CommitHits(ctx context.Context, instance string, n, owed int) (hits.Commit, error) {
	var c hits.Commit
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(recordHits, instance, n)
	b.Queue("COMMIT")
	b.Queue(takeNumbers, n+owed)
	br := s.pool.SendBatch(ctx, b)
	// After a failed write the server skips to the Sync and leaves the
	// session in the aborted transaction; the pool then drops the connection.
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return hits.Commit{}, fmt.Errorf("commit %d hits: begin: %w", n, err)
	}
	if err := br.QueryRow().Scan(&c.Minute); err != nil {
		return hits.Commit{}, fmt.Errorf("commit %d hits: %w", n, err)
	}
	if _, err := br.Exec(); err != nil {
		return hits.Commit{}, fmt.Errorf("commit %d hits: commit: %w", n, err)
	}
	rows, err := br.Query()
	if err == nil {
		c.Numbers, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	}
	if err == nil && len(c.Numbers) != n+owed {
		err = fmt.Errorf("got %d numbers, want %d", len(c.Numbers), n+owed)
	}
	if err == nil {
		err = br.Close()
	}
	if err != nil {
		return hits.Commit{Minute: c.Minute}, fmt.Errorf("commit %d hits: %w: %w", n, hits.ErrNotNumbered, err)
	}
	return c, nil
}

// WindowBase counts the hits recorded before the window of minute, that is
// before the minutes-1 minutes preceding it: all hits (the instances' rows)
// less those recorded in the window or later, read in one snapshot. Rows a
// day old are never written again, so the answer for a minute never changes.
func (s *Store) WindowBase(ctx context.Context, minute time.Time, minutes int) (int64, error) {
	var base int64
	err := s.pool.QueryRow(ctx, `
SELECT (SELECT COALESCE(sum(hits), 0) FROM instance_hits)::bigint
     - (SELECT COALESCE(sum(hits), 0) FROM hits_by_minute
        WHERE minute >= $1::timestamptz - make_interval(mins => $2))::bigint`,
		minute, minutes-1).Scan(&base)
	if err != nil {
		return 0, fmt.Errorf("window base: %w", err)
	}
	return base, nil
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

// Totals reads the stored count (every committed hit) and the last-day sum without counting
// anything: for tests and tools, not for the page (it scans the window).
func (s *Store) Totals(ctx context.Context) (total, lastDay int64, err error) {
	err = s.pool.QueryRow(ctx, `
SELECT (SELECT COALESCE(sum(hits), 0) FROM instance_hits)::bigint,
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
