package rediscache

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"hits/app/internal/hits"
	"hits/app/internal/testenv"
)

func newCache(t *testing.T, url, prefix string, clk *testenv.Clock, logs *testenv.SyncBuffer, errs prometheus.Counter) *Cache {
	t.Helper()
	c, err := New(Config{URL: url, Prefix: prefix, Timeout: 200 * time.Millisecond, Backoff: 2 * time.Second,
		Log: slog.New(slog.NewTextHandler(logs, nil)), Errors: errs, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTripAndPrefixes(t *testing.T) {
	r := testenv.OwnRedis(t)
	clk := testenv.NewClock(time.Unix(1_700_000_000, 0))
	a := newCache(t, r.URL(), "a:", clk, &testenv.SyncBuffer{}, nil)
	b := newCache(t, r.URL(), "b:", clk, &testenv.SyncBuffer{}, nil)
	ctx := context.Background()
	minute := time.Unix(1_700_000_040, 0).Truncate(time.Minute)

	if _, ok, err := a.WindowBase(ctx, minute); ok || err != nil {
		t.Fatalf("empty cache WindowBase = %v, %v; want a miss", ok, err)
	}
	if err := a.SetWindowBase(ctx, minute, 42); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := a.WindowBase(ctx, minute); v != 42 || !ok || err != nil {
		t.Errorf("WindowBase = %d, %v, %v; want 42", v, ok, err)
	}
	if _, ok, _ := b.WindowBase(ctx, minute); ok {
		t.Error("prefix b: sees prefix a's key")
	}
	want := []hits.InstanceCount{{Instance: "x", Hits: 3}, {Instance: "y", Hits: 1}}
	if err := a.SetBreakdown(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := a.Breakdown(ctx)
	if !ok || err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Breakdown = %+v, %v, %v; want %+v", got, ok, err, want)
	}
}

func TestOutageBackoffAndRecovery(t *testing.T) {
	r := testenv.OwnRedis(t)
	clk := testenv.NewClock(time.Unix(1_700_000_000, 0))
	logs := &testenv.SyncBuffer{}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "e"})
	c := newCache(t, r.URL(), "o:", clk, logs, errs)
	ctx := context.Background()
	m := time.Unix(1_700_000_000, 0)
	if err := c.SetWindowBase(ctx, m, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, _, err := c.WindowBase(ctx, m); err == nil || errors.Is(err, ErrBackoff) {
		t.Fatalf("WindowBase with redis dead = %v, want a connection error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failed call took %s, want about the 200ms timeout", d)
	}
	for range 5 { // within the back-off: not even tried
		if _, _, err := c.WindowBase(ctx, m); !errors.Is(err, ErrBackoff) {
			t.Fatalf("WindowBase during back-off = %v, want ErrBackoff", err)
		}
	}
	if n := testutil.ToFloat64(errs); n != 1 {
		t.Errorf("error count = %v, want 1", n)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	clk.Add(3 * time.Second) // past the back-off
	if err := c.SetWindowBase(ctx, m, 7); err != nil {
		t.Fatalf("SetWindowBase after redis is back = %v", err)
	}
	if v, ok, err := c.WindowBase(ctx, m); v != 7 || !ok || err != nil {
		t.Fatalf("WindowBase after redis is back = %d, %v, %v; want 7", v, ok, err)
	}
	out := logs.String()
	if strings.Count(out, "redis unavailable") != 1 || strings.Count(out, "redis is back") != 1 {
		t.Errorf("logs = %q; want one outage line and one recovery line", out)
	}
}

func TestCallerGivingUpIsNoOutage(t *testing.T) {
	r := testenv.OwnRedis(t)
	clk := testenv.NewClock(time.Unix(1_700_000_000, 0))
	logs := &testenv.SyncBuffer{}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "e"})
	c := newCache(t, r.URL(), "g:", clk, logs, errs)
	m := time.Unix(1_700_000_000, 0)
	if err := c.SetWindowBase(context.Background(), m, 5); err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.WindowBase(gone, m); !errors.Is(err, context.Canceled) {
		t.Fatalf("WindowBase for a caller that gave up = %v, want context.Canceled", err)
	}
	if v, ok, err := c.WindowBase(context.Background(), m); v != 5 || !ok || err != nil {
		t.Errorf("next WindowBase = %d, %v, %v; want 5 (no back-off from a caller giving up)", v, ok, err)
	}
	if n := testutil.ToFloat64(errs); n != 0 || strings.Contains(logs.String(), "redis unavailable") {
		t.Errorf("errors %v, logs %q; want no outage counted or logged", n, logs.String())
	}
}

// TestRedissURL: a rediss:// URL speaks TLS and verifies the server's
// certificate against the system roots (SSL_CERT_FILE here; the image
// carries the CA bundle), as with managed Redis.
func TestRedissURL(t *testing.T) {
	_, url, cert := testenv.OwnTLSRedis(t)
	// Go reads the roots once per process; no other test here uses TLS.
	t.Setenv("SSL_CERT_FILE", cert)
	clk := testenv.NewClock(time.Unix(1_700_000_000, 0))
	// The first call dials and verifies: more than the other tests' 200ms
	// under the race detector.
	c, err := New(Config{URL: url, Prefix: "tls:", Timeout: 2 * time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	m := time.Unix(1_700_000_000, 0)
	if err := c.SetWindowBase(ctx, m, 9); err != nil {
		t.Fatalf("SetWindowBase over TLS = %v", err)
	}
	if v, ok, err := c.WindowBase(ctx, m); v != 9 || !ok || err != nil {
		t.Fatalf("WindowBase over TLS = %d, %v, %v; want 9", v, ok, err)
	}
	plain := newCache(t, strings.Replace(url, "rediss://", "redis://", 1), "tls:", clk, &testenv.SyncBuffer{}, nil)
	if _, _, err := plain.WindowBase(ctx, m); err == nil {
		t.Error("redis:// (no TLS) to the TLS port worked, want an error")
	}
}
