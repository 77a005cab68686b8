package hits_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"hits/app/internal/hits"
	"hits/app/internal/postgres"
	"hits/app/internal/testenv"
	"hits/testkit"
)

var pg *testenv.Postgres // shared by this package's tests

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &pg, nil)) }

// newTally is a real Prometheus counter, the kind run gives the Batcher.
func newTally(name string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name})
}

// count reads a tally made by newTally.
func count(t hits.Tally) float64 { return testutil.ToFloat64(t.(prometheus.Counter)) }

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

// startBatcher runs a Batcher for instance until the test ends.
func startBatcher(t *testing.T, s hits.Committer, instance string, workers int, m hits.BatchMetrics) *hits.Batcher {
	t.Helper()
	return runBatcher(t, s, hits.BatcherConfig{Instance: instance, Max: 100, Workers: workers, Timeout: 5 * time.Second, Metrics: m})
}

// runBatcher runs a Batcher configured by c until the test ends.
func runBatcher(t *testing.T, s hits.Committer, c hits.BatcherConfig) *hits.Batcher {
	t.Helper()
	b, err := hits.NewBatcher(s, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return b
}

// startCounter runs a Batcher and its Counter for instance until the test ends.
func startCounter(t *testing.T, s *postgres.Store, instance string, workers int, m hits.BatchMetrics) *hits.Counter {
	t.Helper()
	return hits.NewCounter(startBatcher(t, s, instance, workers, m), s, hits.CounterConfig{})
}

// seedHistory stores hits as an older deployment would have: in the
// per-minute and per-instance rows, with the sequence past them.
func seedHistory(t *testing.T, pool *pgxpool.Pool, ago string, n int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO hits_by_minute (minute, instance, hits)
		VALUES (date_trunc('minute', now()) - $1::interval, 'old', $2)`, ago, n); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO instance_hits AS i (instance, hits, first_seen, last_seen)
		VALUES ('old', $1, now(), now())
		ON CONFLICT (instance) DO UPDATE SET hits = i.hits + EXCLUDED.hits`, n); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT setval('hit_numbers', (SELECT sum(hits) FROM instance_hits)::bigint)`); err != nil {
		t.Fatal(err)
	}
}

// TestCountersAreExact: many concurrent hits over several replicas'
// counters, each with its own Batcher and some with several batches in
// flight, each get a distinct number following the history, and so does
// "last day", which includes the older history inside the window and
// ignores the history outside it.
func TestCountersAreExact(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t, pg.NewDatabase(t))
	seedHistory(t, pool, "2 hours", 50)
	seedHistory(t, pool, "2 days", 900)
	m := hits.BatchMetrics{Hits: newTally("h"), Batches: newTally("b"), Skipped: newTally("s")}
	counters := []*hits.Counter{
		startCounter(t, s, "a", 1, m), startCounter(t, s, "b", 3, m),
		startCounter(t, s, "c", 1, m), startCounter(t, s, "d", 2, m),
	}

	const n = 2000
	totals, days := make([]int64, n), make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			h, err := counters[i%len(counters)].Hit(ctx)
			totals[i], days[i], errs[i] = h.Total, h.LastDay, err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkExactly(t, "total", totals, 951)
	checkExactly(t, "last_day", days, 51)
	if count(m.Hits) != n || count(m.Batches) >= n {
		t.Errorf("%v hits in %v batches; want %d hits sharing fewer batches", count(m.Hits), count(m.Batches), n)
	}
	if count(m.Skipped) != 0 {
		t.Errorf("%v numbers skipped with nothing failing, want 0", count(m.Skipped))
	}
	total, _, err := s.Totals(ctx)
	if err != nil || total != 950+n {
		t.Errorf("stored total = %d, %v; want %d", total, err, 950+n)
	}
}

// TestBatchersOfManyReplicasAreExact: rounds of concurrent hits over eight
// replicas' Batchers sharing one database each take exactly the next
// numbers, round after round: nothing but the sequence orders them.
func TestBatchersOfManyReplicasAreExact(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, pg.NewDatabase(t))
	var batchers []*hits.Batcher
	for i := range 8 {
		batchers = append(batchers, startBatcher(t, s, string(rune('a'+i)), 1+i%2, hits.BatchMetrics{}))
	}
	const rounds, perRound = 5, 200
	for r := range rounds {
		got := make([]int64, perRound)
		errs := make([]error, perRound)
		var wg sync.WaitGroup
		for i := range perRound {
			wg.Go(func() {
				h, err := batchers[i%len(batchers)].Submit(ctx)
				got[i], errs[i] = h.Number, err
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		checkExactly(t, fmt.Sprintf("round %d number", r), got, int64(r*perRound+1))
	}
}

// holdStore holds CommitHits until released, after checking the batch is
// under way: what lets a test end a request while its batch commits.
type holdStore struct {
	*postgres.Store
	entered chan struct{}
	release chan struct{}
}

func (s *holdStore) CommitHits(ctx context.Context, instance string, n, owed int) (hits.Commit, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Store.CommitHits(ctx, instance, n, owed)
}

// TestSkippedNumbers: a number is never reused; the two ways one is taken
// and never shown are counted. A request that ends while its batch commits
// leaves a committed hit whose number nobody saw; a batch that commits but
// cannot take its numbers (here the sequence hits a MAXVALUE) while its
// request waits answers 503, and the next batch takes those numbers too and
// skips them, so the numbers keep matching the stored count.
func TestSkippedNumbers(t *testing.T) {
	ctx := context.Background()
	pgStore, pool := newStore(t, pg.NewDatabase(t))
	s := &holdStore{Store: pgStore, entered: make(chan struct{}), release: make(chan struct{})}
	m := hits.BatchMetrics{Skipped: newTally("s"), Errors: newTally("e")}
	b := startBatcher(t, s, "a", 1, m)

	gone, cancelGone := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := b.Submit(gone); done <- err }()
	<-s.entered // its batch is under way
	cancelGone()
	if err := <-done; !errors.Is(err, hits.ErrUnavailable) {
		t.Fatalf("Submit that gave up = %v, want ErrUnavailable", err)
	}
	s.release <- struct{}{}

	next := func(ctx context.Context) (hits.Counted, error) {
		res := make(chan error, 1)
		var h hits.Counted
		go func() {
			var err error
			h, err = b.Submit(ctx)
			res <- err
		}()
		<-s.entered
		s.release <- struct{}{}
		err := <-res
		return h, err
	}
	if h, err := next(ctx); err != nil || h.Number != 2 {
		t.Fatalf("hit after one that gave up = %+v, %v; want number 2 (1 skipped)", h, err)
	}
	if got := count(m.Skipped); got != 1 {
		t.Errorf("skipped = %v after a request gave up mid-batch, want 1", got)
	}

	if _, err := pool.Exec(ctx, `ALTER SEQUENCE hit_numbers MAXVALUE 2`); err != nil {
		t.Fatal(err)
	}
	// The batcher tries again while the request waits, then gives up.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := next(short); !errors.Is(err, hits.ErrUnavailable) {
		t.Fatalf("hit with the sequence exhausted = %v, want ErrUnavailable", err)
	}
	if total, _, err := pgStore.Totals(ctx); err != nil || total != 3 {
		t.Fatalf("stored total = %d, %v; want 3 (the unnumbered batch committed)", total, err)
	}
	if _, err := pool.Exec(ctx, `ALTER SEQUENCE hit_numbers NO MAXVALUE`); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the unnumbered hit to be owed", 10*time.Second, func() bool { return b.Owed() == 1 })
	if h, err := next(ctx); err != nil || h.Number != 4 {
		t.Fatalf("hit after an unnumbered batch = %+v, %v; want number 4 (3 skipped)", h, err)
	}
	if got := count(m.Skipped); got != 2 {
		t.Errorf("skipped = %v, want 2", got)
	}
	if total, _, err := pgStore.Totals(ctx); err != nil || total != 4 {
		t.Errorf("stored total = %d, %v; want 4, matching the last number", total, err)
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

// waitDrained waits until b's queue is empty: its batch took what was queued.
func waitDrained(t *testing.T, b *hits.Batcher) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for b.Queued() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d hits still queued after 5s", b.Queued())
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
		h   hits.Counted
		err error
	}
	results := make(chan res, n)
	for range n {
		go func() {
			h, err := b.Submit(context.Background())
			results <- res{h, err}
		}()
	}
	waitQueued(t, b, n)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // shutdown already begun when Run starts
	b.Run(ctx)
	seen := map[int64]bool{}
	for range n {
		r := <-results
		if r.err != nil || r.h.Number < 1 || r.h.Number > n || seen[r.h.Number] {
			t.Errorf("queued hit: %+v; want committed with a number of its own in 1..%d", r, n)
		}
		seen[r.h.Number] = true
	}
	total, _, err := s.Totals(context.Background())
	if err != nil || total != n {
		t.Errorf("stored total = %d, %v; want %d", total, err, n)
	}
	if _, err := b.Submit(context.Background()); !errors.Is(err, hits.ErrStopped) {
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
	go func() { _, err := b.Submit(gone); done <- err }()
	waitQueued(t, b, 1)
	cancelGone()
	if err := <-done; !errors.Is(err, hits.ErrUnavailable) {
		t.Fatalf("abandoned Submit = %v, want ErrUnavailable", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	defer func() { stop(); wg.Wait() }()
	h, err := b.Submit(context.Background())
	if err != nil || h.Number != 1 {
		t.Fatalf("next hit = %+v, %v; want number 1 (the abandoned hit took none)", h, err)
	}
}

// stepClock is a clock for the Batcher's arrival estimate that moves step
// on every reading: hits seem to arrive step apart, whatever the real time.
func stepClock(step time.Duration) func() time.Time {
	var n atomic.Int64
	base := time.Now()
	return func() time.Time { return base.Add(time.Duration(n.Add(1)) * step) }
}

// lingerBatcher runs a Batcher with c and metrics that count batches,
// hits and lingers, on a fresh database, until the test ends.
func lingerBatcher(t *testing.T, c hits.BatcherConfig) (*hits.Batcher, hits.BatchMetrics) {
	t.Helper()
	s, _ := newStore(t, pg.NewDatabase(t))
	c.Metrics = hits.BatchMetrics{Batches: newTally("b"), Hits: newTally("h"), Lingered: newTally("l")}
	return runBatcher(t, s, c), c.Metrics
}

// sequential submits n hits one after another, as one client loading page
// after page, each answered within deadline.
func sequential(t *testing.T, b *hits.Batcher, n int, deadline time.Duration) {
	t.Helper()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		_, err := b.Submit(ctx)
		cancel()
		if err != nil {
			t.Fatalf("hit %d of %d: %v (within %v)", i+1, n, err, deadline)
		}
	}
}

// TestLingerGathersTheClientsItHolds: four clients, each loading its next
// page as soon as the last one answers, as behind a balancer. Once the
// batcher has seen the four held at once, each batch lingers until all
// four are in and commits at once, though LingerHits (100) and the wait
// a linger may take (hits seem a minute apart, Linger an hour) are far
// larger: a batch that waited for a fifth client would keep its hits
// past the deadline.
func TestLingerGathersTheClientsItHolds(t *testing.T) {
	b, m := lingerBatcher(t, hits.BatcherConfig{Instance: "x", Max: 100, Linger: time.Hour, LingerHits: 100, Timeout: 5 * time.Second, Now: stepClock(time.Minute)})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	const clients, want = 4, 80
	var answered atomic.Int64
	failed := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := b.Submit(ctx); err != nil {
					if ctx.Err() == nil {
						failed <- err
					}
					return
				}
				answered.Add(1)
			}
		})
	}
	testkit.Eventually(t, fmt.Sprintf("%d hits answered", want), 20*time.Second, func() bool {
		select {
		case err := <-failed:
			t.Fatal(err)
		default:
		}
		return answered.Load() >= want
	})
	// Batches from here on may wait for a client that stopped: the
	// batcher's own shutdown ends them (nothing of theirs is written).
	stop()
	wg.Wait()
	if per := count(m.Hits) / count(m.Batches); count(m.Lingered) == 0 || per < 3 {
		t.Errorf("%v hits in %v batches (%.1f each), %v lingered; want lingers gathering about 4 each", count(m.Hits), count(m.Batches), per, count(m.Lingered))
	}
}

// TestQuietReplicaDoesNotLinger: hits an hour apart are each alone, and
// none waits for company, however long Linger is.
func TestQuietReplicaDoesNotLinger(t *testing.T) {
	b, m := lingerBatcher(t, hits.BatcherConfig{Instance: "x", Max: 100, Linger: time.Minute, Timeout: 5 * time.Second, Now: stepClock(time.Hour)})
	sequential(t, b, 4, 20*time.Second)
	if n := count(m.Lingered); n != 0 {
		t.Errorf("%v of 4 lone hits lingered, want 0", n)
	}
}

// TestOneClientNeverLingers: one client loading pages one after another,
// 1 ms apart, holds one hit at a time and sends nothing while it waits;
// its hit never lingers, though hits arrive well within Linger.
func TestOneClientNeverLingers(t *testing.T) {
	b, m := lingerBatcher(t, hits.BatcherConfig{Instance: "x", Max: 100, Linger: 20 * time.Millisecond, Timeout: 5 * time.Second, Now: stepClock(time.Millisecond)})
	const n = 30
	sequential(t, b, n, 10*time.Second)
	if got := count(m.Lingered); got != 0 {
		t.Errorf("%v of %d sequential hits lingered, want 0", got, n)
	}
}

func TestNewBatcherRejectsBadConfig(t *testing.T) {
	for _, c := range []hits.BatcherConfig{
		{Instance: "x", Max: 0, Timeout: time.Second},
		{Instance: "x", Max: 1, Timeout: 0},
		{Instance: "", Max: 1, Timeout: time.Second},
		{Instance: "x", Max: 1, Timeout: time.Second, HitTimeout: -time.Second},
		{Instance: "x", Max: 1, Timeout: time.Second, SettleTimeout: -time.Second},
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
	calls   atomic.Int32 // Breakdown calls so far
}

func (s *slowStore) Breakdown(ctx context.Context, limit int) ([]hits.InstanceCount, error) {
	s.calls.Add(1)
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

// TestBreakdownOneFetchAtATime: callers that find nothing to show share one
// fetch (singleflight) instead of each querying the database.
func TestBreakdownOneFetchAtATime(t *testing.T) {
	ctx := context.Background()
	pgStore, _ := newStore(t, pg.NewDatabase(t))
	s := &slowStore{Store: pgStore, entered: make(chan struct{}, 1), release: make(chan struct{})}
	c := hits.NewCounter(startBatcher(t, s, "a", 1, hits.BatchMetrics{}), s, hits.CounterConfig{BreakdownTTL: time.Hour})
	s.hold.Store(true)
	const n = 20
	results := make(chan error, n)
	go func() { _, err := c.Breakdown(ctx); results <- err }()
	<-s.entered // the first fetch is held; the others start during it
	var started sync.WaitGroup
	for range n - 1 {
		started.Add(1)
		go func() { started.Done(); _, err := c.Breakdown(ctx); results <- err }()
	}
	// Whether a caller joins the held fetch or arrives after it and takes
	// its result, there must be exactly one fetch.
	started.Wait()
	close(s.release)
	for range n {
		if err := <-results; err != nil {
			t.Errorf("Breakdown = %v, want nil", err)
		}
	}
	if got := s.calls.Load(); got != 1 {
		t.Errorf("%d fetches for %d concurrent callers, want 1", got, n)
	}
}
