package stats

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// State is what a backend is doing, as the dashboard's timeline shows it.
type State uint8

// The states a backend can be in; the zero value means not known to the
// balancer at that time.
const (
	Absent    State = iota
	Up              // in rotation
	SlowStart       // in rotation, ramping up to its full share
	Draining        // taking no new requests, finishing what it has
	Down            // failing its checks, or gone
)

var stateNames = [...]string{Absent: "absent", Up: "up", SlowStart: "slow_start", Draining: "draining", Down: "down"}

// String is the state's name in /status: up, slow_start, draining, down.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// stateLetters are the states as one letter each, for the compact timeline
// the dashboard reads ("." absent).
const stateLetters = ".usrd"

// Counters are one backend's counters since it was added, read at one
// instant. The Recorder keeps the differences between readings.
type Counters struct {
	Key      string // the backend's address, stable while it exists
	Name     string // the replica's name, or the address when none is known
	State    State
	Requests uint64 // attempts sent to it
	Errors   uint64 // attempts that failed or answered 5xx
	Retries  uint64 // attempts that were retried (on it or another backend)
	Latency  Counts // attempts that got an answer, by duration
	// LatencySum is the sum of the latencies counted in Latency.
	LatencySum time.Duration
}

// Snapshot is the balancer's state as the Recorder reads it once a second.
type Snapshot struct {
	Backends []Counters
	Requests uint64 // client requests answered, with or without a backend
	Errors   uint64 // client requests answered with a 5xx status
}

// Source gives the Recorder a Snapshot; the balancer's pool and proxy
// implement it.
type Source func() Snapshot

// Options configures a Recorder. Zero values are documented per field.
type Options struct {
	// Window is how many seconds of samples are kept; if zero, 300.
	Window int
	// MaxSeries caps the backends with a history (present ones and ones
	// that left within the window); if zero, 128. Past it, new backends
	// get no history until old ones age out.
	MaxSeries int
	// Now is the clock; if nil, time.Now.
	Now func() time.Time
}

// minute is the span of the "_1m" figures in /status.
const minute = 60

// Recorder turns the balancer's cumulative counters into per-second
// samples: a fixed-size ring per backend and one for the whole balancer.
type Recorder struct {
	src  Source
	opts Options

	mu     sync.Mutex // guards everything below; held only for in-memory work
	first  int64      // unix second of the first sample; 0 before it
	last   int64      // unix second of the latest sample
	series map[string]*series
	total  []totalSample // ring indexed by second % Window
	prevRq uint64
	prevEr uint64
}

// series is one backend's history.
type series struct {
	name    string
	seen    int64 // last second it was in the snapshot
	prev    Counters
	samples []sample                   // ring indexed by second % Window
	hist    [minute][NumBuckets]uint32 // per-second latency counts, indexed by second % 60
	histSec [minute]int64              // the second each hist slot holds
	// minute is Minute's answer for the second minuteAt: it changes only
	// when a sample is taken, and every open dashboard asks each second.
	minute   Summary
	minuteAt int64
}

type sample struct {
	sec      int64 // the unix second the slot holds; any other: empty
	requests uint32
	errors   uint32
	retries  uint32
	p50, p99 float32 // milliseconds
	state    State
}

type totalSample struct {
	sec      int64
	requests uint32
	errors   uint32
}

// NewRecorder returns a recorder of src; Run or Sample fill it.
func NewRecorder(src Source, opts Options) *Recorder {
	if opts.Window <= 0 {
		opts.Window = 300
	}
	opts.Window = max(opts.Window, minute)
	if opts.MaxSeries <= 0 {
		opts.MaxSeries = 128
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Recorder{src: src, opts: opts, series: map[string]*series{}, total: make([]totalSample, opts.Window)}
}

// Run samples once a second, in the middle of each second, until ctx is
// done.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTimer(r.untilNext())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sample(r.opts.Now())
			t.Reset(r.untilNext())
		}
	}
}

