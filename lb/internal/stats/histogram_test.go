package stats

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryLatencyInOrder(t *testing.T) {
	prevHi := 0.0
	for i := range NumBuckets - 1 {
		lo, hi := bounds(i)
		if lo != prevHi {
			t.Fatalf("bucket %d starts at %vµs, want %vµs (where %d ended)", i, lo, prevHi, i-1)
		}
		if hi <= lo || (lo >= 8 && hi-lo > lo/4) {
			t.Fatalf("bucket %d is [%v, %v): want non-empty and at most a quarter of its start wide", i, lo, hi)
		}
		for _, us := range []uint64{uint64(lo), uint64(hi) - 1} {
			if got := bucketOf(us); got != i {
				t.Fatalf("bucketOf(%dµs) = %d, want %d ([%v, %v))", us, got, i, lo, hi)
			}
		}
		prevHi = hi
	}
	if got := bucketOf(1 << 40); got != NumBuckets-1 {
		t.Errorf("bucketOf(2^40µs) = %d, want the last bucket %d", got, NumBuckets-1)
	}
}

func TestQuantileIsCloseToTheExactOne(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var all []time.Duration
	for range 20000 {
		// Log-normal-ish latencies from 100µs to a few hundred ms.
		d := time.Duration(100*float64(time.Microsecond)*(1+rnd.ExpFloat64()*rnd.ExpFloat64()*50)) + time.Duration(rnd.IntN(1000))
		h.Observe(d)
		all = append(all, d)
	}
	slices.Sort(all)
	var c Counts
	sum := h.Load(&c)
	if c.Total() != uint64(len(all)) {
		t.Fatalf("total %d, want %d", c.Total(), len(all))
	}
	var want time.Duration
	for _, d := range all {
		want += d
	}
	if sum != want {
		t.Errorf("sum %v, want %v", sum, want)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		exact := all[int(q*float64(len(all)))-1]
		got := c.Quantile(q)
		if ratio := float64(got) / float64(exact); ratio < 0.88 || ratio > 1.12 {
			t.Errorf("q%.2f = %v, exact %v: off by more than 12%%", q, got, exact)
		}
	}
}

func TestQuantileOfNothingIsZero(t *testing.T) {
	var c Counts
	if got := c.Quantile(0.99); got != 0 {
		t.Errorf("empty Quantile = %v, want 0", got)
	}
	c[bucketOf(1500)] = 1 // one request of 1.5ms
	if got := c.Quantile(0.5); got < 1400*time.Microsecond || got > 1800*time.Microsecond {
		t.Errorf("one 1.5ms request: p50 = %v, want within its bucket [1.5ms, 1.75ms)", got)
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Observe(3 * time.Millisecond) }); n != 0 {
		t.Errorf("Observe allocates %v times, want 0", n)
	}
}

func TestCumulativeAtOctavesIsExact(t *testing.T) {
	var c Counts
	for _, us := range []uint64{100, 255, 256, 300, 511, 512, 40_000, 1 << 30} {
		c[bucketOf(us)]++
	}
	upper := OctaveBounds()
	if upper[0] != 256*time.Microsecond || upper[len(upper)-1] != (1<<25)*time.Microsecond {
		t.Fatalf("bounds %v..%v, want 256µs..2^25µs", upper[0], upper[len(upper)-1])
	}
	got := c.Cumulative(upper)
	want := map[time.Duration]uint64{256 * time.Microsecond: 2, 512 * time.Microsecond: 5, 1024 * time.Microsecond: 6, 65536 * time.Microsecond: 7}
	for i, u := range upper {
		if w, ok := want[u]; ok && got[i] != w {
			t.Errorf("below %v: %d, want %d", u, got[i], w)
		}
		if i > 0 && got[i] < got[i-1] {
			t.Errorf("not cumulative at %v: %d after %d", u, got[i], got[i-1])
		}
	}
	if last := got[len(got)-1]; last != 7 {
		t.Errorf("below the last bound: %d, want 7 (the 2^30µs one is only in +Inf)", last)
	}
}
