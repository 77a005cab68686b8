package hits

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A batch whose CommitHits failed in a way that may have committed it is
// settled here, on a goroutine of its own (the worker goes on with the next
// batches). The write is never run again: the question is only whether it
// committed. Its requests wait meanwhile, past HitTimeout (their batch
// began, so their COMMIT may have run), each up to SettleTimeout longer or
// until its client is gone.
//
//   - Committed, numbers not taken (ErrNotNumbered): take them again, each
//     try with a fresh deadline, while any of the batch's requests still
//     waits; they get their 200. Only if none is left waiting, or the
//     numbers cannot be had by the time they all give up, are the numbers
//     owed: the next batch takes and skips them.
//   - COMMIT's answer lost (ErrOutcomeUnknown) with the transaction's id
//     known: ask PostgreSQL (pg_xact_status) on a fresh connection, again
//     while the requests wait. Committed: as above. Aborted: 503, nothing
//     stored. Not known by then: 503, and a goroutine keeps asking, so that
//     a late "committed" still adds the batch's hits to the owed numbers.
//
// Any other failure committed nothing: the worker answers 503 at once.

// Back-off between tries while settling a batch.
const (
	settleFirstWait = 5 * time.Millisecond
	settleMaxWait   = 250 * time.Millisecond
	resolveMaxWait  = 5 * time.Second // in the background, once no request waits
)

// errStillUnknown is a try that did not settle the batch yet.
var errStillUnknown = errors.New("transaction still in progress")

// mayHaveCommitted reports whether CommitHits' failure cerr leaves the batch
// possibly committed with something to ask or take: then settle finds out.
func mayHaveCommitted(c Commit, cerr error) bool {
	return errors.Is(cerr, ErrNotNumbered) || errors.Is(cerr, ErrOutcomeUnknown) && c.Txn != 0
}

// settle finds out what became of a batch whose CommitHits returned cerr
// (mayHaveCommitted) and, if it committed, takes its owed+len(live) numbers
// while its requests still wait. It returns the numbers, or the error to
// answer the requests with; either way the owed numbers are accounted for.
func (b *Batcher) settle(ctx context.Context, live []*pending, owed int, c Commit, cerr error) (Commit, error) {
	n := len(live)
	until := b.waitBound(live)
	if !errors.Is(cerr, ErrNotNumbered) {
		status, err := b.askStatus(live, until, c.Txn)
		switch {
		case err != nil:
			b.owed.Add(int64(owed))
			b.resolveLater(ctx, c.Txn, n)
			return Commit{}, fmt.Errorf("%w; still unknown: %w", cerr, err)
		case status == TxnAborted:
			b.owed.Add(int64(owed))
			return Commit{}, fmt.Errorf("%w; it was rolled back", cerr)
		}
		b.log.Warn("batch committed although its COMMIT's answer was lost", "hits", n, "txn", c.Txn)
	}
	// Numbers that reached us before the failure are this batch's; take the rest.
	nums := c.Numbers
	err := b.retry(live, until, func(ctx context.Context) error {
		more, err := b.store.TakeNumbers(ctx, owed+n-len(nums))
		nums = append(nums, more...)
		return err
	})
	if err != nil {
		// The numbers already taken are skipped here; the rest are owed.
		b.m.Skipped.Add(float64(len(nums)))
		b.owedCommitted(n)
		b.owed.Add(int64(owed - len(nums)))
		return Commit{}, fmt.Errorf("%w: %w", ErrNotNumbered, err)
	}
	b.log.Info("batch committed before PostgreSQL failed; its requests get the numbers taken since", "hits", n, "txn", c.Txn)
	return Commit{Minute: c.Minute, Numbers: nums, Txn: c.Txn}, nil
}

// askStatus asks what became of txn until it is known, no request of live
// waits any more, or until.
func (b *Batcher) askStatus(live []*pending, until time.Time, txn uint64) (TxnStatus, error) {
	var status TxnStatus
	err := b.retry(live, until, func(ctx context.Context) error {
		var err error
		status, err = b.store.TxnStatus(ctx, txn)
		if err == nil && status == TxnInProgress {
			err = errStillUnknown
		}
		return err
	})
	return status, err
}

