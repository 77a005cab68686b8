package hits_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"hits/app/internal/hits"
	"hits/app/internal/metrics"
	"hits/app/internal/postgres"
	"hits/app/internal/testenv"
)

var pg *testenv.Postgres // shared by this package's tests

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &pg, nil)) }

func newStore(t *testing.T, url string) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	pool, err := postgres.Open(context.Background(), url, 8, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return postgres.NewStore(pool), pool
}

// startCounter runs a Batcher for instance until the test ends.
func startCounter(t *testing.T, s *postgres.Store, instance string, workers int, m hits.BatchMetrics) *hits.Counter {
	t.Helper()
	b, err := hits.NewBatcher(s, hits.BatcherConfig{Instance: instance, Max: 100, Workers: workers, Timeout: 5 * time.Second, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return hits.NewCounter(b, s, hits.CounterConfig{})
}

// TestCountersAreExact: many concurrent hits over two replicas' counters
// each get a distinct number 1..N, and so does "last day", which here also
// includes older history inside the window and ignores history outside it.
func TestCountersAreExact(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t, pg.NewDatabase(t))
	if _, err := pool.Exec(ctx, `INSERT INTO hits_by_minute (minute, instance, hits) VALUES
		(date_trunc('minute', now()) - interval '2 hours', 'old', 50),
		(date_trunc('minute', now()) - interval '2 days', 'old', 900)`); err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	m := hits.BatchMetrics{Hits: reg.NewCounter("h", ""), Batches: reg.NewCounter("b", "")}
	// Replica b keeps three batches in flight: they queue on the row lock
	// like batches of different replicas, so numbers must stay exact.
	counters := []*hits.Counter{startCounter(t, s, "a", 1, m), startCounter(t, s, "b", 3, m)}

	const n = 2000
	totals, days := make([]int64, n), make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			h, err := counters[i%2].Hit(ctx)
			totals[i], days[i], errs[i] = h.Total, h.LastDay, err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkExactly(t, "total", totals, 1)
	checkExactly(t, "last_day", days, 51)
	if m.Hits.Value() != n || m.Batches.Value() >= n {
		t.Errorf("%d hits in %d batches; want %d hits sharing fewer batches", m.Hits.Value(), m.Batches.Value(), n)
	}
}

// waitQueued waits until n hits wait in b's queue.
func waitQueued(t *testing.T, b *hits.Batcher, n int) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for b.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d hits queued after 5s", b.Queued(), n)
		}
		<-tick.C
	}
}

// checkExactly asserts got holds each of from..from+len(got)-1 once.
func checkExactly(t *testing.T, name string, got []int64, from int64) {
	t.Helper()
	seen := map[int64]bool{}
	for _, v := range got {
		if v < from || v >= from+int64(len(got)) || seen[v] {
			t.Fatalf("%s %d is out of %d..%d or seen twice", name, v, from, from+int64(len(got))-1)
		}
		seen[v] = true
	}
}

