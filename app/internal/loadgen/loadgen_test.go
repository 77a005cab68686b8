package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCountsAndStopsOnTime(t *testing.T) {
	var served, failed atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/json" {
			t.Errorf("Accept = %q, want application/json", r.Header.Get("Accept"))
		}
		if served.Add(1)%10 == 0 {
			failed.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	start := time.Now()
	r, err := Run(context.Background(), Config{URL: srv.URL, Header: http.Header{"Accept": {"application/json"}},
		Concurrency: 4, Duration: 300 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("run took %s, want about 300ms", d)
	}
	if r.OK == 0 || r.Errors == 0 {
		t.Fatalf("OK %d, errors %d; want both > 0", r.OK, r.Errors)
	}
	// Requests cut off at the end are in neither count, so the sum may fall short by up to Concurrency.
	if got, want := int64(r.OK+r.Errors), served.Load(); got > want || got < want-4 {
		t.Errorf("OK+errors = %d, server saw %d", got, want)
	}
	if r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 {
		t.Errorf("percentiles p50 %s, p99 %s, max %s are not ordered", r.P50, r.P99, r.Max)
	}
}

// TestRunDrainCountsEveryAnswer: with Drain, requests in flight at the end
// finish and are counted, so OK+LateOK is exactly what the server answered.
func TestRunDrainCountsEveryAnswer(t *testing.T) {
	var answered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // the server's work: keeps requests in flight at the end
		w.Write([]byte("ok"))
		answered.Add(1)
	}))
	defer srv.Close()
	r, err := Run(context.Background(), Config{URL: srv.URL, Concurrency: 8, Duration: 200 * time.Millisecond, Timeout: 2 * time.Second, Drain: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.LateOK == 0 || r.LateErrors != 0 {
		t.Errorf("late OK %d, late errors %d; want some late answers, no late errors", r.LateOK, r.LateErrors)
	}
	if got, want := int64(r.OK+r.LateOK), answered.Load(); got != want {
		t.Errorf("OK %d + late %d = %d, server answered %d", r.OK, r.LateOK, got, want)
	}
	if r.Elapsed > 200*time.Millisecond {
		t.Errorf("elapsed %s, want the measured 200ms (late answers are not measured)", r.Elapsed)
	}
}

func TestRunTimesOutSlowRequests(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	r, err := Run(context.Background(), Config{URL: srv.URL, Concurrency: 2, Duration: 500 * time.Millisecond, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 0 || r.Errors < 2 {
		t.Errorf("OK %d, errors %d; want 0 and several timeouts", r.OK, r.Errors)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	if _, err := Run(context.Background(), Config{URL: "http://127.0.0.1:1", Concurrency: 0, Duration: time.Second, Timeout: time.Second}); err == nil {
		t.Error("Run with concurrency 0 = nil error, want one")
	}
}
