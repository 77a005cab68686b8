package hits

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
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
	store     Committer
	instance  string
	max       int
	lingerFor time.Duration // Linger
	lingerTo  int           // LingerHits: no batch lingers for more
	arrivals  arrivals
	// While lingering is on: hits in Submit now, and the most at once
	// since the last batch stopped gathering (see arrivals.clients).
	held, heldMost atomic.Int64
	timeout        time.Duration
	wait           time.Duration // HitTimeout; zero: only the caller's ctx bounds a hit
	settleFor      time.Duration // SettleTimeout
	log            *slog.Logger
	m              BatchMetrics

	workers int
	queue   chan *pending
	done    chan struct{} // closed when Run returns

	// owed counts hits committed without numbers (see settle): the next
	// batch takes that many extra numbers and skips them, so numbers keep
	// matching the stored count.
	owed atomic.Int64

	resolving sync.WaitGroup // goroutines still settling a failed batch or asking its outcome

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
	// Lingered counts batches that waited for more hits (see
	// BatcherConfig.Linger), counted when the wait begins.
	Lingered Tally
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
	for _, t := range []*Tally{&m.Errors, &m.Hits, &m.Gaveup, &m.Batches, &m.Skipped, &m.Lingered} {
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
	// ended (client gone, or SettleTimeout passed) after its batch began,
	// when a batch committed but its numbers could not be taken while its
	// requests waited, or when the Counter could not read the hit's window
	// base in time; all are counted in BatchMetrics.Skipped.
	Number int64
	// Minute is the database minute the hit was recorded in.
	Minute time.Time
}

type pending struct {
	ctx    context.Context // the caller's, with HitTimeout: ended before its batch began, the hit is dropped
	client context.Context // the caller's own: ended, the request is gone whatever its batch did
	res    chan result     // buffered 1: the batcher never blocks delivering
	// state moves from queued to begun when a batch takes the hit (its
	// COMMIT may run from then on), and to answered when whichever side
	// settles the request first does: the batcher delivering a result, or
	// Submit giving up. A number delivered to a request that already gave
	// up is a skipped number; a hit that gave up while queued is never
	// written.
	state atomic.Int32
}

// The states of a pending hit.
const (
	queued int32 = iota
	begun
	answered
)

type result struct {
	c   Counted
	err error
}

// deliver hands r to p unless p already gave up; it reports whether p took it.
func deliver(p *pending, r result) bool {
	if !claim(p) {
		return false
	}
	p.res <- r
	return true
}

// claim moves p to answered from whatever state it is in; it reports false
// when the other side (batcher or Submit) answered it first.
func claim(p *pending) bool {
	for {
		s := p.state.Load()
		if s == answered {
			return false
		}
		if p.state.CompareAndSwap(s, answered) {
			return true
		}
	}
}

// BatcherConfig configures NewBatcher.
type BatcherConfig struct {
	Instance string // instance the hits are recorded for
	Max      int    // most hits per transaction (at least 1)
	Workers  int    // batches in flight at once; if zero, 1
	// Linger is how long a batch may wait for more hits; zero: it takes
	// what is queued. It waits only while hits arrive less than Linger
	// apart on average and lingering gathers some, and only for as many
	// hits as this replica lately held at once (see arrivals): a lone hit
	// on a quiet replica never waits, nor does one client's next page.
	Linger time.Duration
	// LingerHits is the most hits a batch lingers for: one this full
	// commits at once. Zero or more than Max: Max.
	LingerHits int
	Timeout    time.Duration // deadline of one batch transaction
	// HitTimeout is the longest a hit waits for its batch to begin; zero:
	// only the ctx given to Submit bounds it. Once its batch began, its
	// COMMIT may run, and it waits for the outcome instead (SettleTimeout).
	HitTimeout time.Duration
	// SettleTimeout is how much longer than HitTimeout a hit whose batch
	// began may wait for its outcome and numbers when the batch failed in a
	// way that may have committed it (see settle); if zero, Timeout.
	SettleTimeout time.Duration
	Log           *slog.Logger // if nil, logs are discarded
	Metrics       BatchMetrics
	// Now is the clock the arrival estimate reads; if nil, time.Now.
	Now func() time.Time
}

