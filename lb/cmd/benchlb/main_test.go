package main

import (
	"testing"
	"time"

	"hits/testkit"
)

const wrkOut = `Running 10s test @ http://127.0.0.1:40000/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.90ms    1.02ms  30.12ms   85.00%
    Req/Sec    17.10k     1.20k   19.80k    70.00%
  Latency Distribution
     50%    1.70ms
     75%    2.10ms
     90%    2.90ms
     99%  650.00us
  340000 requests in 10.00s, 50.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  34000.50
Transfer/sec:      5.00MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOut, 680) // 6.8 s of CPU at 100 ticks/s
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 340000 || r.rps != 34000.50 {
		t.Errorf("requests %d rps %v", r.requests, r.rps)
	}
	if r.p50 != 1700*time.Microsecond || r.p99 != 650*time.Microsecond {
		t.Errorf("p50 %v p99 %v", r.p50, r.p99)
	}
	if r.errors != 7 {
		t.Errorf("errors %d, want 7 (3 socket + 4 non-2xx)", r.errors)
	}
	if r.cpuPerReq != 20 {
		t.Errorf("cpu per request %v µs, want 20", r.cpuPerReq)
	}
	if _, err := parseWrk("garbage", 0); err == nil {
		t.Error("garbage output accepted")
	}
}

func TestMedian(t *testing.T) {
	if got := testkit.Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v", got)
	}
	if got := testkit.Median([]time.Duration{4, 1, 3, 2}); got != 2 {
		t.Errorf("median even = %v", got)
	}
}
