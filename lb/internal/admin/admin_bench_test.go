package admin_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"hits/lb/internal/admin"
	"hits/lb/internal/balancer"
	"hits/lb/internal/stats"
)

// BenchmarkDashboardPoll is what one open dashboard costs lb each second:
// one /stats with the new second, with 4 replicas and 5 minutes of
// history. The first load (the whole window) is measured too.
func BenchmarkDashboardPoll(b *testing.B) {
	var cs [4]stats.Counters
	var hs [4]stats.Histogram
	src := balancer.Status{}
	for i := range cs {
		cs[i].Key = "172.19.0." + strconv.Itoa(i+2) + ":8080"
		cs[i].Name, cs[i].State = "hits-app-"+strconv.Itoa(i+1), stats.Up
		src.Backends = append(src.Backends, balancer.BackendStatus{Address: cs[i].Key, Name: cs[i].Name, State: "up", Healthy: true})
	}
	rec := stats.NewRecorder(func() stats.Snapshot {
		return stats.Snapshot{Backends: append([]stats.Counters(nil), cs[:]...)}
	}, stats.Options{})
	start := time.Unix(1_800_000_000, 0)
	for s := range 300 {
		for i := range cs {
			for range 50 {
				hs[i].Observe(time.Duration(1000+s*10+i*300) * time.Microsecond)
			}
			cs[i].Requests += 50
			cs[i].LatencySum = hs[i].Load(&cs[i].Latency)
		}
		rec.Sample(start.Add(time.Duration(s) * time.Second))
	}
	feed := make([]balancer.Decision, 20)
	for i := range feed {
		feed[i] = balancer.Decision{Time: start, Backend: "hits-app-1", Address: cs[0].Key, Reason: "round_robin", Status: 200, Ms: 1.5}
	}
	h := admin.NewServer(fixed(src), admin.Options{Stats: rec, Decisions: func(int) []balancer.Decision { return feed }})
	last := start.Unix() + 299
	for _, bc := range []struct {
		name  string
		since int64
	}{{"steady", last - 1}, {"first", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/stats?since="+strconv.FormatInt(bc.since, 10), nil)
			var n int
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				n = w.Body.Len()
				io.Discard.Write(w.Body.Bytes())
			}
			b.ReportMetric(float64(n), "bytes/poll")
		})
	}
}