// NewBatcher returns a Batcher; call Run to start it.
func NewBatcher(store Committer, c BatcherConfig) (*Batcher, error) {
	if c.Max < 1 || c.Timeout <= 0 || c.Instance == "" || c.HitTimeout < 0 || c.SettleTimeout < 0 {
		return nil, fmt.Errorf("new batcher: need Max >= 1, Timeout > 0, an instance and no negative timeout, got %d, %s, %q, %s, %s",
			c.Max, c.Timeout, c.Instance, c.HitTimeout, c.SettleTimeout)
	}
	if c.Workers <= 0 {
		c.Workers = 1
	}
	if c.LingerHits <= 0 || c.LingerHits > c.Max {
		c.LingerHits = c.Max
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = c.Timeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Batcher{
		store: store, instance: c.Instance, max: c.Max, lingerFor: c.Linger, lingerTo: c.LingerHits, timeout: c.Timeout, wait: c.HitTimeout, settleFor: c.SettleTimeout,
		arrivals: arrivals{now: c.Now, gain: 1}, // lingering is presumed to pay until it does not
		log:      log, m: c.Metrics.orNop(), workers: c.Workers,
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
	batch = b.linger(ctx, batch)
	// Requests that already gave up are not counted: nobody would see their
	// number. The others are begun: from here on they wait for the outcome.
	live := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil || !p.state.CompareAndSwap(queued, begun) {
			if err == nil {
				err = context.Canceled
			}
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
		if mayHaveCommitted(c, err) {
			// A copy: batch stays on this goroutine's stack when nothing fails.
			b.settleLater(ctx, slices.Clone(live), owed, c, err)
			return
		}
		b.owed.Add(int64(owed)) // nothing was taken: still owed
	}
	b.answer(live, owed, c, err)
}

// arrivals decides whether and for how many hits a batch lingers, from
// the batches gathered so far. Three estimates, each a moving average with
// a quarter weight to the newest sample:
//
//   - gap, how far apart hits arrive: a batch of k hits gathered over the
//     time since the previous batch stopped gathering is one sample,
//     (that time) / k. A quiet spell is one long sample, so after it a
//     lone hit does not linger; under load the estimate comes back down
//     within a few batches.
//   - gain, how many hits a linger gathered. One client loading pages one
//     after another sends nothing while its hit lingers: lingering only
//     delays it, and gain falls. Below half a hit, only every
//     lingerProbeEvery-th batch lingers, briefly, to notice when it pays
//     again.
//   - clients, how many hits this replica holds at once: the most that
//     were in Submit together between two batches. A batch lingers for
//     no more than that (rounded): behind a balancer that spreads 64
//     connections over 4 replicas each holds about 16, and once all 16
//     are in the batch nobody else is coming; waiting for a 17th would
//     only run out the wait. One client loading page after page holds
//     one: its hit never lingers.
type arrivals struct {
	now     func() time.Time
	mu      sync.Mutex
	last    time.Time     // when the previous batch stopped gathering
	gap     time.Duration // zero: no sample yet
	gain    float64
	clients float64 // zero: no sample yet
	probes  int     // batches since the last linger while gain is low
}

const lingerProbeEvery = 8

// linger is asked by a batch that has took hits, when at most most hits
// were in Submit at once since the previous batch. It returns how many
// hits the batch should hold (at most limit) and how long it should wait
// for them: zero when it holds them already or no hit is due within d; else
// twice the time the missing ones take to arrive at the estimated gap,
// at most d. A busy replica, whose hits come microseconds apart, waits no
// longer than they take. While lingering gathers little, a probe every
// lingerProbeEvery-th batch waits for one more hit only.
func (a *arrivals) linger(took, most, limit int, d time.Duration) (int, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.clients == 0 {
		a.clients = float64(most)
	} else {
		a.clients += (float64(most) - a.clients) / 4
	}
	to := max(1, min(limit, int(math.Round(a.clients))))
	need := to - took
	if need <= 0 || a.gap == 0 || a.gap >= d {
		return to, 0
	}
	if a.gain < 0.5 {
		if a.probes++; a.probes < lingerProbeEvery {
			return to, 0
		}
		a.probes, need = 0, 1
	}
	return to, min(d, 2*time.Duration(need)*a.gap)
}

// gathered records a batch of k hits that stopped gathering now, gained of
// them while it lingered (lingered false: it did not).
func (a *arrivals) gathered(k, gained int, lingered bool) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.last.IsZero() && k > 0 {
		sample := max(now.Sub(a.last)/time.Duration(k), 1)
		if a.gap == 0 {
			a.gap = sample
		} else {
			a.gap += (sample - a.gap) / 4
		}
	}
	a.last = now
	if lingered {
		a.gain += (float64(gained) - a.gain) / 4
	}
}

// linger lets a batch wait a little for company: with the load split over
// many replicas each sees few hits per commit, and every commit costs
// PostgreSQL and this process about the same whatever its size. It waits
// only for the hits this replica lately held at once (at most lingerTo)
// and commits as soon as they are in, so a busy replica never waits; nor
// does a quiet one, where no other hit is due within the linger, nor one
// whose lingers gather nothing, nor one client's next page (see arrivals).
func (b *Batcher) linger(ctx context.Context, batch []*pending) []*pending {
	if b.lingerFor == 0 {
		return batch // lingering off: no estimate to keep
	}
	took := len(batch)
	most := int(b.heldMost.Swap(b.held.Load()))
	to, d := b.arrivals.linger(took, most, b.lingerTo, b.lingerFor)
	if d > 0 {
		b.m.Lingered.Inc()
		t := time.NewTimer(d)
		defer t.Stop()
	wait:
		for len(batch) < to {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
			case <-t.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
	}
	b.arrivals.gathered(len(batch), len(batch)-took, d > 0)
	return batch
}

// settleLater settles a batch that may have committed (see settle) and
// answers its requests, on a goroutine of its own: finding out can take as
// long as PostgreSQL stays away, and the worker goes on with the next
// batches meanwhile.
func (b *Batcher) settleLater(ctx context.Context, live []*pending, owed int, c Commit, cerr error) {
	b.resolving.Go(func() {
		c, err := b.settle(ctx, live, owed, c, cerr)
		b.answer(live, owed, c, err)
	})
}

// answer delivers a batch's outcome: its numbers (the owed ones first, then
// one per hit of live), or err to every request.
func (b *Batcher) answer(live []*pending, owed int, c Commit, err error) {
	if err != nil {
		b.failed(len(live), err)
		for _, p := range live {
			deliver(p, result{err: fmt.Errorf("%w: %w", ErrUnavailable, err)})
		}
		return
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
//
// HitTimeout bounds the wait until the hit's batch begins: a hit still
// queued then is dropped (ErrUnavailable, nothing written). From the moment
// its batch began, its COMMIT may run, so it waits for the batch's outcome
// instead, up to SettleTimeout past HitTimeout: a late answer that the hit
// was stored beats a 503 for a stored hit.
func (b *Batcher) Submit(ctx context.Context) (Counted, error) {
	wait := ctx
	if b.wait > 0 {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, b.wait)
		defer cancel()
	}
	if b.lingerFor > 0 {
		b.hold()
		defer b.held.Add(-1)
	}
	p := &pending{ctx: wait, client: ctx, res: make(chan result, 1)}
	select {
	case b.queue <- p:
	case <-wait.Done():
		return Counted{}, fmt.Errorf("%w: %w", ErrUnavailable, wait.Err())
	case <-b.done:
		return Counted{}, ErrStopped
	}
	select {
	case r := <-p.res:
		return r.c, r.err
	case <-wait.Done():
	case <-b.done:
		return giveUp(p, ErrStopped)
	}
	gaveUp := fmt.Errorf("%w: %w", ErrUnavailable, wait.Err())
	if p.state.CompareAndSwap(queued, answered) {
		return Counted{}, gaveUp // its batch never began: nothing written
	}
	if ctx.Err() != nil {
		return giveUp(p, gaveUp) // the caller is gone
	}
	// HitTimeout passed after its batch began: its COMMIT may have run.
	t := time.NewTimer(b.settleFor)
	defer t.Stop()
	select {
	case r := <-p.res:
		return r.c, r.err
	case <-ctx.Done():
		gaveUp = fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-t.C:
		gaveUp = fmt.Errorf("%w: outcome of its batch not known within the settle timeout (%s)", ErrUnavailable, b.settleFor)
	case <-b.done:
		gaveUp = ErrStopped
	}
	return giveUp(p, gaveUp)
}

// hold counts one more hit in Submit, and the most at once.
func (b *Batcher) hold() {
	h := b.held.Add(1)
	for {
		m := b.heldMost.Load()
		if h <= m || b.heldMost.CompareAndSwap(m, h) {
			return
		}
	}
}

// giveUp answers p with err unless the batcher answered it first; then
// that answer, whose send is under way, is returned.
func giveUp(p *pending, err error) (Counted, error) {
	if claim(p) {
		return Counted{}, err
	}
	r := <-p.res
	return r.c, r.err
}
