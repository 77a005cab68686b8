package hits

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Batcher is group commit: one goroutine takes every hit queued while the
// previous transaction was committing and records them all in one
// transaction on this instance's own rows, then hands each waiting request
// one of the numbers taken after COMMIT. No row or lock is shared with other
// replicas' batches, so replicas commit in parallel and share PostgreSQL's
// own group commit.
type Batcher struct {
	store    Committer
	instance string
	max      int
	linger   time.Duration
	timeout  time.Duration
	log      *slog.Logger
	m        BatchMetrics

	workers int
	queue   chan *pending
	done    chan struct{} // closed when Run returns

	// owed counts hits committed without numbers (see settle): the next
	// batch takes that many extra numbers and skips them, so numbers keep
	// matching the stored count.
	owed atomic.Int64

	resolving sync.WaitGroup // goroutines still asking a batch's outcome (resolveLater)

	// Outage logging: the first failed batch is logged, then at most one
	// line per failureLogEvery, then the recovery.
	logMu       sync.Mutex // guards failures and lastFailLog
	failures    int
	lastFailLog time.Time
}

const failureLogEvery = 10 * time.Second

// BatchMetrics are the optional instruments a Batcher updates; nil fields are skipped.
type BatchMetrics struct {
	Size    Observer // hits per committed batch
	Seconds Observer // duration of each batch transaction
	Errors  Tally    // failed batch transactions
	Hits    Tally    // hits committed
	Gaveup  Tally    // hits dropped because their request ended before the batch began
	Batches Tally    // committed batches
	Skipped Tally    // numbers taken that no page showed (see Counted)
}

// Tally counts events; a Prometheus counter is one. The domain declares it
// so that it imports no metrics library.
type Tally interface {
	Inc()
	Add(float64)
}

// Observer records one value, as a Prometheus histogram does.
type Observer interface {
	Observe(float64)
}

type nopMetric struct{}

func (nopMetric) Inc()            {}
func (nopMetric) Add(float64)     {}
func (nopMetric) Observe(float64) {}

// orNop fills the fields left nil, so the hot path needs no checks.
func (m BatchMetrics) orNop() BatchMetrics {
	for _, t := range []*Tally{&m.Errors, &m.Hits, &m.Gaveup, &m.Batches, &m.Skipped} {
		if *t == nil {
			*t = nopMetric{}
		}
	}
	for _, o := range []*Observer{&m.Size, &m.Seconds} {
		if *o == nil {
			*o = nopMetric{}
		}
	}
	return m
}

// Counted is one hit as its batch committed and numbered it.
type Counted struct {
	// Number is the hit's own number, unique across replicas and never
	// reused. A number is skipped (taken, never shown) when its request
	// ended after its batch began, or when a batch committed but its numbers
	// could not be taken while its requests waited; both are counted in
	// BatchMetrics.Skipped.
	Number int64
	// Minute is the database minute the hit was recorded in.
	Minute time.Time
}

type pending struct {
	ctx context.Context
	res chan result // buffered 1: the batcher never blocks delivering
	// claimed is set by whichever side settles the request first: the
	// batcher delivering a result, or Submit giving up. A number delivered
	// to a request that already gave up is a skipped number.
	claimed atomic.Bool
}

type result struct {
	c   Counted
	err error
}

// deliver hands r to p unless p already gave up; it reports whether p took it.
func deliver(p *pending, r result) bool {
	if !p.claimed.CompareAndSwap(false, true) {
		return false
	}
	p.res <- r
	return true
}

// BatcherConfig configures NewBatcher.
type BatcherConfig struct {
	Instance string        // instance the hits are recorded for
	Max      int           // most hits per transaction (at least 1)
	Workers  int           // batches in flight at once; if zero, 1
	Linger   time.Duration // how long a batch waits for more hits after its first; zero: it takes what is queued
	Timeout  time.Duration // deadline of one batch transaction
	Log      *slog.Logger  // if nil, logs are discarded
	Metrics  BatchMetrics
}

