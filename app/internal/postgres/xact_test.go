package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"hits/app/internal/hits"
	"hits/app/internal/testenv"
	"hits/testkit"
)

// TestTxnStatus: the transaction id a batch reports is the one PostgreSQL
// knows it by: committed for a batch that committed, aborted for one rolled
// back, in progress for one still open.
func TestTxnStatus(t *testing.T) {
	ctx := context.Background()
	s, pool := migratedStore(t)
	c, err := s.CommitHits(ctx, "a", 2, 0)
	if err != nil || c.Txn == 0 {
		t.Fatalf("CommitHits = %+v, %v; want a transaction id", c, err)
	}
	if st, err := s.TxnStatus(ctx, c.Txn); err != nil || st != hits.TxnCommitted {
		t.Errorf("status of a committed batch = %v, %v; want committed", st, err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var open uint64
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if st, err := s.TxnStatus(ctx, open); err != nil || st != hits.TxnInProgress {
		t.Errorf("status of an open transaction = %v, %v; want in progress", st, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := s.TxnStatus(ctx, open); err != nil || st != hits.TxnAborted {
		t.Errorf("status of a rolled back transaction = %v, %v; want aborted", st, err)
	}
}

// stored reads how many hits are stored.
func stored(t *testing.T, s *Store) int64 {
	t.Helper()
	total, _, err := s.Totals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// TestCommitAnswerLost: when COMMIT's answer never arrives, the batch still
// reports its transaction id (it was flushed to us before COMMIT ran), and
// PostgreSQL says what became of it. Here the answer is lost twice: once
// to the batch's context ending while COMMIT goes on and succeeds, once
// because the session is terminated during COMMIT, which rolls it back.
//
// Both wait until the batch's session is seen sleeping inside COMMIT before
// they strike. A fixed deadline raced the machine: when the pipeline's first
// answers took about as long as the deadline, the cancel request pgx sends
// on closing landed before the sleep's handler, and COMMIT was cancelled.
func TestCommitAnswerLost(t *testing.T) {
	ctx := context.Background()
	url := pg.NewDatabase(t)
	pool := openPool(t, url)
	if _, err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	s := NewStore(pool)
	if _, err := s.CommitHits(ctx, "a", 1, 0); err != nil { // prepares the statements
		t.Fatal(err)
	}
	// Long enough that the cancel request always lands during the sleep;
	// both subtests end it early.
	testenv.SlowCommits(t, url, 5*time.Second)

	type res struct {
		c   hits.Commit
		err error
	}
	// inCommit starts a batch of n hits under ctx and returns, once its
	// session sleeps in COMMIT, that session's pid and where its result goes.
	inCommit := func(t *testing.T, bctx context.Context, n int) (int, <-chan res) {
		t.Helper()
		done := make(chan res, 1)
		go func() { c, err := s.CommitHits(bctx, "a", n, 0); done <- res{c, err} }()
		var pid int
		testkit.EventuallyNil(t, "the batch to sleep in COMMIT", 10*time.Second, func() error {
			return pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'`).Scan(&pid)
		})
		return pid, done
	}

	t.Run("context ended during COMMIT, committed", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, done := inCommit(t, cctx, 3)
		cancel()
		r := <-done
		if !errors.Is(r.err, hits.ErrOutcomeUnknown) || r.c.Txn == 0 {
			t.Fatalf("CommitHits cut off during COMMIT = %+v, %v; want ErrOutcomeUnknown with a transaction id", r.c, r.err)
		}
		testkit.EventuallyNil(t, "the batch to commit", 10*time.Second, func() error {
			st, err := s.TxnStatus(ctx, r.c.Txn)
			if err == nil && st != hits.TxnCommitted {
				err = errors.New("not committed yet")
			}
			return err
		})
		if got := stored(t, s); got != 4 {
			t.Errorf("stored = %d, want 4", got)
		}
	})

	t.Run("session terminated during COMMIT, aborted", func(t *testing.T) {
		pid, done := inCommit(t, ctx, 5)
		if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if !errors.Is(r.err, hits.ErrOutcomeUnknown) || r.c.Txn == 0 {
			t.Fatalf("CommitHits terminated during COMMIT = %+v, %v; want ErrOutcomeUnknown with a transaction id", r.c, r.err)
		}
		var st hits.TxnStatus
		testkit.EventuallyNil(t, "the terminated session to end", 10*time.Second, func() error {
			var err error
			if st, err = s.TxnStatus(ctx, r.c.Txn); err == nil && st == hits.TxnInProgress {
				err = errors.New("still in progress")
			}
			return err
		})
		if st != hits.TxnAborted {
			t.Errorf("status = %v; want aborted", st)
		}
		if got := stored(t, s); got != 4 {
			t.Errorf("stored = %d, want still 4", got)
		}
	})
}