// waitBound is the latest moment a request of live may still wait for its
// answer: its HitTimeout plus SettleTimeout (Submit gives up then), or its
// caller's deadline if sooner; without HitTimeout, its ctx's deadline. A
// request with no deadline at all counts as SettleTimeout from now.
func (b *Batcher) waitBound(live []*pending) time.Time {
	var until time.Time
	for _, p := range live {
		d, ok := p.ctx.Deadline()
		if !ok {
			d = time.Now().Add(b.settleFor)
		} else if b.wait > 0 {
			d = d.Add(b.settleFor)
			if cd, ok := p.client.Deadline(); ok && cd.Before(d) {
				d = cd
			}
		}
		if d.After(until) {
			until = d
		}
	}
	return until
}

// waiting reports whether any request of live still waits for its answer.
func waiting(live []*pending) bool {
	for _, p := range live {
		if p.state.Load() != answered && p.client.Err() == nil {
			return true
		}
	}
	return false
}

// retry calls try, each time with a fresh deadline (a quarter of a batch
// timeout, never past until), with back-off between (see again), until it
// succeeds, no request of live waits any more, or until passes. It returns
// try's last error.
func (b *Batcher) retry(live []*pending, until time.Time, try func(context.Context) error) error {
	short := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, b.timeout/4)
		defer cancel()
		return try(ctx)
	}
	err := tryUntil(context.Background(), until, short)
	if err == nil {
		return nil
	}
	return again(context.Background(), until, func() bool { return waiting(live) }, err, short)
}

// retryNumbered tries again what a hit submitted at start still needs once
// it is numbered (try, which failed with err), with the back-off of a
// failed batch's settle (see again): until try succeeds, ctx ends, or the
// bound Submit has passes (HitTimeout + SettleTimeout from start). It
// returns try's last error.
func (b *Batcher) retryNumbered(ctx context.Context, start time.Time, err error, try func(context.Context) error) error {
	return again(ctx, start.Add(b.wait+b.settleFor), nil, err, try)
}

// skipNumber counts one number taken that no page shows.
func (b *Batcher) skipNumber() { b.m.Skipped.Inc() }

// again calls try again after it failed with err, each time with ctx bounded
// by until, pausing settleFirstWait before the first, then twice as long
// each time up to settleMaxWait, until it succeeds, ctx ends, more (if not
// nil) reports false, or until passes. Near until the pauses shrink, so the
// last try comes just before it. It returns try's last error.
func again(ctx context.Context, until time.Time, more func() bool, err error, try func(context.Context) error) error {
	wait := settleFirstWait
	for {
		left := time.Until(until)
		if left <= settleFirstWait || ctx.Err() != nil || more != nil && !more() {
			return err
		}
		t := time.NewTimer(min(wait, left/2))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		wait = min(2*wait, settleMaxWait)
		if err = tryUntil(ctx, until, try); err == nil {
			return nil
		}
	}
}

// tryUntil calls try with ctx bounded by until.
func tryUntil(ctx context.Context, until time.Time, try func(context.Context) error) error {
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	return try(ctx)
}

// resolveLater keeps asking what became of txn after its requests were
// answered 503, until Run's ctx ends: if it committed, its n hits are stored
// without numbers, and the next batch takes and skips that many so numbers
// keep matching the stored count.
func (b *Batcher) resolveLater(ctx context.Context, txn uint64, n int) {
	b.log.Warn("batch outcome unknown; its requests get 503, still asking", "hits", n, "txn", txn)
	b.resolving.Go(func() {
		wait := settleMaxWait
		for {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
			status, err := b.store.TxnStatus(actx, txn)
			cancel()
			switch {
			case err == nil && status == TxnCommitted:
				b.owedCommitted(n)
				b.log.Warn("batch answered 503 had committed; its numbers will be skipped", "hits", n, "txn", txn)
				return
			case err == nil && status == TxnAborted:
				b.log.Info("batch answered 503 was rolled back", "hits", n, "txn", txn)
				return
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				b.log.Error("stopped before learning a batch's outcome; numbers may stay below the stored count", "hits", n, "txn", txn, "err", err)
				return
			}
			wait = min(2*wait, resolveMaxWait)
		}
	})
}

// owedCommitted records n hits committed without numbers: answered 503, they
// are counted as committed, and the next batch takes and skips their numbers.
func (b *Batcher) owedCommitted(n int) {
	b.m.Hits.Add(float64(n))
	b.m.Batches.Inc()
	b.owed.Add(int64(n))
}
