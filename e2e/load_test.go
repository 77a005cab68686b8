//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"
)

// hit is the app's JSON answer to GET / with Accept: application/json.
type hit struct {
	Instance string `json:"instance"`
	Version  string `json:"version"`
	Total    int64  `json:"total"`
	LastDay  int64  `json:"last_day"`
}

// hitter sends counted hits through the balancer's published port.
type hitter struct {
	base   string
	client *http.Client
}

func newHitter(base string, conns int) *hitter {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns
	tr.MaxIdleConnsPerHost = conns
	// Longer than the app ever holds a hit (HIT_TIMEOUT 5 s, SETTLE_TIMEOUT
	// 10 s more once its batch may have committed, then its queries), so a
	// slow answer is the app's, never this client giving up.
	return &hitter{base: base, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (h *hitter) close() { h.client.CloseIdleConnections() }

// hit sends one GET / and returns the decoded answer when the status is 200.
func (h *hitter) hit(ctx context.Context) (hit, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/", nil)
	if err != nil {
		return hit{}, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return hit{}, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return hit{}, resp.StatusCode, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return hit{}, resp.StatusCode, fmt.Errorf("GET /: %s", resp.Status)
	}
	var v hit
	if err := json.Unmarshal(body, &v); err != nil {
		return hit{}, resp.StatusCode, fmt.Errorf("decode %q: %w", body, err)
	}
	if v.Instance == "" || v.Total <= 0 {
		return v, resp.StatusCode, fmt.Errorf("implausible answer %q", body)
	}
	return v, resp.StatusCode, nil
}

// outcome is one request of a load run.
type outcome struct {
	at     time.Time     // when the answer (or the failure) came
	took   time.Duration // from sending the request to at
	status int           // 0 when the request failed before a response
	hit    hit
	err    error
}

// loadResult summarises a load run.
type loadResult struct {
	outcomes []outcome
	elapsed  time.Duration
}

func (r loadResult) ok() int {
	n := 0
	for _, o := range r.outcomes {
		if o.err == nil && o.status == http.StatusOK {
			n++
		}
	}
	return n
}

func (r loadResult) failed() []outcome {
	var f []outcome
	for _, o := range r.outcomes {
		if o.err != nil || o.status != http.StatusOK {
			f = append(f, o)
		}
	}
	return f
}

func (r loadResult) byInstance() map[string]int {
	m := map[string]int{}
	for _, o := range r.outcomes {
		if o.err == nil && o.status == http.StatusOK {
			m[o.hit.Instance]++
		}
	}
	return m
}

func (r loadResult) totals() []int64 {
	var t []int64
	for _, o := range r.outcomes {
		if o.err == nil && o.status == http.StatusOK {
			t = append(t, o.hit.Total)
		}
	}
	sort.Slice(t, func(i, j int) bool { return t[i] < t[j] })
	return t
}

// describeFailures shows the first few failures, for a failing assertion.
func describeFailures(f []outcome) string {
	s := ""
	for i, o := range f {
		if i == 5 {
			s += fmt.Sprintf("... and %d more", len(f)-5)
			break
		}
		s += fmt.Sprintf("\n  %s status=%d after %v err=%v", o.at.Format("15:04:05.000"), o.status, o.took.Round(time.Millisecond), o.err)
	}
	return s
}

// load is a bounded background load: workers send hits back to back until
// stop is called, the run's time limit passes or max requests were sent. A
// request is never cancelled half way: its hit may already be counted, and
// the tests compare totals with the number of 200s.
type load struct {
	stopOnce sync.Once
	stopped  chan struct{}
	timer    *time.Timer
	wg       sync.WaitGroup
	start    time.Time

	mu       sync.Mutex // guards outcomes
	outcomes []outcome
}

func startLoad(h *hitter, workers int, limit time.Duration, max int) *load {
	l := &load{stopped: make(chan struct{}), start: time.Now()}
	l.timer = time.AfterFunc(limit, l.halt)
	budget := make(chan struct{}, max)
	for range max {
		budget <- struct{}{}
	}
	close(budget)
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for range budget {
				select {
				case <-l.stopped:
					return
				default:
				}
				sent := time.Now()
				v, status, err := h.hit(context.Background()) // bounded by the client's timeout
				at := time.Now()
				l.mu.Lock()
				l.outcomes = append(l.outcomes, outcome{at: at, took: at.Sub(sent), status: status, hit: v, err: err})
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) halt() { l.stopOnce.Do(func() { close(l.stopped) }) }

// count is how many requests completed so far.
func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.outcomes)
}

// snapshot copies the outcomes so far.
func (l *load) snapshot() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]outcome(nil), l.outcomes...)
}

// finish waits until the run has sent all its requests (or hit its time
// limit) and returns what happened.
func (l *load) finish() loadResult {
	l.wg.Wait()
	l.timer.Stop()
	return loadResult{outcomes: l.snapshot(), elapsed: time.Since(l.start)}
}

// stop ends the run, waits for every worker and returns what happened.
func (l *load) stop() loadResult {
	l.timer.Stop()
	l.halt()
	l.wg.Wait()
	return loadResult{outcomes: l.snapshot(), elapsed: time.Since(l.start)}
}