// untilNext is the wait until the middle of a second at least a quarter
// of a second away. Aiming at the middle, not the end, means a timer that
// fires late on a busy machine still lands in the second it was meant
// for, instead of in the next one (which would leave a second empty and
// put two seconds' counts in the next).
func (r *Recorder) untilNext() time.Duration {
	now := r.opts.Now()
	next := now.Truncate(time.Second).Add(500 * time.Millisecond)
	for next.Sub(now) < 250*time.Millisecond {
		next = next.Add(time.Second)
	}
	return next.Sub(now)
}

// Sample reads the source and records what happened since the previous
// sample under the unix second of now. Samples in the same second add up;
// seconds skipped (a stalled process) stay empty.
func (r *Recorder) Sample(now time.Time) {
	snap := r.src()
	sec := now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	if sec < r.last {
		sec = r.last // the wall clock stepped back: keep the rings ordered
	}
	if r.first == 0 {
		r.first = sec
	}
	prevSample := r.last
	r.last = sec
	w := int64(r.opts.Window)

	ts := &r.total[sec%w]
	if ts.sec != sec {
		*ts = totalSample{sec: sec}
	}
	ts.requests += uint32(delta(snap.Requests, r.prevRq))
	ts.errors += uint32(delta(snap.Errors, r.prevEr))
	r.prevRq, r.prevEr = snap.Requests, snap.Errors

	for i := range snap.Backends {
		c := &snap.Backends[i]
		s := r.series[c.Key]
		if s == nil {
			if len(r.series) >= r.opts.MaxSeries && !r.evictLocked(snap.Backends) {
				continue
			}
			s = &series{samples: make([]sample, w)}
			r.series[c.Key] = s
		} else if s.seen < prevSample {
			// Gone at the previous sample: if it is back, it is a new
			// backend on the same address, counting from zero.
			s.prev = Counters{}
		}
		s.record(c, sec, w)
	}
	for k, s := range r.series {
		if sec-s.seen >= w {
			delete(r.series, k) // every sample of it has left the window
		}
	}
}

// evictLocked drops the series of the backend that left longest ago, if
// one of them is not in present.
func (r *Recorder) evictLocked(present []Counters) bool {
	key, oldest := "", int64(math.MaxInt64)
	for k, s := range r.series {
		if s.seen < oldest && !slices.ContainsFunc(present, func(c Counters) bool { return c.Key == k }) {
			oldest, key = s.seen, k
		}
	}
	if key == "" {
		return false
	}
	delete(r.series, key)
	return true
}

func (s *series) record(c *Counters, sec, w int64) {
	s.minuteAt = 0 // the cached minute is stale
	s.name = c.Name
	s.seen = sec
	smp := &s.samples[sec%w]
	if smp.sec != sec {
		*smp = sample{sec: sec}
	}
	smp.requests += uint32(delta(c.Requests, s.prev.Requests))
	smp.errors += uint32(delta(c.Errors, s.prev.Errors))
	smp.retries += uint32(delta(c.Retries, s.prev.Retries))
	smp.state = c.State

	h := sec % minute
	if s.histSec[h] != sec {
		s.histSec[h] = sec
		clear(s.hist[h][:])
	}
	// A backend dropped and found again starts its counters from zero.
	restarted := c.Requests < s.prev.Requests
	var sec1 Counts
	for i, v := range c.Latency {
		d := v
		if !restarted && v >= s.prev.Latency[i] {
			d = v - s.prev.Latency[i]
		}
		s.hist[h][i] += uint32(d)
		sec1[i] = uint64(s.hist[h][i])
	}
	smp.p50 = ms(sec1.Quantile(0.5))
	smp.p99 = ms(sec1.Quantile(0.99))
	s.prev = *c
}

