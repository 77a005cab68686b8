package hits

import (
	"testing"
	"time"
)

// stepped is a clock that moves step on every reading.
func stepped(step time.Duration) func() time.Time {
	t := time.Unix(0, 0)
	return func() time.Time { t = t.Add(step); return t }
}

// TestArrivalsLinger walks the estimate through batches, each step one
// batch: what it is told (how many hits the batch took, the most held at
// once since the previous one), what linger answers, then what the batch
// gathered.
func TestArrivalsLinger(t *testing.T) {
	const d = 10 * time.Millisecond
	type batch struct {
		took, most int
		wantTo     int
		wantWait   time.Duration
		gathered   int // hits the batch held when it stopped gathering
	}
	for _, tc := range []struct {
		name    string
		step    time.Duration // the clock's step: one per batch
		limit   int
		batches []batch
	}{
		{
			// The first two batches give no gap estimate (the first
			// sample spans the second); then hits 1 ms apart, 16 held at
			// once: wait for the 15 missing, twice their expected time,
			// at most d.
			name: "sixteen clients", step: 16 * time.Millisecond, limit: 32,
			batches: []batch{
				{took: 16, most: 16, wantTo: 16, gathered: 16},
				{took: 1, most: 16, wantTo: 16, gathered: 16},
				{took: 1, most: 16, wantTo: 16, wantWait: d, gathered: 16},
				{took: 12, most: 16, wantTo: 16, wantWait: 8 * time.Millisecond, gathered: 16},
			},
		},
		{
			// LingerHits caps the batch a linger waits for.
			name: "capped", step: 16 * time.Millisecond, limit: 4,
			batches: []batch{
				{took: 16, most: 16, wantTo: 4, gathered: 16},
				{took: 16, most: 16, wantTo: 4, gathered: 16},
				{took: 2, most: 16, wantTo: 4, wantWait: 4 * time.Millisecond, gathered: 4},
			},
		},
		{
			// One client loading page after page holds one hit at a
			// time: its hit is the whole batch and never waits.
			name: "one client", step: time.Millisecond, limit: 32,
			batches: []batch{
				{took: 1, most: 1, wantTo: 1, gathered: 1},
				{took: 1, most: 1, wantTo: 1, gathered: 1},
				{took: 1, most: 1, wantTo: 1, gathered: 1},
			},
		},
		{
			// Hits further apart than d: nobody is due, nobody waits,
			// however many were held at once.
			name: "quiet", step: time.Hour, limit: 32,
			batches: []batch{
				{took: 1, most: 8, wantTo: 8, gathered: 1},
				{took: 1, most: 8, wantTo: 8, gathered: 1},
			},
		},
		{
			// Fewer held than before: the estimate falls a quarter of
			// the way each batch (rounded), so a hit held once does not
			// make every later batch wait for one that will not come.
			name: "clients leave", step: 8 * time.Millisecond, limit: 32,
			batches: []batch{
				{took: 8, most: 8, wantTo: 8, gathered: 8},
				{took: 1, most: 4, wantTo: 7, gathered: 4},                                 // 8 → 7; gap 8 ms / 4
				{took: 1, most: 4, wantTo: 6, wantWait: d, gathered: 4},                    // → 6.25: 2 × 5 × 2 ms, at most d
				{took: 4, most: 4, wantTo: 6, wantWait: 8 * time.Millisecond, gathered: 4}, // → 5.69: two missing
				{took: 4, most: 4, wantTo: 5, wantWait: 4 * time.Millisecond, gathered: 4}, // → 5.27: one
				{took: 4, most: 4, wantTo: 5, wantWait: 4 * time.Millisecond, gathered: 4}, // → 4.95; 4.40, four batches on, rounds to 4
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := arrivals{now: stepped(tc.step), gain: 1}
			for i, b := range tc.batches {
				to, wait := a.linger(b.took, b.most, tc.limit, d)
				if to != b.wantTo || wait != b.wantWait {
					t.Fatalf("batch %d: linger(took %d, most %d) = %d, %v; want %d, %v", i+1, b.took, b.most, to, wait, b.wantTo, b.wantWait)
				}
				a.gathered(b.gathered, b.gathered-b.took, wait > 0)
			}
		})
	}
}

// TestArrivalsStopLingeringThatGathersNothing: lingers that gather nothing
// bring gain below half a hit; then only every lingerProbeEvery-th batch
// lingers, and only for one more hit.
func TestArrivalsStopLingeringThatGathersNothing(t *testing.T) {
	const d = 10 * time.Millisecond
	a := arrivals{now: stepped(time.Millisecond), gain: 1}
	a.gathered(1, 0, false) // the first batch: no gap yet, nor after the second
	var lingered []int
	for i := 2; i <= 30; i++ {
		_, wait := a.linger(1, 4, 32, d) // four held, yet none comes
		if wait > 0 {
			lingered = append(lingered, i)
			if i > 5 && wait != 2*time.Millisecond {
				t.Errorf("batch %d: probe waits %v, want 2ms (one hit at the 1 ms gap, twice)", i, wait)
			}
		}
		a.gathered(1, 0, wait > 0)
	}
	// 3-5 linger (gain 1 → 0.42), then every eighth batch probes.
	want := []int{3, 4, 5, 13, 21, 29}
	if len(lingered) != len(want) {
		t.Fatalf("batches that lingered: %v, want %v", lingered, want)
	}
	for i := range want {
		if lingered[i] != want[i] {
			t.Fatalf("batches that lingered: %v, want %v", lingered, want)
		}
	}
}
