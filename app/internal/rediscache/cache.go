// Package rediscache is the shared cache on Redis (go-redis). It is strictly
// best effort: every call has a short deadline, a failure starts a short
// back-off during which Redis is not asked at all (so a dead Redis costs
// nothing per request), and the outage is logged once when it starts and
// once when it ends.
//
// Redis is one server (a redis:// or rediss:// URL) or a master found
// through Redis Sentinel; after a failover the Sentinels name the new
// master and the next connection goes there, with no restart.
package rediscache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"hits/app/internal/hits"
)

// ErrBackoff is returned while Redis is skipped after a recent failure.
var ErrBackoff = errors.New("redis skipped after a recent failure")

// Config configures New. Exactly one of URL and SentinelAddrs is set.
type Config struct {
	URL              string             // one server: redis:// or rediss:// (TLS), password and database in it
	SentinelAddrs    []string           // or the Sentinels' host:port, which name the master
	MasterName       string             // the master the Sentinels monitor; required with SentinelAddrs
	SentinelPassword string             // the Sentinels' own password, if any
	Password         string             // with Sentinel: the master's password, if any
	Prefix           string             // starts every key; if empty, "hits:"
	Timeout          time.Duration      // deadline of each call, dial included
	Backoff          time.Duration      // how long Redis is skipped after a failure; if zero, 2s
	BreakdownTTL     time.Duration      // life of the shared breakdown; if zero, 2s
	Log              *slog.Logger       // if nil, logs are discarded
	Errors           prometheus.Counter // counts failed calls; may be nil
	Now              func() time.Time   // if nil, time.Now
}

// Cache implements hits.Cache.
type Cache struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	backoff time.Duration
	ttl     time.Duration
	log     *slog.Logger
	errs    prometheus.Counter
	now     func() time.Time

	mu        sync.Mutex // guards down and downUntil
	down      bool
	downUntil time.Time
}

// New returns a Cache; it does not connect until first used.
func New(c Config) (*Cache, error) {
	if (c.URL == "") == (len(c.SentinelAddrs) == 0) || c.Timeout <= 0 {
		return nil, fmt.Errorf("rediscache: need a URL or Sentinel addresses (not both) and a timeout > 0, got %q, %q, %s",
			redacted(c.URL), c.SentinelAddrs, c.Timeout)
	}
	if len(c.SentinelAddrs) > 0 && c.MasterName == "" {
		return nil, errors.New("rediscache: Sentinel needs a master name")
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
	client, err := newClient(c)
	if err != nil {
		return nil, err
	}
	return &Cache{client: client, prefix: c.Prefix, timeout: c.Timeout, backoff: c.Backoff,
		ttl: c.BreakdownTTL, log: c.Log, errs: c.Errors, now: c.Now}, nil
}

// newClient builds a plain client for a URL or a failover client for
// Sentinel. Both are bounded the same way: no retries and no waiting beyond
// the call's deadline, because a failed call starts the back-off in do and
// the numbers never depend on Redis.
func newClient(c Config) (redis.UniversalClient, error) {
	noMaint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if c.URL != "" {
		o, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("rediscache: %s: %w", redacted(c.URL), err)
		}
		o.MaxRetries, o.DialerRetries = -1, 1
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = c.Timeout, c.Timeout, c.Timeout, c.Timeout
		o.ContextTimeoutEnabled = true
		o.ConnMaxIdleTime = time.Minute
		o.DisableIdentity = true
		o.MaintNotificationsConfig = noMaint
		return redis.NewClient(o), nil
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            c.MasterName,
		SentinelAddrs:         c.SentinelAddrs,
		SentinelPassword:      c.SentinelPassword,
		Password:              c.Password,
		MaxRetries:            -1,
		DialerRetries:         1, // one dial attempt: the back-off does the waiting
		DialTimeout:           c.Timeout,
		ReadTimeout:           c.Timeout,
		WriteTimeout:          c.Timeout,
		PoolTimeout:           c.Timeout,
		ContextTimeoutEnabled: true,
		ConnMaxIdleTime:       time.Minute,
		DisableIdentity:       true,
	}), nil
}

// Close closes the connection pool.
func (c *Cache) Close() error { return c.client.Close() }

// do runs f with the call deadline unless Redis is backing off, and tracks
// outages. redis.Nil (a miss) is not a failure.
//
// A caller that has given up (its context ended) says nothing about Redis:
// its call is not made, or its failure does not start a back-off, so one
// client going away never turns the cache off for everyone.
func (c *Cache) do(ctx context.Context, f func(ctx context.Context) error) error {
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
	err := f(callCtx)
	if err != nil && ctx.Err() != nil {
		return err
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		if c.errs != nil {
			c.errs.Inc()
		}
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

func (c *Cache) baseKey(minute time.Time) string {
	return c.prefix + "base:" + strconv.FormatInt(minute.Unix()/60, 10)
}

func (c *Cache) breakdownKey() string { return c.prefix + "breakdown" }

// WindowBase returns the shared window base for minute (hits recorded
// before the minute's window).
func (c *Cache) WindowBase(ctx context.Context, minute time.Time) (int64, bool, error) {
	var v int64
	err := c.do(ctx, func(ctx context.Context) error {
		var err error
		v, err = c.client.Get(ctx, c.baseKey(minute)).Int64()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	return v, err == nil, err
}

// SetWindowBase shares the window base for minute. It never changes, so it
// lives a few minutes: long enough for every replica to read it.
func (c *Cache) SetWindowBase(ctx context.Context, minute time.Time, sum int64) error {
	return c.do(ctx, func(ctx context.Context) error {
		return c.client.Set(ctx, c.baseKey(minute), sum, 5*time.Minute).Err()
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
		return c.client.Set(ctx, c.breakdownKey(), raw, max(c.ttl, time.Millisecond)).Err()
	})
}

// redacted hides a URL's password for messages.
func redacted(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unparsable URL)"
	}
	return u.Redacted()
}
