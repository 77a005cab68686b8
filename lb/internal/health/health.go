// Package health probes every backend over HTTP and reports every probe's
// result to whoever implements Reporter (the balancer's pool), so neither
// package imports the other. The verdict — thresholds, passive ejection,
// in or out of rotation — is the reporter's alone: health state has one
// owner.
package health

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Reporter receives the result of every probe of a backend.
type Reporter interface {
	Probed(addr string, ok bool)
}

// Options configures a Checker. Zero values are documented per field.
type Options struct {
	// Path is probed with GET; 2xx and 3xx pass. Required.
	Path string
	// Interval between probes of one backend; required (config holds the
	// default).
	Interval time.Duration
	// Timeout of one probe; if zero, the interval.
	Timeout time.Duration
	// Client makes the probes; if nil, a client with its own transport.
	Client *http.Client
	// Logger receives probe failures at debug level; if nil, nothing.
	Logger *slog.Logger
	// Observe, if set, gets the header fields of every probe's answer
	// (whatever its status), or nil when no answer came: the balancer
	// learns the replica's name from them.
	Observe func(addr string, h http.Header)
}

// Checker probes the backends that targets returns. Each backend's probe
// has its own timeout and runs on its own goroutine, so one slow backend
// never delays the others.
type Checker struct {
	opts    Options
	targets func() []string
	report  Reporter

	mu    sync.Mutex // guards state
	state map[string]*target

	kick chan struct{} // asks Run to probe new targets now
}

// target is one backend's probe in flight, if any.
type target struct {
	running bool // a probe is in flight; the next tick skips it
}

// New returns a checker of the addresses targets lists, reporting to set.
func New(targets func() []string, report Reporter, opts Options) (*Checker, error) {
	if opts.Path == "" || opts.Interval <= 0 {
		return nil, errors.New("new health checker: a path and a positive interval are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = opts.Interval
	}
	if opts.Client == nil {
		opts.Client = &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: 2 * opts.Interval, DisableCompression: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a 3xx is an answer, not a hop
			},
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Checker{opts: opts, targets: targets, report: report, state: map[string]*target{}, kick: make(chan struct{}, 1)}, nil
}

// Kick makes Run probe at once instead of at the next tick, e.g. after
// discovery found new backends. It never blocks.
func (c *Checker) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run probes every interval until ctx is done, then waits for the probes
// in flight.
func (c *Checker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		c.start(ctx, &wg)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
	}
}

// CheckNow runs one round: probes every target concurrently and returns
// when all have answered or timed out. Tests use it instead of sleeping.
func (c *Checker) CheckNow(ctx context.Context) {
	var wg sync.WaitGroup
	c.start(ctx, &wg)
	wg.Wait()
}

// start launches a probe for every target without one in flight and
// forgets targets that are gone.
func (c *Checker) start(ctx context.Context, wg *sync.WaitGroup) {
	addrs := c.targets()
	c.mu.Lock()
	defer c.mu.Unlock()
	live := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		live[a] = true
		t := c.state[a]
		if t == nil {
			t = &target{}
			c.state[a] = t
		}
		if t.running {
			continue
		}
		t.running = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := c.probe(ctx, a)
			c.record(a, ok)
		}()
	}
	for a, t := range c.state {
		if !live[a] && !t.running {
			delete(c.state, a)
		}
	}
}

// record ends a probe and reports its result.
func (c *Checker) record(addr string, ok bool) {
	c.mu.Lock()
	t := c.state[addr]
	if t == nil {
		c.mu.Unlock()
		return
	}
	t.running = false
	c.mu.Unlock()
	c.report.Probed(addr, ok)
}

func (c *Checker) probe(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+c.opts.Path, nil)
	if err != nil {
		c.opts.Logger.Debug("health probe", "backend", addr, "error", err)
		return false
	}
	req.Header.Set("User-Agent", "hits-lb-health")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		c.opts.Logger.Debug("health probe", "backend", addr, "error", err)
		if c.opts.Observe != nil {
			c.opts.Observe(addr, nil)
		}
		return false
	}
	defer resp.Body.Close()
	if c.opts.Observe != nil {
		c.opts.Observe(addr, resp.Header)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	ok := resp.StatusCode >= 200 && resp.StatusCode < 400
	if !ok {
		c.opts.Logger.Debug("health probe", "backend", addr, "status", resp.StatusCode)
	}
	return ok
}
