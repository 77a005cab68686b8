package stats

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSource is the balancer's counters, moved by the test.
type fakeSource struct {
	mu   sync.Mutex // guards snap
	snap Snapshot
}

func (f *fakeSource) get() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snap
	s.Backends = append([]Counters(nil), f.snap.Backends...)
	return s
}

// serve adds n requests of latency d to backend key (adding it if new).
func (f *fakeSource) serve(key string, n int, d time.Duration, errs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := -1
	for j := range f.snap.Backends {
		if f.snap.Backends[j].Key == key {
			i = j
		}
	}
	if i < 0 {
		f.snap.Backends = append(f.snap.Backends, Counters{Key: key, Name: "name-" + key, State: Up})
		i = len(f.snap.Backends) - 1
	}
	c := &f.snap.Backends[i]
	c.Requests += uint64(n)
	c.Errors += uint64(errs)
	c.Latency[bucketOf(uint64(d.Microseconds()))] += uint64(n)
	f.snap.Requests += uint64(n)
	f.snap.Errors += uint64(errs)
}

func (f *fakeSource) remove(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for j := range f.snap.Backends {
		if f.snap.Backends[j].Key == key {
			f.snap.Backends = append(f.snap.Backends[:j], f.snap.Backends[j+1:]...)
			return
		}
	}
}

func (f *fakeSource) setState(key string, s State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for j := range f.snap.Backends {
		if f.snap.Backends[j].Key == key {
			f.snap.Backends[j].State = s
		}
	}
}

var t0 = time.Unix(1_800_000_000, 0)

func at(sec int) time.Time { return t0.Add(time.Duration(sec)*time.Second + 990*time.Millisecond) }

func TestPerSecondSamplesAndTheLastMinute(t *testing.T) {
	src := &fakeSource{}
	r := NewRecorder(src.get, Options{})
	// 90 seconds: backend a serves 10/s at 2ms, b 30/s at 20ms with one
	// error a second.
	for s := range 90 {
		src.serve("a", 10, 2*time.Millisecond, 0)
		src.serve("b", 30, 20*time.Millisecond, 1)
		r.Sample(at(s))
	}
	a, b := r.Minute("a"), r.Minute("b")
	if a.RPS != 10 || b.RPS != 30 {
		t.Errorf("rps_1m a=%v b=%v, want 10 and 30", a.RPS, b.RPS)
	}
	if a.Errors != 0 || b.Errors != 60 {
		t.Errorf("errors_1m a=%d b=%d, want 0 and 60 (one a second for a minute)", a.Errors, b.Errors)
	}
	if a.P50 < 1792*time.Microsecond || a.P99 > 2048*time.Microsecond {
		t.Errorf("a: p50 %v p99 %v, want both in 2ms's bucket [1.792ms, 2.048ms)", a.P50, a.P99)
	}
	if b.P99 < 20*time.Millisecond || b.P99 > 24*time.Millisecond {
		t.Errorf("b: p99 %v, want about 20ms", b.P99)
	}
	if m := r.Minute("nope"); m != (Summary{}) {
		t.Errorf("unknown backend: %+v, want zero", m)
	}

	w := r.Since(0)
	if w.To-w.From+1 != 90 || len(w.Total.Requests) != 90 {
		t.Fatalf("window %d..%d with %d totals, want the 90 seconds sampled", w.From, w.To, len(w.Total.Requests))
	}
	if w.Total.Requests[5] != 40 || w.Total.Errors[5] != 1 {
		t.Errorf("total at second 5: %d requests %d errors, want 40 and 1", w.Total.Requests[5], w.Total.Errors[5])
	}
	if len(w.Backends) != 2 || w.Backends[0].Key != "a" || w.Backends[1].Name != "name-b" {
		t.Fatalf("backends %+v, want a then b with names", w.Backends)
	}
	if got := w.Backends[1].Requests[89]; got != 30 {
		t.Errorf("b's last second: %d requests, want 30", got)
	}
	if got := w.Backends[1].P99[89]; got < 20 || got > 24 {
		t.Errorf("b's last second: p99 %vms, want about 20", got)
	}
	if w.Backends[0].States != strings.Repeat("u", 90) {
		t.Errorf("a's states %q, want 90 × u", w.Backends[0].States)
	}

	// Polling with the last answer's To returns only what is new.
	src.serve("a", 7, time.Millisecond, 0)
	r.Sample(at(90))
	w2 := r.Since(w.To)
	if w2.From != w.To+1 || w2.To != w.To+1 || w2.Backends[0].Requests[0] != 7 || w2.Backends[1].Requests[0] != 0 {
		t.Errorf("since %d: %d..%d, a %v b %v; want one second with a=7, b=0", w.To, w2.From, w2.To, w2.Backends[0].Requests, w2.Backends[1].Requests)
	}
	if w3 := r.Since(w2.To); w3.From != w3.To+1 || len(w3.Total.Requests) != 0 || len(w3.Backends[0].Requests) != 0 {
		t.Errorf("nothing new: got %d..%d with %d seconds", w3.From, w3.To, len(w3.Total.Requests))
	}
}

func TestShortUptimeRateIsOverTheTimeRun(t *testing.T) {
	src := &fakeSource{}
	r := NewRecorder(src.get, Options{})
	for s := range 10 {
		src.serve("a", 5, time.Millisecond, 0)
		r.Sample(at(s))
	}
	if got := r.Minute("a").RPS; got != 5 {
		t.Errorf("after 10 s at 5/s: rps_1m %v, want 5 (not 50/60)", got)
	}
}

