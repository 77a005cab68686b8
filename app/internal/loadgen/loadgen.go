// Package loadgen is a small, bounded HTTP load generator for the
// benchmark: a fixed number of keep-alive workers send GETs back to back for
// a fixed time, each request with its own deadline, and report throughput
// and latency percentiles.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Config describes one run.
type Config struct {
	URL         string
	Header      http.Header   // sent with every request
	Concurrency int           // workers, each with at most one request in flight
	Duration    time.Duration // the run stops then; requests still in flight are cancelled and not counted, unless Drain
	Timeout     time.Duration // deadline of one request (counted as an error)
	// Drain lets the requests in flight when Duration ends finish (within
	// Timeout) and counts them in LateOK and LateErrors, so every answer the
	// server gave is known: what a check of stored against answered needs.
	Drain bool
}

// Result summarises a run. Latencies are of successful (2xx) requests only.
type Result struct {
	OK, Errors int // answered within Duration
	Elapsed    time.Duration
	P50, P99   time.Duration
	Max        time.Duration
	// LateOK and LateErrors are the requests in flight at the end that
	// finished afterwards (Drain only); not in the rate or the latencies.
	LateOK, LateErrors int
}

// PerSecond is successful requests per second.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// Run drives cfg.URL until cfg.Duration passes or ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Concurrency < 1 || cfg.Duration <= 0 || cfg.Timeout <= 0 {
		return Result{}, fmt.Errorf("loadgen: need concurrency >= 1 and positive duration and timeout")
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		MaxIdleConns:        cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency,
		IdleConnTimeout:     time.Minute,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	// Requests of a draining run outlive the run's end, not ctx.
	reqCtx := ctx
	if cfg.Drain {
		reqCtx = context.WithoutCancel(ctx)
	}
	type worker struct {
		lat                  []time.Duration
		errors, late, lateOK int
	}
	workers := make([]worker, cfg.Concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.lat = make([]time.Duration, 0, 4096)
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				ok := get(reqCtx, client, cfg, t0)
				if ctx.Err() != nil {
					if cfg.Drain { // finished after the end: known, not measured
						w.late++
						if ok {
							w.lateOK++
						}
					}
					return // cut off by the end of the run: neither success nor error
				}
				if ok {
					w.lat = append(w.lat, time.Since(t0))
				} else {
					w.errors++
				}
			}
		})
	}
	wg.Wait()
	r := Result{Elapsed: min(time.Since(start), cfg.Duration)}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		r.Errors += w.errors
		r.LateOK += w.lateOK
		r.LateErrors += w.late - w.lateOK
	}
	r.OK = len(all)
	if len(all) > 0 {
		slices.Sort(all)
		r.P50 = all[len(all)*50/100]
		r.P99 = all[min(len(all)-1, len(all)*99/100)]
		r.Max = all[len(all)-1]
	}
	return r, nil
}

func get(ctx context.Context, client *http.Client, cfg Config, t0 time.Time) bool {
	rctx, cancel := context.WithDeadline(ctx, t0.Add(cfg.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return false
	}
	for k, v := range cfg.Header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, resp.Body) // read fully so the connection is reused
	resp.Body.Close()
	return err == nil && resp.StatusCode/100 == 2
}
