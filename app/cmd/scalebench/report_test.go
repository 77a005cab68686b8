package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"hits/app/internal/loadgen"
)

func fake(mode string, n, round int, perSecond float64, replicasCPU time.Duration, exact bool) result {
	ok := int(perSecond * 8)
	r := result{mode: mode, n: n, round: round,
		res:      loadgen.Result{OK: ok, Elapsed: 8 * time.Second, P50: time.Millisecond, P99: 5 * time.Millisecond},
		cpu:      cpuSample{replicas: replicasCPU * time.Duration(ok), postgres: 10 * time.Microsecond * time.Duration(ok), machine: 16 * time.Second},
		answered: int64(ok), stored: int64(ok), hitsPerBatch: 8}
	if !exact {
		r.stored++
	}
	return r
}

// TestReportMediansTargetsAndChart: medians are the middle round, the
// targets are judged from them, a run that stored more than it answered is
// named, and the chart is well-formed SVG with one panel per mode.
func TestReportMediansTargetsAndChart(t *testing.T) {
	o := options{modes: []string{modeBudget, modeNative}, ns: []int{1, 2, 4}, rounds: 3, concurrency: 64, duration: 8 * time.Second, budget: 0.1}
	var rs []result
	for round := 1; round <= 3; round++ {
		rs = append(rs,
			fake(modeBudget, 1, round, []float64{900, 1000, 1100}[round-1], 30*time.Microsecond, true),
			fake(modeBudget, 2, round, 1950, 30*time.Microsecond, true),
			fake(modeBudget, 4, round, 3000, 45*time.Microsecond, true),
			fake(modeNative, 1, round, 10000, 40*time.Microsecond, true),
			fake(modeNative, 2, round, 9000, 40*time.Microsecond, round != 2),
			fake(modeNative, 4, round, 9500, 40*time.Microsecond, true))
	}
	rep := summarize(o, rs)
	if c, _ := rep.get(modeBudget, 1); c.med.res.PerSecond() != 1000 {
		t.Errorf("budget N=1 median = %.0f, want 1000 (the middle round)", c.med.res.PerSecond())
	}
	var out bytes.Buffer
	rep.print(&out, o)
	for _, want := range []string{
		"| budget | 2 | 1950 (1950–1950) | 1.95× | 2000 |",
		"| yes, all rounds | 8.0 | 30 µs |",
		"- MET: budget N=2 is 1.95× N=1 (want ≥ 1.9×)",
		"- MISSED: budget N=4 is 3.00× N=1 (want ≥ 3.6×)",
		"- MET: a replica in its budget spends 30 µs of CPU per hit (want ≤ 40)",
		"NO: round 2 stored 72001 for 72000×200",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	svg := rep.svg(o)
	d := xml.NewDecoder(bytes.NewReader(svg))
	panels := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("chart is not well-formed XML: %v", err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			panels++
		}
	}
	if panels != 4 { // a measured and an ideal line per mode
		t.Errorf("chart has %d lines, want 4", panels)
	}
}

func TestSplitModeAndSlug(t *testing.T) {
	m, env := splitMode("budget+GOMAXPROCS=1+GOGC=200")
	if m != "budget" || len(env) != 2 || env[0] != "GOMAXPROCS=1" || env[1] != "GOGC=200" {
		t.Errorf("splitMode = %q, %q", m, env)
	}
	if got := slug("budget+GOMAXPROCS=1"); got != "budget_GOMAXPROCS-1" {
		t.Errorf("slug = %q", got)
	}
	// A path must not make the run's log files land in other directories.
	if got := slug("native+bin=/tmp/app-old"); got != "native_bin-_tmp_app-old" {
		t.Errorf("slug = %q", got)
	}
}

func TestNiceCeil(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{{0, 1}, {950, 1000}, {1000, 2000}, {4100, 5000}, {12000, 20000}, {2300, 2500}} {
		if got := niceCeil(tc.in); got != tc.want {
			t.Errorf("niceCeil(%g) = %g, want %g", tc.in, got, tc.want)
		}
	}
}

// TestScrapeBatches: the replicas' histograms are summed, a labelled or
// longer name is not taken for the sample, and a replica without the
// metric makes the figure unknown rather than wrong.
func TestScrapeBatches(t *testing.T) {
	serve := func(body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	a := serve("# HELP hits_batch_size Hits per committed transaction.\n" +
		"hits_batch_size_bucket{le=\"8\"} 3\nhits_batch_size_sum 96\nhits_batch_size_count 12\nhits_batch_size_sum_other 1\n")
	b := serve("hits_batch_size_sum 32\nhits_batch_size_count 4\n")
	none := serve("go_goroutines 7\n")
	got, ok := scrapeBatches(context.Background(), []string{a, b})
	if !ok || got.hits != 128 || got.batches != 16 {
		t.Errorf("scrapeBatches = %+v, %v; want 128 hits in 16 batches", got, ok)
	}
	if _, ok := scrapeBatches(context.Background(), []string{a, none}); ok {
		t.Error("a replica without the metric still gave a figure")
	}
	if got := perBatch(0); got != "-" {
		t.Errorf("perBatch(0) = %q, want -", got)
	}
}
