// Package rediscache is the shared cache on Redis (redigo). It is strictly
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

	"github.com/gomodule/redigo/redis"

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
	pool    *redis.Pool
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
//
// The client is redigo rather than go-redis: go-redis v9 links every Redis
// command into the binary (about 8 MB, measured), which alone would break the
// app image's 15 MB budget, for the two commands used here.
func New(c Config) (*Cache, error) {
	if c.URL == "" || c.Timeout <= 0 {
		return nil, fmt.Errorf("rediscache: need a URL and a timeout > 0, got %q, %s", c.URL, c.Timeout)
	}
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
	url, timeout := c.URL, c.Timeout
	pool := &redis.Pool{
		// No retries and no health pings: a failed call starts the back-off
		// below, and a conn that saw an error is discarded by the pool.
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialURLContext(ctx, url,
				redis.DialConnectTimeout(timeout), redis.DialReadTimeout(timeout), redis.DialWriteTimeout(timeout))
		},
		MaxIdle:     16,
		MaxActive:   64,
		Wait:        true, // bounded by each call's context deadline
		IdleTimeout: time.Minute,
	}
	return &Cache{pool: pool, prefix: c.Prefix, timeout: c.Timeout, backoff: c.Backoff,
		ttl: c.BreakdownTTL, log: c.Log, errs: c.Errors, now: c.Now}, nil
}

// Close closes the connection pool.
func (c *Cache) Close() error { return c.pool.Close() }

// do runs f on a pooled conn with the call deadline unless Redis is backing
// off, and tracks outages. redis.ErrNil (a miss) is not a failure.
//
// A caller that has given up (its context ended) says nothing about Redis:
// its call is not made, or its failure does not start a back-off, so one
// client going away never turns the cache off for everyone.
func (c *Cache) do(ctx context.Context, f func(ctx context.Context, conn redis.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	skip := c.down && c.now().Before(c.downUntil)
	c.mu.Unlock()
	if skip {
		return ErrBackoff
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := c.call(callCtx, f)
	if err != nil && ctx.Err() != nil {
		return err
	}
	if err != nil && !errors.Is(err, redis.ErrNil) {
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

func (c *Cache) call(ctx context.Context, f func(ctx context.Context, conn redis.Conn) error) error {
	conn, err := c.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer conn.Close() // back to the pool, or discarded if it failed
	return f(ctx, conn)
}

func (c *Cache) baseKey(minute time.Time) string {
	return c.prefix + "base:" + strconv.FormatInt(minute.Unix()/60, 10)
}

func (c *Cache) breakdownKey() string { return c.prefix + "breakdown" }

// WindowBase returns the shared window base for minute (hits recorded
// before the minute's window).
func (c *Cache) WindowBase(ctx context.Context, minute time.Time) (int64, bool, error) {
	var v int64
	err := c.do(ctx, func(ctx context.Context, conn redis.Conn) error {
		var err error
		v, err = redis.Int64(redis.DoContext(conn, ctx, "GET", c.baseKey(minute)))
		return err
	})
	if errors.Is(err, redis.ErrNil) {
		return 0, false, nil
	}
	return v, err == nil, err
}

// SetWindowBase shares the window base for minute. It never changes, so it
// lives a few minutes: long enough for every replica to read it.
func (c *Cache) SetWindowBase(ctx context.Context, minute time.Time, sum int64) error {
	return c.do(ctx, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "SET", c.baseKey(minute), sum, "EX", 300)
		return err
	})
}

// Breakdown returns the shared per-instance breakdown.
func (c *Cache) Breakdown(ctx context.Context) ([]hits.InstanceCount, bool, error) {
	var raw []byte
	err := c.do(ctx, func(ctx context.Context, conn redis.Conn) error {
		var err error
		raw, err = redis.Bytes(redis.DoContext(conn, ctx, "GET", c.breakdownKey()))
		return err
	})
	if errors.Is(err, redis.ErrNil) {
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
	return c.do(ctx, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.DoContext(conn, ctx, "SET", c.breakdownKey(), raw, "PX", max(c.ttl.Milliseconds(), 1))
		return err
	})
}