func TestSamplesInOneSecondAddUpAndSkippedSecondsStayEmpty(t *testing.T) {
	src := &fakeSource{}
	r := NewRecorder(src.get, Options{})
	src.serve("a", 3, time.Millisecond, 0)
	r.Sample(t0.Add(100 * time.Millisecond))
	if got := r.Minute("a").RPS; got != 3 {
		t.Fatalf("rps after 3 requests in one second: %v, want 3", got)
	}
	src.serve("a", 4, time.Millisecond, 0)
	r.Sample(t0.Add(900 * time.Millisecond)) // the same second
	if got := r.Minute("a").RPS; got != 7 {
		t.Errorf("rps after a second sample in the same second: %v, want 7 (not the cached 3)", got)
	}
	src.serve("a", 6, time.Millisecond, 0)
	r.Sample(t0.Add(3 * time.Second)) // seconds 1 and 2 skipped
	w := r.Since(0)
	if got := w.Backends[0].Requests; len(got) != 4 || got[0] != 7 || got[1] != 0 || got[2] != 0 || got[3] != 6 {
		t.Errorf("requests per second %v, want [7 0 0 6]", got)
	}
	if got := w.Backends[0].States; got != "u..u" {
		t.Errorf("states %q, want u..u", got)
	}
	// A wall clock stepping back lands in the latest second.
	src.serve("a", 1, time.Millisecond, 0)
	r.Sample(t0)
	if got := r.Since(0).Backends[0].Requests[3]; got != 7 {
		t.Errorf("after a clock step back: last second %d, want 7", got)
	}
}

func TestBackendsComeGoAndAgeOut(t *testing.T) {
	src := &fakeSource{}
	r := NewRecorder(src.get, Options{Window: 60})
	src.serve("a", 1, time.Millisecond, 0)
	src.serve("b", 1, time.Millisecond, 0)
	r.Sample(at(0))
	src.setState("b", Draining)
	r.Sample(at(1))
	src.setState("b", Down)
	r.Sample(at(2))
	src.remove("b")
	r.Sample(at(3))
	w := r.Since(0)
	if len(w.Backends) != 2 || w.Backends[1].States != "urd." {
		t.Fatalf("b's timeline %+v, want urd.", w.Backends)
	}
	// Found again with fresh counters (a new Backend): no negative jump.
	src.serve("b", 2, time.Millisecond, 0)
	r.Sample(at(4))
	if got := r.Since(t0.Unix() + 3).Backends[1].Requests[0]; got != 2 {
		t.Errorf("b found again: %d requests in its first second, want 2", got)
	}
	src.remove("b")
	for s := 5; s < 64; s++ {
		r.Sample(at(s))
	}
	if n := len(r.Since(0).Backends); n != 2 {
		t.Fatalf("59 s after b left, %d series, want 2 (still in the window)", n)
	}
	r.Sample(at(64))
	if w := r.Since(0); len(w.Backends) != 1 || w.Backends[0].Key != "a" {
		t.Errorf("60 s after b left: %+v, want only a", w.Backends)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	src := &fakeSource{}
	r := NewRecorder(src.get, Options{Window: 60, MaxSeries: 3})
	for s := range 1000 {
		// A new backend every second, the old one gone: churn.
		src.remove("k" + string(rune('a'+(s+25)%26)))
		src.serve("k"+string(rune('a'+s%26)), 1, time.Millisecond, 0)
		r.Sample(at(s))
	}
	r.mu.Lock()
	n, ring := len(r.series), len(r.total)
	r.mu.Unlock()
	if n > 3 || ring != 60 {
		t.Errorf("after 1000 s of churn: %d series, ring %d; want at most 3 and 60", n, ring)
	}
	if w := r.Since(0); len(w.Total.Requests) != 60 {
		t.Errorf("window holds %d seconds, want 60", len(w.Total.Requests))
	}
}

func TestRunSamplesEverySecondUntilCancelled(t *testing.T) {
	src := &fakeSource{}
	sampled := make(chan struct{}, 10)
	r := NewRecorder(func() Snapshot { sampled <- struct{}{}; return src.get() }, Options{})
	if d := r.untilNext(); d < 250*time.Millisecond || d > 1250*time.Millisecond {
		t.Fatalf("untilNext = %v, want 250ms to 1.25s", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	select {
	case <-sampled:
	case <-time.After(3 * time.Second):
		t.Fatal("Run took no sample within 3s")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestUntilNextAimsAtTheMiddleOfASecond(t *testing.T) {
	for _, tc := range []struct{ now, want time.Duration }{
		{0, 500 * time.Millisecond},
		{200 * time.Millisecond, 300 * time.Millisecond},
		{300 * time.Millisecond, 1200 * time.Millisecond}, // too close: the next one
		{520 * time.Millisecond, 980 * time.Millisecond},  // a late timer: the next second's middle
	} {
		now := t0.Add(tc.now)
		r := NewRecorder(func() Snapshot { return Snapshot{} }, Options{Now: func() time.Time { return now }})
		if got := r.untilNext(); got != tc.want {
			t.Errorf("at +%v: untilNext %v, want %v", tc.now, got, tc.want)
		}
	}
}
