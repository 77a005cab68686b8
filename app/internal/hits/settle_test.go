package hits_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"hits/app/internal/hits"
	"hits/testkit"
)

// What one CommitHits call of a fakeStore does.
type fakeCommit int

const (
	commitOK            fakeCommit = iota
	committedUnnumbered            // COMMIT answered, numbering failed
	lostCommitted                  // COMMIT's answer lost; it had committed
	lostAborted                    // COMMIT's answer lost; it had rolled back
	refused                        // nothing reached the database
)

var errFake = errors.New("connection reset (fake)")

// fakeStore is an in-memory Committer whose failures are scripted: the rare
// orderings a real PostgreSQL cannot be made to produce on demand. Hits it
// commits are counted in stored; numbers come from one counter.
type fakeStore struct {
	mu         sync.Mutex // guards every field
	script     []fakeCommit
	stored     int
	last       int64
	txns       map[uint64]hits.TxnStatus
	nextTxn    uint64
	numberErrs int           // TakeNumbers fails this many more times
	statusErrs int           // TxnStatus fails this many more times, then answers "in progress" once
	hidden     bool          // while set, TxnStatus fails
	took       int           // successful TakeNumbers calls
	tries      int           // TakeNumbers and TxnStatus calls
	gate       chan struct{} // if set, CommitHits waits until it is closed
	commits    int           // CommitHits calls begun
}

func newFakeStore(script ...fakeCommit) *fakeStore {
	return &fakeStore{script: script, txns: map[uint64]hits.TxnStatus{}}
}

func (s *fakeStore) take(k int) []int64 {
	nums := make([]int64, k)
	for i := range nums {
		s.last++
		nums[i] = s.last
	}
	return nums
}

func (s *fakeStore) CommitHits(ctx context.Context, instance string, n, owed int) (hits.Commit, error) {
	s.mu.Lock()
	gate := s.gate
	s.commits++
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	what := commitOK
	if len(s.script) > 0 {
		what, s.script = s.script[0], s.script[1:]
	}
	s.nextTxn++
	c := hits.Commit{Minute: time.Unix(1_700_000_000, 0), Txn: s.nextTxn}
	switch what {
	case commitOK:
		s.stored += n
		c.Numbers = s.take(n + owed)
		return c, nil
	case committedUnnumbered:
		s.stored += n
		return c, errors.Join(hits.ErrNotNumbered, errFake)
	case lostCommitted:
		s.stored += n
		s.txns[c.Txn] = hits.TxnCommitted
		return c, errors.Join(hits.ErrOutcomeUnknown, errFake)
	case lostAborted:
		s.txns[c.Txn] = hits.TxnAborted
		return c, errors.Join(hits.ErrOutcomeUnknown, errFake)
	}
	return hits.Commit{}, errFake
}

