package postgres

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
	pool := openPool(t, pg.NewDatabase(t))
	if _, err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	s := NewStore(pool)
	// History the rolling window must and must not include.
	if _, err := pool.Exec(ctx, `INSERT INTO hits_by_minute (minute, instance, hits) VALUES
		(date_trunc('minute', now()) - interval '10 minutes', 'old', 5),
		(date_trunc('minute', now()) - interval '1439 minutes', 'old', 7),
		(date_trunc('minute', now()) - interval '1440 minutes', 'old', 1000),
		(date_trunc('minute', now()) - interval '3 days', 'old', 2000)`); err != nil {
		t.Fatal(err)
	}
	c1, err := s.CommitHits(ctx, "a", 3)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := s.CommitHits(ctx, "b", 4)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Total != 3 || c1.MinuteSum != 3 || c2.Total != 7 {
		t.Errorf("commits = %+v, %+v; want totals 3 and 7, first minute sum 3", c1, c2)
	}
	if c2.Minute.Equal(c1.Minute) && c2.MinuteSum != 7 {
		t.Errorf("second minute sum = %d, want 7 (both batches in one minute)", c2.MinuteSum)
	}
	closed, err := s.ClosedSum(ctx, c2.Minute, 1440)
	if err != nil || closed != 12 {
		t.Errorf("ClosedSum = %d, %v; want 12 (5 + 7: the 1439 minutes before this one)", closed, err)
	}
	b, err := s.Breakdown(ctx, 10)
	if err != nil || len(b) != 2 || b[0].Instance != "b" || b[0].Hits != 4 || b[1].Instance != "a" || b[1].Hits != 3 {
		t.Errorf("Breakdown = %+v, %v; want b:4, a:3", b, err)
	}
	total, lastDay, err := s.Totals(ctx)
	if err != nil || total != 7 || lastDay != 19 {
		t.Errorf("Totals = %d, %d, %v; want 7, 19", total, lastDay, err)
	}
}

// TestCommitHitsIsAtomic: a batch that fails midway leaves nothing behind.
func TestCommitHitsIsAtomic(t *testing.T) {
	ctx := context.Background()
	pool := openPool(t, pg.NewDatabase(t))
	if _, err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	s := NewStore(pool)
	// hits_by_minute rejects hits <= 0 after hit_totals was already bumped.
	if _, err := s.CommitHits(ctx, "a", 0); err == nil {
		t.Fatal("CommitHits(0) = nil, want the CHECK violation")
	}
	total, _, err := s.Totals(ctx)
	if err != nil || total != 0 {
		t.Fatalf("total after a failed batch = %d, %v; want 0 (rolled back)", total, err)
	}
	if c, err := s.CommitHits(ctx, "a", 2); err != nil || c.Total != 2 {
		t.Fatalf("CommitHits after a failure = %+v, %v; want total 2", c, err)
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
