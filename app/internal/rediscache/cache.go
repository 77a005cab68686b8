// Package rediscache is the shared cache on Redis (go-redis). It is strictly
// best effort: every call has a short deadline, a failure starts a short
// back-off during which Redis is not asked at all (so a dead Redis costs
// nothing per request), and the outage is logged once when it starts and
// once when it ends.
package rediscache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"hits/app/internal/hits"
	"hits/app/internal/metrics"
)

// ErrBackoff is returned while Redis is skipped after a recent failure.
var ErrBackoff = errors.New("redis skipped after a recent failure")

// Config configures New.
type Config struct {
	URL          string           // redis:// URL, required
	Prefix       string           // starts every key; if empty, "hits:"
	Timeout      time.Duration    // deadline of each call
	Backoff      time.Duration    // how long Redis is skipped after a failure; if zero, 2s
	BreakdownTTL time.Duration    // life of the shared breakdown; if zero, 2s
	Log          *slog.Logger     // if nil, logs are discarded
	Errors       *metrics.Counter // counts failed calls; may be nil
	Now          func() time.Time // if nil, time.Now
}

// Cache implements hits.Cache.
type Cache struct {
	client  *redis.Client
	prefix  string
	timeout time.Duration
	backoff time.Duration
	ttl     time.Duration
	log     *slog.Logger
	errs    *metrics.Counter
	now     func() time.Time

	mu        sync.Mutex // guards down and downUntil
	down      bool
	downUntil time.Time
}

// New returns a Cache; it does not connect until first used.
func New(c Config) (*Cache, error) {
	opt, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("rediscache: %w", err)
	}
	opt.DialTimeout = c.Timeout
	opt.ReadTimeout = c.Timeout
	opt.WriteTimeout = c.Timeout
	opt.PoolTimeout = c.Timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1 // no retries: the back-off below is the retry policy
	if c.Prefix == "" {
		c.Prefix = "hits:"
	}
	if c.Backoff <= 0 {
		c.Backoff = 2 * time.Second
	}
	if c.BreakdownTTL <= 0 {
		c.BreakdownTTL = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Cache{client: redis.NewClient(opt), prefix: c.Prefix, timeout: c.Timeout, backoff: c.Backoff,
		ttl: c.BreakdownTTL, log: c.Log, errs: c.Errors, now: c.Now}, nil
}

// Close closes the connection pool.
func (c *Cache) Close() error { return c.client.Close() }

// do runs f with the call deadline unless Redis is backing off, and tracks
// outages. redis.Nil (a miss) is not a failure.
func (c *Cache) do(ctx context.Context, f func(ctx context.Context) error) error {
	c.mu.Lock()
	skip := c.down && c.now().Before(c.downUntil)
	c.mu.Unlock()
	if skip {
		return ErrBackoff
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := f(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		c.errs.Inc()
		c.mu.Lock()
		if !c.down {
			c.log.Warn("redis unavailable; serving from postgres alone", "err", err, "retry_after", c.backoff.String())
		}
		c.down, c.downUntil = true, c.now().Add(c.backoff)
		c.mu.Unlock()
		return err
	}
	c.mu.Lock()
	if c.down {
		c.log.Info("redis is back")
		c.down = false
	}
	c.mu.Unlock()
	return err
}

func (c *Cache) closedKey(minute time.Time) string {
	return c.prefix + "closed:" + strconv.FormatInt(minute.Unix()/60, 10)
}

func (c *Cache) breakdownKey() string { return c.prefix + "breakdown" }

// ClosedSum returns the shared closed-window sum for minute.
func (c *Cache) ClosedSum(ctx context.Context, minute time.Time) (int64, bool, error) {
	var v int64
	err := c.do(ctx, func(ctx context.Context) error {
		var err error
		v, err = c.client.Get(ctx, c.closedKey(minute)).Int64()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	return v, err == nil, err
}

// SetClosedSum shares the closed-window sum for minute. It never changes, so
// it lives a few minutes: long enough for every replica to read it.
func (c *Cache) SetClosedSum(ctx context.Context, minute time.Time, sum int64) error {
	return c.do(ctx, func(ctx context.Context) error {
		return c.client.Set(ctx, c.closedKey(minute), sum, 5*time.Minute).Err()
	})
}

// Breakdown returns the shared per-instance breakdown.
func (c *Cache) Breakdown(ctx context.Context) ([]hits.InstanceCount, bool, error) {
	var raw []byte
	err := c.do(ctx, func(ctx context.Context) error {
		var err error
		raw, err = c.client.Get(ctx, c.breakdownKey()).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var b []hits.InstanceCount
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, false, fmt.Errorf("breakdown in redis: %w", err)
	}
	return b, true, nil
}

// SetBreakdown shares the breakdown for a short while.
func (c *Cache) SetBreakdown(ctx context.Context, b []hits.InstanceCount) error {
	raw, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return c.do(ctx, func(ctx context.Context) error {
		return c.client.Set(ctx, c.breakdownKey(), raw, c.ttl).Err()
	})
}