func (s *fakeStore) TakeNumbers(ctx context.Context, k int) ([]int64, error) {
	if _, ok := ctx.Deadline(); !ok || ctx.Err() != nil {
		return nil, errors.New("TakeNumbers without a live deadline")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	if s.numberErrs > 0 {
		s.numberErrs--
		return nil, errFake
	}
	s.took++
	return s.take(k), nil
}

func (s *fakeStore) TxnStatus(ctx context.Context, txn uint64) (hits.TxnStatus, error) {
	if _, ok := ctx.Deadline(); !ok || ctx.Err() != nil {
		return hits.TxnInProgress, errors.New("TxnStatus without a live deadline")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	if s.hidden {
		return hits.TxnInProgress, errFake
	}
	if s.statusErrs > 0 {
		s.statusErrs--
		if s.statusErrs == 0 {
			return hits.TxnInProgress, nil
		}
		return hits.TxnInProgress, errFake
	}
	return s.txns[txn], nil
}

func (s *fakeStore) set(f func(s *fakeStore)) { s.mu.Lock(); f(s); s.mu.Unlock() }

func (s *fakeStore) get() (stored int, last int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stored, s.last
}

// TestSettlingAFailedBatch: a batch whose CommitHits failed is never written
// again; the batcher finds out what became of it. Its requests get 200 and
// their numbers exactly when their hits are stored and the numbers can be
// taken while they wait; otherwise 503, and any hit stored without a number
// is owed, so the numbers keep matching the stored count.
func TestSettlingAFailedBatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		commit fakeCommit
		setup  func(s *fakeStore)
		wait   time.Duration // how long the request waits
		ok     bool          // the request gets its number
		stored int
		owed   int64
	}{
		{name: "committed, numbers taken on the third try", commit: committedUnnumbered,
			setup: func(s *fakeStore) { s.numberErrs = 2 }, wait: 5 * time.Second, ok: true, stored: 1},
		{name: "committed, numbers never taken while the request waits", commit: committedUnnumbered,
			setup: func(s *fakeStore) { s.numberErrs = 1 << 30 }, wait: 200 * time.Millisecond, stored: 1, owed: 1},
		{name: "answer lost, committed after a failed check and one in progress", commit: lostCommitted,
			setup: func(s *fakeStore) { s.statusErrs = 2 }, wait: 5 * time.Second, ok: true, stored: 1},
		{name: "answer lost, committed, numbers taken on the second try", commit: lostCommitted,
			setup: func(s *fakeStore) { s.numberErrs = 1 }, wait: 5 * time.Second, ok: true, stored: 1},
		{name: "answer lost, rolled back", commit: lostAborted, wait: 5 * time.Second},
		{name: "refused", commit: refused, wait: 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeStore(tc.commit)
			if tc.setup != nil {
				s.set(tc.setup)
			}
			m := hits.BatchMetrics{Skipped: newTally("s"), Hits: newTally("h")}
			b := startBatcher(t, s, "a", 1, m)
			ctx, cancel := context.WithTimeout(context.Background(), tc.wait)
			defer cancel()
			h, err := b.Submit(ctx)
			if tc.ok && (err != nil || h.Number != 1) {
				t.Fatalf("Submit = %+v, %v; want number 1", h, err)
			}
			if !tc.ok && !errors.Is(err, hits.ErrUnavailable) {
				t.Fatalf("Submit = %+v, %v; want ErrUnavailable", h, err)
			}
			if stored, _ := s.get(); stored != tc.stored {
				t.Errorf("stored = %d, want %d", stored, tc.stored)
			}
			if got := b.Owed(); got != tc.owed {
				t.Errorf("owed = %d, want %d", got, tc.owed)
			}
			// The next hit's number is the stored count: nothing counted
			// twice, no number shown for a hit not stored.
			h, err = b.Submit(context.Background())
			stored, _ := s.get()
			if err != nil || h.Number != int64(stored) {
				t.Errorf("next Submit = %+v, %v; want number %d, the stored count", h, err, stored)
			}
			if got, want := count(m.Skipped), float64(tc.owed); got != want {
				t.Errorf("skipped = %v, want %v", got, want)
			}
			if got := count(m.Hits); got != float64(stored) {
				t.Errorf("hits_committed = %v, want %d", got, stored)
			}
		})
	}
}

// TestOutcomeLearntAfterTheAnswer: a batch whose outcome is still unknown
// when its requests give up answers 503; the batcher keeps asking, and when
// it learns the batch had committed, the next batch skips its numbers.
func TestOutcomeLearntAfterTheAnswer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		commit fakeCommit
		owed   int64
	}{
		{"committed", lostCommitted, 1},
		{"rolled back", lostAborted, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeStore(tc.commit)
			s.set(func(s *fakeStore) { s.hidden = true })
			m := hits.BatchMetrics{Skipped: newTally("s")}
			b := startBatcher(t, s, "a", 1, m)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if h, err := b.Submit(ctx); !errors.Is(err, hits.ErrUnavailable) {
				t.Fatalf("Submit = %+v, %v; want ErrUnavailable", h, err)
			}
			s.set(func(s *fakeStore) { s.hidden = false })
			stored, _ := s.get()
			if tc.owed > 0 {
				testkit.Eventually(t, "the batch's hits to be owed numbers", 10*time.Second, func() bool { return b.Owed() == tc.owed })
			}
			h, err := b.Submit(context.Background())
			if err != nil || h.Number != int64(stored)+1 {
				t.Errorf("next Submit = %+v, %v; want number %d (stored count %d + this one)", h, err, stored+1, stored)
			}
			if got := count(m.Skipped); got != float64(tc.owed) {
				t.Errorf("skipped = %v, want %d", got, tc.owed)
			}
		})
	}
}

// submitted is the outcome of a Submit run on its own goroutine.
type submitted struct {
	h   hits.Counted
	err error
	at  time.Duration // after the Submit began
}

func submitAsync(b *hits.Batcher, ctx context.Context) <-chan submitted {
	res := make(chan submitted, 1)
	start := time.Now()
	go func() {
		h, err := b.Submit(ctx)
		res <- submitted{h, err, time.Since(start)}
	}()
	return res
}

