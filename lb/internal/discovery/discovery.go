// Package discovery re-resolves the configured backend names every
// interval and hands the resulting set of ip:port to the pool, so replicas
// that are scaled, recreated or moved are followed live (the classic
// resolve-once bug is what this package exists to avoid).
package discovery

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Resolver answers a name with its addresses; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// MemberSetter receives the full set of backend addresses after each round.
type MemberSetter interface {
	SetMembers(addrs []string)
}

// Options configures a Discoverer. Zero values are documented per field.
type Options struct {
	// Resolver looks names up; if nil, net.DefaultResolver.
	Resolver Resolver
	// Interval between rounds; required (package config holds the default).
	Interval time.Duration
	// Timeout of one lookup; if zero, the interval.
	Timeout time.Duration
	// Logger receives lookup errors and changes; if nil, nothing.
	Logger *slog.Logger
	// OnChange is called after a round that changed the set (e.g. to probe
	// new backends at once); if nil, nothing.
	OnChange func()
}

// Discoverer turns host:port entries into backend addresses.
type Discoverer struct {
	entries []string
	set     MemberSetter
	opts    Options

	mu   sync.Mutex          // guards last
	last map[string][]string // entry -> addresses from its last good answer
	cur  []string            // the last set handed to set; guarded by mu
}

// New returns a discoverer of entries (host:port, validated by config).
func New(entries []string, set MemberSetter, opts Options) (*Discoverer, error) {
	if opts.Interval <= 0 {
		return nil, errors.New("new discoverer: a positive interval is required")
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.Timeout <= 0 {
		opts.Timeout = opts.Interval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Discoverer{entries: entries, set: set, opts: opts, last: map[string][]string{}}, nil
}

// Run resolves at once and then every interval until ctx is done.
func (d *Discoverer) Run(ctx context.Context) {
	t := time.NewTicker(d.opts.Interval)
	defer t.Stop()
	for {
		d.ResolveNow(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ResolveNow runs one round: every entry is looked up concurrently, each
// with its own timeout, and the union is handed to the pool. A name that
// fails to resolve for a transient reason keeps its previous addresses; a
// name that does not exist (NXDOMAIN, as Docker answers when a service is
// scaled to zero) has none.
func (d *Discoverer) ResolveNow(ctx context.Context) {
	results := make([][]string, len(d.entries))
	var wg sync.WaitGroup
	for i, e := range d.entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = d.resolve(ctx, e)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	var all []string
	for _, r := range results {
		for _, a := range r {
			if !seen[a] {
				seen[a] = true
				all = append(all, a)
			}
		}
	}
	slices.Sort(all)
	d.mu.Lock()
	changed := !slices.Equal(all, d.cur)
	d.cur = all
	d.mu.Unlock()
	if changed {
		d.opts.Logger.Info("backends resolved", "addresses", all)
	}
	// Always hand the set over: the pool also drops removed backends that
	// have become idle since the last round.
	d.set.SetMembers(all)
	if changed && d.opts.OnChange != nil {
		d.opts.OnChange()
	}
}

func (d *Discoverer) resolve(ctx context.Context, entry string) []string {
	host, port, err := net.SplitHostPort(entry)
	if err != nil {
		return nil // config validated entries; nothing sensible to do
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return []string{net.JoinHostPort(ip.String(), port)}
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	ips, err := d.opts.Resolver.LookupHost(ctx, host)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			d.opts.Logger.Debug("backend name not found", "name", host)
			delete(d.last, entry)
			return nil
		}
		d.opts.Logger.Warn("resolve backend name, keeping previous addresses", "name", host, "error", err)
		return d.last[entry]
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, net.JoinHostPort(a.Unmap().String(), port))
		}
	}
	slices.Sort(out)
	d.last[entry] = out
	return out
}