// TestBatcherCommitsQueuedHitsOnStop: hits queued when shutdown begins are
// committed before Run returns, and their requests get their numbers.
func TestBatcherCommitsQueuedHitsOnStop(t *testing.T) {
	s, _ := newStore(t, pg.NewDatabase(t))
	b, err := hits.NewBatcher(s, hits.BatcherConfig{Instance: "x", Max: 100, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	type res struct {
		c   hits.Commit
		i   int
		err error
	}
	results := make(chan res, n)
	for range n {
		go func() {
			c, i, _, err := b.Submit(context.Background())
			results <- res{c, i, err}
		}()
	}
	waitQueued(t, b, n)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // shutdown already begun when Run starts
	b.Run(ctx)
	for range n {
		r := <-results
		if r.err != nil || r.c.Total != n {
			t.Errorf("queued hit: %+v; want committed with total %d", r, n)
		}
	}
	total, _, err := s.Totals(context.Background())
	if err != nil || total != n {
		t.Errorf("stored total = %d, %v; want %d", total, err, n)
	}
	if _, _, _, err := b.Submit(context.Background()); !errors.Is(err, hits.ErrStopped) {
		t.Errorf("Submit after Run returned = %v, want ErrStopped", err)
	}
}

// TestAbandonedHitsAreNotCounted: a request that gave up before its batch
// began is not counted (nobody would see its number).
func TestAbandonedHitsAreNotCounted(t *testing.T) {
	s, _ := newStore(t, pg.NewDatabase(t))
	b, err := hits.NewBatcher(s, hits.BatcherConfig{Instance: "x", Max: 100, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gone, cancelGone := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, _, _, err := b.Submit(gone); done <- err }()
	waitQueued(t, b, 1)
	cancelGone()
	if err := <-done; !errors.Is(err, hits.ErrUnavailable) {
		t.Fatalf("abandoned Submit = %v, want ErrUnavailable", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	defer func() { stop(); wg.Wait() }()
	c, i, n, err := b.Submit(context.Background())
	if err != nil || c.Total != 1 || i != 1 || n != 1 {
		t.Fatalf("next hit = %+v, %d of %d, %v; want total 1, alone in its batch", c, i, n, err)
	}
}

func TestNewBatcherRejectsBadConfig(t *testing.T) {
	for _, c := range []hits.BatcherConfig{
		{Instance: "x", Max: 0, Timeout: time.Second},
		{Instance: "x", Max: 1, Timeout: 0},
		{Instance: "", Max: 1, Timeout: time.Second},
	} {
		if _, err := hits.NewBatcher(nil, c); err == nil {
			t.Errorf("NewBatcher(%+v) = nil error, want one", c)
		}
	}
}

// slowStore is the real store with a Breakdown that can be held or failed
// on demand: a slow or failing database is what a real part cannot produce
// at the right moment.
type slowStore struct {
	*postgres.Store
	entered chan struct{} // receives when a held Breakdown starts
	release chan struct{} // closing it lets held calls go on
	hold    atomic.Bool
	fail    atomic.Bool
}

func (s *slowStore) Breakdown(ctx context.Context, limit int) ([]hits.InstanceCount, error) {
	if s.fail.Load() {
		return nil, errors.New("database is slow today")
	}
	if s.hold.Load() {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.Store.Breakdown(ctx, limit)
}

// TestBreakdownNeverWaitsOnARefresh: while one request refreshes the
// breakdown the others get the previous one at once, and a failed refresh
// keeps it.
func TestBreakdownNeverWaitsOnARefresh(t *testing.T) {
	ctx := context.Background()
	pgStore, _ := newStore(t, pg.NewDatabase(t))
	s := &slowStore{Store: pgStore, entered: make(chan struct{}, 1), release: make(chan struct{})}
	clock := testenv.NewClock(time.Unix(1_700_000_000, 0))
	b, err := hits.NewBatcher(s, hits.BatcherConfig{Instance: "a", Max: 10, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(runCtx) })
	defer func() { stop(); wg.Wait() }()
	c := hits.NewCounter(b, s, hits.CounterConfig{Now: clock.Now, BreakdownTTL: time.Second})

	hitsOf := func(bd []hits.InstanceCount) int64 {
		if len(bd) != 1 {
			t.Fatalf("breakdown %+v, want one instance", bd)
		}
		return bd[0].Hits
	}
	if _, err := c.Hit(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := c.Breakdown(ctx)
	if err != nil || hitsOf(first) != 1 {
		t.Fatalf("Breakdown = %+v, %v; want a:1", first, err)
	}
	if _, err := c.Hit(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Add(2 * time.Second) // stale now
	s.hold.Store(true)
	refreshed := make(chan []hits.InstanceCount, 1)
	go func() { bd, _ := c.Breakdown(ctx); refreshed <- bd }()
	<-s.entered // the refresh is under way and held
	start := time.Now()
	stale, err := c.Breakdown(ctx)
	if err != nil || hitsOf(stale) != 1 {
		t.Errorf("Breakdown during a refresh = %+v, %v; want the previous a:1", stale, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Breakdown during a refresh took %s, want no wait", d)
	}
	s.hold.Store(false)
	close(s.release)
	if bd := <-refreshed; hitsOf(bd) != 2 {
		t.Errorf("refreshed breakdown = %+v, want a:2", bd)
	}
	clock.Add(2 * time.Second)
	s.fail.Store(true)
	kept, err := c.Breakdown(ctx)
	if err != nil || hitsOf(kept) != 2 {
		t.Errorf("Breakdown after a failed refresh = %+v, %v; want the previous a:2", kept, err)
	}
}