// TestCommittedBatchOutlivesHitTimeout: HitTimeout bounds only the wait for
// a hit's batch to begin. Once it began, its COMMIT may run, so the request
// waits for the outcome (up to SettleTimeout longer, or until its client is
// gone): a batch that committed gets its 200 however late its numbers or
// its outcome come, a hit still queued at HitTimeout is dropped unwritten,
// and the worker commits other batches while one is settled.
func TestCommittedBatchOutlivesHitTimeout(t *testing.T) {
	const hitTimeout = 200 * time.Millisecond
	start := func(t *testing.T, s *fakeStore, settle time.Duration, m hits.BatchMetrics) *hits.Batcher {
		return runBatcher(t, s, hits.BatcherConfig{Instance: "a", Max: 100, Workers: 1, Timeout: 5 * time.Second,
			HitTimeout: hitTimeout, SettleTimeout: settle, Metrics: m})
	}
	// pastHitTimeout waits until the batch has been settled for longer than
	// HitTimeout: tries keep coming, and the request has not been answered.
	pastHitTimeout := func(t *testing.T, s *fakeStore, res <-chan submitted) {
		t.Helper()
		begun := time.Now()
		testkit.Eventually(t, "HitTimeout to pass while the batch is settled", 10*time.Second, func() bool {
			s.mu.Lock()
			tries := s.tries
			s.mu.Unlock()
			return time.Since(begun) > 2*hitTimeout && tries > 2
		})
		select {
		case r := <-res:
			t.Fatalf("Submit answered %+v, %v after %v, before the batch was settled", r.h, r.err, r.at)
		default:
		}
	}

	t.Run("numbers come after HitTimeout; other batches commit meanwhile", func(t *testing.T) {
		s := newFakeStore(committedUnnumbered)
		s.set(func(s *fakeStore) { s.numberErrs = 1 << 30 })
		m := hits.BatchMetrics{Skipped: newTally("s")}
		b := start(t, s, 10*time.Second, m)
		first := submitAsync(b, context.Background())
		pastHitTimeout(t, s, first)
		// The one worker is free: a second hit commits while the first waits.
		if h, err := b.Submit(context.Background()); err != nil || h.Number != 1 {
			t.Fatalf("second Submit = %+v, %v; want number 1 while the first batch is settled", h, err)
		}
		s.set(func(s *fakeStore) { s.numberErrs = 0 })
		if r := <-first; r.err != nil || r.h.Number != 2 {
			t.Fatalf("first Submit = %+v, %v; want number 2", r.h, r.err)
		}
		if stored, last := s.get(); stored != 2 || last != 2 || b.Owed() != 0 || count(m.Skipped) != 0 {
			t.Errorf("stored %d, last number %d, owed %d, skipped %v; want 2, 2, 0, 0", stored, last, b.Owed(), count(m.Skipped))
		}
	})

	t.Run("outcome learnt after HitTimeout", func(t *testing.T) {
		s := newFakeStore(lostCommitted)
		s.set(func(s *fakeStore) { s.hidden = true })
		b := start(t, s, 10*time.Second, hits.BatchMetrics{})
		res := submitAsync(b, context.Background())
		pastHitTimeout(t, s, res)
		s.set(func(s *fakeStore) { s.hidden = false })
		if r := <-res; r.err != nil || r.h.Number != 1 {
			t.Fatalf("Submit = %+v, %v; want number 1", r.h, r.err)
		}
	})

	t.Run("a slow COMMIT is waited for; a hit still queued is dropped", func(t *testing.T) {
		gate := make(chan struct{})
		s := newFakeStore()
		s.set(func(s *fakeStore) { s.gate = gate })
		m := hits.BatchMetrics{Gaveup: newTally("g"), Skipped: newTally("s")}
		b := start(t, s, 10*time.Second, m)
		t.Cleanup(func() {
			select {
			case <-gate:
			default:
				close(gate) // let Run return if the test failed before
			}
		})
		first := submitAsync(b, context.Background())
		testkit.Eventually(t, "the first hit's batch to hold the worker", 5*time.Second, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.commits == 1
		})
		second := submitAsync(b, context.Background())
		if r := <-second; !errors.Is(r.err, hits.ErrUnavailable) || r.at < hitTimeout {
			t.Fatalf("queued Submit = %+v, %v after %v; want ErrUnavailable after HitTimeout", r.h, r.err, r.at)
		}
		select {
		case r := <-first:
			t.Fatalf("Submit answered %+v, %v while its COMMIT still ran", r.h, r.err)
		default:
		}
		close(gate)
		if r := <-first; r.err != nil || r.h.Number != 1 || r.at < hitTimeout {
			t.Fatalf("Submit = %+v, %v after %v; want number 1 after HitTimeout", r.h, r.err, r.at)
		}
		testkit.Eventually(t, "the dropped hit to be counted abandoned", 5*time.Second, func() bool { return count(m.Gaveup) == 1 })
		if stored, _ := s.get(); stored != 1 || count(m.Skipped) != 0 {
			t.Errorf("stored %d, skipped %v; want 1 and 0: the dropped hit was never written", stored, count(m.Skipped))
		}
	})

	t.Run("SettleTimeout bounds the wait", func(t *testing.T) {
		const settle = 300 * time.Millisecond
		s := newFakeStore(committedUnnumbered)
		s.set(func(s *fakeStore) { s.numberErrs = 1 << 30 })
		m := hits.BatchMetrics{Skipped: newTally("s")}
		b := start(t, s, settle, m)
		r := <-submitAsync(b, context.Background())
		if !errors.Is(r.err, hits.ErrUnavailable) || r.at < hitTimeout+settle-50*time.Millisecond || r.at > hitTimeout+settle+2*time.Second {
			t.Fatalf("Submit = %+v, %v after %v; want ErrUnavailable after HitTimeout+SettleTimeout (%v)", r.h, r.err, r.at, hitTimeout+settle)
		}
		testkit.Eventually(t, "the unnumbered hit to be owed", 5*time.Second, func() bool { return b.Owed() == 1 })
		s.set(func(s *fakeStore) { s.numberErrs = 0 })
		if h, err := b.Submit(context.Background()); err != nil || h.Number != 2 || count(m.Skipped) != 1 {
			t.Errorf("next Submit = %+v, %v, skipped %v; want number 2 (the stored count), 1 skipped", h, err, count(m.Skipped))
		}
	})

	t.Run("a client gone while its batch is settled", func(t *testing.T) {
		s := newFakeStore(committedUnnumbered)
		s.set(func(s *fakeStore) { s.numberErrs = 1 << 30 })
		b := start(t, s, time.Minute, hits.BatchMetrics{})
		ctx, cancel := context.WithCancel(context.Background())
		res := submitAsync(b, ctx)
		pastHitTimeout(t, s, res)
		cancel()
		if r := <-res; !errors.Is(r.err, hits.ErrUnavailable) || !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Submit = %+v, %v; want ErrUnavailable: context canceled", r.h, r.err)
		}
		testkit.Eventually(t, "the unnumbered hit to be owed", 5*time.Second, func() bool { return b.Owed() == 1 })
	})
}

