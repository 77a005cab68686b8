package balancer

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// setClock moves clk to from+d.
func setClock(clk *fakeClock, d time.Duration, from time.Time) {
	clk.mu.Lock()
	defer clk.mu.Unlock()
	clk.now = from.Add(d)
}

// rampPool is a pool of a, b and c (in rotation together at start-up,
// so not ramping) that then, slow+1s later, discovers d, which passes its
// check at t0.
func rampPool(t *testing.T, slow time.Duration) (*Pool, *fakeClock, time.Time) {
	t.Helper()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := &fakeClock{now: start}
	p := NewPool(PoolOptions{Now: clk.Now, SlowStart: slow})
	t.Cleanup(p.Close)
	p.SetMembers([]string{"a:1", "b:1", "c:1"})
	for _, a := range []string{"a:1", "b:1", "c:1"} {
		p.SetHealthy(a, true)
	}
	t0 := start.Add(slow + time.Second)
	setClock(clk, 0, t0)
	p.SetMembers([]string{"a:1", "b:1", "c:1", "d:1"})
	p.SetHealthy("d:1", true)
	return p, clk, t0
}

// picks counts, out of n sequential picks, those that went to addr.
func picks(p *Pool, sel Selector, addr string, n int) int {
	got := 0
	for range n {
		if b := sel.Select(p.snapshot().healthy); b != nil && b.addr == addr {
			got++
		}
	}
	return got
}

func TestSlowStartRampsLinearly(t *testing.T) {
	const slow = 10 * time.Second
	const n = 4000
	for _, tc := range []struct {
		name string
		sel  func() Selector
		// share is the fraction of requests d gets at weight w with three
		// full-weight peers.
		share func(w float64) float64
	}{
		// A declined turn passes to the next in rotation: d is weighted w
		// against three peers of weight 1.
		{"round_robin", func() Selector { return &RoundRobin{} }, func(w float64) float64 { return w / (3 + w) }},
		// All idle: d is first in the scan a quarter of the time and then
		// takes the request w of those times.
		{"least_connections", func() Selector { return &LeastConnections{} }, func(w float64) float64 { return w / 4 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, clk, t0 := rampPool(t, slow)
			d := p.members["d:1"]
			prev, prevW := -1, -1.0
			for _, at := range []time.Duration{0, 2500 * time.Millisecond, 5 * time.Second, 7500 * time.Millisecond, slow, 2 * slow} {
				setClock(clk, at, t0)
				w := math.Min(1, float64(at)/float64(slow))
				share, ramping := d.SlowStart()
				if share != w || ramping != (w < 1) {
					t.Errorf("at %v: SlowStart() = %v, %v; want %v, %v", at, share, ramping, w, w < 1)
				}
				got := picks(p, tc.sel(), "d:1", n)
				want := tc.share(w) * n
				if math.Abs(float64(got)-want) > 2 {
					t.Errorf("at %v (weight %.2f): d got %d of %d requests, want %.0f", at, w, got, n, want)
				}
				if got <= prev && w > prevW {
					t.Errorf("at %v: d got %d requests, not more than %d before", at, got, prev)
				}
				prev, prevW = got, w
			}
			if got := picks(p, tc.sel(), "a:1", n); got != n/4 {
				t.Errorf("after the ramp a got %d of %d, want exactly %d", got, n, n/4)
			}
		})
	}
}

func TestSlowStartOffAndStartUp(t *testing.T) {
	p, _, _ := rampPool(t, 0)
	if got := picks(p, &RoundRobin{}, "d:1", 400); got != 100 {
		t.Errorf("slow start off: d got %d of 400 at once, want 100", got)
	}
	p, _, _ = rampPool(t, time.Minute)
	for _, a := range []string{"a:1", "b:1", "c:1"} {
		if _, ramping := p.members[a].SlowStart(); ramping {
			t.Errorf("%s, in rotation since start-up, is ramping", a)
		}
	}
	if got := picks(p, &RoundRobin{}, "d:1", 400); got != 0 {
		t.Errorf("d got %d requests at the start of its ramp, want 0", got)
	}
}

func TestSlowStartRestartsAfterDownAndShowsInStatus(t *testing.T) {
	p, clk, t0 := rampPool(t, 10*time.Second)
	// a, found at start-up, fails and comes back: it may be a restarted
	// replica, so it ramps too.
	setClock(clk, time.Second, t0)
	p.SetHealthy("a:1", false)
	p.SetHealthy("a:1", true)
	setClock(clk, 6*time.Second, t0)
	got := map[string]string{}
	for _, s := range p.Status().Backends {
		got[s.Address] = "-"
		if s.SlowStart != nil {
			got[s.Address] = fmt.Sprintf("%.2f", *s.SlowStart)
		}
	}
	want := map[string]string{"a:1": "0.50", "b:1": "-", "c:1": "-", "d:1": "0.60"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("status slow_start = %v, want %v", got, want)
	}
}

func TestSlowStartNotAfterAnOutage(t *testing.T) {
	p, clk, t0 := rampPool(t, 10*time.Second)
	// Everything fails (the database went away) and comes back: nothing
	// warm is left to spare the returning backends, so none ramps.
	for _, a := range []string{"a:1", "b:1", "c:1", "d:1"} {
		p.SetHealthy(a, false)
	}
	setClock(clk, time.Minute, t0)
	for i, a := range []string{"a:1", "b:1", "c:1", "d:1"} {
		setClock(clk, time.Minute+time.Duration(i)*time.Second, t0)
		p.SetHealthy(a, true)
	}
	for _, a := range []string{"a:1", "b:1", "c:1", "d:1"} {
		if share, ramping := p.members[a].SlowStart(); ramping {
			t.Errorf("%s ramps (share %v) after coming back with the others", a, share)
		}
	}
	if got := picks(p, &RoundRobin{}, "d:1", 400); got != 100 {
		t.Errorf("d got %d of 400, want 100", got)
	}
}

func TestSlowStartAllRampingStillServes(t *testing.T) {
	p, _, _ := rampPool(t, time.Minute)
	for _, sel := range []Selector{&RoundRobin{}, &LeastConnections{}} {
		// A retry that already tried every warm backend: only d is left.
		if b := sel.Select([]*Backend{p.members["d:1"]}); b == nil {
			t.Errorf("%T: no backend chosen while the only candidate ramps", sel)
		}
	}
}
