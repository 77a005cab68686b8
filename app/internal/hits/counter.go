package hits

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Counter counts page loads: it submits each hit to the Batcher and derives
// the page's numbers from the hit's own number.
//
// Total is the hit's number n. The batcher takes numbers only after COMMIT,
// so n hits are stored once n is handed out, and each hit stored before the
// window of its minute (a day ago) was numbered long before this one. So
// LastDay = n - base(minute), where base(minute) counts the hits recorded
// before the minute's window: it never changes, and is computed once per
// minute per replica (and shared through the cache), never per hit.
type Counter struct {
	batcher   *Batcher
	store     Store
	cache     Cache // nil means no cache
	log       *slog.Logger
	now       func() time.Time
	dbTimeout time.Duration
	ttl       time.Duration // how long a breakdown is reused in process

	baseMu   sync.Mutex                // guards bases; held while computing, so one query per minute
	bases    map[int64]int64           // unix minute -> window base; a few recent minutes only
	lastBase atomic.Pointer[minuteSum] // the newest minute's base: every hit reads it without the lock

	breakdownMu sync.Mutex // guards breakdown and breakdownAt; never held across I/O
	breakdown   []InstanceCount
	breakdownAt time.Time
	refresh     singleflight.Group // one breakdown fetch at a time
	refreshing  atomic.Bool        // a fetch is under way: callers with a previous breakdown take it
}

// CounterConfig configures NewCounter.
type CounterConfig struct {
	Cache        Cache            // if nil, no cache is used
	Log          *slog.Logger     // if nil, logs are discarded
	Now          func() time.Time // if nil, time.Now
	DBTimeout    time.Duration    // deadline of each read query
	BreakdownTTL time.Duration    // in-process reuse of the breakdown; if zero, 1s
}

// NewCounter returns a Counter over a running Batcher and the store it commits to.
func NewCounter(b *Batcher, s Store, c CounterConfig) *Counter {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.BreakdownTTL <= 0 {
		c.BreakdownTTL = time.Second
	}
	if c.DBTimeout <= 0 {
		c.DBTimeout = 2 * time.Second
	}
	return &Counter{batcher: b, store: s, cache: c.Cache, log: c.Log, now: c.Now,
		dbTimeout: c.DBTimeout, ttl: c.BreakdownTTL, bases: map[int64]int64{}}
}

// Hit counts one page load and returns its numbers once it is committed.
func (c *Counter) Hit(ctx context.Context) (Hit, error) {
	start := time.Now()
	h, err := c.batcher.Submit(ctx)
	if err != nil {
		return Hit{}, err
	}
	base, err := c.windowBase(ctx, h.Minute)
	if err != nil {
		// The hit is stored and numbered: a 503 now would leave a stored hit
		// unacknowledged. Ask again, as a failed batch is settled, within
		// the bound Submit has (HitTimeout + SettleTimeout from the start).
		err = c.batcher.retryNumbered(ctx, start, err, func(ctx context.Context) error {
			var err error
			base, err = c.windowBase(ctx, h.Minute)
			return err
		})
		if err != nil {
			c.batcher.skipNumber() // its number is shown to nobody
			return Hit{}, fmt.Errorf("%w: last day: %w", ErrUnavailable, err)
		}
	}
	return Hit{
		Instance: c.batcher.Instance(),
		Total:    h.Number,
		LastDay:  h.Number - base,
		Minute:   h.Minute,
	}, nil
}

// minuteSum is one minute's window base.
type minuteSum struct{ minute, sum int64 }

func (c *Counter) windowBase(ctx context.Context, minute time.Time) (int64, error) {
	key := minute.Unix() / 60
	if last := c.lastBase.Load(); last != nil && last.minute == key {
		return last.sum, nil
	}
	c.baseMu.Lock()
	defer c.baseMu.Unlock()
	if s, ok := c.bases[key]; ok {
		return s, nil
	}
	if c.cache != nil {
		if s, ok, err := c.cache.WindowBase(ctx, minute); err == nil && ok {
			c.remember(key, s)
			return s, nil
		}
	}
	qctx, cancel := context.WithTimeout(ctx, c.dbTimeout)
	defer cancel()
	s, err := c.store.WindowBase(qctx, minute, windowMinutes)
	if err != nil {
		return 0, err
	}
	c.remember(key, s)
	if c.cache != nil {
		_ = c.cache.SetWindowBase(ctx, minute, s) // best effort; the cache logs its own outages
	}
	return s, nil
}

// remember keeps the last few minutes: batches can finish slightly out of
// minute order across goroutines, and older minutes are never asked again.
func (c *Counter) remember(key, sum int64) {
	c.bases[key] = sum
	if last := c.lastBase.Load(); last == nil || key >= last.minute {
		c.lastBase.Store(&minuteSum{minute: key, sum: sum})
	}
	for k := range c.bases {
		if k < key-3 {
			delete(c.bases, k)
		}
	}
}

// Breakdown returns hits per instance, most first; it may be a few seconds
// old. It is decoration: while one request refreshes it the others get the
// previous one at once, and a failed refresh keeps the previous one. Only
// the first calls of a process, with nothing to show yet, wait for a fetch.
func (c *Counter) Breakdown(ctx context.Context) ([]InstanceCount, error) {
	c.breakdownMu.Lock()
	prev, at := c.breakdown, c.breakdownAt
	c.breakdownMu.Unlock()
	if prev != nil && (c.refreshing.Load() || c.now().Sub(at) < c.ttl) {
		return prev, nil
	}
	// Callers that arrive together before the flag is up share the one fetch.
	ch := c.refresh.DoChan("breakdown", func() (any, error) {
		c.refreshing.Store(true)
		defer c.refreshing.Store(false)
		b, err := c.fetchBreakdown(ctx)
		if err != nil {
			return nil, err
		}
		c.breakdownMu.Lock()
		c.breakdown, c.breakdownAt = b, c.now()
		c.breakdownMu.Unlock()
		return b, nil
	})
	select {
	case r := <-ch:
		if r.Err == nil {
			return r.Val.([]InstanceCount), nil
		}
		if prev != nil {
			return prev, nil
		}
		return nil, r.Err
	case <-ctx.Done():
		if prev != nil {
			return prev, nil
		}
		return nil, ctx.Err()
	}
}

// fetchBreakdown reads the shared cache, else PostgreSQL (and fills the cache).
func (c *Counter) fetchBreakdown(ctx context.Context) ([]InstanceCount, error) {
	if c.cache != nil {
		if b, ok, err := c.cache.Breakdown(ctx); err == nil && ok {
			return b, nil
		}
	}
	qctx, cancel := context.WithTimeout(ctx, c.dbTimeout)
	defer cancel()
	b, err := c.store.Breakdown(qctx, 12)
	if err != nil {
		return nil, fmt.Errorf("breakdown: %w", err)
	}
	if b == nil {
		b = []InstanceCount{}
	}
	if c.cache != nil {
		_ = c.cache.SetBreakdown(ctx, b) // best effort; the cache logs its own outages
	}
	return b, nil
}