// baseStore is a fakeStore that is also a Store, whose window base fails
// baseErrs times: PostgreSQL failing between a hit's batch and the read of
// its minute's base.
type baseStore struct {
	*fakeStore
	baseErrs int // guarded by fakeStore.mu
}

func (s *baseStore) WindowBase(ctx context.Context, minute time.Time, minutes int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.baseErrs > 0 {
		s.baseErrs--
		return 0, errFake
	}
	return 0, nil
}

func (s *baseStore) Breakdown(ctx context.Context, limit int) ([]hits.InstanceCount, error) {
	return nil, nil
}

// TestWindowBaseAskedAgain: a hit stored and numbered whose minute's window
// base cannot be read at once is asked for again, so it still gets its 200;
// only past HitTimeout + SettleTimeout does it answer 503, its number then
// counted as skipped.
func TestWindowBaseAskedAgain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		baseErrs int
		ok       bool
	}{
		{"read on the fourth try", 3, true},
		{"never read", 1 << 30, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &baseStore{fakeStore: newFakeStore(), baseErrs: tc.baseErrs}
			m := hits.BatchMetrics{Skipped: newTally("s")}
			const hitTimeout, settle = 100 * time.Millisecond, 300 * time.Millisecond
			b := runBatcher(t, s, hits.BatcherConfig{Instance: "a", Max: 10, Timeout: time.Second,
				HitTimeout: hitTimeout, SettleTimeout: settle, Metrics: m})
			c := hits.NewCounter(b, s, hits.CounterConfig{})
			start := time.Now()
			h, err := c.Hit(context.Background())
			took := time.Since(start)
			if tc.ok && (err != nil || h.Total != 1 || h.LastDay != 1 || count(m.Skipped) != 0) {
				t.Fatalf("Hit = %+v, %v, skipped %v; want total 1, last day 1, none skipped", h, err, count(m.Skipped))
			}
			if !tc.ok && (!errors.Is(err, hits.ErrUnavailable) || count(m.Skipped) != 1 || took > hitTimeout+settle+2*time.Second) {
				t.Fatalf("Hit = %+v, %v after %v, skipped %v; want ErrUnavailable within HitTimeout+SettleTimeout, 1 skipped", h, err, took, count(m.Skipped))
			}
		})
	}
}