// delta is cur-prev for a counter that only grows, or cur when it was
// reset (a backend dropped and found again starts from zero).
func delta(cur, prev uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// ms is a duration in milliseconds, rounded to 10µs.
func ms(d time.Duration) float32 {
	return float32(math.Round(float64(d)/float64(time.Microsecond)/10) / 100)
}

// Last is the unix second of the latest sample; 0 before the first.
func (r *Recorder) Last() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// Summary is one backend's last minute.
type Summary struct {
	RPS     float64 // requests per second
	Errors  uint64
	Retries uint64
	P50     time.Duration
	P99     time.Duration
}

// Minute summarises the last minute of the backend with key (its
// address). While the recorder has run for less than a minute, the rate
// is over the time it has run.
func (r *Recorder) Minute(key string) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.series[key]
	if s == nil || r.last == 0 {
		return Summary{}
	}
	if s.minuteAt == r.last {
		return s.minute
	}
	from := max(r.last-minute+1, r.first)
	var sum Summary
	var requests uint64
	w := int64(len(s.samples))
	for sec := from; sec <= r.last; sec++ {
		if smp := s.samples[sec%w]; smp.sec == sec {
			requests += uint64(smp.requests)
			sum.Errors += uint64(smp.errors)
			sum.Retries += uint64(smp.retries)
		}
	}
	var lat Counts
	for i := range s.hist {
		if sec := s.histSec[i]; sec >= from && sec <= r.last {
			for b, v := range s.hist[i] {
				lat[b] += uint64(v)
			}
		}
	}
	sum.RPS = math.Round(float64(requests)/float64(r.last-from+1)*100) / 100
	sum.P50 = lat.Quantile(0.5)
	sum.P99 = lat.Quantile(0.99)
	s.minute, s.minuteAt = sum, r.last
	return sum
}

// Window is the per-second history from From to To (unix seconds, both
// included), one array element per second.
type Window struct {
	From     int64          `json:"from"`
	To       int64          `json:"to"`
	Backends []SeriesWindow `json:"backends"`
	Total    TotalWindow    `json:"total"`
}

// SeriesWindow is one backend's part of a Window. States has one letter
// per second: u up, s slow start, r draining (retiring), d down, "." not
// known to the balancer.
type SeriesWindow struct {
	Key      string    `json:"key"`
	Name     string    `json:"name"`
	Requests []uint32  `json:"requests"`
	Errors   []uint32  `json:"errors"`
	Retries  []uint32  `json:"retries"`
	P50      []float32 `json:"p50_ms"`
	P99      []float32 `json:"p99_ms"`
	States   string    `json:"states"`
}

// TotalWindow is the whole balancer's part of a Window: client requests
// and the ones answered 5xx (with or without a backend).
type TotalWindow struct {
	Requests []uint32 `json:"requests"`
	Errors   []uint32 `json:"errors"`
}

// Since returns the seconds after since (a unix second; 0 for all that are
// kept), backends sorted by key. A client polling with the previous
// answer's To gets only what is new.
func (r *Recorder) Since(since int64) Window {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := int64(r.opts.Window)
	win := Window{From: max(since+1, r.last-w+1, r.first), To: r.last, Backends: []SeriesWindow{}}
	n := int(win.To - win.From + 1)
	if r.last == 0 || n <= 0 {
		win.From, win.To, n = r.last+1, r.last, 0
	}
	win.Total = TotalWindow{Requests: make([]uint32, n), Errors: make([]uint32, n)}
	for i := range n {
		sec := win.From + int64(i)
		if t := r.total[sec%w]; t.sec == sec {
			win.Total.Requests[i], win.Total.Errors[i] = t.requests, t.errors
		}
	}
	for k, s := range r.series {
		sw := SeriesWindow{Key: k, Name: s.name, Requests: make([]uint32, n), Errors: make([]uint32, n),
			Retries: make([]uint32, n), P50: make([]float32, n), P99: make([]float32, n)}
		var states strings.Builder
		for i := range n {
			sec := win.From + int64(i)
			smp := s.samples[sec%w]
			if smp.sec != sec {
				states.WriteByte(stateLetters[Absent])
				continue
			}
			sw.Requests[i], sw.Errors[i], sw.Retries[i] = smp.requests, smp.errors, smp.retries
			sw.P50[i], sw.P99[i] = smp.p50, smp.p99
			states.WriteByte(stateLetters[smp.state])
		}
		sw.States = states.String()
		win.Backends = append(win.Backends, sw)
	}
	slices.SortFunc(win.Backends, func(a, b SeriesWindow) int { return strings.Compare(a.Key, b.Key) })
	return win
}
