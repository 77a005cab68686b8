package postgres

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"hits/app/internal/hits"
	"hits/app/internal/testenv"
)

var pg *testenv.Postgres // shared by this package's tests

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &pg, nil)) }

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := Open(context.Background(), url, 4, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// migratedStore is a Store on a fresh, migrated database, and its pool.
func migratedStore(t *testing.T) (*Store, *pgxpool.Pool) {
	t.Helper()
	pool := openPool(t, pg.NewDatabase(t))
	if _, err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return NewStore(pool), pool
}

// TestMigrateConcurrently starts eight "replicas" at the same moment on one
// empty database: each migration must be applied exactly once, and all of
// them must come up without error.
func TestMigrateConcurrently(t *testing.T) {
	url := pg.NewDatabase(t)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	const replicas = 8
	pools := make([]*pgxpool.Pool, replicas)
	for i := range pools {
		pools[i] = openPool(t, url)
	}
	applied := make([]int, replicas)
	errs := make([]error, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			<-start
			applied[i], errs[i] = Migrate(context.Background(), pools[i])
		})
	}
	close(start)
	wg.Wait()
	sum := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Errorf("replica %d: Migrate = %v", i, errs[i])
		}
		sum += applied[i]
	}
	if sum != len(ms) {
		t.Errorf("migrations applied %d times in total, want %d (each once)", sum, len(ms))
	}
	var rows int
	if err := pools[0].QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&rows); err != nil || rows != len(ms) {
		t.Errorf("schema_migrations has %d rows (%v), want %d", rows, err, len(ms))
	}
	// Running again is a no-op.
	if n, err := Migrate(context.Background(), pools[0]); n != 0 || err != nil {
		t.Errorf("second Migrate = %d, %v; want 0, nil", n, err)
	}
}

func TestCommitHitsAndReads(t *testing.T) {
	ctx := context.Background()
	s, pool := migratedStore(t)
	// History the rolling window must and must not include, stored the way
	// batches store it: per minute and per instance, numbers past it.
	if _, err := pool.Exec(ctx, `INSERT INTO hits_by_minute (minute, instance, hits) VALUES
		(date_trunc('minute', now()) - interval '10 minutes', 'old', 5),
		(date_trunc('minute', now()) - interval '1439 minutes', 'old', 7),
		(date_trunc('minute', now()) - interval '1440 minutes', 'old', 1000),
		(date_trunc('minute', now()) - interval '3 days', 'old', 2000);
		INSERT INTO instance_hits VALUES ('old', 3012, now(), now());
		SELECT setval('hit_numbers', 3012)`); err != nil {
		t.Fatal(err)
	}
	c1, err := s.CommitHits(ctx, "a", 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := s.CommitHits(ctx, "b", 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{3013, 3014, 3015}; !slices.Equal(c1.Numbers, want) {
		t.Errorf("first batch's numbers = %v, want %v", c1.Numbers, want)
	}
	if want := []int64{3016, 3017, 3018, 3019, 3020, 3021}; !slices.Equal(c2.Numbers, want) {
		t.Errorf("second batch's numbers (4 hits, 2 owed) = %v, want %v", c2.Numbers, want)
	}
	base, err := s.WindowBase(ctx, c2.Minute, 1440)
	if err != nil || base != 3000 {
		t.Errorf("WindowBase = %d, %v; want 3000 (the hits 1440 minutes ago and older)", base, err)
	}
	b, err := s.Breakdown(ctx, 10)
	if err != nil || len(b) != 3 || b[1].Instance != "b" || b[1].Hits != 4 || b[2].Instance != "a" || b[2].Hits != 3 {
		t.Errorf("Breakdown = %+v, %v; want old:3012, b:4, a:3", b, err)
	}
	total, lastDay, err := s.Totals(ctx)
	if err != nil || total != 3019 || lastDay != 19 {
		t.Errorf("Totals = %d, %d, %v; want 3019, 19", total, lastDay, err)
	}
}

// TestCommitHitsIsAtomic: a batch that fails midway leaves nothing behind
// and takes no number, and the pool goes on with working connections.
func TestCommitHitsIsAtomic(t *testing.T) {
	ctx := context.Background()
	s, _ := migratedStore(t)
	// hits_by_minute rejects hits <= 0 before COMMIT.
	if _, err := s.CommitHits(ctx, "a", 0, 0); err == nil || errors.Is(err, hits.ErrNotNumbered) {
		t.Fatalf("CommitHits(0) = %v, want the CHECK violation (not committed)", err)
	}
	total, _, err := s.Totals(ctx)
	if err != nil || total != 0 {
		t.Fatalf("total after a failed batch = %d, %v; want 0 (rolled back)", total, err)
	}
	for range 10 { // more batches than the pool's 4 connections
		if _, err := s.CommitHits(ctx, "a", 1, 0); err != nil {
			t.Fatalf("CommitHits after a failure = %v", err)
		}
	}
	if c, err := s.CommitHits(ctx, "a", 2, 0); err != nil || !slices.Equal(c.Numbers, []int64{11, 12}) {
		t.Fatalf("CommitHits = %+v, %v; want numbers 11, 12 (the failed batch took none)", c, err)
	}
}

// TestMigrateUpgradesHitTotals: a database from before per-instance counts
// keeps its numbers: the sequence continues from the old one-row total.
func TestMigrateUpgradesHitTotals(t *testing.T) {
	ctx := context.Background()
	pool := openPool(t, pg.NewDatabase(t))
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	// Apply 0001 and 0002 by hand, as an older release did, then count.
	for _, m := range ms[:2] {
		if _, err := pool.Exec(ctx, m.sql); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `
		CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO schema_migrations (version, name) VALUES (1, '0001_counters.sql'), (2, '0002_generation.sql');
		UPDATE hit_totals SET total = 41;
		INSERT INTO hits_by_minute VALUES (date_trunc('minute', now()), 'old', 41);
		INSERT INTO instance_hits VALUES ('old', 41, now(), now())`); err != nil {
		t.Fatal(err)
	}
	if n, err := Migrate(ctx, pool); err != nil || n != len(ms)-2 {
		t.Fatalf("Migrate = %d, %v; want %d applied", n, err, len(ms)-2)
	}
	c, err := NewStore(pool).CommitHits(ctx, "a", 1, 0)
	if err != nil || !slices.Equal(c.Numbers, []int64{42}) {
		t.Fatalf("first hit after the upgrade = %+v, %v; want number 42", c, err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'hit_totals'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("hit_totals tables = %d, %v; want it gone", n, err)
	}
}

func TestGenerationDiffersPerDatabase(t *testing.T) {
	ctx := context.Background()
	var gens []string
	for range 2 {
		pool := openPool(t, pg.NewDatabase(t))
		if _, err := Migrate(ctx, pool); err != nil {
			t.Fatal(err)
		}
		g, err := NewStore(pool).Generation(ctx)
		if err != nil || len(g) != 12 {
			t.Fatalf("Generation = %q, %v; want 12 characters", g, err)
		}
		gens = append(gens, g)
	}
	if gens[0] == gens[1] {
		t.Errorf("two databases share generation %q", gens[0])
	}
}