// NewBatcher returns a Batcher; call Run to start it.
func NewBatcher(store Committer, c BatcherConfig) (*Batcher, error) {
	if c.Max < 1 || c.Timeout <= 0 || c.Instance == "" {
		return nil, fmt.Errorf("new batcher: need Max >= 1, Timeout > 0 and an instance, got %d, %s, %q", c.Max, c.Timeout, c.Instance)
	}
	if c.Workers <= 0 {
		c.Workers = 1
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Batcher{
		store: store, instance: c.Instance, max: c.Max, linger: c.Linger, timeout: c.Timeout, log: log, m: c.Metrics.orNop(), workers: c.Workers,
		queue: make(chan *pending, c.Max),
		done:  make(chan struct{}),
	}, nil
}

// Run commits batches until ctx is cancelled, then commits whatever is still
// queued and returns. The caller stops the HTTP server first so nothing new
// arrives; Submit after Run returned fails with ErrStopped.
func (b *Batcher) Run(ctx context.Context) {
	defer close(b.done)
	// Several workers keep a batch waiting on this instance's rows while
	// another commits; numbers come from the sequence either way.
	var wg sync.WaitGroup
	for range b.workers {
		wg.Go(func() { b.work(ctx) })
	}
	wg.Wait()
	b.resolving.Wait()
}

func (b *Batcher) work(ctx context.Context) {
	for {
		select {
		case p := <-b.queue:
			b.commit(ctx, p)
		case <-ctx.Done():
			for {
				select {
				case p := <-b.queue:
					b.commit(ctx, p)
				default:
					return
				}
			}
		}
	}
}

// commit gathers first and everything else already queued (up to max) into
// one transaction. The write is never retried: a COMMIT whose answer was
// lost may have happened, and a retry would count those hits twice; settle
// finds out instead.
func (b *Batcher) commit(ctx context.Context, first *pending) {
	batch := make([]*pending, 0, min(b.max, len(b.queue)+1))
	batch = append(batch, first)
	for len(batch) < b.max {
		select {
		case p := <-b.queue:
			batch = append(batch, p)
			continue
		default:
		}
		break
	}
	if b.linger > 0 && len(batch) < b.max {
		t := time.NewTimer(b.linger)
	linger:
		for len(batch) < b.max {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
			case <-t.C:
				break linger
			case <-ctx.Done():
				break linger
			}
		}
		t.Stop()
	}
	// Requests that already gave up are not counted: nobody would see their number.
	live := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			deliver(p, result{err: fmt.Errorf("%w: %w", ErrUnavailable, err)})
			b.m.Gaveup.Inc()
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	owed := int(b.owed.Swap(0))
	// The transaction outlives shutdown's cancellation (pending hits are
	// committed on the way out) but never its own deadline.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
	defer cancel()
	start := time.Now()
	c, err := b.store.CommitHits(tctx, b.instance, len(live), owed)
	b.m.Seconds.Observe(time.Since(start).Seconds())
	if err != nil {
		b.m.Errors.Inc()
		if c, err = b.settle(ctx, live, owed, c, err); err != nil {
			b.failed(len(live), err)
			for _, p := range live {
				deliver(p, result{err: fmt.Errorf("%w: %w", ErrUnavailable, err)})
			}
			return
		}
	}
	b.recovered()
	b.m.Size.Observe(float64(len(live)))
	b.m.Hits.Add(float64(len(live)))
	b.m.Batches.Inc()
	// The owed numbers come first; counted before any request hears back.
	b.m.Skipped.Add(float64(owed))
	for i, p := range live {
		if !deliver(p, result{c: Counted{Number: c.Numbers[owed+i], Minute: c.Minute}}) {
			b.m.Skipped.Inc() // the request gave up while its batch committed
		}
	}
}

// failed logs the first failed batch, then at most one line per failureLogEvery.
func (b *Batcher) failed(n int, err error) {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	b.failures++
	if b.failures == 1 || time.Since(b.lastFailLog) >= failureLogEvery {
		b.log.Error("batch failed; its requests get 503", "hits", n, "failed_batches", b.failures, "owed_numbers", b.owed.Load(), "err", err)
		b.lastFailLog = time.Now()
	}
}

// recovered logs the end of an outage once.
func (b *Batcher) recovered() {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	if b.failures > 0 {
		b.log.Info("batches commit again", "failed_batches", b.failures)
		b.failures = 0
	}
}

// Instance returns the instance the hits are recorded for.
func (b *Batcher) Instance() string { return b.instance }

// Owed returns how many hits are committed without a number: the next
// batch takes that many extra numbers and skips them.
func (b *Batcher) Owed() int64 { return b.owed.Load() }

// Queued returns how many hits wait for the next batch.
func (b *Batcher) Queued() int { return len(b.queue) }

// Submit queues one hit and waits until its batch commits and numbers it,
// ctx ends or the Batcher stops. A hit numbered before ctx ended is returned
// even if ctx has ended meanwhile: it is committed, and its number is the
// caller's to show.
func (b *Batcher) Submit(ctx context.Context) (Counted, error) {
	p := &pending{ctx: ctx, res: make(chan result, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return Counted{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-b.done:
		return Counted{}, ErrStopped
	}
	var gaveUp error
	select {
	case r := <-p.res:
		return r.c, r.err
	case <-ctx.Done():
		gaveUp = fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-b.done:
		gaveUp = ErrStopped
	}
	if p.claimed.CompareAndSwap(false, true) {
		return Counted{}, gaveUp
	}
	r := <-p.res // the batcher claimed it first: its send is under way
	return r.c, r.err
}
