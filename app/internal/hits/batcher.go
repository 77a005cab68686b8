package hits

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"hits/app/internal/metrics"
)

// Batcher is group commit: one goroutine takes every hit queued while the
// previous transaction was committing and records them all in one
// transaction, then tells each waiting request its place in the batch. One
// hot row updated once per batch instead of once per hit is what lets a
// replica go far past the row lock's ~4.5k commits/s.
type Batcher struct {
	store    Committer
	instance string
	max      int
	timeout  time.Duration
	log      *slog.Logger
	m        BatchMetrics

	workers int
	queue   chan *pending
	done    chan struct{} // closed when Run returns

	// Outage logging: the first failed batch is logged, then at most one
	// line per failureLogEvery, then the recovery.
	logMu       sync.Mutex // guards failures and lastFailLog
	failures    int
	lastFailLog time.Time
}

const failureLogEvery = 10 * time.Second

// BatchMetrics are the optional instruments a Batcher updates; nil fields are skipped.
type BatchMetrics struct {
	Size    *metrics.Histogram // hits per committed batch
	Seconds *metrics.Histogram // duration of each batch transaction
	Errors  *metrics.Counter   // failed batch transactions
	Hits    *metrics.Counter   // hits committed
	Gaveup  *metrics.Counter   // hits dropped because their request ended before the batch began
	Batches *metrics.Counter   // committed batches
}

type pending struct {
	ctx context.Context
	res chan slot // buffered 1: the batcher never blocks delivering
}

// slot is one request's place in a committed batch: hit i (1-based) of n.
type slot struct {
	commit Commit
	i, n   int
	err    error
}

// BatcherConfig configures NewBatcher.
type BatcherConfig struct {
	Instance string        // instance the hits are recorded for
	Max      int           // most hits per transaction (at least 1)
	Workers  int           // batches in flight at once; if zero, 1
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
		store: store, instance: c.Instance, max: c.Max, timeout: c.Timeout, log: log, m: c.Metrics, workers: c.Workers,
		queue: make(chan *pending, c.Max),
		done:  make(chan struct{}),
	}, nil
}

// Run commits batches until ctx is cancelled, then commits whatever is still
// queued and returns. The caller stops the HTTP server first so nothing new
// arrives; Submit after Run returned fails with ErrStopped.
func (b *Batcher) Run(ctx context.Context) {
	defer close(b.done)
	// Several workers keep a batch waiting on the row lock while another
	// commits; batches stay serialized by that lock, so numbers stay exact.
	var wg sync.WaitGroup
	for range b.workers {
		wg.Go(func() { b.work(ctx) })
	}
	wg.Wait()
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
// one transaction. It is never retried: a COMMIT whose answer was lost may
// have happened, and a retry would count those hits twice.
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
	// Requests that already gave up are not counted: nobody would see their number.
	live := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.res <- slot{err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
			b.m.Gaveup.Inc()
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	// The transaction outlives shutdown's cancellation (pending hits are
	// committed on the way out) but never its own deadline.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
	defer cancel()
	start := time.Now()
	c, err := b.store.CommitHits(tctx, b.instance, len(live))
	b.m.Seconds.Observe(time.Since(start).Seconds())
	if err != nil {
		b.m.Errors.Inc()
		b.logMu.Lock()
		b.failures++
		if b.failures == 1 || time.Since(b.lastFailLog) >= failureLogEvery {
			b.log.Error("batch failed; its requests get 503", "hits", len(live), "failed_batches", b.failures, "err", err)
			b.lastFailLog = time.Now()
		}
		b.logMu.Unlock()
		for _, p := range live {
			p.res <- slot{err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
		}
		return
	}
	b.logMu.Lock()
	if b.failures > 0 {
		b.log.Info("batches commit again", "failed_batches", b.failures)
		b.failures = 0
	}
	b.logMu.Unlock()
	b.m.Size.Observe(float64(len(live)))
	b.m.Hits.Add(uint64(len(live)))
	b.m.Batches.Inc()
	for i, p := range live {
		p.res <- slot{commit: c, i: i + 1, n: len(live)}
	}
}

// Queued returns how many hits wait for the next batch.
func (b *Batcher) Queued() int { return len(b.queue) }

// Submit queues one hit and waits until its batch commits, ctx ends or the
// Batcher stops.
func (b *Batcher) Submit(ctx context.Context) (Commit, int, int, error) {
	p := &pending{ctx: ctx, res: make(chan slot, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return Commit{}, 0, 0, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-b.done:
		return Commit{}, 0, 0, ErrStopped
	}
	select {
	case s := <-p.res:
		return s.commit, s.i, s.n, s.err
	case <-ctx.Done():
		return Commit{}, 0, 0, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-b.done:
		select {
		case s := <-p.res: // delivered just before Run returned
			return s.commit, s.i, s.n, s.err
		default:
			return Commit{}, 0, 0, ErrStopped
		}
	}
}
