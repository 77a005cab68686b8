package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hits/app/internal/hits"
)

// breakdownCounter answers every hit with the same numbers and a breakdown
// of four replicas, like a page under `docker compose up --scale app=4`.
type breakdownCounter struct{ fixedCounter }

func (breakdownCounter) Breakdown(context.Context) ([]hits.InstanceCount, error) {
	return []hits.InstanceCount{{Instance: "hits-app-1", Hits: 40212}, {Instance: "hits-app-2", Hits: 40190},
		{Instance: "hits-app-3", Hits: 40101}, {Instance: "hits-app-4", Hits: 39988}}, nil
}

// BenchmarkIndexJSON is the app's own work for one counted JSON page load
// (routing, middleware, headers, encoding, metrics) with the counting
// itself stubbed out: what the handler adds to every hit.
func BenchmarkIndexJSON(b *testing.B) {
	h := NewServer(Deps{
		Counter:  breakdownCounter{fixedCounter{hits.Hit{Instance: "hits-app-1", Total: 160491, LastDay: 20311, Minute: time.Date(2026, 11, 29, 23, 50, 0, 0, time.UTC)}}},
		Ready:    func(context.Context) error { return nil },
		Draining: func() bool { return false },
		Metrics:  prometheus.NewRegistry(),
		Log:      slog.New(slog.DiscardHandler),
		Version:  "v1.4.0",
		Instance: "hits-app-1",
	})
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-LB-Reason", "round_robin")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
