package hits_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"hits/app/internal/hits"
	"hits/app/internal/testenv"
)

// TestLostCommitAnswerStillAnswers200: a batch whose COMMIT outlives the
// batch's deadline (its answer is lost) but commits is found committed by
// asking PostgreSQL, and its request, still waiting, gets its number.
func TestLostCommitAnswerStillAnswers200(t *testing.T) {
	url := pg.NewDatabase(t)
	s, _ := newStore(t, url)
	testenv.SlowCommits(t, url, 2*time.Second)
	b, err := hits.NewBatcher(s, hits.BatcherConfig{Instance: "a", Max: 10, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	wait, cancelWait := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelWait()
	// The cut-off pipeline's own nextval ran after COMMIT (the server went
	// on without us), so it may have taken number 1: a skip docs/app.md names.
	h, err := b.Submit(wait)
	if err != nil || h.Number < 1 || h.Number > 2 {
		t.Fatalf("Submit = %+v, %v; want number 1 or 2", h, err)
	}
	if total, _, err := s.Totals(context.Background()); err != nil || total != 1 {
		t.Errorf("stored = %d, %v; want 1", total, err)
	}
}

// TestConnectionsKilledUnderLoad: PostgreSQL's sessions are terminated
// again and again while replicas commit hits. Whatever a batch was doing at
// that moment, the stored count equals the hits answered with a number,
// no number is shown twice, and once the dust settles the next number is
// the stored count.
func TestConnectionsKilledUnderLoad(t *testing.T) {
	ctx := context.Background()
	url := pg.NewDatabase(t)
	s, _ := newStore(t, url)
	var batchers []*hits.Batcher
	for _, name := range []string{"a", "b"} {
		b, err := hits.NewBatcher(s, hits.BatcherConfig{Instance: name, Max: 100, Workers: 2, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { b.Run(runCtx) })
		t.Cleanup(func() { cancel(); wg.Wait() })
		batchers = append(batchers, b)
	}
	killer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(ctx)

	var stop atomic.Bool
	var mu sync.Mutex // guards numbers and failed
	numbers := map[int64]bool{}
	failed := 0
	var load sync.WaitGroup
	for i := range 16 {
		load.Go(func() {
			for !stop.Load() {
				hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				h, err := batchers[i%len(batchers)].Submit(hctx)
				cancel()
				mu.Lock()
				if err == nil {
					if numbers[h.Number] {
						t.Errorf("number %d shown twice", h.Number)
					}
					numbers[h.Number] = true
				} else if errors.Is(err, hits.ErrUnavailable) {
					failed++
				} else {
					t.Errorf("Submit = %v", err)
				}
				mu.Unlock()
			}
		})
	}
	// Terminate every session but the killer's, each time some hits have
	// been answered since the last round.
	killed := 0
	tick := time.NewTicker(3 * time.Millisecond)
	for round, last := 0, 0; round < 60; round++ {
		for {
			<-tick.C
			mu.Lock()
			n := len(numbers) + failed
			mu.Unlock()
			if n > last+5 {
				last = n
				break
			}
		}
		var k int
		if err := killer.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&k); err != nil {
			t.Fatal(err)
		}
		killed += k
	}
	tick.Stop()
	stop.Store(true)
	load.Wait()

	total, _, err := s.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d hits answered with a number, %d with 503, %d sessions terminated", len(numbers), failed, killed)
	if total != int64(len(numbers)) {
		t.Errorf("stored = %d, want %d: the hits answered with a number", total, len(numbers))
	}
	if failed == 0 || killed == 0 {
		t.Errorf("%d failed hits, %d sessions terminated: the test did not disturb anything", failed, killed)
	}
	// Owed numbers are taken by the next batch of their replica.
	var last int64
	for _, b := range batchers {
		h, err := b.Submit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, h.Number)
	}
	if total, _, err = s.Totals(ctx); err != nil || last != total {
		t.Errorf("last number %d, stored %d (%v): want equal", last, total, err)
	}
}
